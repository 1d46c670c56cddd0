"""Sweeps: a grid of RunConfigs, each point one run folder; resumable, and one failure never stops the others.

A grid file (YAML or JSON):

    base: params/demo.yaml          # a RunConfig file, or an inline mapping
    splits: 3                       # optional: how many splits of each run
    grid:                           # section.field -> values; the product of all axes is run
      model.visual_depth: [0, 1, 3, -1]
      model.head: [levels, xattn]

Finished points (complete run folders) are skipped, so re-running a sweep after a crash or a pre-emption only
runs what is missing.
"""

from __future__ import annotations

import itertools
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pandas as pd

from mmpiqa.config import ConfigError, RunConfig


@dataclass(frozen=True)
class Sweep:
    base: RunConfig
    axes: dict[str, list[Any]]
    splits: int | None = None

    def points(self) -> list[RunConfig]:
        keys = list(self.axes)
        configs = []
        for values in itertools.product(*(self.axes[k] for k in keys)):
            label = "-".join(f"{k.split('.')[-1]}={_label(v)}" for k, v in zip(keys, values, strict=True))
            point = self.base.with_overrides(dict(zip(keys, values, strict=True)))
            configs.append(point.replace(name=f"{self.base.name}-{label}" if label else self.base.name))
        return configs


def _label(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "+".join(map(str, value)) or "none"
    return str(value)


def load_sweep(path: str | Path) -> Sweep:
    import yaml

    path = Path(path)
    data = yaml.safe_load(path.read_text()) or {}
    unknown = set(data) - {"base", "grid", "splits"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)}; a grid file has base, grid and splits")
    base = data.get("base", {})
    if isinstance(base, str):
        base_path = Path(base) if Path(base).is_absolute() else path.parent / base
        if not base_path.is_file():
            base_path = Path(base)
        base_config = RunConfig.load(base_path)
    else:
        base_config = RunConfig.from_dict(base, where=f"{path}:base")
    grid = data.get("grid", {})
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ConfigError(f"{path}: grid must map section.field to a non-empty list of values")
    sweep = Sweep(base_config, grid, data.get("splits"))
    sweep.points()  # validate every point now, before anything runs
    return sweep


def _run_point(config_dict: dict, out: str, splits: int | None) -> dict:
    """Run one grid point (in a worker process); never raises: failures come back as data."""
    from mmpiqa.experiment import run, run_folder

    config = RunConfig.from_dict(config_dict)
    folder = run_folder(config, out)
    try:
        result = run(config, out, splits=splits, progress=False, echo=False)
        test = result.metrics["summary"]["test"]["srcc"]
        return {
            "name": config.name,
            "folder": str(folder),
            "status": "skipped" if result.skipped else "done",
            "test_srcc": test["median"],
            "ci_low": test["ci_low"],
            "ci_high": test["ci_high"],
        }
    except Exception as error:  # one failed point is reported, the others go on
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "error.txt").write_text(traceback.format_exc())
        return {
            "name": config.name,
            "folder": str(folder),
            "status": f"failed: {type(error).__name__}: {error}",
            "test_srcc": float("nan"),
            "ci_low": float("nan"),
            "ci_high": float("nan"),
        }


def run_sweep(sweep: Sweep, out: str | Path = "runs", workers: int = 1) -> pd.DataFrame:
    """Run every point locally with `workers` processes; return one row per point."""
    points = sweep.points()
    jobs = [(p.to_dict(), str(out), sweep.splits) for p in points]
    rows = []
    if workers <= 1:
        for job in jobs:
            rows.append(_run_point(*job))
            print(_line(rows[-1]), flush=True)
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_run_point, *job) for job in jobs]
            for future in as_completed(futures):
                rows.append(future.result())
                print(_line(rows[-1]), flush=True)
    order = {p.name: i for i, p in enumerate(points)}
    return pd.DataFrame(rows).sort_values("name", key=lambda s: s.map(order)).reset_index(drop=True)


def _line(row: dict) -> str:
    if row["status"] in ("done", "skipped"):
        return (
            f"{row['status']:8s} {row['name']}: test SRCC {row['test_srcc']:.3f} "
            f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
        )
    return f"FAILED   {row['name']}: {row['status']} (traceback in {row['folder']}/error.txt)"

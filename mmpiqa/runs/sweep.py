"""Sweeps: a grid of RunConfigs, each point one run folder; resumable, and one failure never stops the others.

A grid file (YAML or JSON):

    base: params/demo.yaml          # a RunConfig file, or an inline mapping
    splits: 3                       # optional: how many splits of each run
    grid:                           # section.field -> values; the product of all axes is run
      model.visual_depth: [0, 1, 3, -1]
      model.head: [levels, xattn]
      data.dataset,data.root:       # fields joined by ',' vary together (zipped): one value list per row
        - [koniq10k, /data/koniq10k]
        - [kadid10k, /data/kadid10k]

Finished points (complete run folders) are skipped before anything is scheduled, so re-running a sweep after a
crash or a pre-emption only runs what is missing or failed; inside a point `mmpiqa.runs.experiment.run` resumes from
its finished splits and last epoch. The summary table is read from the run folders when the sweep ends, so it
also covers points that ran on other nodes.

Where the points run is a `Backend`: `LocalPool` (worker processes on this machine) or `SubmititBackend` (one
Slurm job per point through the maintained `submitit` library, or its local executor on one machine).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pandas as pd

from mmpiqa.config import ConfigError, RunConfig, read_config_file
from mmpiqa.files import atomic_write_text
from mmpiqa.model.checkpoint import CheckpointError
from mmpiqa.runs.folder import RunFolder

COLUMNS = ("name", "status", "test_srcc", "ci_low", "ci_high", "folder", "log")
MAX_NAME = 200  # characters of a point name: its folder adds "-<10-character key>" and must stay under 255


@dataclass(frozen=True)
class Sweep:
    base: RunConfig
    axes: dict[str, list[Any]]
    splits: int | None = None

    def assignments(self) -> list[dict[str, Any]]:
        """One `section.field -> value` mapping per grid point (zipped axes expanded)."""
        keys = list(self.axes)
        out = []
        for values in itertools.product(*(self.axes[k] for k in keys)):
            point: dict[str, Any] = {}
            for key, value in zip(keys, values, strict=True):
                point.update(_expand(key, value))
            out.append(point)
        return out

    def points(self) -> list[RunConfig]:
        """The RunConfig of every grid point, named `<base name>-<field>=<value>-...`."""
        keys = list(self.axes)
        configs = []
        for values, changes in zip(itertools.product(*self.axes.values()), self.assignments(), strict=True):
            label = "-".join(
                f"{_first(k).split('.')[-1]}={_label(k, v)}" for k, v in zip(keys, values, strict=True)
            )
            point = self.base.with_overrides(changes)
            configs.append(point.replace(name=f"{self.base.name}-{label}" if label else self.base.name))
        return configs


def _first(key: str) -> str:
    return key.split(",")[0].strip()


def _expand(key: str, value: Any) -> dict[str, Any]:
    """`a.b` -> {a.b: value}; a zipped `a.b,c.d` -> {a.b: value[0], c.d: value[1]}."""
    fields_ = [k.strip() for k in key.split(",")]
    if len(fields_) == 1:
        return {key: value}
    if not isinstance(value, list | tuple) or len(value) != len(fields_):
        raise ConfigError(
            f"grid axis {key!r}: each value must be a list of {len(fields_)} items, got {value!r}"
        )
    return dict(zip(fields_, value, strict=True))


def _label(key: str, value: Any) -> str:
    if "," in key:  # zipped axis: the first field names the point
        value = value[0]
    if isinstance(value, list | tuple):
        text = "+".join(map(str, value)) or "none"
    else:
        text = str(value)
    return re.sub(r"[/\\\x00-\x1f]+", "_", text)  # no path separators in a folder name


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a grid file: every point is made (and so validated) now, before anything runs."""
    path = Path(path)
    data = read_config_file(path, "grid file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a grid file maps base, grid and splits; it holds a {type(data).__name__}")
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
    if not isinstance(grid, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and v for k, v in grid.items()
    ):
        raise ConfigError(f"{path}: grid must map section.field to a non-empty list of values")
    splits = data.get("splits")
    if splits is not None and (type(splits) is not int or splits < 1):
        raise ConfigError(
            f"{path}: splits={splits!r}: how many of each point's splits to run, a whole number >= 1"
        )
    sweep = Sweep(base_config, grid, splits)
    try:
        points = sweep.points()
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: two grid points get the same name; make the axis values distinct")
    for point in points:
        if splits is not None and splits > point.data.n_splits:
            raise ConfigError(
                f"{path}: splits={splits} but {point.name} has data.n_splits={point.data.n_splits}"
            )
        if len(point.name) > MAX_NAME:  # its run folder, <name>-<key>, must stay a legal file name
            raise ConfigError(
                f"{path}: the point name {point.name[:60]!r}... has {len(point.name)} characters (at most "
                f"{MAX_NAME} fit a folder name); give the axes shorter values or the base a shorter name"
            )
    return sweep


# ------------------------------------------------------------------------------------------------ points
@dataclass(frozen=True)
class Point:
    """One grid point: a RunConfig, where its run folder goes, how many splits to run."""

    config: RunConfig
    out: str
    splits: int | None = None

    @property
    def folder(self) -> Path:
        from mmpiqa.runs.experiment import run_folder

        return run_folder(self.config, self.out)

    def finished(self) -> bool:
        return RunFolder(self.folder).is_complete()


def _run_point(config_dict: dict, out: str, splits: int | None, threads: int | None = None) -> dict:
    """Run one grid point (in a worker process or a cluster job); never raises: failures come back as data.
    `threads` caps torch's CPU threads, so points sharing a machine do not oversubscribe its cores."""
    from mmpiqa.runs.experiment import run, run_folder

    if threads:
        import torch

        torch.set_num_threads(threads)
    config = RunConfig.from_dict(config_dict)
    folder = RunFolder(run_folder(config, out))
    try:
        result = run(config, out, splits=splits, progress=False, echo=False)
        folder.error_file.unlink(missing_ok=True)  # a resumed point that now succeeds
        return _row_from_folder(config.name, folder.path, "skipped" if result.skipped else "done")
    except Exception as error:  # one failed point is reported, the others go on
        reason, log = f"{type(error).__name__}: {error}", folder.error_file
        try:
            folder.path.mkdir(parents=True, exist_ok=True)
            atomic_write_text(folder.error_file, traceback.format_exc())
        except OSError as unwritable:  # e.g. --out is a file: the reason still comes back
            reason, log = f"{reason} (and the error file cannot be written: {unwritable})", ""
        return _failed_row(config.name, folder.path, reason, log)


class PointJob:
    """The callable a cluster job runs. Checkpointable: on pre-emption or timeout submitit requeues it with the
    same arguments, and `mmpiqa.runs.experiment.run` continues from the finished splits and the last epoch."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def __call__(self, config_dict: dict, out: str, splits: int | None) -> dict:
        return _run_point(config_dict, out, splits, self.threads)

    def checkpoint(self, *args: Any, **kwargs: Any):
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


def _row(name: str, status: str, folder: str | Path, log: str | Path, test: dict | None = None) -> dict:
    test = test or {"median": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
    return {
        "name": name,
        "status": status,
        "test_srcc": test["median"],
        "ci_low": test["ci_low"],
        "ci_high": test["ci_high"],
        "folder": str(folder),
        "log": str(log),
    }


def _row_from_folder(name: str, folder: Path, status: str) -> dict:
    run = RunFolder(folder)
    try:
        test = run.read_metrics()
    except CheckpointError as error:  # not JSON: one failed row, not the end of the summary
        return _failed_row(name, folder, str(error), run.metrics_file)
    for key in ("summary", "test", "srcc"):
        test = test.get(key) if isinstance(test, dict) else None
    if not isinstance(test, dict):
        reason = f"{run.metrics_file.name} has no test summary (damaged); delete it to run the point again"
        return _failed_row(name, folder, reason, run.metrics_file)
    return _row(name, status, folder, run.log_file, test)


def _failed_row(name: str, folder: str | Path, reason: str, log: str | Path) -> dict:
    return _row(name, f"failed: {reason}", folder, log)


# ------------------------------------------------------------------------------------------------ backends
class Backend:
    """Where grid points run. `run(points)` runs every point given (none of them finished) and returns one row
    per point: name, status ('done' or 'failed: ...'), folder and log (the file to read when it failed)."""

    def run(self, points: list[Point]) -> list[dict]:
        raise NotImplementedError


@dataclass
class LocalPool(Backend):
    """`workers` processes on this machine (1: in this process, one point after the other)."""

    workers: int = 1

    def run(self, points: list[Point]) -> list[dict]:
        threads = max(1, (os.cpu_count() or 1) // self.workers) if self.workers > 1 else None
        jobs = [(p.config.to_dict(), p.out, p.splits, threads) for p in points]
        rows = []
        if self.workers <= 1:
            for job in jobs:
                rows.append(_run_point(*job))
                print(_line(rows[-1]), flush=True)
            return rows
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_run_point, *job) for job in jobs]
            for future in as_completed(futures):
                rows.append(future.result())
                print(_line(rows[-1]), flush=True)
        return rows


_ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED"}


@dataclass
class SubmititBackend(Backend):
    """One job per grid point through submitit: Slurm job arrays (`executor='slurm'`), or the same code path as
    local processes (`executor='local'`, submitit's LocalExecutor; `array_parallelism` caps how many run at once).

    Submitted job ids are kept in `<log_dir>/jobs.json`; on Slurm a re-run attaches to a point's job that is still
    pending or running instead of submitting it twice. `wait=False` returns right after submitting (run the same
    command again later: finished points are skipped, running ones attached, failed ones resubmitted)."""

    log_dir: str | Path
    executor: str = "slurm"  # 'slurm' or 'local'
    partition: str | None = None
    gpus_per_job: int = 1
    cpus_per_job: int | None = None  # Slurm cpus-per-task and torch threads (local: cores / jobs at once)
    time: int = 240  # minutes per job (Slurm --time); a pre-empted or timed-out job is requeued and resumes
    array_parallelism: int | None = None  # at most this many jobs at once (Slurm array %N)
    slurm_options: dict[str, Any] = field(default_factory=dict)  # e.g. {'account': 'x', 'qos': 'y'}
    wait: bool = True
    poll_s: float | None = None  # how often to look at the jobs (default: 1 s local, 30 s Slurm)
    submitted: list[str] = field(default_factory=list)  # names of the points submitted by the last `run`

    def __post_init__(self) -> None:
        if self.executor not in ("slurm", "local"):
            raise ValueError(f"executor={self.executor!r}: 'slurm' or 'local'")

    def _executor(self):
        submitit = _import_submitit()
        executor = submitit.AutoExecutor(folder=str(self.log_dir), cluster=self.executor)
        params: dict[str, Any] = {
            "name": "mmpiqa-sweep",
            "timeout_min": int(self.time),
            "gpus_per_node": int(self.gpus_per_job),
            "tasks_per_node": 1,
            "nodes": 1,
        }
        if self.cpus_per_job:
            params["cpus_per_task"] = int(self.cpus_per_job)
        if self.executor == "slurm":
            if self.partition:
                params["slurm_partition"] = self.partition
            if self.array_parallelism:
                params["slurm_array_parallelism"] = int(self.array_parallelism)
            params.update({f"slurm_{k}": v for k, v in self.slurm_options.items()})
        executor.update_parameters(**params)
        return executor

    def run(self, points: list[Point]) -> list[dict]:
        self.submitted = []
        if not points:
            return []
        submitit = _import_submitit()
        log_dir = Path(self.log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        registry = _read_registry(log_dir)
        attached, todo = {}, []
        for point in points:
            job_id = registry.get(point.folder.name)
            if self.executor == "slurm" and job_id and _slurm_state(submitit, log_dir, job_id) in _ACTIVE:
                attached[point.folder.name] = submitit.SlurmJob(folder=log_dir, job_id=job_id)
            else:
                todo.append(point)
        if attached:
            print(f"attached to {len(attached)} job(s) still pending or running", flush=True)
        executor = self._executor()
        window = (
            len(todo) if self.executor == "slurm" or not self.array_parallelism else self.array_parallelism
        )
        threads = self.cpus_per_job
        if self.executor == "local" and not threads and todo:  # jobs share this machine's cores
            threads = max(1, (os.cpu_count() or 1) // min(window, len(todo)))
        jobs = dict(attached)
        pending = list(todo)
        poll = self.poll_s or (1.0 if self.executor == "local" else 30.0)
        rows: dict[str, dict] = {}
        while pending or any(name not in rows for name in jobs):
            running = sum(1 for name, job in jobs.items() if name not in rows and not job.done())
            batch, pending = pending[: max(0, window - running)], pending[max(0, window - running) :]
            if batch:
                jobs.update(self._submit(executor, batch, log_dir, registry, threads))
            for point_name, job in jobs.items():
                if point_name not in rows and job.done():
                    rows[point_name] = _job_row(point_name, job, log_dir)
                    print(_line(rows[point_name]), flush=True)
            if not self.wait and not pending:
                for point_name, job in jobs.items():
                    rows.setdefault(
                        point_name,
                        _row(point_name, f"submitted (job {job.job_id})", "", _job_log(job, log_dir)),
                    )
                break
            if pending or any(name not in rows for name in jobs):
                time.sleep(poll)
        by_folder = {p.folder.name: p for p in points}
        out = []
        for folder_name, row in rows.items():
            point = by_folder[folder_name]
            out.append({**row, "name": point.config.name, "folder": str(point.folder)})
        return out

    def _submit(
        self, executor, batch: list[Point], log_dir: Path, registry: dict, threads: int | None
    ) -> dict:
        with executor.batch():
            jobs = [executor.submit(PointJob(threads), p.config.to_dict(), p.out, p.splits) for p in batch]
        out = {}
        for point, job in zip(batch, jobs, strict=True):
            out[point.folder.name] = job
            registry[point.folder.name] = str(job.job_id)
            self.submitted.append(point.config.name)
        _write_registry(log_dir, registry)
        ids = ", ".join(str(j.job_id) for j in jobs)
        print(
            f"submitted {len(jobs)} job(s) [{ids}] via submitit ({self.executor}); logs in {log_dir}",
            flush=True,
        )
        return out


def _import_submitit():
    try:
        import submitit
    except ImportError:
        raise ImportError(
            "the submitit backend needs the 'submitit' package: pip install 'mmpiqa[cluster]' "
            "(or pip install 'submitit>=1.5,<2')"
        ) from None
    return submitit


def _slurm_state(submitit, log_dir: Path, job_id: str) -> str:
    try:
        return str(submitit.SlurmJob(folder=log_dir, job_id=job_id).state).split()[0].upper()
    except Exception:  # sacct unavailable or the job forgotten: treat as not running
        return "UNKNOWN"


def _read_registry(log_dir: Path) -> dict[str, str]:
    """Point folder -> submitted job id. A damaged registry stops the sweep: without it, points whose jobs are
    still running would be submitted a second time."""
    path = log_dir / "jobs.json"
    if not path.is_file():
        return {}
    try:
        registry = json.loads(path.read_text(encoding="utf-8"))
        valid = isinstance(registry, dict) and all(isinstance(v, str) for v in registry.values())
        problem = "" if valid else "not a map of point folders to job ids"
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        problem = f"not valid JSON ({error})"
    if problem:
        raise CheckpointError(
            f"{path}: {problem}; it lists the sweep's submitted jobs. Wait for (or cancel) the sweep's jobs "
            "still queued or running (squeue), then delete the file and run the sweep again: finished points "
            "are skipped."
        )
    return registry


def _write_registry(log_dir: Path, registry: dict[str, str]) -> None:
    from mmpiqa.files import atomic_write_json

    atomic_write_json(log_dir / "jobs.json", registry)


def _job_row(point_name: str, job, log_dir: Path) -> dict:
    """The row of a finished job: its own report, or why the job itself died (pre-empted, killed, timed out)."""
    log = _job_log(job, log_dir)
    try:
        row = job.result()
    except Exception as error:  # UncompletedJobError / FailedJobError: the job died, not the run
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return _failed_row(point_name, "", f"job {job.job_id} did not complete ({reason})", log)
    if str(row.get("status", "")).startswith("failed"):
        row = {**row, "log": f"{row['log']} (job log {log})"}
    return row


def _job_log(job, log_dir: Path) -> Path:
    try:
        return Path(job.paths.stderr)
    except Exception:
        return log_dir


# ------------------------------------------------------------------------------------------------ sweep
def run_sweep(
    sweep: Sweep, out: str | Path = "runs", workers: int = 1, backend: Backend | None = None
) -> pd.DataFrame:
    """Run every unfinished point on `backend` (default: `LocalPool(workers)`); return one row per point.

    Finished points are skipped before anything is scheduled. The table is read from the run folders at the
    end (status 'done', 'skipped', 'failed: ...' with the log to read, 'submitted (job N)' with wait=False, or
    'missing ...'), with one column per grid axis."""
    if Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"--out {out}: a file, not a folder; give the folder the run folders go in")
    backend = backend or LocalPool(workers)
    points = [Point(c, str(out), sweep.splits) for c in sweep.points()]
    finished = {p.config.name for p in points if p.finished()}
    for p in points:
        if p.config.name in finished:
            print(f"skipped  {p.config.name}: complete in {p.folder}", flush=True)
    reports = {r["name"]: r for r in backend.run([p for p in points if p.config.name not in finished])}
    return summary_table(sweep, out, reports, skipped=finished)


def summary_table(
    sweep: Sweep, out: str | Path, reports: dict[str, dict] | None = None, skipped: set[str] | None = None
) -> pd.DataFrame:
    """One row per grid point, read from its run folder (so it covers points run anywhere)."""
    reports, skipped = reports or {}, skipped or set()
    rows = []
    for config, assignment in zip(sweep.points(), sweep.assignments(), strict=True):
        point = Point(config, str(out), sweep.splits)
        folder = RunFolder(point.folder)
        if folder.is_complete():
            row = _row_from_folder(config.name, folder.path, "skipped" if config.name in skipped else "done")
        elif config.name in reports:
            row = {**reports[config.name], "folder": str(folder.path)}
        elif folder.error_file.is_file():  # failed when it last ran (maybe on another node)
            error = folder.error_file
            last = error.read_text(errors="replace").strip().splitlines()[-1:] or [f"see {error.name}"]
            row = _failed_row(config.name, folder.path, last[0], error)
        else:
            missing = "missing (not run, or still running)"
            row = _row(config.name, missing, folder.path, folder.log_file)
        rows.append({**{k: row[k] for k in COLUMNS}, **{k: _cell(v) for k, v in assignment.items()}})
    return pd.DataFrame(rows)


def _cell(value: Any) -> Any:
    return "+".join(map(str, value)) if isinstance(value, list | tuple) else value


def _line(row: dict) -> str:
    if row["status"] in ("done", "skipped"):
        return (
            f"{row['status']:8s} {row['name']}: test SRCC {row['test_srcc']:.3f} "
            f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
        )
    return f"FAILED   {row['name']}: {row['status']} (see {row['log']})"

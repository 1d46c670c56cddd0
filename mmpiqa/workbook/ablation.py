"""Ablations as data: arms from a base RunConfig, run once, read back from their run folders, compared honestly.

    base = ablation.base_config(choose_backbone("auto"), size="small", epochs=1, n_splits=3)
    arms = ablation.arms(base, {"model.visual_depth": [0, 1, 3, -1]})  # the points `mmpiqa sweep` makes too
    folders = ablation.run_arms(arms, runs_dir())                        # complete folders are skipped
    tidy = ablation.read_runs(folders)                                   # one row per run x split
    table = ablation.summary_table(tidy, by="visual_depth")              # median and CI over splits
    tests = ablation.paired_tests(tidy)                                  # every pair of arms, shared splits only
    ablation.depth_plot(table); ablation.pvalue_matrix(tests)

The arms are `mmpiqa.runs.sweep.Sweep` points, so a grid file with the same base and axes (params/*_grid.yaml) makes
the same run folders: a sweep run from the command line on a GPU is read here without training again.
Two arms are compared only on the splits they share, and "shared" is checked on the content of each run's
splits.json (the same train / val / test names), never assumed from the split index.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from mmpiqa import metrics
from mmpiqa.config import ConfigError, RunConfig
from mmpiqa.model.checkpoint import read_json
from mmpiqa.runs.experiment import load_table, run, run_folder
from mmpiqa.runs.folder import RunFolder
from mmpiqa.runs.sweep import Sweep
from mmpiqa.runs.variants import BackboneWeights, mpiqe_run

METRIC_NAMES = ("srcc", "plcc", "krcc", "plcc_logistic", "rmse")

__all__ = [
    "ablation_heatmap",
    "arms",
    "axis_values",
    "base_config",
    "depth_plot",
    "image_blocks",
    "paired_tests",
    "pvalue_matrix",
    "pvalue_table",
    "read_runs",
    "run_arms",
    "summary_table",
    "varying_fields",
]


# ------------------------------------------------------------------------------------------------ arms


def base_config(
    backbone: BackboneWeights,
    *,
    dataset: str = "embedded",
    size: str = "default",
    batch_size: int = 32,
    n_splits: int = 3,
    **options: Any,
) -> RunConfig:
    """The MP-IQE run (`mmpiqa.runs.variants.mpiqe_run`) with an ablation's defaults: the 'default' embedded
    benchmark, batches of 32 and three splits; `options` are mpiqe_run's other data and training knobs and
    the model fields of an arm.

    `n_splits` is part of the config (and so of the run folder's key): asking for more splits makes a new
    folder instead of silently reusing one that holds fewer. `size` only means something for the embedded
    benchmark; for other datasets it is left at its default so it cannot change the key. `device` and
    `num_workers` (DataLoader workers) are not part of the key."""
    return mpiqe_run(
        backbone,
        dataset=dataset,
        size=size if dataset == "embedded" else "default",
        batch_size=batch_size,
        n_splits=n_splits,
        **options,
    )


def axis_values(name: str, values: Any, aliases: dict | None = None) -> list:
    """A chapter's list parameter (`depths`, `heads`, `branch_sets`) checked before anything uses it: a non-empty
    list of distinct values, each spelled as the configs store it (`aliases`, e.g. {"all": -1}); else one
    ConfigError naming the parameter."""
    if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
        raise ConfigError(f"{name}={values!r}: a non-empty list of values, e.g. {name}=[a, b]")
    values = [(aliases or {}).get(v, v) if isinstance(v, str) else v for v in values]
    if len({json.dumps(v, default=str) for v in values}) != len(values):
        raise ConfigError(f"{name}={values!r}: a value is repeated; give each arm once")
    return values


def arms(base: RunConfig, axes: dict[str, Sequence[Any]]) -> list[RunConfig]:
    """One RunConfig per point of the product of `axes` (``"section.field" -> values``), named as
    `mmpiqa sweep` names them (``<base name>-<field>=<value>-...``), so both make the same run folders."""
    if not axes:
        raise ConfigError("give at least one axis, e.g. {'model.visual_depth': [0, 1, -1]}")
    configs = Sweep(base, {k: axis_values(k, v) for k, v in axes.items()}).points()
    keys = [c.key() for c in configs]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"two arms have the same config (two spellings of one value on an axis?): {axes}")
    return configs


def run_arms(
    configs: Sequence[RunConfig],
    out: str | Path,
    *,
    table: pd.DataFrame | None = None,
    echo: bool = True,
) -> list[Path]:
    """Run every arm over its `data.n_splits` splits (complete run folders are skipped); return the folders.

    One line per arm says whether it trained or was read back, its test SRCC and how long it took. `table`
    (the dataset's table) is loaded once per dataset and shared when not given, and only when an arm has to
    run: complete folders are read back without the data set (e.g. GPU runs copied to a laptop)."""
    folders = []
    tables: dict[str, pd.DataFrame] = {}
    for config in configs:
        d = config.data
        data_key = json.dumps(
            [d.dataset, d.root, d.size, d.skip_unreadable, d.reader_options], sort_keys=True
        )
        here = RunFolder(run_folder(config, out))
        # complete here, or under another name (run copies it): no need for the data set
        complete = here.is_complete() or RunFolder.complete_twin(out, config.key()) is not None
        if table is None and not complete and data_key not in tables:
            tables[data_key] = load_table(config.data, progress=False)
        start = time.perf_counter()
        result = run(
            config,
            out,
            table=table if table is not None else tables.get(data_key),
            progress=False,
            echo=False,
        )
        folders.append(result.folder)
        if echo:
            s = result.summary("test", "srcc")
            state = "read back" if result.skipped else f"trained in {time.perf_counter() - start:.0f} s"
            print(
                f"{config.name:<48s} {state:<18s} test SRCC {s['median']:.3f} "
                f"[{s['ci_low']:.3f}, {s['ci_high']:.3f}]  ({result.folder.name})",
                flush=True,
            )
    return folders


# ------------------------------------------------------------------------------------------ read back


def _flat(config: RunConfig) -> dict[str, Any]:
    """``section.field -> value`` of a config (lists as tuples so values can be compared and hashed)."""
    out = {}
    for section, values in config.to_dict().items():
        if isinstance(values, dict):
            for name, value in values.items():
                out[f"{section}.{name}"] = tuple(value) if isinstance(value, list) else value
    return out


def varying_fields(configs: Sequence[RunConfig]) -> list[str]:
    """The ``section.field`` names whose values differ between `configs` (the axes of an ablation)."""
    flats = [_flat(c) for c in configs]
    names = list(flats[0]) if flats else []
    return [n for n in names if len({repr(f.get(n)) for f in flats}) > 1]


def _label(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return "+".join(map(str, value)) or "none"
    return value


def _split_ids(folder: RunFolder) -> list[str]:
    """A fingerprint of each split's train / val / test names, from the run's own splits.json."""
    doc = read_json(folder.splits_file)
    ids = []
    for split in doc["splits"]:
        names = json.dumps([split["train"], split["val"], split["test"]])
        ids.append(hashlib.sha256(f"{doc.get('dataset')}|{names}".encode()).hexdigest()[:12])
    return ids


def read_runs(
    folders: Sequence[str | Path], *, part: str = "test", axes: Sequence[str] | None = None
) -> pd.DataFrame:
    """A tidy table with one row per run x split, read from complete run folders.

    Columns: ``arm`` (a label: ``visual_depth=3`` for one axis, ``quality+scene / xattn`` for several, in axis
    order), one column per axis (short field names such as
    ``visual_depth``; tuples shown as ``quality+scene``), ``split``, ``split_id`` (fingerprint of the split's
    names in splits.json), ``run``, ``key``, ``folder``, ``backbone``, ``best_epoch`` and the metrics of `part`
    (``srcc, plcc, krcc, plcc_logistic, rmse``). `axes` (``section.field`` names) defaults to the fields that
    differ between the runs."""
    runs = [RunFolder(f) for f in folders]
    for folder in runs:
        if not folder.is_complete():
            raise FileNotFoundError(
                f"{folder.path} has no {folder.metrics_file.name}: the run is not complete "
                "(run it first, e.g. with run_arms)"
            )
    configs = [f.read_config() for f in runs]
    axes = list(axes) if axes is not None else varying_fields(configs)
    short = [a.split(".")[-1] for a in axes]
    columns = short if len(set(short)) == len(short) else list(axes)
    rows = []
    for folder, config in zip(runs, configs, strict=True):
        stored = folder.read_metrics()
        flat, ids = _flat(config), _split_ids(folder)
        values = {col: _label(flat[a]) for col, a in zip(columns, axes, strict=True)}
        if len(values) == 1:
            arm = "{}={}".format(*next(iter(values.items())))
        else:  # several axes: the values in axis order, e.g. "quality+scene / xattn"
            arm = " / ".join(str(v) for v in values.values()) or config.name
        for s in stored["per_split"]:
            rows.append(
                {
                    "arm": arm,
                    **values,
                    "split": s["split"],
                    "split_id": ids[s["split"]],
                    "run": config.name,
                    "key": stored["key"],
                    "folder": str(folder.path),
                    "backbone": stored["backbone"],
                    "best_epoch": s.get("best_epoch"),
                    **{m: s[part][m] for m in METRIC_NAMES},
                }
            )
    tidy = pd.DataFrame(rows)
    tidy.attrs["axes"] = columns
    return tidy


def summary_table(
    tidy: pd.DataFrame, by: str | Sequence[str] = "arm", values: Sequence[str] = ("srcc", "plcc")
) -> pd.DataFrame:
    """One row per arm (grouped by `by`, in order of first appearance): ``splits`` and, for each metric, the
    median over splits (column named after the metric), ``<m>_mean``, ``<m>_std`` and the 95% bootstrap CI of
    the mean over splits (``<m>_low``, ``<m>_high``; nan with one split), from `metrics.summarise`."""
    by = [by] if isinstance(by, str) else list(by)
    if "arm" not in by:
        by = [*by, "arm"]
    rows = []
    for keys, group in tidy.groupby(by, sort=False):
        row = dict(zip(by, keys if isinstance(keys, tuple) else (keys,), strict=True))
        row["splits"] = len(group)
        for m in values:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", metrics.MetricWarning)  # one split: no CI, by design
                s = metrics.summarise(group[m].to_numpy(dtype=float))
            row[m], row[f"{m}_mean"], row[f"{m}_std"] = s["median"], s["mean"], s["std"]
            row[f"{m}_low"], row[f"{m}_high"] = s["ci_low"], s["ci_high"]
        rows.append(row)
    return pd.DataFrame(rows)


def paired_tests(
    tidy: pd.DataFrame,
    *,
    metric: str = "srcc",
    pairs: Sequence[tuple[str, str]] | None = None,
    alternative: str = "two-sided",
) -> pd.DataFrame:
    """Paired tests (`metrics.paired_test`: Wilcoxon signed-rank and paired t) between arms on shared splits.

    `pairs` of ``arm`` labels (default: every pair, in arm order). A split counts for a pair only when both
    arms ran it on the same names; the same split index with different names (another split seed, another
    dataset) is an error, not a silent mismatch. Splits where either arm's metric is undefined (nan: a
    collapsed model) are left out of that pair. Pairs with fewer than 2 usable splits get nan p-values."""
    order = list(dict.fromkeys(tidy["arm"]))
    pairs = list(pairs) if pairs is not None else list(itertools.combinations(order, 2))
    rows = []
    for a, b in pairs:
        for label in (a, b):
            if label not in order:
                raise KeyError(f"no arm {label!r}; the arms are {order}")
        left = tidy[tidy["arm"] == a].set_index("split")
        right = tidy[tidy["arm"] == b].set_index("split")
        common = left.index.intersection(right.index)
        differ = [k for k in common if left.at[k, "split_id"] != right.at[k, "split_id"]]
        if differ:
            raise ValueError(
                f"arms {a!r} and {b!r} ran different images as split(s) {differ} (their splits.json differ: "
                "another split seed, dataset or protocol); a paired test needs the same splits"
            )
        common = [
            k for k in sorted(common) if np.isfinite(left.at[k, metric]) and np.isfinite(right.at[k, metric])
        ]
        row = {"a": a, "b": b, "n": len(common)}
        if len(common) >= 2:
            row.update(
                metrics.paired_test(
                    left.loc[common, metric].to_numpy(float),
                    right.loc[common, metric].to_numpy(float),
                    alternative=alternative,
                )
            )
        else:
            row.update(mean_diff=np.nan, median_diff=np.nan, p_wilcoxon=np.nan, p_ttest=np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def pvalue_table(tests: pd.DataFrame, p: str = "p_wilcoxon") -> pd.DataFrame:
    """The p-values of `paired_tests` as a symmetric arm x arm table (nan on the diagonal and untested pairs)."""
    order = list(dict.fromkeys([*tests["a"], *tests["b"]]))
    table = pd.DataFrame(np.nan, index=order, columns=order)
    for row in tests.itertuples():
        table.loc[row.a, row.b] = table.loc[row.b, row.a] = getattr(row, p)
    return table


def image_blocks(backbone: str) -> int:
    """How many transformer blocks the image tower of `backbone` has (what ``visual_depth=-1`` means)."""
    import open_clip

    from mmpiqa.model.backbone import registry_name

    config = open_clip.get_model_config(registry_name(backbone))
    if config is None:
        raise KeyError(f"unknown backbone {backbone!r}")
    return int(config["vision_cfg"]["layers"])


# ------------------------------------------------------------------------------------------------ plots


def depth_plot(
    summary: pd.DataFrame,
    *,
    depth: str = "visual_depth",
    metric: str = "srcc",
    n_blocks: int | None = None,
    tidy: pd.DataFrame | None = None,
    baseline: float | None = None,
    ax=None,
):
    """Median `metric` against visual prompt depth with its CI over splits as a band; each split's value as a
    dot when `tidy` is given; `baseline` (e.g. zero-shot) as a dashed line. Depth -1 ("every block") is drawn
    at `n_blocks` (or one step past the deepest arm) and labelled "all"."""
    ax = ax or plt.subplots(figsize=(6, 3.6))[1]
    raw = summary[depth].to_numpy(dtype=int)
    deepest = int(raw[raw >= 0].max(initial=0))
    every = n_blocks if n_blocks is not None else deepest + 1

    def position(d):
        return np.where(np.asarray(d) == -1, every, d)

    frame = summary.assign(_x=position(raw)).sort_values("_x")
    ax.fill_between(
        frame["_x"], frame[f"{metric}_low"], frame[f"{metric}_high"], alpha=0.25, label="95% CI of the mean"
    )
    ax.plot(
        frame["_x"], frame[metric], marker="o", label=f"median over splits ({int(frame['splits'].max())})"
    )
    if tidy is not None:
        ax.scatter(
            position(tidy[depth].to_numpy(dtype=int)),
            tidy[metric],
            s=12,
            color="0.4",
            alpha=0.6,
            zorder=3,
            label="one split",
        )
    if baseline is not None:
        ax.axhline(baseline, color="C3", linestyle="--", linewidth=1, label=f"zero-shot ({baseline:.3f})")
    labels = [f"all ({every})" if d == -1 else str(d) for d in frame[depth]]
    ax.set_xticks(frame["_x"].to_numpy(), labels)
    ax.set(xlabel="visual prompt depth (blocks with prompts)", ylabel=f"test {metric.upper()}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    return ax


def pvalue_matrix(
    tests: pd.DataFrame, *, p: str = "p_wilcoxon", alpha: float = 0.05, title: str = "", ax=None
):
    """Heatmap of the paired-test p-values between arms; each cell shows p and the mean difference (row - col,
    read along the lower triangle), cells below `alpha` outlined."""
    table = pvalue_table(tests, p)
    diff = pd.DataFrame(np.nan, index=table.index, columns=table.columns)
    for row in tests.itertuples():
        diff.loc[row.a, row.b], diff.loc[row.b, row.a] = row.mean_diff, -row.mean_diff
    annot = table.copy().astype(object)
    for i, j in itertools.product(table.index, table.columns):
        pv, dv = table.loc[i, j], diff.loc[i, j]
        annot.loc[i, j] = "" if np.isnan(pv) else f"p={pv:.2f}\nΔ={dv:+.3f}"
    n = len(table)
    ax = ax or plt.subplots(figsize=(1.3 * n + 2.5, 1.0 * n + 1.5))[1]
    sns.heatmap(
        table.astype(float),
        annot=annot.to_numpy(),
        fmt="",
        vmin=0,
        vmax=1,
        cmap="rocket",
        mask=table.isna(),
        cbar_kws={"label": f"{p} (two-sided)"},
        linewidths=0.5,
        ax=ax,
        annot_kws={"fontsize": "small"},
    )
    for (r, c), value in np.ndenumerate(table.to_numpy()):
        if not np.isnan(value) and value < alpha:
            ax.add_patch(plt.Rectangle((c, r), 1, 1, fill=False, edgecolor="C2", linewidth=2.5))
    ax.set(
        title=title or f"paired tests over shared splits (n = {int(tests['n'].max())})", xlabel="", ylabel=""
    )
    ax.tick_params(axis="x", rotation=30)
    ax.grid(False)
    return ax


def ablation_heatmap(
    summary: pd.DataFrame,
    *,
    rows: str = "branches",
    cols: str = "head",
    metric: str = "srcc",
    baseline: float | None = None,
    ax=None,
):
    """Median `metric` for every (rows, cols) arm, annotated ``median`` over ``[CI low, CI high]``; the
    `baseline` (e.g. zero-shot) is named in the title and is the colour map's centre."""
    order_r = list(dict.fromkeys(summary[rows]))
    order_c = list(dict.fromkeys(summary[cols]))
    grid = summary.pivot(index=rows, columns=cols, values=metric).reindex(index=order_r, columns=order_c)
    low = summary.pivot(index=rows, columns=cols, values=f"{metric}_low").reindex_like(grid)
    high = summary.pivot(index=rows, columns=cols, values=f"{metric}_high").reindex_like(grid)
    annot = np.empty(grid.shape, dtype=object)
    for (i, j), value in np.ndenumerate(grid.to_numpy()):
        lo, hi = low.iat[i, j], high.iat[i, j]
        ci = "" if np.isnan(lo) else f"\n[{lo:.2f}, {hi:.2f}]"
        annot[i, j] = "" if np.isnan(value) else f"{value:.3f}{ci}"
    ax = ax or plt.subplots(figsize=(1.9 * len(order_c) + 3, 0.9 * len(order_r) + 1.5))[1]
    values = grid.to_numpy(dtype=float)
    limits = {}
    if baseline is not None and np.isfinite(values).any():
        # the baseline at the map's centre via symmetric limits (seaborn's own `center` calls a deprecated
        # matplotlib API); the floor keeps a grid equal to its baseline drawable
        reach = max(float(np.nanmax(np.abs(values - baseline))), 1e-3)
        limits = {"vmin": baseline - reach, "vmax": baseline + reach}
    sns.heatmap(
        grid.astype(float),
        annot=annot,
        fmt="",
        cmap="vlag",
        **limits,
        linewidths=0.5,
        cbar_kws={"label": f"test {metric.upper()} (median over splits)"},
        ax=ax,
    )
    extra = f"; zero-shot {baseline:.3f}" if baseline is not None else ""
    ax.set(title=f"median test {metric.upper()} [95% CI over splits]{extra}", xlabel=cols, ylabel=rows)
    ax.tick_params(axis="y", rotation=0)
    ax.grid(False)
    return ax

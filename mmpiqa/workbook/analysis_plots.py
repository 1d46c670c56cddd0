"""Figures of `mmpiqa.workbook.analysis` (chapters 06 and 07), seaborn on the `mmpiqa.workbook.plots.set_theme` look."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmpiqa.data.images import load_rgb
from mmpiqa.workbook.plots import (  # pyplot as mmpiqa.workbook.plots sets it up (headless unless Jupyter)
    plt,
    sns,
)


def plot_family_srcc(table: pd.DataFrame, *, title: str = "", ax=None):
    """Horizontal bars of `per_family_srcc` with their bootstrap CIs; the 'all' row as a dashed line."""
    fam = table[table["family"] != "all"]
    ax = ax or plt.subplots(figsize=(6, 0.35 * len(fam) + 1.2))[1]
    err = np.vstack(
        [(fam["srcc"] - fam["ci_low"]).clip(lower=0), (fam["ci_high"] - fam["srcc"]).clip(lower=0)]
    )
    ax.barh(fam["family"], fam["srcc"], xerr=np.nan_to_num(err), capsize=3, color="C0", alpha=0.85)
    ax.invert_yaxis()
    overall = table.loc[table["family"] == "all", "srcc"]
    if len(overall):
        ax.axvline(
            float(overall.iloc[0]), color="C3", linestyle="--", label=f"all images {overall.iloc[0]:.2f}"
        )
        ax.legend(loc="lower right", fontsize="small")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set(xlim=(-1, 1), xlabel="SRCC within the family (95% bootstrap CI)", ylabel="", title=title)
    return ax


def plot_matrix(
    matrix: pd.DataFrame,
    *,
    title: str = "",
    fmt: str = ".2f",
    vmin: float = -1,
    vmax: float = 1,
    cmap: str = "vlag",
    ax=None,
):
    """A labelled heatmap of a DataFrame (cross-dataset matrix, confusion matrix); nan cells stay blank."""
    rows, cols = matrix.shape
    ax = ax or plt.subplots(figsize=(0.75 * cols + 3, 0.5 * rows + 2))[1]
    sns.heatmap(
        matrix.astype(float),
        annot=True,
        fmt=fmt,
        vmin=vmin,
        vmax=vmax,
        cmap=cmap,
        square=False,
        linewidths=0.5,
        cbar_kws={"shrink": 0.8},
        ax=ax,
        annot_kws={"fontsize": 8 if cols > 6 else 11},
    )
    ax.set(title=title)
    ax.tick_params(axis="x", rotation=45)
    ax.tick_params(axis="y", rotation=0)
    return ax


def error_gallery(errors: pd.DataFrame, *, image_column: str = "image", ncols: int = 4, size: float = 2.6):
    """The images of `largest_errors` (with an `image` path column) in a grid, each titled with its family,
    level, MOS and mapped prediction. Returns the figure."""
    n = len(errors)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3), squeeze=False)
    for ax, (_, row) in zip(axes.flat, errors.iterrows(), strict=False):
        ax.imshow(load_rgb(row[image_column]).permute(1, 2, 0).numpy())
        level = f" L{int(row['dist_level'])}" if "dist_level" in row and row["dist_level"] >= 0 else ""
        family = row.get("dist_type") or row.get("dist_group") or "?"
        ax.set_title(f"{family}{level}\nMOS {row['mos']:.2f}  pred {row['mapped']:.2f}", fontsize=9)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_prompt_norms(
    norms: pd.DataFrame,
    reference: pd.DataFrame | None = None,
    *,
    start: pd.DataFrame | None = None,
    axes=None,
):
    """One panel per tower: every prompt token's norm per layer (points; text coloured by branch) and their mean
    (solid line); `start` (`prompt_norms` of the untrained model) as a dotted line; `reference`
    (`reference_norms`) as its median (dashed) with 10-90% whiskers. Log scale when they differ by orders of magnitude."""
    towers = [t for t in ("text", "visual") if t in set(norms["tower"])]
    if axes is None:
        _, axes = plt.subplots(
            1, len(towers), figsize=(5.5 * len(towers), 4.2), squeeze=False, layout="constrained"
        )
        axes = axes[0]
    for ax, tower in zip(axes, towers, strict=False):
        part = norms[norms["tower"] == tower]
        hue = "branch" if tower == "text" else None
        sns.stripplot(data=part, x="layer", y="norm", hue=hue, dodge=False, size=4, alpha=0.6, ax=ax,
                      native_scale=True, color=None if hue else "C0")  # fmt: skip
        mean = part.groupby("layer")["norm"].mean()
        ax.plot(mean.index, mean.to_numpy(), color="black", marker="o", label="trained (mean)")
        if start is not None and tower in set(start["tower"]):
            first = start[start["tower"] == tower].groupby("layer")["norm"].mean()
            ax.plot(
                first.index, first.to_numpy(), color="black", linestyle=":", marker=".", label="start (mean)"
            )
        if reference is not None and tower in set(reference["tower"]):
            ref = reference[(reference["tower"] == tower) & (reference["layer"] <= part["layer"].max())]
            ref = ref.sort_values("layer")
            spread = [ref["median"] - ref["q10"], ref["q90"] - ref["median"]]
            ax.errorbar(ref["layer"], ref["median"], yerr=spread, color="C7", linestyle="--", marker="s",
                        capsize=3, label="reference tokens (median, 10-90%)")  # fmt: skip
        values = [line.get_ydata() for line in ax.get_lines()] + [part["norm"].to_numpy()]
        values = np.concatenate([np.asarray(v, float).ravel() for v in values])
        values = values[np.isfinite(values) & (values > 0)]
        wide = values.size and values.max() / values.min() > 20
        last = int(part["layer"].max())
        ax.set(yscale="log" if wide else "linear", xlim=(-0.5, last + 0.5), xticks=range(last + 1))
        ax.set(xlabel="layer (0 = input)", ylabel="L2 norm", title=f"{tower} prompts")
        ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3)
    return axes

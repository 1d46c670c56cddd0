"""Figures the notebooks and the demo show; one theme for all of them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)  # headless by default; Jupyter's inline backend still takes over there
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from mmpiqa import metrics
from mmpiqa.runs.experiment import RunResult, results_table
from mmpiqa.runs.folder import RunFolder


def set_theme() -> None:
    """The workbook's look: seaborn 'whitegrid', colour-blind palette, readable sizes."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind", rc={"figure.dpi": 100})


def prediction_scatter(pred: Sequence[float], mos: Sequence[float], *, title: str = "", ax=None):
    """Predicted score against MOS, with the fitted 4-parameter logistic and the metrics in the legend."""
    ax = ax or plt.subplots(figsize=(4.5, 4))[1]
    pred, mos = np.asarray(pred, float), np.asarray(mos, float)
    values = metrics.evaluate(pred, mos)
    ax.scatter(pred, mos, s=8, alpha=0.5, label=f"SRCC {values['srcc']:.3f}  PLCC {values['plcc']:.3f}")
    fit = metrics.fit_logistic4(pred, mos)
    grid = np.linspace(pred.min(), pred.max(), 200)
    ax.plot(grid, fit(grid), color="C3", label=f"logistic fit (PLCC {values['plcc_logistic']:.3f})")
    ax.set(xlabel="predicted score", ylabel="MOS (normalised, higher = better)", title=title)
    ax.legend(loc="best", fontsize="small")
    return ax


def metric_bars(table: pd.DataFrame, metric: str = "srcc", *, label: str = "run", title: str = "", ax=None):
    """Median metric per run with its confidence interval as error bars."""
    ax = ax or plt.subplots(figsize=(max(4, 0.9 * len(table) + 2), 3.5))[1]
    low = table[metric] - table[f"{metric}_low"]
    high = table[f"{metric}_high"] - table[metric]
    colours = sns.color_palette("colorblind", len(table))
    ax.bar(
        table[label].astype(str),
        table[metric],
        yerr=[low.clip(lower=0), high.clip(lower=0)],
        capsize=4,
        color=colours,
    )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set(ylabel=metric.upper(), title=title)
    ax.tick_params(axis="x", rotation=20)
    return ax


def demo_figures(runs: list[RunResult], folder: str | Path) -> list[Path]:
    """The demo's figures: predicted vs MOS per run (first split) and the SRCC bars; returns their paths."""
    set_theme()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, axes = plt.subplots(1, len(runs), figsize=(4.5 * len(runs), 4), squeeze=False)
    for ax, result in zip(axes[0], runs, strict=True):
        pred = pd.read_csv(RunFolder(result.folder).split(0).predictions_file)
        prediction_scatter(pred["score"], pred["mos"], title=result.config.name, ax=ax)
    fig.tight_layout()
    paths.append(folder / "predicted_vs_mos.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    ax = metric_bars(results_table(runs), title="test SRCC (95% CI)")
    paths.append(folder / "srcc.png")
    ax.figure.tight_layout()
    ax.figure.savefig(paths[-1], dpi=120)
    plt.close(ax.figure)
    return paths

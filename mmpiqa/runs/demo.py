"""`mmpiqa demo`: the main job, offline on the CPU in a few minutes.

Builds the embedded benchmark, trains the MP-IQE variant (deep visual prompts + scene/distortion text branches +
cross-attention readout), evaluates it on a content-disjoint test part beside two zero-shot baselines through
the same path, prints one table (`mmpiqa.workbook.plots.demo_figures` draws its figures). Every number is labelled with the backbone it came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mmpiqa.config import RunConfig
from mmpiqa.model.backbone import OFFLINE_TAGS, offline_summary
from mmpiqa.runs.experiment import RunResult, load_table, results_table, run
from mmpiqa.runs.variants import BackboneWeights, mpiqe_run, zero_shot_run


@dataclass
class DemoResult:
    runs: list[RunResult]
    table: pd.DataFrame


def demo_configs(
    backbone: str = "tiny",
    pretrained: str | None = "synthetic",
    epochs: int = 3,
    size: str = "default",
    splits: int = 1,
    train_fraction: float | None = 0.5,
    overrides: Sequence[str] = (),
) -> list[RunConfig]:
    """The trained MP-IQE variant and the two zero-shot baselines, on the same data and splits.

    Sized to finish within five minutes on two CPU cores: half of each training part, three epochs, one centre
    crop per test image (scoring every arm costs about as much as the training). `overrides` (``--set``
    assignments such as ``model.visual_depth=3``) change the MP-IQE arm; the baselines are made from it, so they
    keep its backbone, data and splits."""
    mpiqe = mpiqe_run(
        BackboneWeights(backbone, pretrained),
        size=size,
        epochs=epochs,
        batch_size=32,
        n_splits=max(splits, 1),
        train_fraction=train_fraction,
        test_crop="center",
    )
    if overrides:
        mpiqe = mpiqe.with_overrides(list(overrides))
    return [mpiqe, zero_shot_run(mpiqe, "levels"), zero_shot_run(mpiqe, "antonym")]


def banner(configs: list[RunConfig]) -> str:
    model = configs[0].model
    if model.pretrained is None:
        what = (
            f"backbone '{model.backbone}' with RANDOM weights (seed {model.backbone_seed}): the contrast arm, not "
            f"CLIP. Numbers show the machinery works end to end, not what a pretrained model knows.\n"
            f"  Teaching CLIP: mmpiqa demo (default); real weights: --backbone ViT-B-16 --pretrained openai."
        )
    elif (model.backbone, model.pretrained) in OFFLINE_TAGS:
        what = (
            f"backbone '{model.backbone}/{model.pretrained}': {offline_summary(model.backbone, model.pretrained)}."
            f"\n  Real weights: mmpiqa demo --backbone ViT-B-16 --pretrained openai (needs the weights cached); "
            f"random-weight contrast: --pretrained none."
        )
    else:
        what = f"backbone '{model.backbone}' with pretrained weights '{model.pretrained}'"
    data = configs[0].data
    return (
        f"== mmpiqa demo ==\n  {what}\n  data: the embedded synthetic benchmark ('{data.size}' size; photos "
        f"shipped with scikit-image/matplotlib, pseudo-MOS from full-reference metrics)"
    )


def run_demo(
    out: str | Path = "runs/demo",
    *,
    backbone: str = "tiny",
    pretrained: str | None = "synthetic",
    epochs: int = 3,
    size: str = "default",
    splits: int = 1,
    train_fraction: float | None = 0.5,
    overrides: Sequence[str] = (),
    progress: bool = True,
) -> DemoResult:
    configs = demo_configs(backbone, pretrained, epochs, size, splits, train_fraction, overrides)
    print(banner(configs), flush=True)
    table = load_table(configs[0].data, progress=progress)
    runs = [run(config, out, splits=splits, table=table, progress=progress) for config in configs]
    summary = results_table(runs)
    return DemoResult(runs=runs, table=summary)


def format_table(table: pd.DataFrame) -> str:
    lines = [f"{'run':20s} {'splits':>6s}  {'test SRCC [95% CI]':>24s}  {'test PLCC [95% CI]':>24s}"]
    for row in table.itertuples():
        lines.append(
            f"{row.run:20s} {row.splits:6d}  {row.srcc:7.3f} [{row.srcc_low:6.3f}, {row.srcc_high:6.3f}]  "
            f"{row.plcc:7.3f} [{row.plcc_low:6.3f}, {row.plcc_high:6.3f}]"
        )
    return "\n".join(lines)

"""The standard run configurations: the MP-IQE variant and the zero-shot baseline, built in one place.

The demo, the ablation chapters and every other chapter ask these factories for their configs, so the same
arguments always give the same RunConfig, and so the same run folder (folders are keyed by the config).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmpiqa.config import DataConfig, RunConfig, TrainConfig


@dataclass(frozen=True)
class BackboneWeights:
    """A CLIP image/text tower and its weights: `name` is an open_clip model or an offline config ('tiny'),
    `pretrained` an open_clip tag, 'synthetic' (the teaching CLIP), a local file, or None for random weights."""

    name: str
    pretrained: str | None


def mpiqe_run(
    backbone: BackboneWeights,
    *,
    dataset: str = "embedded",
    root: str | None = None,
    size: str = "small",
    epochs: int = 3,
    batch_size: int = 16,
    n_splits: int = 1,
    split_seed: int = 0,
    train_fraction: float | None = None,
    train_crops: int = 4,
    test_crop: str = "grid",
    device: str = "auto",
    num_workers: int = 0,
    **model_changes: Any,
) -> RunConfig:
    """The MP-IQE variant (deep visual prompts + dual text branch + xattn readout) on `backbone`;
    `model_changes` make the ablation arms (e.g. visual_depth=0, branches=('quality',), head='levels').

    The defaults are chapter 03's CPU smoke run (the embedded 'small' size keeps a chapter under two minutes on
    two cores); chapters 06 and 07 reuse its run folder by asking for the same config."""
    # 1.0 and None both mean "all of the training part": one spelling, so every chapter finds the same run folder
    fraction = None if train_fraction == 1 else train_fraction
    # through from_dict, as a config file would be: a notebook parameter of the wrong type (n_splits=1.5) is a
    # ConfigError naming the field, not a failure deep inside a run
    return RunConfig.from_dict(
        {
            "name": "mpiqe",
            "model": {"backbone": backbone.name, "pretrained": backbone.pretrained, **model_changes},
            "data": {
                "dataset": dataset,
                "root": root or None,
                "size": size,
                "n_splits": n_splits,
                "split_seed": split_seed,
                "train_fraction": fraction,
                "train_crops": train_crops,
                "test_crop": test_crop,
            },
            "train": {
                "epochs": epochs,
                "batch_size": batch_size,
                "device": device,
                "num_workers": num_workers,
            },
        }
    )


def zero_shot_run(run: RunConfig, head: str = "levels") -> RunConfig:
    """The hand-written-prompt baseline on the same backbone, data and splits as `run`: no prompt is learned
    (`text_depth=0`, `visual_depth=0`), `head` reads the quality out ('levels' or 'antonym').

    It keeps only what scoring reads (the splits, test crops, evaluation batch, seed and device); what shapes
    training alone (epochs, learning rate, losses, the training part's fraction and crops) takes its default,
    so arms that differ only in how they train share one zero-shot folder instead of scoring it again."""
    model = run.model.replace(head=head, text_depth=0, visual_depth=0)
    data = run.data.replace(train_fraction=None, train_crops=DataConfig.train_crops)
    keep = ("batch_size", "seed", "device", "feature_cache", "num_workers")
    train = TrainConfig(**{name: getattr(run.train, name) for name in keep})
    return run.replace(name=f"zero-shot-{head}", model=model, data=data, train=train)

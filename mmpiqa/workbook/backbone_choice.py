"""What the notebooks share: the backbone choice, the banner, where runs live, the standard run configs.

Chapters share results through run folders, never kernel state: each chapter asks for the same RunConfig (built
here) and `mmpiqa.runs.experiment.run` trains it only if its folder is not complete yet ("load if present, else
train"), so every chapter runs alone from a fresh kernel.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from mmpiqa.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from mmpiqa.model.backbone import OFFLINE_CONFIGS, OFFLINE_TAGS, cached_weights, hub_offline, offline_summary

REAL_BACKBONE = ("ViT-B-16", "openai")  # what backbone="auto" uses when its weights can be had
OFFLINE_BACKBONE = ("tiny", "synthetic")  # the teaching CLIP mmpiqa pretrained itself (never random weights)


@dataclass(frozen=True)
class Backbone:
    name: str
    pretrained: str | None
    reason: str

    @property
    def is_real(self) -> bool:
        """Real CLIP weights (an open_clip tag or a local file), not an offline teaching backbone."""
        return self.pretrained is not None and (self.name, self.pretrained) not in OFFLINE_TAGS

    @property
    def is_teaching_clip(self) -> bool:
        return (self.name, self.pretrained) in OFFLINE_TAGS

    def banner(self) -> str:
        if self.is_real:
            return (
                f"BACKBONE: {self.name} with pretrained weights '{self.pretrained}' ({self.reason}).\n"
                f"Numbers below are real CLIP features."
            )
        if self.is_teaching_clip:
            return (
                f"BACKBONE: '{self.name}' / '{self.pretrained}' ({self.reason}).\n"
                f"{offline_summary(self.name, self.pretrained)}.\n"
                f"Its lessons are real but small-scale: it knows procedural images and damage words, not photos. "
                f"For real CLIP set backbone='ViT-B-16', pretrained='openai'; for the random-weight contrast, "
                f"backbone='tiny', pretrained=''."
            )
        return (
            f"BACKBONE: '{self.name}' with RANDOM weights ({self.reason}).\n"
            f"This is the offline teaching backbone: it shows how the method works end to end, not what CLIP "
            f"achieves. For real CLIP set backbone='ViT-B-16', pretrained='openai' (weights must be cached or "
            f"downloadable), e.g. papermill ... -p backbone ViT-B-16 -p pretrained openai."
        )


def _hub_reachable(timeout: float = 1.5) -> bool:
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def choose_backbone(backbone: str = "auto", pretrained: str | None = None) -> Backbone:
    """Resolve a notebook's `backbone` parameter. 'auto': real CLIP if its weights are cached or can be fetched,
    else the offline teaching CLIP (tiny, pretrained by mmpiqa on a synthetic corpus), never random weights.
    Never waits: HF_HUB_OFFLINE=1 or no route to the hub decides at once."""
    if backbone != "auto":
        reason = "chosen explicitly" if pretrained or backbone not in OFFLINE_CONFIGS else "offline config"
        return Backbone(backbone, pretrained, reason)
    name, tag = REAL_BACKBONE
    if cached_weights(name, tag) is not None:
        return Backbone(name, tag, "weights found in the local cache")
    if hub_offline():
        return Backbone(*OFFLINE_BACKBONE, "HF_HUB_OFFLINE is set and ViT-B-16/openai is not cached")
    if _hub_reachable():
        return Backbone(name, tag, "weights will be downloaded once")
    return Backbone(*OFFLINE_BACKBONE, "no network route to the model hub and ViT-B-16/openai is not cached")


def runs_dir(path: str | Path = "../runs/workbook") -> Path:
    """The shared runs folder of the workbook (created if needed)."""
    folder = Path(path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def mpiqe_run(
    backbone: Backbone,
    *,
    dataset: str = "embedded",
    root: str | None = None,
    size: str = "small",
    epochs: int = 3,
    batch_size: int = 16,
    n_splits: int = 1,
    train_fraction: float | None = None,
    device: str = "auto",
    **model_changes,
) -> RunConfig:
    """The MP-IQE variant every chapter refers to (deep visual prompts + dual text branch + xattn readout);
    `model_changes` make the ablation arms (e.g. visual_depth=0, branches=('quality',), head='levels').

    The defaults are chapter 03's CPU smoke run (the embedded 'small' size keeps a chapter under two minutes on
    two cores); chapters 06 and 07 reuse its run folder by asking for the same config."""
    model = ModelConfig(backbone=backbone.name, pretrained=backbone.pretrained, **model_changes)
    # 1.0 and None both mean "all of the training part": one spelling, so every chapter finds the same run folder
    fraction = None if train_fraction is None or train_fraction >= 1.0 else train_fraction
    data = DataConfig(
        dataset=dataset, root=root or None, size=size, n_splits=n_splits, train_fraction=fraction
    )
    train = TrainConfig(epochs=epochs, batch_size=batch_size, device=device)
    return RunConfig(name="mpiqe", model=model, data=data, train=train)


def zero_shot_run(run: RunConfig, head: str = "levels") -> RunConfig:
    """The hand-written-prompt baseline on the same data and splits as `run`."""
    model = run.model.replace(head=head, text_depth=0, visual_depth=0)
    return run.replace(name=f"zero-shot-{head}", model=model)

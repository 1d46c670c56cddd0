"""What the notebooks share: the backbone choice, the banner, where runs live.

Chapters share results through run folders, never kernel state: each chapter asks for the same RunConfig (built
by `mmpiqa.runs.variants`) and `mmpiqa.runs.experiment.run` trains it only if its folder is not complete yet
("load if present, else train"), so every chapter runs alone from a fresh kernel.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from mmpiqa.config import ConfigError
from mmpiqa.model.backbone import (
    OFFLINE_CONFIGS,
    OFFLINE_TAGS,
    cached_weights,
    check_backbone_name,
    hub_offline,
    offline_summary,
)
from mmpiqa.runs.variants import BackboneWeights

REAL_BACKBONE = ("ViT-B-16", "openai")  # what backbone="auto" uses when its weights can be had
OFFLINE_BACKBONE = ("tiny", "synthetic")  # the teaching CLIP mmpiqa pretrained itself (never random weights)


@dataclass(frozen=True)
class Backbone(BackboneWeights):
    """The backbone a notebook runs on and why it was chosen (`choose_backbone`), with its banner."""

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
            f"The contrast arm: it shows how the method works end to end, not what a pretrained CLIP knows. "
            f"For the teaching CLIP set backbone='auto' (or 'tiny', pretrained='synthetic'); for real CLIP "
            f"backbone='ViT-B-16', pretrained='openai' (weights must be cached or downloadable), e.g. "
            f"papermill ... -p backbone ViT-B-16 -p pretrained openai."
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
    Never waits: HF_HUB_OFFLINE=1 or no route to the hub decides at once. `pretrained=''` (a papermill
    parameter cannot be None) means random weights, as None does."""
    pretrained = pretrained or None
    if backbone != "auto":
        check_backbone_name(backbone)  # the banner must never describe a backbone that cannot be built
        reason = "chosen explicitly" if pretrained or backbone not in OFFLINE_CONFIGS else "offline config"
        return Backbone(backbone, pretrained, reason)
    if pretrained:
        raise ConfigError(
            f"pretrained={pretrained!r} with backbone='auto': 'auto' chooses its own weights; name the backbone "
            "too (e.g. backbone='ViT-B-16', pretrained='openai') or leave pretrained ''"
        )
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
    if not str(path).strip():
        raise ConfigError(
            f"runs={str(path)!r}: the folder of the workbook's run folders, e.g. '../runs/workbook' (the default); "
            "'' would fill notebooks/ itself"
        )
    folder = Path(path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    return folder

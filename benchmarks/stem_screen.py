"""How fast does an image tower learn local damage from a direct signal? The screen behind `highpass_stem`.

No captions, no text tower: the offline config's image tower (a shape variant of it, or a high-pass stem) regresses
the damage level (0 = clean .. 5) of corpus contents damaged by a few families, for a fixed number of steps; then
the SRCC of its prediction with the level is measured per family on fresh contents. A family the tower cannot learn
here in a few hundred images, contrastive pretraining (where the damage signal is a few words of a caption) will
learn slowly too. The mean absolute Laplacian, one hand-made number, is printed as the floor a local filter reaches.

    .venv/bin/python benchmarks/stem_screen.py                          # open_clip's init vs highpass_stem 4 and 8
    .venv/bin/python benchmarks/stem_screen.py --families darken,gaussian_noise --steps 150
    .venv/bin/python benchmarks/stem_screen.py --arm no_ln_pre:'{"no_ln_pre": true}'
    .venv/bin/python benchmarks/stem_screen.py --readout captions --scale 50 --arm hp8:'{"highpass_stem": 8}'

Each arm takes ~1.5 min on one core at the defaults (100 steps of 32 images, 25 % of patches kept).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import _build_vision_tower
from open_clip.transformer import PatchDropout
from scipy import ndimage

from mmpiqa import metrics
from mmpiqa.data.corpus import LEVEL_TO_QUALITY, corpus_item
from mmpiqa.data.distortions import get_family, to_uint8
from mmpiqa.model.backbone import OFFLINE_CONFIGS, registry_name
from mmpiqa.train.pretrain import (
    PretrainConfig,
    bank_captions,
    highpass_stem,
    normalised_images,
    quality_targets,
)

DEFAULT_ARMS = {
    "open_clip init": {},
    "highpass_stem 4": {"highpass_stem": 4.0},
    "highpass_stem 8": {"highpass_stem": 8.0},
}


class _Item:  # what normalised_images reads
    def __init__(self, image: np.ndarray) -> None:
        self.image = image


def damaged_set(
    seed: int, n: int, families: list[str], size: int
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """n clean corpus contents, each damaged by families[i % len] at a random level 0..5 (0 = left clean)."""
    images, fams, levels = [], [], []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        clean = corpus_item(seed, i * 4, size).image  # version 0 of content i is clean
        family, level = families[i % len(families)], int(rng.integers(0, 6))
        image = (
            clean
            if level == 0
            else to_uint8(get_family(family).apply(clean.astype(np.float32) / 255, level, rng))
        )
        images.append(image), fams.append(family), levels.append(level)
    return np.stack(images), fams, np.array(levels)


def tower(backbone: str, changes: dict, keep: float, seed: int) -> torch.nn.Module:
    cfg = open_clip.get_model_config(registry_name(backbone))
    vision = {**cfg["vision_cfg"], **{k: v for k, v in changes.items() if k != "highpass_stem"}}
    torch.manual_seed(seed)
    visual = _build_vision_tower(cfg["embed_dim"], vision)
    if changes.get("highpass_stem"):
        highpass_stem(visual.conv1.weight, changes["highpass_stem"])
    visual.patch_dropout = PatchDropout(1 - keep) if keep < 1 else torch.nn.Identity()
    return visual


class LinearReadout(torch.nn.Module):
    """A linear regression of the damage level on the unit-norm image features."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(width, 1)

    def damage(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features).squeeze(1)

    def loss(self, features: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self.damage(features), levels.float())


class CaptionReadout(torch.nn.Module):
    """Pretraining's caption-bank quality term alone: features against the quality captions of a trainable text
    tower (the offline config's, random weights), at a fixed logit scale, soft targets by level."""

    def __init__(self, backbone: str, scale: float, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.clip = open_clip.create_model(registry_name(backbone), pretrained=None)
        del self.clip.visual  # only the text tower is used
        tokenizer = open_clip.get_tokenizer(registry_name(backbone))
        self.register_buffer("tokens", tokenizer(bank_captions()[0]))
        self.scale, self.sigma = scale, PretrainConfig().quality_sigma

    def _logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.scale * features @ F.normalize(self.clip.encode_text(self.tokens), dim=-1).t()

    def damage(self, features: torch.Tensor) -> torch.Tensor:
        quality = self._logits(features).softmax(dim=1) @ torch.arange(len(self.tokens), dtype=torch.float32)
        return -quality  # expected quality index, negated: higher means more damaged, as the level

    def loss(self, features: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        quality = torch.tensor(LEVEL_TO_QUALITY)[levels]
        return F.cross_entropy(self._logits(features), quality_targets(quality, len(self.tokens), self.sigma))


def screen(args: argparse.Namespace, changes: dict, size: int, test: tuple) -> dict[str, float]:
    """Train one arm on fresh damaged contents of `size` px, then score it on `test` (a `damaged_set`)."""
    visual = tower(args.backbone, changes, args.keep, args.seed)
    if args.readout == "captions":
        head = CaptionReadout(args.backbone, args.scale, args.seed)
    else:
        head = LinearReadout(visual.output_dim)
    optimizer = torch.optim.AdamW([*visual.parameters(), *head.parameters()], lr=args.lr, weight_decay=0.05)

    def features(images: np.ndarray) -> torch.Tensor:
        return F.normalize(visual(normalised_images([_Item(im) for im in images])), dim=-1)

    for step in range(args.steps):
        images, _, levels = damaged_set(1000 + step, args.batch, args.families, size)
        loss = head.loss(features(images), torch.from_numpy(levels))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    visual.eval()
    visual.patch_dropout = torch.nn.Identity()
    images, fams, levels = test
    with torch.no_grad():
        pred = torch.cat([head.damage(features(images[i : i + 100])) for i in range(0, len(images), 100)])
    pred = pred.numpy()
    return _per_family(pred, fams, levels, args.families)


def _per_family(
    score: np.ndarray, fams: list[str], levels: np.ndarray, families: list[str]
) -> dict[str, float]:
    fams = np.array(fams)
    return {f: round(metrics.srcc(score[fams == f], levels[fams == f]), 2) for f in families}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="tiny", choices=sorted(OFFLINE_CONFIGS))
    parser.add_argument("--families", default="gaussian_noise,gaussian_blur,jpeg,pixelate")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--test", type=int, default=400, help="fresh contents scored after training")
    parser.add_argument("--keep", type=float, default=0.25, help="fraction of patches kept while training")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--readout",
        default="linear",
        choices=["linear", "captions"],
        help="linear: regress the level; captions: the caption bank's quality term (see above)",
    )
    parser.add_argument("--scale", type=float, default=1 / 0.07, help="logit scale of --readout captions")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--arm",
        action="append",
        default=[],
        help="NAME:JSON vision_cfg changes (+ highpass_stem); repeatable",
    )
    args = parser.parse_args(argv)
    args.families = args.families.split(",")
    torch.set_num_threads(args.threads)
    arms = dict(a.split(":", 1) for a in args.arm)
    arms = {k: json.loads(v) for k, v in arms.items()} if arms else DEFAULT_ARMS
    size = open_clip.get_model_config(registry_name(args.backbone))["vision_cfg"]["image_size"]
    test = damaged_set(args.seed + 5, args.test, args.families, size)
    images, fams, levels = test
    laplacian = np.array([np.abs(ndimage.laplace(im.astype(float).mean(axis=2))).mean() for im in images])
    readout = "regression" if args.readout == "linear" else f"quality captions at scale {args.scale:.3g}"
    print(f"{args.backbone}, {readout}, {args.steps} steps x {args.batch} images, keep {args.keep}, lr {args.lr}: "
          f"SRCC(prediction, level) per family on {args.test} fresh contents")  # fmt: skip
    print(f"  {'|mean Laplacian| (no learning)':34s} {_per_family(laplacian, fams, levels, args.families)}")
    for name, changes in arms.items():
        start = time.perf_counter()
        result = screen(args, changes, size, test)
        print(f"  {name:34s} {result}  ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()

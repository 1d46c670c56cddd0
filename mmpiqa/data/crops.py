"""Named crop policies: how an image of any size becomes the fixed-size squares a model reads.

Resizing blurs away the very artefacts a quality model must judge, so the policies are explicit and named:

- ``"random"`` (training): ``n`` crops at uniformly random positions;
- ``"center"`` (test): one centred crop;
- ``"grid"`` (test): ``n`` fixed crops on an evenly spaced rows x columns grid spanning the image (the grid shape is
  the factorisation of ``n`` closest to the image's aspect ratio, e.g. 15 -> 3 x 5 on a landscape image); the
  caller averages the predictions (:func:`merge_crops`);
- ``"resize"`` (test): the whole image resized to ``size`` x ``size`` (bicubic, antialiased; the aspect ratio is not
  kept). It is the only policy that resamples pixels of normal-sized images.

Positions are drawn from each image's own height and width axes (``image.shape[-2]`` for the top, ``[-1]`` for the
left), never from a batch dimension. (LIQE sampled crop offsets along the wrong tensor axis; the tests pin this.)

**Images smaller than the crop** (either side below ``size``) are first upscaled, bicubic, so that the shorter side
equals ``size`` (aspect ratio kept, values clamped to [0, 1]); then the policy applies as usual. Upscaling keeps
every crop full of image content at its true layout, whereas reflect- or zero-padding would fill part of the crop
with mirrored or flat pixels — structures that are not in the photo and that a quality model would learn to read as
artefacts. IQA datasets are rarely smaller than the crop, so this is a fallback, not the normal path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mmpiqa.data.images import to_unit_float

__all__ = ["KINDS", "CropPolicy", "crop", "crop_positions", "ensure_min_size", "merge_crops"]

KINDS: tuple[str, ...] = ("random", "center", "grid", "resize")


@dataclass(frozen=True)
class CropPolicy:
    """A named crop policy: ``kind`` (one of KINDS), square ``size`` in pixels, number of crops ``n``."""

    kind: str = "center"
    size: int = 224
    n: int = 1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"crop policy kind must be one of {KINDS}, got {self.kind!r}")
        if self.size < 1 or self.n < 1:
            raise ValueError(f"crop policy needs size >= 1 and n >= 1, got size={self.size}, n={self.n}")
        if self.kind in ("center", "resize") and self.n != 1:
            raise ValueError(f"crop policy {self.kind!r} makes exactly one view; got n={self.n}")

    @property
    def deterministic(self) -> bool:
        return self.kind != "random"


def ensure_min_size(image: torch.Tensor, size: int) -> torch.Tensor:
    """Upscale (bicubic) so that both sides are >= ``size``, keeping the aspect ratio; no-op when already large."""
    h, w = image.shape[-2:]
    if min(h, w) >= size:
        return image
    scale = size / min(h, w)
    new = (max(size, math.ceil(h * scale - 1e-6)), max(size, math.ceil(w * scale - 1e-6)))
    out = F.interpolate(image.unsqueeze(0).float(), size=new, mode="bicubic", align_corners=False)
    return out.squeeze(0).clamp_(0.0, 1.0).to(image.dtype)


def _grid_shape(n: int, height: int, width: int) -> tuple[int, int]:
    """(rows, cols) with rows * cols == n whose cols/rows is closest to width/height."""
    aspect = width / height
    pairs = [(r, n // r) for r in range(1, n + 1) if n % r == 0]
    return min(pairs, key=lambda rc: (abs(math.log(rc[1] / rc[0] / aspect)), rc[0]))


def _spaced(count: int, span: int) -> list[int]:
    if count == 1:
        return [span // 2]
    return [round(i * span / (count - 1)) for i in range(count)]


def crop_positions(
    height: int, width: int, policy: CropPolicy, generator: torch.Generator | None = None
) -> list[tuple[int, int]]:
    """Top-left corners ``(top, left)`` of the crops of an image of ``height`` x ``width`` (already >= size).

    ``top`` ranges over ``[0, height - size]`` and ``left`` over ``[0, width - size]``. For ``"resize"`` the
    single position is (0, 0) (the whole image is used).
    """
    s = policy.size
    if policy.kind != "resize" and (height < s or width < s):
        raise ValueError(f"image {height}x{width} is smaller than the crop {s}; call ensure_min_size first")
    if policy.kind == "random":
        tops = torch.randint(0, height - s + 1, (policy.n,), generator=generator)
        lefts = torch.randint(0, width - s + 1, (policy.n,), generator=generator)
        return list(zip(tops.tolist(), lefts.tolist(), strict=True))
    if policy.kind == "center":
        return [((height - s) // 2, (width - s) // 2)]
    if policy.kind == "grid":
        rows, cols = _grid_shape(policy.n, height, width)
        return [(t, lf) for t in _spaced(rows, height - s) for lf in _spaced(cols, width - s)]
    return [(0, 0)]


def crop(image: torch.Tensor, policy: CropPolicy, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply ``policy`` to one image (3, H, W); returns (n, 3, size, size) in the image's dtype, except that a
    uint8 image (0..255, `mmpiqa.data.images.load_image`) comes out as float32 in [0, 1]: it is cut first and
    only the crops are converted (converted first when it has to be resampled)."""
    if image.ndim != 3:
        raise ValueError(
            f"crop expects one image shaped (C, H, W), got {tuple(image.shape)}; crop each image of a batch"
        )
    s = policy.size
    if policy.kind == "resize" or min(image.shape[-2:]) < s:
        image = to_unit_float(image)
    image = ensure_min_size(image, s)
    if policy.kind == "resize":
        out = F.interpolate(image.unsqueeze(0).float(), size=(s, s), mode="bicubic", antialias=True)
        return out.clamp_(0.0, 1.0).to(image.dtype)
    positions = crop_positions(image.shape[-2], image.shape[-1], policy, generator)
    return to_unit_float(torch.stack([image[:, t : t + s, lf : lf + s] for t, lf in positions]))


def merge_crops(scores: torch.Tensor, n: int) -> torch.Tensor:
    """Average per-crop predictions laid out image-major, shape (B * n, ...), into (B, ...).

    This is the layout of ``batch["image"].flatten(0, 1)`` for a batch of (B, n, 3, S, S) crops.
    """
    if scores.shape[0] % n:
        raise ValueError(f"cannot split {scores.shape[0]} predictions into groups of n={n}")
    return scores.reshape(-1, n, *scores.shape[1:]).mean(dim=1)

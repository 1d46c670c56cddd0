"""Training losses: quality losses and the auxiliary scene / distortion classification losses.

Every quality loss has the signature ``loss(pred, mos, group=None) -> scalar tensor`` so that the trainer can pick
one by name from ``QUALITY_LOSSES``. ``pred`` and ``mos`` are 1-D (``(N, 1)`` is flattened); ``group`` holds one
dataset id per sample (ints, or strings such as dataset names) and matters only to losses that compare samples.

Losses that cannot form a single term (no valid pair, every label unknown) return a zero that is still attached
to the graph, so ``loss.backward()`` works on any batch.

``total_loss`` combines the branches of one training step; see its docstring for the batch keys it reads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mmpiqa.labels import BATCH_KEYS

__all__ = [
    "QUALITY_LOSSES",
    "LossWeights",
    "QualityLoss",
    "distortion_loss",
    "fidelity_loss",
    "get_quality_loss",
    "l1_loss",
    "mse_loss",
    "plcc_loss",
    "scene_loss",
    "total_loss",
]

QualityLoss = Callable[..., torch.Tensor]
"""``(pred, mos, group=None) -> scalar tensor``."""


def _flat(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.dim() == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.dim() != 1:
        raise ValueError(f"{name} must be 1-D (one value per sample) or (N, 1); got shape {tuple(x.shape)}")
    return x


def _pred_mos(pred: torch.Tensor, mos: Any) -> tuple[torch.Tensor, torch.Tensor]:
    pred = _flat(pred, "pred")
    if not pred.is_floating_point():
        raise TypeError(f"pred must be a floating tensor, got {pred.dtype}")
    if pred.dtype in (torch.float16, torch.bfloat16):
        pred = pred.float()
    mos = _flat(torch.as_tensor(mos, device=pred.device), "mos").to(pred.dtype)
    if mos.shape != pred.shape:
        raise ValueError(f"pred and mos differ in length: {pred.shape[0]} vs {mos.shape[0]}")
    return pred, mos


def _group_ids(group: Any, n: int, device: torch.device) -> torch.Tensor | None:
    """Dataset ids as an int tensor (strings are mapped to codes); None when there is one group."""
    if group is None:
        return None
    if isinstance(group, torch.Tensor):
        ids = group.to(device)
    else:
        arr = np.asarray(group)
        if arr.dtype.kind in "USO":  # dataset names
            codes = {name: k for k, name in enumerate(dict.fromkeys(arr.reshape(-1).tolist()))}
            ids = torch.tensor([codes[g] for g in arr.reshape(-1).tolist()], device=device)
        else:
            ids = torch.as_tensor(arr, device=device)
    ids = ids.reshape(-1)
    if ids.shape[0] != n:
        raise ValueError(f"group must hold one dataset id per sample: {ids.shape[0]} ids for {n} samples")
    return ids


def _zero(*tensors: torch.Tensor) -> torch.Tensor:
    """A zero connected to every input's graph (so backward() runs and gives zero gradients)."""
    return sum((t.sum() * 0.0 for t in tensors), start=torch.zeros((), device=tensors[0].device))


# ---------------------------------------------------------------------------------------------- quality losses


def fidelity_loss(pred: torch.Tensor, mos: Any, group: Any = None, eps: float = 1e-8) -> torch.Tensor:
    """Pairwise fidelity loss (Tsai et al. 2007; the ranking loss of UNIQUE and LIQE).

    For every pair i < j **within the same group** (pairs across datasets are never formed, because MOS scales of
    different studies are not comparable), the model's probability that i is better than j is
    ``p_ij = Phi((s_i - s_j) / sqrt(2))`` (Thurstone: each score plus unit-variance Gaussian noise), the target is
    ``t_ij = 1`` if mos_i > mos_j, ``0.5`` if equal, ``0`` otherwise, and the pair costs
    ``1 - sqrt(t p + eps) - sqrt((1 - t)(1 - p) + eps)``. The result is the mean over valid pairs.

    Scale matters: Phi sees raw score *differences*, so predictions in [0, 1] can never give a confident pair
    (at most Phi(1/sqrt 2) = 0.76) and the loss keeps pushing scores apart. Use a readout whose scale can grow
    (a regression head, or scores on a 1-5 scale as in LIQE). The target MOS scale does not matter, only its
    order. The minimum is about ``-2 sqrt(eps)`` rather than exactly 0 (the eps keeps the sqrt gradient finite).
    Returns a graph-attached zero when no valid pair exists (fewer than two samples in every group).
    """
    pred, mos = _pred_mos(pred, mos)
    n = pred.shape[0]
    ids = _group_ids(group, n, pred.device)
    valid = torch.triu(torch.ones(n, n, dtype=torch.bool, device=pred.device), diagonal=1)
    if ids is not None:
        valid = valid & (ids[:, None] == ids[None, :])
    if not valid.any():
        return _zero(pred)
    i, j = valid.nonzero(as_tuple=True)
    p = 0.5 * (1.0 + torch.erf((pred[i] - pred[j]) / 2.0))  # Phi(d / sqrt 2) = (1 + erf(d / 2)) / 2
    t = (mos[i] > mos[j]).to(pred.dtype) + 0.5 * (mos[i] == mos[j]).to(pred.dtype)
    loss = 1.0 - torch.sqrt(t * p + eps) - torch.sqrt((1.0 - t) * (1.0 - p) + eps)
    return loss.mean()


def l1_loss(pred: torch.Tensor, mos: Any, group: Any = None) -> torch.Tensor:
    """Mean absolute error against MOS (``group`` is ignored: the loss is per sample).

    Unlike the fidelity loss this fixes the score scale to the MOS scale, so datasets mixed in one batch must share
    it (the data tables rescale MOS to [0, 1], higher = better).
    """
    pred, mos = _pred_mos(pred, mos)
    return F.l1_loss(pred, mos) if pred.numel() else _zero(pred)


def mse_loss(pred: torch.Tensor, mos: Any, group: Any = None) -> torch.Tensor:
    """Mean squared error against MOS (``group`` is ignored); same scale caveat as ``l1_loss``."""
    pred, mos = _pred_mos(pred, mos)
    return F.mse_loss(pred, mos) if pred.numel() else _zero(pred)


def plcc_loss(pred: torch.Tensor, mos: Any, group: Any = None, eps: float = 1e-8) -> torch.Tensor:
    """``(1 - r) / 2`` with r the Pearson correlation of pred and MOS; in [0, 1], 0 for a perfect linear fit.

    Invariant to the scale and offset of ``pred``, so it learns only the *shape* of the relation (a plain linear
    correlation, not the norm-in-norm loss of Li et al. 2020, which also adds an L2 term on normalised values).
    With ``group`` the correlation is computed per dataset and averaged over datasets with at least 2 samples.
    A group whose predictions are all equal gives r = 0 (loss 0.5) rather than nan.
    """
    pred, mos = _pred_mos(pred, mos)
    ids = _group_ids(group, pred.shape[0], pred.device)
    parts = []
    for sel in [None] if ids is None else [ids == g for g in torch.unique(ids)]:
        s, m = (pred, mos) if sel is None else (pred[sel], mos[sel])
        if s.shape[0] < 2:
            continue
        s, m = s - s.mean(), m - m.mean()
        r = (s * m).sum() / (torch.sqrt((s * s).sum() * (m * m).sum()) + eps)
        parts.append((1.0 - r) / 2.0)
    return torch.stack(parts).mean() if parts else _zero(pred)


QUALITY_LOSSES: dict[str, QualityLoss] = {
    "fidelity": fidelity_loss,
    "l1": l1_loss,
    "mse": mse_loss,
    "plcc": plcc_loss,
}


def get_quality_loss(name: str) -> QualityLoss:
    """The quality loss registered under ``name``; a clear error lists the choices."""
    try:
        return QUALITY_LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown quality loss {name!r}; choose one of {sorted(QUALITY_LOSSES)}") from None


# ----------------------------------------------------------------------------------------- auxiliary losses


def scene_loss(logits: torch.Tensor, multi_hot: Any, mode: str = "softmax") -> torch.Tensor:
    """Multi-label scene classification loss; rows whose label vector is all zero are *unknown* and skipped.

    ``mode="softmax"`` (default): cross-entropy between the softmax over scene classes and the label vector
    normalised to sum 1 (an image labelled {animal, landscape} targets 0.5 / 0.5). This matches how CLIP logits
    behave (cosine similarity times a shared temperature: only differences between classes are meaningful), and
    is the form LIQE's joint softmax reduces to.
    ``mode="bce"``: independent binary cross-entropy per class on the raw logits, the textbook multi-label loss;
    it needs logits whose absolute level means something (a free bias), which raw CLIP similarities lack.
    """
    if logits.dim() != 2:
        raise ValueError(f"scene logits must be (N, classes); got shape {tuple(logits.shape)}")
    target = torch.as_tensor(multi_hot, device=logits.device)
    if target.shape != logits.shape:
        raise ValueError(f"scene labels {tuple(target.shape)} do not match logits {tuple(logits.shape)}")
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    target = target.to(logits.dtype)
    known = target.sum(dim=1) > 0
    if not known.any():
        return _zero(logits)
    logits, target = logits[known], target[known]
    if mode == "softmax":
        return -(target / target.sum(dim=1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    if mode == "bce":
        return F.binary_cross_entropy_with_logits(logits, target)
    raise ValueError(f"unknown scene loss mode {mode!r}; choose 'softmax' or 'bce'")


def distortion_loss(logits: torch.Tensor, target: Any, ignore_index: int = -1) -> torch.Tensor:
    """Single-label cross-entropy over distortion groups; samples with target ``-1`` (unknown) are ignored.

    Returns a graph-attached zero when every target is unknown (``F.cross_entropy`` alone would give nan).
    """
    if logits.dim() != 2:
        raise ValueError(f"distortion logits must be (N, classes); got shape {tuple(logits.shape)}")
    target = torch.as_tensor(target, device=logits.device).reshape(-1).long()
    if target.shape[0] != logits.shape[0]:
        raise ValueError(f"{target.shape[0]} distortion targets for {logits.shape[0]} samples")
    known = target != ignore_index
    if not known.any():
        return _zero(logits)
    bad = known & ((target < 0) | (target >= logits.shape[1]))
    if bad.any():
        raise ValueError(
            f"distortion target {int(target[bad][0])} out of range for {logits.shape[1]} classes "
            f"(use {ignore_index} for unknown)"
        )
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    return F.cross_entropy(logits, target, ignore_index=ignore_index)


# ---------------------------------------------------------------------------------------------------- total


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss branches and the quality loss by name (our defaults, not the paper's: unpublished)."""

    quality: float = 1.0
    scene: float = 1.0
    distortion: float = 1.0
    quality_loss: str = "fidelity"
    scene_mode: str = "softmax"

    @classmethod
    def coerce(cls, weights: LossWeights | Mapping[str, Any] | Any | None) -> LossWeights:
        """From a LossWeights, a mapping with these keys, or any object with these attributes (missing -> default)."""
        if weights is None:
            return cls()
        if isinstance(weights, cls):
            return weights
        names = [f.name for f in fields(cls)]
        if isinstance(weights, Mapping):
            unknown = set(weights) - set(names)
            if unknown:
                raise ValueError(f"unknown loss weight(s) {sorted(unknown)}; known: {names}")
            return cls(**weights)
        return cls(**{n: getattr(weights, n) for n in names if hasattr(weights, n)})


def total_loss(
    out_score: torch.Tensor | None,
    scene_logits: torch.Tensor | None,
    dist_logits: torch.Tensor | None,
    batch: Mapping[str, Any],
    weights: LossWeights | Mapping[str, Any] | Any | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the quality, scene and distortion losses for one batch.

    ``batch`` is a mapping read through `mmpiqa.labels.BATCH_KEYS` (``mos``, optional ``dataset``, ``scenes``,
    ``distortion``: a batch of dataset items as it comes).
    A branch is skipped when its output is None or its weight is 0; a branch that is present but whose labels
    are missing from the batch is an error (silently not training a branch would be worse).
    Returns ``(loss, parts)`` where ``parts`` maps each computed branch to its *unweighted* value and ``total`` to
    the weighted sum, as floats for logging.
    """
    w = LossWeights.coerce(weights)
    terms: list[torch.Tensor] = []
    parts: dict[str, float] = {}

    def need(key: str, branch: str) -> Any:
        name = BATCH_KEYS[key]
        if name not in batch:
            raise KeyError(
                f"{branch} branch is active but the batch has no {name!r}; batch keys: {sorted(batch)}"
            )
        return batch[name]

    if out_score is not None and w.quality != 0:
        fn = get_quality_loss(w.quality_loss)
        value = fn(out_score, need("mos", "quality"), group=batch.get(BATCH_KEYS["group"]))
        terms.append(w.quality * value)
        parts["quality"] = float(value.detach())
    if scene_logits is not None and w.scene != 0:
        value = scene_loss(scene_logits, need("scene", "scene"), mode=w.scene_mode)
        terms.append(w.scene * value)
        parts["scene"] = float(value.detach())
    if dist_logits is not None and w.distortion != 0:
        value = distortion_loss(dist_logits, need("distortion", "distortion"))
        terms.append(w.distortion * value)
        parts["distortion"] = float(value.detach())
    if not terms:
        raise ValueError("total_loss: no branch to train (all outputs are None or have weight 0)")
    loss = torch.stack([t.float() for t in terms]).sum()
    parts["total"] = float(loss.detach())
    if not math.isfinite(parts["total"]):
        raise FloatingPointError(f"total_loss is not finite: {parts}")
    return loss, parts

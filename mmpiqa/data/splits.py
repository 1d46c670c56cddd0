"""Honest train / validation / test splits, saved with the run that used them.

Protocols (``by``):

- ``"ref"``: reference-disjoint. Rows are grouped by their ``ref`` column and whole groups go to one part, so no
  reference content is seen on two sides (the protocol for synthetic-distortion datasets: LIVE, CSIQ, TID2013,
  KADID-10k, the embedded benchmark). Fractions count references, not images. When the table also has a
  ``source`` column (the embedded benchmark: the photo a content crop was cut from), rows are grouped by it
  instead, so two crops of one photo never sit on two sides either (`split_groups`).
- ``"random"``: each image is its own group (authentic-distortion datasets: KonIQ, CLIVE, SPAQ, ...).
- ``"official"``: the table's ``split`` column (e.g. KonIQ-10k's published split). If the dataset publishes no
  validation part, one is carved out of its training part with the seed (by reference when references repeat).
  There is exactly one official split, so this protocol returns a single `Split` whatever ``n_splits`` says.

``by="auto"`` decides from the table, in this order: every row has a ``split`` value -> ``"official"``; some reference
id occurs on more than one row -> ``"ref"``; otherwise -> ``"random"``. A ``split`` column filled on only some rows is
an error (choose ``by`` explicitly).

Splits rotate, so that they test different groups (repeated k-fold). With ``t`` test groups of ``G``, a cycle is
``K = G // t`` splits: the groups are shuffled once per cycle (``numpy.random.default_rng([s, cycle])``), and split
``j`` of the cycle is that order rotated by ``j`` blocks of ``t``, laid out as train, then val, then test (so a
split validates on groups just before its test block: the next split tests them when val is no larger than a test
block, as with the default fractions). The ``K`` splits of a cycle
test disjoint groups; the next cycle reshuffles. Independent random draws (before
``config.SPLIT_SCHEME`` 2) tested the same photo twice in 6 splits of the embedded benchmark's 7: a statistic over
splits then counts one test set as two. Split 0 is the draw it always was, and split ``i`` of ``seed=s`` is the same
whatever ``n_splits`` is. Every part of every split is non-empty (at least one group each), or a ``ValueError``
says why it cannot be. Names keep the table's row order inside each part.
"""

from __future__ import annotations

import json
import os
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from mmpiqa.config import SPLIT_SCHEME, ConfigError

__all__ = [
    "PROTOCOLS",
    "LeakageError",
    "Split",
    "check_no_leakage",
    "choose_protocol",
    "load_splits",
    "make_splits",
    "save_splits",
    "split_groups",
    "subsample_train",
]

PROTOCOLS: tuple[str, ...] = ("ref", "random", "official")
PARTS: tuple[str, ...] = ("train", "val", "test")
_FORMAT = "mmpiqa-splits"
_FORMAT_VERSION = 1


class LeakageError(ValueError):
    """A split puts one reference (or one image) on two sides."""


@dataclass(frozen=True)
class Split:
    """One train / val / test partition, as tuples of the table's ``name`` values."""

    seed: int
    index: int
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    by: str
    dataset: str = ""
    fractions: tuple[float, ...] = ()
    subsample: str = ""  # how `train` was subsampled (see subsample_train); '' when it is the full part

    def __post_init__(self) -> None:
        if self.by not in PROTOCOLS:
            raise ValueError(f"split protocol must be one of {PROTOCOLS}, got {self.by!r}")
        for part in PARTS:
            object.__setattr__(self, part, tuple(str(n) for n in getattr(self, part)))
        object.__setattr__(self, "fractions", tuple(float(f) for f in self.fractions))

    def part(self, name: str) -> tuple[str, ...]:
        if name not in PARTS:
            raise KeyError(f"split part must be one of {PARTS}, got {name!r}")
        return getattr(self, name)

    def sizes(self) -> dict[str, int]:
        return {p: len(getattr(self, p)) for p in PARTS}


# ----------------------------------------------------------------------------------------------- make
def choose_protocol(table: pd.DataFrame) -> str:
    """The protocol ``by="auto"`` picks for ``table`` (rule in the module docstring)."""
    split = (
        table["split"].fillna("").astype(str) if "split" in table.columns else pd.Series([""] * len(table))
    )
    filled = split != ""
    if filled.all() and len(table):
        return "official"
    if filled.any():
        raise ValueError(
            f"the 'split' column is filled on {int(filled.sum())} of {len(table)} rows; an official split must "
            "cover every row. Pass by='ref' or by='random' to ignore it."
        )
    if table["ref"].astype(str).duplicated().any():
        return "ref"
    return "random"


def _dataset_name(table: pd.DataFrame) -> str:
    if "dataset" not in table.columns:
        return ""
    return "+".join(sorted({str(d) for d in table["dataset"]}))


def _counts(n_groups: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    if n_groups < 3:
        raise ValueError(f"need at least 3 groups (references or images) for train/val/test, got {n_groups}")
    total = sum(fractions)
    n_val = max(1, round(fractions[1] / total * n_groups))
    n_test = max(1, round(fractions[2] / total * n_groups))
    n_train = n_groups - n_val - n_test
    if n_train < 1:
        raise ValueError(f"fractions {fractions} leave no training group out of {n_groups}")
    return n_train, n_val, n_test


def _assign(unique: list[str], counts: tuple[int, int, int], seed: int, index: int) -> dict:
    """The part of each of the sorted `unique` groups in split ``index`` (the rotation of the module docstring)."""
    n_train, n_val, n_test = counts
    cycle, block = divmod(index, len(unique) // n_test)
    # rolling by `block` test blocks moves the order's block-th last block into the test slot at the end
    order = np.roll(np.random.default_rng([seed, cycle]).permutation(len(unique)), block * n_test)
    part_of = {}
    for rank, k in enumerate(order):
        part_of[unique[k]] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
    return part_of


def split_groups(table: pd.DataFrame) -> np.ndarray:
    """What a reference-disjoint split keeps on one side: the ``source`` photo when the table names one for
    every row (crops of one photo are not independent), else the ``ref`` content."""
    if "source" in table.columns:
        source = table["source"].fillna("").astype(str).to_numpy()
        if (source != "").all():
            return source
    return table["ref"].astype(str).to_numpy()


def make_splits(
    table: pd.DataFrame,
    n_splits: int = 10,
    seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    by: str = "auto",
) -> list[Split]:
    """``n_splits`` train/val/test splits of ``table`` (by reference, at random, or the official one)."""
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or min(fr) <= 0:
        raise ValueError(f"fractions must be three positive numbers (train, val, test), got {fractions}")
    if n_splits < 1:
        raise ValueError(f"n_splits must be >= 1, got {n_splits}")
    names = table["name"].astype(str).to_numpy()
    dupes = pd.Series(names).duplicated()
    if dupes.any():
        raise ValueError(
            f"name {names[dupes.to_numpy()][0]!r} occurs twice in the table; names must be unique"
        )
    protocol = choose_protocol(table) if by == "auto" else by
    if protocol not in PROTOCOLS:
        raise ValueError(f"by must be 'auto' or one of {PROTOCOLS}, got {by!r}")
    dataset = _dataset_name(table)
    refs = split_groups(table)

    if protocol == "official":
        return [_official(table, names, refs, seed, fr, dataset)]

    groups = refs if protocol == "ref" else names
    unique = sorted(set(groups.tolist()))
    counts = _counts(len(unique), fr)
    out = []
    for i in range(n_splits):
        part_of = _assign(unique, counts, seed, i)
        parts = {p: tuple(n for n, g in zip(names, groups, strict=True) if part_of[g] == p) for p in PARTS}
        out.append(Split(seed, i, parts["train"], parts["val"], parts["test"], protocol, dataset, fr))
    return out


def _official(table, names, refs, seed, fr, dataset) -> Split:
    split = table["split"].fillna("").astype(str).str.lower().to_numpy()
    bad = sorted(set(split) - set(PARTS))
    if bad:
        raise ValueError(f"the 'split' column holds {bad}; official splits use only {PARTS}")
    parts = {p: [n for n, s in zip(names, split, strict=True) if s == p] for p in PARTS}
    if not parts["train"] or not parts["test"]:
        raise ValueError(
            f"the official split needs train and test rows, found {[len(v) for v in parts.values()]}"
        )
    if not parts["val"]:  # carve validation out of train, by reference when references repeat
        in_train = split == "train"
        tr_refs = refs[in_train]
        groups = tr_refs if pd.Series(tr_refs).duplicated().any() else names[in_train]
        unique = sorted(set(groups.tolist()))
        n_val = max(1, round(fr[1] / (fr[0] + fr[1]) * len(unique)))
        if n_val >= len(unique):
            raise ValueError("the official training part is too small to carve a validation part from")
        rng = np.random.default_rng([seed, 0])
        val_groups = {unique[k] for k in rng.permutation(len(unique))[:n_val]}
        tr_names = names[in_train]
        parts["val"] = [n for n, g in zip(tr_names, groups, strict=True) if g in val_groups]
        parts["train"] = [n for n, g in zip(tr_names, groups, strict=True) if g not in val_groups]
    return Split(
        seed, 0, tuple(parts["train"]), tuple(parts["val"]), tuple(parts["test"]), "official", dataset, fr
    )


# ----------------------------------------------------------------------------------------------- check
def check_no_leakage(table: pd.DataFrame, split: Split) -> None:
    """Raise `LeakageError` when a name is listed twice or a reference sits in two parts of ``split``.

    Also raises ``ValueError`` when the split names an image the table does not have.
    """
    seen: dict[str, str] = {}
    for part in PARTS:
        for name in split.part(part):
            if name in seen:
                where = part if seen[name] == part else f"{seen[name]} and {part}"
                raise LeakageError(f"image {name!r} is listed twice (in {where})")
            seen[name] = part
    ref_of = dict(zip(table["name"].astype(str), split_groups(table), strict=True))
    missing = [n for n in seen if n not in ref_of]
    if missing:
        raise ValueError(f"{len(missing)} split names are not in the table, e.g. {missing[0]!r}")
    side: dict[str, tuple[str, str]] = {}
    for name, part in seen.items():
        ref = ref_of[name]
        if ref in side and side[ref][0] != part:
            first_part, first_name = side[ref]
            raise LeakageError(
                f"reference group {ref!r} (see split_groups) is in both "
                f"{first_part} ({first_name!r}) and {part} ({name!r})"
            )
        side.setdefault(ref, (part, name))


def repeated_tests(splits: Sequence[Split]) -> list[tuple[int, ...]]:
    """Groups of positions in `splits` whose test parts hold exactly the same images. Rotating splits test
    new groups until a cycle is used up, so this happens when more splits are asked for than the data has test
    blocks (the embedded benchmark's 3 'small' contents: 4 splits test one content each), or with saved splits
    drawn otherwise; a statistic over splits then counts that test set more than once, as if it were
    independent evidence."""
    positions: dict[frozenset[str], list[int]] = {}
    for position, split in enumerate(splits):
        positions.setdefault(frozenset(split.test), []).append(position)
    return [tuple(group) for group in positions.values() if len(group) > 1]


# ----------------------------------------------------------------------------------------------- subsample
def subsample_train(
    split: Split, fraction: float | None = None, n: int | None = None, seed: int = 0
) -> Split:
    """A copy of ``split`` whose train part keeps ``fraction`` of its images (or ``n`` of them).

    Only the train part changes; val and test stay as they are. The draw depends only on (``seed``, the split's
    own seed and index, its train names), so every arm of an ablation gets the same subset for the same split and
    seed; and the subsets are nested: for one seed, a smaller fraction is a subset of a larger one.
    """
    if (fraction is None) == (n is None):
        raise ValueError("give exactly one of fraction= or n=")
    total = len(split.train)
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ConfigError(f"train_fraction={fraction!r}: a fraction of the training part in (0, 1]")
        k = max(1, round(fraction * total))
        how = f"fraction={fraction:g}"
    else:
        if not 1 <= n <= total:
            raise ValueError(f"n must be in 1..{total} (the train part's size), got {n}")
        k = int(n)
        how = f"n={k}"
    content = zlib.crc32("\n".join(split.train).encode())
    order = np.random.default_rng([seed, split.seed, split.index, content]).permutation(total)
    keep = set(order[:k].tolist())
    train = tuple(name for i, name in enumerate(split.train) if i in keep)
    return replace(split, train=train, subsample=f"{how},seed={seed}")


# ----------------------------------------------------------------------------------------------- files
def save_splits(splits: Sequence[Split], path: str | os.PathLike, dataset: str | None = None) -> Path:
    """Write ``splits`` to a JSON file atomically (temp file + rename); returns the path.

    The file records the dataset (``dataset``, else the splits' own) and the protocol next to the names.
    """
    splits = list(splits)
    if not splits:
        raise ValueError("no splits to save")
    path = Path(path)
    first = splits[0]
    doc = {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "dataset": dataset if dataset is not None else first.dataset,
        "protocol": {
            "by": first.by,
            "seed": first.seed,
            "fractions": list(first.fractions),
            "n_splits": len(splits),
            "scheme": SPLIT_SCHEME,  # how they were drawn (informative: the names below are the splits)
        },
        "splits": [
            {**asdict(s), "fractions": list(s.fractions), **{p: list(getattr(s, p)) for p in PARTS}}
            for s in splits
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_splits(path: str | os.PathLike) -> list[Split]:
    """Read a file written by `save_splits`; refuses anything else with a message."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a splits file (not JSON: {exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise ValueError(f"{path}: not a splits file (no 'format': {_FORMAT!r} field)")
    if doc.get("format_version") != _FORMAT_VERSION:
        raise ValueError(
            f"{path}: splits format version {doc.get('format_version')!r}, expected {_FORMAT_VERSION}"
        )
    fields = {"seed", "index", "train", "val", "test", "by", "dataset", "fractions", "subsample"}
    out = []
    for i, item in enumerate(doc.get("splits", [])):
        if not isinstance(item, dict) or not {"seed", "index", "train", "val", "test", "by"} <= item.keys():
            raise ValueError(f"{path}: split #{i} lacks seed/index/train/val/test/by")
        values = {k: v for k, v in item.items() if k in fields}
        values["dataset"] = values.get("dataset") or str(doc.get("dataset") or "")
        out.append(Split(**values))
    if not out:
        raise ValueError(f"{path}: holds no splits")
    return out

"""A pyiqa-style meta CSV: one row per image with a name column, a score column and optional extras.

Recognised columns (first match wins; pass ``name_col=``/``mos_col=`` to choose):

- image name: name, img_name, image_name, dist_name, dist_img, dis_img_path, image, filename
- score: mos, dmos, score, mos_quality
- optional: ref (ref, ref_name, ref_img), dist_type, dist_group, dist_level, scenes, split (split, set)

The separator (comma, tab, semicolon) is sniffed. Split values training/validation/test (any case) become
train/val/test; further columns named ``split_*`` are normalised the same way and kept as extra columns.
pyiqa's own ``.pkl`` split files are **not** read (they are pickles): put the split in a column.
"""

from __future__ import annotations

import csv as _csv
import os
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from mmpiqa.data.info import DATASETS
from mmpiqa.data.readers._common import CaseIndex, DatasetFormatError
from mmpiqa.data.readers._finish import finish
from mmpiqa.data.readers._parse import cell_int, line_numbers, parse_csv, sniff, split_label, to_float
from mmpiqa.errors import not_a_file

NAME_COLUMNS = (
    "name",
    "img_name",
    "image_name",
    "dist_name",
    "dist_img",
    "dis_img_path",
    "image",
    "filename",
)
MOS_COLUMNS = ("mos", "dmos", "score", "mos_quality")
REF_COLUMNS = ("ref", "ref_name", "ref_img")
SPLIT_COLUMNS = ("split", "set")
_EXTS = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")


def read_metacsv(
    root: str | os.PathLike,
    *,
    csv: str | os.PathLike | None = None,
    image_root: str | os.PathLike | None = None,
    name_col: str | None = None,
    mos_col: str | None = None,
    mos_range: tuple[float, float] | None = None,
    higher_is_better: bool | None = None,
    skip_unreadable: bool = False,
    check_images: bool = False,
) -> pd.DataFrame:
    """Read a meta CSV. `root` is the CSV file itself, or a folder with `csv` relative to it.

    Image names are relative to `image_root` (default: the folder of the CSV, or `root` when it is a folder).
    `mos_range` is the published scale of the score; without it the observed min/max is used (and a warning
    says so). `higher_is_better=False` flips a DMOS. The default is higher-is-better: a column named ``dmos``
    is not proof of a DMOS (KADID-10k's ``dmos`` is a MOS), so then a warning asks for the direction.
    """
    _check_options(csv, image_root, name_col, mos_col, mos_range, higher_is_better)
    root = Path(root).expanduser()
    if csv is None and root.exists() and not root.is_dir():  # the CSV itself (sniff refuses a FIFO or device)
        path, base = root, root.parent
    else:
        if csv is None:
            raise DatasetFormatError(f"metacsv: {root} is a folder; give the CSV file with csv=... (--csv).")
        path = Path(csv).expanduser()
        path = path if path.is_absolute() else root / path
        base = root
    problem = not_a_file(path)
    if problem:
        what = "not found" if problem == "does not exist" else problem
        raise DatasetFormatError(
            f"metacsv: CSV file {path} {what}; give the meta CSV file (--root or --csv)."
        )
    base = Path(image_root).expanduser() if image_root is not None else base
    sniff(path, "csv")
    df = _read_any_sep(path)
    lower = {c.lower(): c for c in df.columns}
    ncol = _pick(df, lower, name_col, NAME_COLUMNS, path, "image name")
    scol = _pick(df, lower, mos_col, MOS_COLUMNS, path, "score")
    mos = to_float(df[scol], str(path), scol, df["_line"])
    idx = CaseIndex(base)
    names, images = [], []
    for n, line in zip(df[ncol], df["_line"], strict=True):
        if not n.strip():
            raise DatasetFormatError(f"{path} line {line}: the image name ({ncol}) is empty; fill it in.")
        name, image = _resolve(idx, n.strip())
        names.append(name)
        images.append(image)
    rows = pd.DataFrame({"name": names, "image": images, "mos_raw": mos})
    rows["_where"] = [f"{path} line {k}" for k in df["_line"]]
    ref = _col(df, lower, REF_COLUMNS, rows["name"])
    rows["ref"] = ref.where(ref != "", rows["name"])  # a blank reference cell: the image is its own content
    for col in ("dist_type", "dist_group", "scenes"):
        rows[col] = _col(df, lower, (col,), "")
    levels = _col(df, lower, ("dist_level",), "-1").replace("", "-1")
    rows["dist_level"] = [
        cell_int(v, f"{path} line {k}", "dist_level") for v, k in zip(levels, df["_line"], strict=True)
    ]
    split_src = next((lower[c] for c in SPLIT_COLUMNS if c in lower), None)
    if split_src is not None:
        rows["split"] = [
            split_label(v, f"{path} line {k}") for v, k in zip(df[split_src], df["_line"], strict=True)
        ]
    extra = []
    for c in df.columns:
        if c.lower().startswith("split_"):
            rows[c] = [split_label(v, f"{path} line {k}") for v, k in zip(df[c], df["_line"], strict=True)]
            extra.append(c)
    if mos_range is None:
        lo, hi = float(mos.min()), float(mos.max())
        if lo == hi:
            raise DatasetFormatError(f"{path}: every score is {lo:g}; give mos_range to rescale them.")
        warnings.warn(
            f"metacsv: no mos_range given; rescaling {scol} by its observed range [{lo:g}, {hi:g}].",
            UserWarning,
            stacklevel=2,
        )
        mos_range = (lo, hi)
    if higher_is_better is None:
        if scol.lower() == "dmos":
            warnings.warn(
                f"metacsv: {path.name}'s score column is {scol!r}, read as higher-is-better (as KADID-10k's, a "
                f"MOS); if lower is better, pass higher_is_better=False (--lower-is-better).",
                UserWarning,
                stacklevel=2,
            )
        higher_is_better = True
    info = replace(
        DATASETS["metacsv"],
        title=f"meta CSV {path.name}",
        mos_kind="MOS" if higher_is_better else "DMOS",
        mos_range=(float(mos_range[0]), float(mos_range[1])),
        higher_is_better=higher_is_better,
        n_images=len(rows),
    )
    return finish(
        rows,
        info,
        root=base,
        label_files=[path],
        skip_unreadable=skip_unreadable,
        check_images=check_images,
        extra=tuple(extra),
    )


def _check_options(csv, image_root, name_col, mos_col, mos_range, higher_is_better) -> None:
    """The options as a run config's `data.reader_options` can give them (any YAML value), checked up front."""
    texts = {"csv": csv, "image_root": image_root, "name_col": name_col, "mos_col": mos_col}
    for name, value in texts.items():
        if value is not None and not isinstance(value, str | os.PathLike):
            raise DatasetFormatError(f"metacsv: {name}={value!r} is not a path or a column name; give text.")
    if higher_is_better is not None and not isinstance(higher_is_better, bool):
        raise DatasetFormatError(f"metacsv: higher_is_better={higher_is_better!r}; give true, false or null.")
    if mos_range is None:
        return
    try:
        lo, hi = (float(v) for v in mos_range)
        scale = bool(np.isfinite([lo, hi]).all() and lo < hi)
    except (TypeError, ValueError):
        scale = False
    if not scale:
        raise DatasetFormatError(
            f"metacsv: mos_range {mos_range!r} is not a scale; give two finite numbers, low then high "
            f"(--mos-range 1 5)."
        )


def _read_any_sep(path: Path) -> pd.DataFrame:
    with open(path, "rb") as handle:
        head = handle.read(4096).decode("utf-8-sig", errors="replace")
    try:
        sep = _csv.Sniffer().sniff(head.splitlines()[0] if head else ",", delimiters=",\t;").delimiter
    except _csv.Error:
        sep = ","
    df = parse_csv(path, sep)
    df.columns = [str(c).strip() for c in df.columns]
    df["_line"] = line_numbers(path, len(df))
    if df.empty:
        raise DatasetFormatError(f"{path}: no rows.")
    return df


def _pick(df, lower, chosen, candidates, path, what) -> str:
    if chosen is not None:
        if chosen not in df.columns:
            raise DatasetFormatError(f"{path}: no column {chosen!r}; columns are {list(df.columns[:-1])}.")
        return chosen
    for c in candidates:
        if c in lower:
            return lower[c]
    raise DatasetFormatError(
        f"{path}: no {what} column; expected one of {list(candidates)}, found {list(df.columns[:-1])}. "
        f"Name it explicitly ({'name_col' if what == 'image name' else 'mos_col'}=...)."
    )


def _col(df, lower, candidates, default) -> pd.Series:
    for c in candidates:
        if c in lower:
            return df[lower[c]].astype(str).str.strip()
    return default if isinstance(default, pd.Series) else pd.Series(default, index=df.index)


def _resolve(idx: CaseIndex, name: str) -> tuple[str, str]:
    """(name, image path); a name without an extension (pyiqa's LIVE meta file) tries the usual ones."""
    p = Path(name)
    hit = idx.find(name)
    if hit is None and not p.suffix:
        for ext in _EXTS:
            hit = idx.find(name + ext)
            if hit is not None:
                name = name + hit.suffix
                break
    return name, str(hit if hit is not None else idx.base / name)

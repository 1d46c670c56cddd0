"""Readers for datasets without shared references: KonIQ-10k, CLIVE, SPAQ, AGIQA-3K.

Each image is its own reference (``ref == name``), except AGIQA-3K where images generated from one prompt
share it as their reference.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from mmpiqa.data.info import DATASETS
from mmpiqa.data.readers._common import CaseIndex, DatasetFormatError, locate_root, need_file, path_of
from mmpiqa.data.readers._finish import finish
from mmpiqa.data.readers._parse import (
    cell_name,
    read_csv,
    read_mat,
    read_xlsx,
    split_label,
    to_float,
)
from mmpiqa.data.table import SCENE_CLASSES

# --------------------------------------------------------------------------------------------- KonIQ-10k

KONIQ_LABEL = "koniq10k_scores_and_distributions.csv"
KONIQ_SETS = ("koniq10k_distributions_sets.csv", "metadata/koniq10k_distributions_sets.csv")
KONIQ_IMAGE_DIRS = ("1024x768", "512x384")


def read_koniq10k(
    root: str | os.PathLike,
    *,
    skip_unreadable: bool = False,
    check_images: bool = False,
    images_dir: str | None = None,
) -> pd.DataFrame:
    """KonIQ-10k: ``koniq10k_scores_and_distributions.csv`` (image_name, MOS 1-5, SD, MOS_zscore) + ``1024x768/``.

    The official split comes from ``koniq10k_distributions_sets.csv`` (column ``set``) when it is present,
    beside the scores file or in ``metadata/``. `images_dir` picks the image folder; by default 1024x768/,
    else 512x384/.
    """
    info = DATASETS["koniq10k"]
    base = locate_root(root, info, [KONIQ_LABEL])
    idx = CaseIndex(base)
    label = need_file(idx, [KONIQ_LABEL], info, "label file")
    df = read_csv(label, ["image_name", "MOS"], info.title)
    mos = to_float(df["MOS"], str(label), "MOS", df["_line"])
    dirs = (images_dir,) if images_dir else KONIQ_IMAGE_DIRS
    found = [idx.find(d) for d in dirs]
    folder = next((f for f in found if f is not None and f.is_dir()), None)
    if folder is None:
        raise DatasetFormatError(
            f"koniq10k: no image folder {' or '.join(repr(d) for d in dirs)} under {base}. Unpack "
            f"koniq10k_1024x768.zip there (layout:\n{info.layout})."
        )
    sub = folder.name
    rows = pd.DataFrame(
        {
            "name": [f"{sub}/{n.strip()}" for n in df["image_name"]],
            "mos_raw": mos,
            "_where": [f"{label} line {k}" for k in df["_line"]],
        }
    )
    rows["image"] = [path_of(idx, n) for n in rows["name"]]
    rows["ref"] = rows["name"]
    rows["sd"] = pd.to_numeric(df.get("SD", pd.Series(np.nan, index=df.index)), errors="coerce").to_numpy()
    zs = df.get("MOS_zscore", pd.Series(np.nan, index=df.index))
    rows["mos_zscore"] = pd.to_numeric(zs, errors="coerce").to_numpy()
    labels = [label]
    sets = idx.find_any(KONIQ_SETS)
    if sets is not None:
        labels.append(sets)
        sdf = read_csv(sets, ["image_name", "set"], info.title)
        split = {
            n.strip(): split_label(v, f"{sets} line {k}")
            for n, v, k in zip(sdf["image_name"], sdf["set"], sdf["_line"], strict=True)
        }
        names = [n.strip() for n in df["image_name"]]
        rows["split"] = [split.get(n, "") for n in names]
        absent = [n for n in names if n not in split]
        if absent:
            warnings.warn(
                f"koniq10k: {len(absent)} image(s) are not in {sets.name} and get no official split "
                f"(first: {absent[:3]}).",
                UserWarning,
                stacklevel=2,
            )
    return finish(
        rows,
        info,
        root=base,
        label_files=labels,
        skip_unreadable=skip_unreadable,
        check_images=check_images,
        extra=("sd", "mos_zscore"),
    )


# --------------------------------------------------------------------------------------------- CLIVE

_CLIVE_TRAINING = re.compile(r"^t[1-7]\.bmp$", re.IGNORECASE)


def read_clive(
    root: str | os.PathLike,
    *,
    skip_unreadable: bool = False,
    check_images: bool = False,
    include_training: bool = False,
) -> pd.DataFrame:
    """LIVE In the Wild Challenge: ``Data/AllImages_release.mat`` + ``Data/AllMOS_release.mat`` + ``Images/``.

    Of the 1169 entries, t1.bmp-t7.bmp (in ``Images/trainingImages/``) trained the raters and are left out
    unless `include_training`, giving 1162. `root` may be ``ChallengeDB_release`` or the folder above it.
    """
    info = DATASETS["clive"]
    base = locate_root(root, info, ["Data/AllMOS_release.mat"])
    idx = CaseIndex(base)
    nfile = need_file(idx, ["Data/AllImages_release.mat"], info, "label file")
    mfile = need_file(idx, ["Data/AllMOS_release.mat"], info, "label file")
    names = read_mat(nfile, strings=["AllImages_release"])["AllImages_release"]
    mos = read_mat(mfile, numbers=["AllMOS_release"])["AllMOS_release"]
    if len(names) != len(mos):
        raise DatasetFormatError(
            f"{nfile} lists {len(names)} images but {mfile} has {len(mos)} scores; they must pair one to one "
            "(the release has 1169 of each)."
        )
    records = []
    for k, (n, s) in enumerate(zip(names, mos, strict=True)):
        where = f"{mfile} entry {k + 1}"
        if not n:
            raise DatasetFormatError(f"{nfile} entry {k + 1}: empty image name.")
        if not np.isfinite(s):
            raise DatasetFormatError(f"{where}: the MOS of {n!r} is {s} (not a number).")
        training = bool(_CLIVE_TRAINING.match(n))
        if training and not include_training:
            continue
        name = f"Images/trainingImages/{n}" if training else f"Images/{n}"
        records.append(dict(name=name, image=path_of(idx, name), mos_raw=s, ref=name, _where=where))
    return finish(
        pd.DataFrame.from_records(records),
        info,
        root=base,
        label_files=[nfile, mfile],
        skip_unreadable=skip_unreadable,
        check_images=check_images,
    )


# --------------------------------------------------------------------------------------------- SPAQ

SPAQ_LABEL = "Annotations/MOS and Image attribute scores.xlsx"
SPAQ_SCENES = "Annotations/Scene category labels.xlsx"
SPAQ_ATTRIBUTES = ("brightness", "colorfulness", "contrast", "noisiness", "sharpness")
# SPAQ's scene columns are the scene branch's classes, spelled with capitals
SPAQ_SCENE_MAP = {c: c for c in SCENE_CLASSES}


def read_spaq(
    root: str | os.PathLike, *, skip_unreadable: bool = False, check_images: bool = False
) -> pd.DataFrame:
    """SPAQ: ``Annotations/MOS and Image attribute scores.xlsx`` + ``TestImage/`` (11,125 photos, MOS 0-100).

    Scene labels come from ``Annotations/Scene category labels.xlsx`` when present (a value > 0 marks a
    scene; an image may have several, joined with '|'). The five attribute scores are kept as extra columns.
    """
    info = DATASETS["spaq"]
    base = locate_root(root, info, [SPAQ_LABEL])
    idx = CaseIndex(base)
    label = need_file(idx, [SPAQ_LABEL], info, "label workbook")
    df = read_xlsx(label, ["image name", "mos"], info_name=info.title)
    mos = to_float(df["mos"], str(label), "MOS", df["_line"], unit="row")
    folder = idx.find("TestImage")
    if folder is None or not folder.is_dir():
        raise DatasetFormatError(
            f"spaq: no TestImage/ folder under {base}. The release layout is:\n{info.layout}"
        )
    img_names = [
        cell_name(v, f"{label} row {k}", "Image name")
        for v, k in zip(df["image name"], df["_line"], strict=True)
    ]
    rows = pd.DataFrame(
        {
            "name": [f"{folder.name}/{n}" for n in img_names],
            "mos_raw": mos,
            "_where": [f"{label} row {k}" for k in df["_line"]],
        }
    )
    rows["image"] = [path_of(idx, n) for n in rows["name"]]
    rows["ref"] = rows["name"]
    for col in SPAQ_ATTRIBUTES:
        rows[col] = pd.to_numeric(df[col], errors="coerce").to_numpy() if col in df else np.nan
    labels = [label]
    scene_file = idx.find(SPAQ_SCENES)
    if scene_file is not None:
        labels.append(scene_file)
        rows["scenes"] = _spaq_scenes(scene_file, img_names)
    return finish(
        rows,
        info,
        root=base,
        label_files=labels,
        skip_unreadable=skip_unreadable,
        check_images=check_images,
        extra=SPAQ_ATTRIBUTES,
    )


def _spaq_scenes(path: Path, img_names: list[str]) -> list[str]:
    sdf = read_xlsx(path, ["image name"], info_name="SPAQ")
    cols = [c for c in sdf.columns if c not in ("image name", "_line")]
    known = [c for c in cols if c in SPAQ_SCENE_MAP]
    unknown = [c for c in cols if c not in SPAQ_SCENE_MAP]
    if unknown:
        warnings.warn(
            f"spaq: ignoring unknown scene column(s) {unknown} in {path.name}.", UserWarning, stacklevel=3
        )
    if not known:
        raise DatasetFormatError(
            f"{path}: none of the scene columns {list(SPAQ_SCENE_MAP)} found (columns: {cols})."
        )
    by_name: dict[str, str] = {}
    for _, r in sdf.iterrows():
        n = cell_name(r["image name"], f"{path} row {r['_line']}", "Image name")
        values = pd.to_numeric(pd.Series([r[c] for c in known]), errors="coerce").fillna(0).to_numpy()
        present = {SPAQ_SCENE_MAP[c] for c, v in zip(known, values, strict=True) if v > 0}
        by_name[n] = "|".join(c for c in SCENE_CLASSES if c in present)
    absent = [n for n in img_names if n not in by_name]
    if absent:
        warnings.warn(
            f"spaq: {len(absent)} image(s) have no row in {path.name}; their scenes stay empty (first: {absent[:3]}).",
            UserWarning,
            stacklevel=3,
        )
    return [by_name.get(n, "") for n in img_names]


# --------------------------------------------------------------------------------------------- AGIQA-3K

AGIQA_IMAGE_DIRS = ("", "AGIQA-3K", "AGIQA-3k", "images", "AGIQA-3K/AGIQA-3K")


def read_agiqa3k(
    root: str | os.PathLike, *, skip_unreadable: bool = False, check_images: bool = False
) -> pd.DataFrame:
    """AGIQA-3K: ``data.csv`` (name, prompt, ..., mos_quality, std_quality, mos_align, std_align) + images.

    `mos_raw` is mos_quality. The images may sit beside data.csv or in ``AGIQA-3K/`` or ``images/`` below it
    (the folder holding the first listed image is used). `ref` is the prompt.
    """
    info = DATASETS["agiqa3k"]
    base = locate_root(root, info, ["data.csv"])
    idx = CaseIndex(base)
    label = need_file(idx, ["data.csv"], info, "label file")
    df = read_csv(label, ["name", "mos_quality"], info.title)
    mos = to_float(df["mos_quality"], str(label), "mos_quality", df["_line"])
    names = [n.strip() for n in df["name"]]
    if not names:
        raise DatasetFormatError(f"{label}: no rows.")
    sub = next((d for d in AGIQA_IMAGE_DIRS if idx.find(f"{d}/{names[0]}" if d else names[0])), None)
    if sub is None:
        tried = ", ".join(f"{d or '.'}/{names[0]}" for d in AGIQA_IMAGE_DIRS)
        raise DatasetFormatError(
            f"agiqa3k: the first listed image was not found under {base} (tried {tried})."
        )
    rows = pd.DataFrame(
        {
            "name": [f"{sub}/{n}" if sub else n for n in names],
            "mos_raw": mos,
            "_where": [f"{label} line {k}" for k in df["_line"]],
        }
    )
    rows["image"] = [path_of(idx, n) for n in rows["name"]]
    prompts = df["prompt"].str.strip() if "prompt" in df else pd.Series("", index=df.index)
    rows["prompt"] = prompts.to_numpy()
    rows["ref"] = np.where(prompts.to_numpy() != "", prompts.to_numpy(), rows["name"].to_numpy())
    for col in ("std_quality", "mos_align", "std_align"):
        rows[col] = pd.to_numeric(df[col], errors="coerce").to_numpy() if col in df else np.nan
    return finish(
        rows,
        info,
        root=base,
        label_files=[label],
        skip_unreadable=skip_unreadable,
        check_images=check_images,
        extra=("prompt", "std_quality", "mos_align", "std_align"),
    )

"""Readers for the datasets made by distorting pristine references: KADID-10k, LIVE Release 2, CSIQ, TID2013.

Each maps the dataset's own distortion types to the 11 groups of the distortion branch. Where a dataset's own
category list places a type (KADID-10k puts denoising under noise), we follow it; the maps are data below and
are printed in the data cards.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from mmpiqa.data.info import DATASETS
from mmpiqa.data.readers._common import CaseIndex, DatasetFormatError, locate_root, need_file, path_of
from mmpiqa.data.readers._finish import finish
from mmpiqa.data.readers._parse import (
    cell_int,
    cell_name,
    read_csv,
    read_mat,
    read_xlsx,
    sniff,
    to_float,
)

# --------------------------------------------------------------------------------------------- KADID-10k

# type index -> (KADID-10k's name, our group)
KADID_TYPES: dict[int, tuple[str, str]] = {
    1: ("gaussian blur", "blur"),
    2: ("lens blur", "blur"),
    3: ("motion blur", "blur"),
    4: ("color diffusion", "colour"),
    5: ("color shift", "colour"),
    6: ("color quantization", "quantisation"),
    7: ("color saturation 1", "colour"),
    8: ("color saturation 2", "colour"),
    9: ("jpeg2000", "JPEG2000"),
    10: ("jpeg", "JPEG"),
    11: ("white noise", "noise"),
    12: ("white noise in color component", "noise"),
    13: ("impulse noise", "noise"),
    14: ("multiplicative noise", "noise"),
    15: ("denoise", "noise"),
    16: ("brighten", "over-exposure"),
    17: ("darken", "under-exposure"),
    18: ("mean shift", "other"),
    19: ("jitter", "spatial"),
    20: ("non-eccentricity patch", "spatial"),
    21: ("pixelate", "spatial"),
    22: ("quantization", "quantisation"),
    23: ("color block", "spatial"),
    24: ("high sharpen", "other"),
    25: ("contrast change", "contrast"),
}
_KADID_NAME = re.compile(r"^I(\d+)_(\d+)_(\d+)\.(png|bmp|jpg)$", re.IGNORECASE)


def read_kadid10k(
    root: str | os.PathLike, *, skip_unreadable: bool = False, check_images: bool = False
) -> pd.DataFrame:
    """KADID-10k: ``dmos.csv`` (dist_img, ref_img, dmos, var) and ``images/I01_03_05.png``.

    ref 01, type 03, level 05 come from the file name; the 1-5 "dmos" is a MOS (higher = better), not flipped.
    """
    info = DATASETS["kadid10k"]
    base = locate_root(root, info, ["dmos.csv"])
    idx = CaseIndex(base)
    label = need_file(idx, ["dmos.csv"], info, "label file")
    df = read_csv(label, ["dist_img", "ref_img", "dmos"], info.title)
    mos = to_float(df["dmos"], str(label), "dmos", df["_line"])
    records = []
    for dist, ref_img, line in zip(df["dist_img"], df["ref_img"], df["_line"], strict=True):
        where = f"{label} line {line}"
        m = _KADID_NAME.match(dist.strip())
        if m is None:
            raise DatasetFormatError(
                f"{where}: dist_img {dist!r} is not of the form I<ref>_<type>_<level>.png (e.g. I01_03_05.png)."
            )
        ref_no, t, level = int(m.group(1)), int(m.group(2)), int(m.group(3))
        if t not in KADID_TYPES:
            raise DatasetFormatError(f"{where}: distortion type {t} in {dist!r} is not one of KADID's 1-25.")
        ref = Path(ref_img.strip()).stem
        if ref.upper() != f"I{ref_no:02d}":
            raise DatasetFormatError(
                f"{where}: {dist!r} names reference {ref_no} but ref_img is {ref_img!r}."
            )
        name = f"images/{dist.strip()}"
        records.append(
            dict(
                name=name,
                image=path_of(idx, name),
                ref=ref,
                dist_type=KADID_TYPES[t][0],
                dist_group=KADID_TYPES[t][1],
                dist_level=level,
                _where=where,
            )
        )
    rows = pd.DataFrame.from_records(records)
    rows["mos_raw"] = mos
    extra = ()
    if "var" in df:
        rows["var"] = pd.to_numeric(df["var"], errors="coerce").to_numpy()
        extra = ("var",)
    return finish(
        rows,
        info,
        root=base,
        label_files=[label],
        skip_unreadable=skip_unreadable,
        check_images=check_images,
        extra=extra,
    )


# --------------------------------------------------------------------------------------------- LIVE Release 2

# folder, number of images, our group; in dmos.mat order
LIVE_FOLDERS: tuple[tuple[str, int, str], ...] = (
    ("jp2k", 227, "JPEG2000"),
    ("jpeg", 233, "JPEG"),
    ("wn", 174, "noise"),
    ("gblur", 174, "blur"),
    ("fastfading", 174, "JPEG2000"),  # JPEG2000 bit streams through a simulated fading channel
)
LIVE_ENTRIES = sum(n for _, n, _ in LIVE_FOLDERS)  # 982


def read_live(
    root: str | os.PathLike,
    *,
    skip_unreadable: bool = False,
    check_images: bool = False,
    include_originals: bool = False,
    realigned: bool = False,
) -> pd.DataFrame:
    """LIVE Release 2: ``dmos.mat`` (dmos, orgs), ``refnames_all.mat`` and jp2k/ jpeg/ wn/ gblur/ fastfading/.

    The 982 entries run through the folders in that order (imgN.bmp); the 203 with orgs == 1 are undistorted
    originals and are left out unless `include_originals` (then with no distortion type or group).
    `realigned=True` reads ``dmos_realigned.mat``
    (dmos_new) instead. DMOS is flipped; there are no discrete distortion levels (dist_level -1).
    """
    info = DATASETS["live"]
    base = locate_root(root, info, ["dmos.mat", "dmos_realigned.mat"])
    idx = CaseIndex(base)
    if realigned:
        dfile = need_file(idx, ["dmos_realigned.mat"], info, "label file")
        m = read_mat(dfile, numbers=["dmos_new", "orgs"])
        dmos = m["dmos_new"]
    else:
        dfile = need_file(idx, ["dmos.mat"], info, "label file")
        m = read_mat(dfile, numbers=["dmos", "orgs"])
        dmos = m["dmos"]
    orgs = m["orgs"]
    rfile = need_file(idx, ["refnames_all.mat"], info, "label file")
    refs = read_mat(rfile, strings=["refnames_all"])["refnames_all"]
    for what, arr in (("dmos", dmos), ("orgs", orgs), ("refnames_all", refs)):
        if len(arr) != LIVE_ENTRIES:
            raise DatasetFormatError(
                f"{dfile if what != 'refnames_all' else rfile}: {what} has {len(arr)} entries; Release 2 has "
                f"{LIVE_ENTRIES} (" + ", ".join(f"{n} {f}" for f, n, _ in LIVE_FOLDERS) + ")."
            )
    records = []
    k = 0
    for folder, count, group in LIVE_FOLDERS:
        for j in range(1, count + 1):
            where = f"{dfile} entry {k + 1}"
            if orgs[k] not in (0.0, 1.0):
                raise DatasetFormatError(f"{where}: orgs is {orgs[k]:g}; it must be 0 or 1.")
            if not np.isfinite(dmos[k]):
                raise DatasetFormatError(
                    f"{where}: the DMOS of {folder}/img{j}.bmp is {dmos[k]} (not a number)."
                )
            if include_originals or orgs[k] == 0:
                name = f"{folder}/img{j}.bmp"
                ref = Path(refs[k]).stem
                records.append(
                    dict(
                        name=name,
                        image=path_of(idx, name),
                        mos_raw=dmos[k],
                        ref=ref,
                        dist_type=folder if orgs[k] == 0 else "",
                        dist_group=group if orgs[k] == 0 else "",
                        dist_level=-1,
                        _where=where,
                    )
                )
            k += 1
    return finish(
        pd.DataFrame.from_records(records),
        info,
        root=base,
        label_files=[dfile, rfile],
        skip_unreadable=skip_unreadable,
        check_images=check_images,
    )


# --------------------------------------------------------------------------------------------- CSIQ

# dst_type in the workbook -> (folder under dst_imgs/, type tag in the file name, our group)
CSIQ_TYPES: dict[str, tuple[str, str, str]] = {
    "noise": ("awgn", "AWGN", "noise"),
    "jpeg": ("jpeg", "JPEG", "JPEG"),
    "jpeg 2000": ("jpeg2000", "jpeg2000", "JPEG2000"),
    "fnoise": ("fnoise", "fnoise", "noise"),
    "blur": ("blur", "BLUR", "blur"),
    "contrast": ("contrast", "contrast", "contrast"),
}
_CSIQ_ALIASES = {"awgn": "noise", "jpeg2000": "jpeg 2000", "jp2k": "jpeg 2000", "pink noise": "fnoise"}
CSIQ_LABELS = ("csiq.DMOS.xlsx", "csiq.beta.xlsx")


def read_csiq(
    root: str | os.PathLike, *, skip_unreadable: bool = False, check_images: bool = False
) -> pd.DataFrame:
    """CSIQ: ``csiq.DMOS.xlsx`` (sheet all_by_image) and ``dst_imgs/<type>/<image>.<TYPE>.<level>.png``.

    DMOS in [0, 1] is flipped. The header row is found by its names (image, dst_type, dst_lev, dmos), so title
    rows and empty leading columns in the workbook do not matter.
    """
    info = DATASETS["csiq"]
    base = locate_root(root, info, CSIQ_LABELS)
    idx = CaseIndex(base)
    label = need_file(idx, CSIQ_LABELS, info, "label workbook")
    df = read_xlsx(
        label, ["image", "dst_type", "dst_lev", "dmos"], sheet="all_by_image", info_name=info.title
    )
    sheet = df.attrs.get("sheet", "")
    dmos = to_float(df["dmos"], f"{label} [{sheet}]", "dmos", df["_line"], unit="row")
    records = []
    for image, dtype, lev, line in zip(df["image"], df["dst_type"], df["dst_lev"], df["_line"], strict=True):
        where = f"{label} [{sheet}] row {line}"
        img = cell_name(image, where, "image")
        key = str(dtype).strip().lower()
        key = _CSIQ_ALIASES.get(key, key)
        if key not in CSIQ_TYPES:
            raise DatasetFormatError(f"{where}: dst_type {dtype!r} is not one of {sorted(CSIQ_TYPES)}.")
        level = cell_int(lev, where, "dst_lev")
        folder, tag, group = CSIQ_TYPES[key]
        name = f"dst_imgs/{folder}/{img}.{tag}.{level}.png"
        records.append(
            dict(
                name=name,
                image=path_of(idx, name),
                ref=img,
                dist_type=key,
                dist_group=group,
                dist_level=level,
                _where=where,
            )
        )
    rows = pd.DataFrame.from_records(records)
    rows["mos_raw"] = dmos
    extra = ()
    if "dmos_std" in df:
        rows["dmos_std"] = pd.to_numeric(df["dmos_std"], errors="coerce").to_numpy()
        extra = ("dmos_std",)
    return finish(
        rows,
        info,
        root=base,
        label_files=[label],
        skip_unreadable=skip_unreadable,
        check_images=check_images,
        extra=extra,
    )


# --------------------------------------------------------------------------------------------- TID2013

# type index -> (TID2013's name, our group)
TID2013_TYPES: dict[int, tuple[str, str]] = {
    1: ("additive gaussian noise", "noise"),
    2: ("additive noise in colour components", "noise"),
    3: ("spatially correlated noise", "noise"),
    4: ("masked noise", "noise"),
    5: ("high frequency noise", "noise"),
    6: ("impulse noise", "noise"),
    7: ("quantization noise", "quantisation"),
    8: ("gaussian blur", "blur"),
    9: ("image denoising", "noise"),
    10: ("jpeg compression", "JPEG"),
    11: ("jpeg2000 compression", "JPEG2000"),
    12: ("jpeg transmission errors", "JPEG"),
    13: ("jpeg2000 transmission errors", "JPEG2000"),
    14: ("non eccentricity pattern noise", "spatial"),
    15: ("local block-wise distortions", "spatial"),
    16: ("mean shift", "other"),
    17: ("contrast change", "contrast"),
    18: ("change of colour saturation", "colour"),
    19: ("multiplicative gaussian noise", "noise"),
    20: ("comfort noise", "other"),
    21: ("lossy compression of noisy images", "other"),
    22: ("colour quantization with dither", "quantisation"),
    23: ("chromatic aberrations", "colour"),
    24: ("sparse sampling and reconstruction", "other"),
}
_TID_NAME = re.compile(r"^i(\d+)_(\d+)_(\d)\.bmp$", re.IGNORECASE)


def read_tid2013(
    root: str | os.PathLike, *, skip_unreadable: bool = False, check_images: bool = False
) -> pd.DataFrame:
    """TID2013: ``mos_with_names.txt`` ('<MOS> <file>' lines) and ``distorted_images/i01_01_1.bmp``.

    Names are matched case-insensitively (the release mixes ``i25``/``I25`` and ``.bmp``/``.BMP``).
    """
    info = DATASETS["tid2013"]
    base = locate_root(root, info, ["mos_with_names.txt"])
    idx = CaseIndex(base)
    label = need_file(idx, ["mos_with_names.txt"], info, "label file")
    sniff(label, "txt")
    try:
        text = label.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetFormatError(f"{label}: not a text file ({exc}).") from exc
    records = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{label} line {line_no}"
        parts = line.split()
        if len(parts) != 2:
            raise DatasetFormatError(f"{where}: expected '<MOS> <file name>', found {line.strip()!r}.")
        try:
            mos = float(parts[0])
        except ValueError:
            mos = float("nan")
        if not np.isfinite(mos):
            raise DatasetFormatError(f"{where}: MOS {parts[0]!r} is not a number.")
        m = _TID_NAME.match(parts[1])
        if m is None:
            raise DatasetFormatError(
                f"{where}: file name {parts[1]!r} is not of the form i<ref>_<type>_<level>.bmp."
            )
        ref_no, t, level = int(m.group(1)), int(m.group(2)), int(m.group(3))
        if t not in TID2013_TYPES:
            raise DatasetFormatError(f"{where}: distortion type {t} is not one of TID2013's 1-24.")
        name = f"distorted_images/{parts[1]}"
        records.append(
            dict(
                name=name,
                image=path_of(idx, name),
                mos_raw=mos,
                ref=f"i{ref_no:02d}",
                dist_type=TID2013_TYPES[t][0],
                dist_group=TID2013_TYPES[t][1],
                dist_level=level,
                _where=where,
            )
        )
    if not records:
        raise DatasetFormatError(f"{label}: no entries.")
    return finish(
        pd.DataFrame.from_records(records),
        info,
        root=base,
        label_files=[label],
        skip_unreadable=skip_unreadable,
        check_images=check_images,
    )

"""Finishing a reader's rows: duplicate names, score range and rescaling, missing or corrupt images."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mmpiqa.data.images import ImageReadError, check_image, strict_truncation
from mmpiqa.data.info import DatasetInfo
from mmpiqa.data.readers._common import DatasetFormatError
from mmpiqa.data.table import COLUMNS, DISTORTION_GROUPS, SCENE_CLASSES, validate_table
from mmpiqa.errors import not_a_file

SHOW_FIRST = 5  # how many offending names an error message lists


def finish(
    rows: pd.DataFrame,
    info: DatasetInfo,
    *,
    root: Path,
    label_files: Sequence[Path],
    skip_unreadable: bool = False,
    check_images: bool = False,
    extra: Sequence[str] = (),
) -> pd.DataFrame:
    """Check names, scores and files; normalise the score; return the validated table.

    `rows` carries name, image, mos_raw, '_where' (file and line for messages) and whichever of ref,
    dist_type, dist_group, dist_level, scenes, split and the `extra` columns the dataset defines.
    """
    if rows.empty:
        raise DatasetFormatError(
            f"{label_files[0]}: no entries (only a header?). Re-download the official {info.title} label file."
        )
    rows = rows.reset_index(drop=True).copy()
    dupes = rows["name"].duplicated(keep=False)
    if dupes.any():
        first = rows.loc[dupes, "name"].iloc[0]
        where = list(rows.loc[rows["name"] == first, "_where"])
        raise DatasetFormatError(
            f"{info.name}: image {first!r} is listed {len(where)} times ({', '.join(where)}); "
            f"{int(dupes.sum())} rows are duplicates. Remove the extra rows; each image has one score."
        )
    _check_names(rows, root)
    raw = rows["mos_raw"].to_numpy(dtype=np.float64)
    if np.isnan(raw).any():
        k = int(np.flatnonzero(np.isnan(raw))[0])
        raise DatasetFormatError(f"{rows['_where'].iloc[k]}: the score is missing (NaN).")
    lo, hi = info.mos_range
    outside = (raw < lo) | (raw > hi)
    if outside.any() and info.mos_bounded:
        k = int(np.flatnonzero(outside)[0])
        raise DatasetFormatError(
            f"{rows['_where'].iloc[k]}: score {raw[k]:g} for {rows['name'].iloc[k]!r} is outside the published "
            f"{info.mos_kind} range [{lo:g}, {hi:g}] ({int(outside.sum())} such row(s)). Is this the official "
            f"{info.title} label file, unedited?"
        )
    if outside.any():  # unbounded scale (LIVE): widen to the observed extremes, keep the order
        lo, hi = min(lo, float(raw.min())), max(hi, float(raw.max()))
    rows["mos"] = info.normalise(raw, (lo, hi))

    rows, skipped = apply_file_policy(
        rows,
        info,
        root=root,
        label=label_files[0].name,
        skip_unreadable=skip_unreadable,
        check_images=check_images,
    )

    core = pd.DataFrame(
        {
            "dataset": info.name,
            "name": rows["name"].astype(str),
            "image": rows["image"].astype(str),
            "mos_raw": rows["mos_raw"].astype(np.float64),
            "mos": rows["mos"].astype(np.float64),
            "ref": rows["ref"].astype(str) if "ref" in rows else rows["name"].astype(str),
            "dist_type": _text(rows, "dist_type"),
            "dist_group": _text(rows, "dist_group"),
            "dist_level": rows["dist_level"].astype(np.int64) if "dist_level" in rows else -1,
            "scenes": _text(rows, "scenes"),
            "split": _text(rows, "split"),
        },
        index=rows.index,
    )
    table = validate_table(core, source=info.name)
    for col in extra:
        if col not in COLUMNS:
            table[col] = rows[col].to_numpy()
    table.attrs.update(
        dataset=info.name,
        root=str(root),
        label_files=[str(p) for p in label_files],
        mos_norm_range=(float(lo), float(hi)),
        mos_range=tuple(float(v) for v in info.mos_range),
        mos_kind=info.mos_kind,
        higher_is_better=info.higher_is_better,
        skipped=skipped,
    )
    return table


def _check_names(rows: pd.DataFrame, root: Path) -> None:
    """Names stay below the root, resolve to distinct files, and carry known scene and distortion labels."""
    for name, where in zip(rows["name"], rows["_where"], strict=True):
        path = PurePosixPath(str(name).replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or PureWindowsPath(str(name)).drive:
            raise DatasetFormatError(
                f"{where}: image name {name!r} points outside the dataset root {root}; a label file may only "
                "name files below its root (relative paths without '..'). Fix the row, or move the images "
                "under the root (a symbolic link inside the root is fine)."
            )
    same = rows["image"].duplicated(keep=False)
    if same.any():
        image = rows.loc[same, "image"].iloc[0]
        hits = rows[rows["image"] == image]
        raise DatasetFormatError(
            f"{', '.join(hits['_where'])}: the names {list(hits['name'])} differ only in case and are the same "
            f"file {image}. Remove the extra rows; each image has one score."
        )
    for col, known in (("scenes", SCENE_CLASSES), ("dist_group", DISTORTION_GROUPS)):
        if col not in rows:
            continue
        for cell, where in zip(rows[col].fillna("").astype(str), rows["_where"], strict=True):
            unknown = [v for v in (cell.split("|") if col == "scenes" else [cell]) if v and v not in known]
            if unknown:
                raise DatasetFormatError(
                    f"{where}: {col} {unknown[0]!r} is not one of {list(known)}; use those names "
                    "(or leave the cell empty)."
                )


def apply_file_policy(
    rows: pd.DataFrame,
    info: DatasetInfo,
    *,
    root: Path | str,
    label: str,
    skip_unreadable: bool,
    check_images: bool,
    fix: str | None = None,
) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Find missing (and, with `check_images`, undecodable) images; refuse them or drop them with a report.

    Returns the kept rows and the list of {name, image, reason} dropped. All images missing is always an
    error: --root is then almost surely wrong. `fix` replaces the advice for a download (complete it, or skip).
    """
    skipped = _file_problems(rows, info, check_images)
    if not skipped:
        return rows, skipped
    if len(skipped) == len(rows):
        raise DatasetFormatError(
            f"{info.name}: none of the {len(rows)} images listed in {label} was found or readable under "
            f"{root} (first expected: {skipped[0]['image']}). "
            + (fix or f"Is --root the unpacked {info.title} folder with its image folders in place?")
        )
    if not skip_unreadable:
        raise DatasetFormatError(_problem_text(info, Path(root), skipped, len(rows), fix))
    drop = {s["name"] for s in skipped}
    kept = rows[~rows["name"].isin(drop)]
    warnings.warn(
        f"{info.name}: skipped {len(skipped)} of {len(rows)} images ({_first(skipped)}); the list is in "
        "table.attrs['skipped'].",
        UserWarning,
        stacklevel=4,
    )
    return kept, skipped


def _text(rows: pd.DataFrame, col: str) -> pd.Series | str:
    return rows[col].fillna("").astype(str) if col in rows else ""


def _file_problems(rows: pd.DataFrame, info: DatasetInfo, check_images: bool) -> list[dict[str, str]]:
    problems = []
    exists = []
    for name, image in zip(rows["name"], rows["image"], strict=True):
        problem = not_a_file(image) if image else "does not exist"
        exists.append(problem is None)
        if problem:
            reason = "missing" if problem == "does not exist" else f"{image}: {problem}"
            problems.append({"name": name, "image": image, "reason": reason})
    if check_images:
        todo = [(n, p) for n, p, ok in zip(rows["name"], rows["image"], exists, strict=True) if ok]
        # decoding releases the GIL: a few threads make a 10k-image check several times quicker
        with strict_truncation(), ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            results = pool.map(_decode_problem, [p for _, p in todo])
            bar = tqdm(
                results,
                total=len(todo),
                desc=f"decoding {info.name} images",
                unit="img",
                leave=False,
                disable=len(todo) < 500,
                mininterval=1.0,
            )
            for (name, image), reason in zip(todo, bar, strict=True):
                if reason is not None:
                    problems.append({"name": name, "image": image, "reason": reason})
    return problems


def _decode_problem(path: str) -> str | None:
    try:
        check_image(path)
    except ImageReadError as exc:
        return str(exc).split(". Fix:")[0]
    return None


def _first(items: list[dict[str, str]]) -> str:
    names = ", ".join(s["name"] for s in items[:SHOW_FIRST])
    return names + (f", ... and {len(items) - SHOW_FIRST} more" if len(items) > SHOW_FIRST else "")


def _problem_text(
    info: DatasetInfo, root: Path, problems: list[dict[str, str]], n: int, fix: str | None = None
) -> str:
    missing = [p for p in problems if p["reason"] == "missing"]
    broken = [p for p in problems if p["reason"] != "missing"]
    parts = [f"{info.name}: {len(problems)} of {n} listed images cannot be used (root {root})."]
    if missing:
        parts.append(f"Missing ({len(missing)}): {_first(missing)}; first expected at {missing[0]['image']}.")
    if broken:
        parts.append(f"Unreadable ({len(broken)}): " + "; ".join(p["reason"] for p in broken[:SHOW_FIRST]))
    parts.append(
        fix
        or "Fix: complete the download/extraction (the layout is in `mmpiqa data card "
        f"{info.name}`), or pass skip_unreadable=True (--skip-unreadable) to drop them with a report."
    )
    return "\n".join(parts)

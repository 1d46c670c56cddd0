"""What `mmpiqa data` prints: the list of datasets, a download's verification report, a data card.

Plain functions that return text; `mmpiqa.cli` parses the arguments and prints. A download that cannot be read
at all raises its `InputError` (the command prints it without a traceback and exits 2).
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from mmpiqa.data.info import DATASETS, DatasetInfo
from mmpiqa.data.readers import option_names, read_dataset

CARDS_DIR = Path(__file__).resolve().parents[2] / "data" / "cards"


# ---------------------------------------------------------------------------------------------- list


def list_text() -> str:
    """The datasets this version reads, one row each: size, published scale, kind, split, licence, download."""
    rows = [("name", "images", "score (published)", "kind", "split", "licence", "download")]
    for info in DATASETS.values():
        rows.append(
            (
                info.name,
                "-" if info.n_images is None else f"{info.n_images:,}",
                info.scale_text(),
                "synthetic" if info.synthetic else "authentic",
                "official" if info.has_official_split else "-",
                info.licence,
                info.url,
            )
        )
    return (
        f"{_table(rows)}\n\n`mmpiqa data card NAME` prints a dataset's card; "
        "`mmpiqa data verify NAME --root PATH` checks a download."
    )


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- card


def card_text(name: str) -> str:
    """The data card: data/cards/NAME.md when present (a source checkout), else built from DatasetInfo; then
    the reader's options, read from its signature so the list cannot go stale."""
    path = CARDS_DIR / f"{name}.md"
    card = path.read_text(encoding="utf-8") if path.is_file() else DATASETS[name].card_markdown()
    options = ", ".join(f"`{o}`" for o in option_names(name)) or "none"
    return f"{card}\nReader options (keywords of `read_dataset`; `data.reader_options` in a run config): {options}.\n"


# ---------------------------------------------------------------------------------------------- verify


def verify(
    name: str,
    root: str | Path | None,
    *,
    check_images: bool = True,
    skip_unreadable: bool = False,
    **reader_options,
) -> tuple[str, list[str]]:
    """Read a download of dataset `name` and report on it: the text (ending in its result line) and the
    problems that make the verification fail. `reader_options` go to the reader (metacsv's columns and scale)."""
    info = DATASETS[name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = read_dataset(name, root, skip_unreadable=True, check_images=check_images, **reader_options)
    notes = [str(w.message) for w in caught if "skipped" not in str(w.message)]
    if "mos_range" in table.attrs:  # the scale the reader used (metacsv takes it from the caller)
        info = replace(
            info,
            mos_range=tuple(table.attrs["mos_range"]),
            mos_kind=table.attrs["mos_kind"],
            higher_is_better=table.attrs["higher_is_better"],
        )
    report, problems = verify_report(table, info, check_images=check_images, skip_unreadable=skip_unreadable)
    lines = [report, *(f"note: {n}" for n in notes)]
    if problems:
        lines.append(f"result: {len(problems)} problem(s)")
        lines += [f"  - {p}" for p in problems]
    else:
        lines.append("result: OK")
    return "\n".join(lines), problems


def verify_report(
    table: pd.DataFrame, info: DatasetInfo, *, check_images: bool, skip_unreadable: bool
) -> tuple[str, list[str]]:
    """The text report of a read table and the list of problems that make `verify` fail."""
    attrs = table.attrs
    skipped = attrs.get("skipped", [])
    missing = [s for s in skipped if s["reason"] == "missing"]
    broken = [s for s in skipped if s["reason"] != "missing"]
    listed = len(table) + len(skipped)
    problems: list[str] = []
    out = [f"dataset      {info.name}: {info.title}", f"root         {attrs.get('root', '?')}"]
    out.append("label files  " + ", ".join(Path(p).name for p in attrs.get("label_files", [])))
    out.append(
        f"images       {listed} listed, {len(table)} usable, {len(missing)} missing, "
        + (f"{len(broken)} unreadable (all decoded)" if check_images else "not decoded (--no-check-images)")
    )
    if info.n_images is not None and listed != info.n_images and info.name != "metacsv":
        out.append(f"             the full release has {info.n_images}: a partial or edited label file?")
    for kind, items in (("missing", missing), ("unreadable", broken)):
        if items:
            shown = "; ".join(
                f"{s['name']}" + ("" if kind == "missing" else f" ({s['reason']})") for s in items[:5]
            )
            more = f" ... and {len(items) - 5} more" if len(items) > 5 else ""
            out.append(f"  {kind}: {shown}{more}")
            if not skip_unreadable:
                problems.append(f"{len(items)} {kind} image(s), e.g. {items[0]['image']}")
    if skipped and skip_unreadable:
        out.append(f"             {len(skipped)} image(s) skipped as asked (--skip-unreadable)")
    if table.empty:
        return "\n".join(out), [*problems, "no usable images"]
    n_refs = table["ref"].nunique()
    out.append(f"references   {n_refs}" + (f" (release: {info.n_refs})" if info.n_refs else ""))
    raw, mos = table["mos_raw"].to_numpy(), table["mos"].to_numpy()
    lo, hi = info.mos_range
    nlo, nhi = attrs.get("mos_norm_range", (lo, hi))
    out.append(
        f"score        raw {raw.min():.4g}..{raw.max():.4g} on the published {info.scale_text()}; "
        f"rescaled with [{nlo:.4g}, {nhi:.4g}] to mos {mos.min():.3f}..{mos.max():.3f}"
    )
    outside = int(((raw < lo) | (raw > hi)).sum())
    if outside:
        msg = f"{outside} raw score(s) outside the published range [{lo:g}, {hi:g}]"
        if info.mos_bounded:
            problems.append(msg)
        else:
            out.append(f"             {msg}; expected for {info.title}, the rescaling widened to cover them")
    if np.ptp(mos) == 0:
        problems.append("every image has the same score")
    splits = Counter(table["split"])
    if info.has_official_split or set(splits) - {""}:
        parts = [f"{k} {splits[k]}" for k in ("train", "val", "test") if splits.get(k)]
        none = splits.get("", 0)
        out.append("split        official: " + ", ".join(parts) + (f", none {none}" if none else ""))
    else:
        how = "reference-disjoint splits" if info.synthetic or n_refs < len(table) else "random splits"
        out.append(f"split        none official (use {how})")
    out += _distortions(table)
    scenes = Counter(s for cell in table["scenes"] for s in cell.split("|") if s)
    if scenes:
        unlabelled = int((table["scenes"] == "").sum())
        out.append("scenes       " + ", ".join(f"{k} {v}" for k, v in sorted(scenes.items())))
        out.append(f"             {unlabelled} image(s) without a scene label" if unlabelled else "")
    return "\n".join(line for line in out if line), problems


def _distortions(table: pd.DataFrame) -> list[str]:
    typed = table[table["dist_type"] != ""]
    if typed.empty:
        return ["distortions  none labelled (authentic or unknown)"]
    out = [
        f"distortions  {typed['dist_type'].nunique()} types in {typed['dist_group'].replace('', '?').nunique()} "
        f"groups; {len(table) - len(typed)} image(s) without a type"
    ]
    rows = [("type", "group", "levels", "images")]
    for (t, g), part in typed.groupby(["dist_type", "dist_group"], sort=True):
        levels = sorted(int(v) for v in part["dist_level"].unique() if v >= 0)
        rows.append((t, g or "?", _ranges(levels) or "-", str(len(part))))
    out += ["  " + line for line in _table(rows).splitlines()]
    return out


def _ranges(values: list[int]) -> str:
    if not values:
        return ""
    parts, start, prev = [], values[0], values[0]
    for v in [*values[1:], None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(f"{start}-{prev}" if prev > start else str(start))
        if v is not None:
            start = prev = v
    return ",".join(parts)

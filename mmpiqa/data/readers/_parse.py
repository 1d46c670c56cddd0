"""Parsing label files: CSV, MATLAB v5 (.mat, through scipy) and .xlsx (through openpyxl).

Files are parsed, never evaluated or unpickled; a file of the wrong kind is refused before a parser half-reads
it. Every refusal is a `DatasetFormatError` naming the file, the line or row, and the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mmpiqa.data.readers._common import DatasetFormatError


def sniff(path: Path, kind: str) -> None:
    """Refuse a file of the wrong kind before a parser half-reads it."""
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        raise DatasetFormatError(f"{path}: the file is empty; re-download it.")
    low = head.lstrip().lower()
    if low.startswith((b"<!doctype html", b"<html")):
        raise DatasetFormatError(
            f"{path}: this is an HTML page (a login or error page saved by the browser), not the {kind} "
            "label file; download it again from the dataset page."
        )
    if kind == "mat" and head.startswith(b"\x89HDF"):
        raise DatasetFormatError(
            f"{path}: a MATLAB v7.3 (HDF5) file; the official release is v5. Re-save it in MATLAB with "
            "save(..., '-v7') or use the original file."
        )
    if kind == "xlsx" and not head.startswith(b"PK\x03\x04"):
        if head.startswith(b"\xd0\xcf\x11\xe0"):
            raise DatasetFormatError(
                f"{path}: a legacy .xls workbook; open it in a spreadsheet program and save it as .xlsx."
            )
        raise DatasetFormatError(f"{path}: not a xlsx file (first bytes {head[:8]!r}).")
    if kind in ("csv", "txt") and (b"\x00" in head or head.startswith((b"PK\x03\x04", b"\x1f\x8b"))):
        raise DatasetFormatError(
            f"{path}: a binary file (an archive?) where a text {kind} label file was expected."
        )


def read_csv(path: Path, required: Sequence[str], info_name: str) -> pd.DataFrame:
    """A CSV with every cell as a string, plus a '_line' column (1-based line number in the file)."""
    sniff(path, "csv")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(f"{path}: cannot parse as CSV ({exc}).") from exc
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DatasetFormatError(
            f"{path}: missing column(s) {missing}; found {list(df.columns)}. Is this the official {info_name} "
            "label file?"
        )
    df["_line"] = np.arange(len(df)) + 2
    return df


def read_xlsx(
    path: Path, required: Sequence[str], *, sheet: str | None = None, info_name: str = ""
) -> pd.DataFrame:
    """One sheet of a workbook as strings/numbers; the header row is found by its column names.

    Title rows above the header and empty leading columns (as in CSIQ's workbook) are skipped. A '_line'
    column gives the spreadsheet row number. `sheet=None` takes the first sheet that has the header.
    """
    sniff(path, "xlsx")
    try:
        from openpyxl import load_workbook

        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for damaged zips
        raise DatasetFormatError(f"{path}: cannot open as an .xlsx workbook ({exc}).") from exc
    try:
        names = wb.sheetnames
        order = ([sheet] if sheet in names else []) + [n for n in names if n != sheet]
        want = {r.lower() for r in required}
        for name in order:
            rows = [list(r) for r in wb[name].iter_rows(values_only=True)]
            for i, row in enumerate(rows[:50]):
                cells = [str(c).strip().lower() if c is not None else "" for c in row]
                if want <= set(cells):
                    header = cells
                    body = rows[i + 1 :]
                    cols: dict[str, int] = {}
                    for j, c in enumerate(header):
                        if c:
                            cols.setdefault(c, j)  # the first of two equally named columns wins
                    data = {c: [r[j] if j < len(r) else None for r in body] for c, j in cols.items()}
                    df = pd.DataFrame(data)
                    df["_line"] = np.arange(len(df)) + i + 2
                    df = df[df.drop(columns="_line").notna().any(axis=1)]  # blank rows at the end
                    df.attrs["sheet"] = name
                    return df.reset_index(drop=True)
    finally:
        wb.close()
    where = f"sheet {sheet!r}" if sheet in names else f"any of the sheets {names}"
    raise DatasetFormatError(
        f"{path}: no header row with columns {list(required)} in {where}. Is this the official "
        f"{info_name} workbook?"
    )


def read_mat(path: Path, variables: Sequence[str]) -> dict[str, np.ndarray]:
    """Variables of a MATLAB v5 file (scipy.io.loadmat parses; nothing is executed)."""
    sniff(path, "mat")
    from scipy.io import loadmat

    try:
        mat = loadmat(path, squeeze_me=False, chars_as_strings=True)
    except Exception as exc:  # scipy raises ValueError/TypeError/MatReadError on damage
        raise DatasetFormatError(f"{path}: cannot read as a MATLAB file ({exc}).") from exc
    missing = [v for v in variables if v not in mat]
    if missing:
        found = [k for k in mat if not k.startswith("__")]
        raise DatasetFormatError(f"{path}: variable(s) {missing} missing; the file holds {found}.")
    return {v: mat[v] for v in variables}


def mat_strings(arr: np.ndarray, where: str) -> list[str]:
    """A MATLAB cell array of strings (or a padded char matrix) as a flat list of str."""
    arr = np.asarray(arr)
    if arr.dtype.kind in "US":  # a char matrix, one padded row per name
        return [str(s).strip() for s in arr.reshape(-1)]
    if arr.dtype == object:
        out = []
        for k, cell in enumerate(arr.reshape(-1)):
            c = np.asarray(cell)
            if c.size == 0:
                out.append("")
            elif c.dtype.kind in "US":
                out.append(str(c.reshape(-1)[0]).strip())
            else:
                raise DatasetFormatError(f"{where}: entry {k + 1} is not a string ({c.dtype}).")
        return out
    raise DatasetFormatError(f"{where}: expected a cell array of file names, found {arr.dtype} {arr.shape}.")


def mat_numbers(arr: np.ndarray, where: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        raise DatasetFormatError(f"{where}: expected numbers, found {arr.dtype} {arr.shape}.")
    return arr.reshape(-1).astype(np.float64)


def to_float(
    values: pd.Series, where: str, column: str, lines: pd.Series | None = None, unit: str = "line"
) -> np.ndarray:
    """Parse a column of scores; a blank, NaN or non-numeric cell is an error naming its line (or row)."""
    out = pd.to_numeric(values.map(lambda v: v.strip() if isinstance(v, str) else v), errors="coerce")
    bad = out.isna() | ~np.isfinite(out.to_numpy(dtype=np.float64, na_value=np.nan))
    if bad.any():
        k = int(np.flatnonzero(bad.to_numpy())[0])
        line = int(lines.iloc[k]) if lines is not None else k + 1
        raise DatasetFormatError(
            f"{where}: {unit} {line}, column {column!r}: {values.iloc[k]!r} is not a number "
            f"({int(bad.sum())} such row(s)). Fix or remove the row; the official file has none."
        )
    return out.to_numpy(dtype=np.float64)


_SPLITS = {"training": "train", "train": "train", "validation": "val", "valid": "val", "val": "val"}
_SPLITS.update({"testing": "test", "test": "test", "": ""})


def split_label(value: object, where: str) -> str:
    """Normalise 'training'/'validation'/'testing' (any case) to 'train'/'val'/'test'."""
    v = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value).strip().lower()
    if v not in _SPLITS:
        raise DatasetFormatError(f"{where}: split {value!r} is not one of training/validation/test.")
    return _SPLITS[v]


def cell_name(value: object, where: str, field: str) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a workbook stores the image called 1600 as the number 1600
    text = "" if value is None else str(value).strip()
    if not text:
        raise DatasetFormatError(f"{where}: {field} is empty.")
    return text


def cell_int(value: object, where: str, field: str) -> int:
    try:
        f = float(str(value).strip())
    except ValueError:
        f = float("nan")
    if not np.isfinite(f) or not f.is_integer():
        raise DatasetFormatError(f"{where}: {field} {value!r} is not a whole number.")
    return int(f)

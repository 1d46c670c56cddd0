"""Parsing label files: CSV, MATLAB v5 (.mat, through scipy) and .xlsx (through openpyxl).

Files are parsed, never evaluated or unpickled; a file of the wrong kind is refused before a parser half-reads
it. Every refusal is a `DatasetFormatError` naming the file, the line or row, and the field.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mmpiqa.data.readers._common import DatasetFormatError
from mmpiqa.errors import not_a_file


def sniff(path: Path, kind: str) -> None:
    """Refuse a file of the wrong kind before a parser half-reads it (nothing of its content is echoed)."""
    problem = not_a_file(path)
    if problem:
        raise DatasetFormatError(f"{path}: the {kind} label file {problem}; put the downloaded file there.")
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
        raise DatasetFormatError(f"{path}: not an .xlsx workbook (no zip signature); re-download it.")
    if kind in ("csv", "txt"):
        if b"\x00" in head or head.startswith((b"PK\x03\x04", b"\x1f\x8b")):
            if head.startswith((b"\xff\xfe", b"\xfe\xff")) or _utf16_without_bom(head):
                raise DatasetFormatError(
                    f"{path}: UTF-16 text; save it as UTF-8 (in a spreadsheet program: 'CSV UTF-8'; or "
                    "`iconv -f UTF-16 -t UTF-8`)."
                )
            raise DatasetFormatError(
                f"{path}: a binary file (an archive?) where a text {kind} label file was expected."
            )


def _utf16_without_bom(head: bytes) -> bool:
    """Plain text with a zero byte beside every character: UTF-16 (LE or BE) that lost its byte-order mark."""
    head = head[: len(head) // 2 * 2]
    for text, zeros in ((head[0::2], head[1::2]), (head[1::2], head[0::2])):
        if zeros and not any(zeros) and all(32 <= b < 127 or b in (9, 10, 13) for b in text):
            return True
    return False


def read_csv(path: Path, required: Sequence[str], info_name: str) -> pd.DataFrame:
    """A CSV with every cell as a string, plus a '_line' column (1-based line number in the file)."""
    sniff(path, "csv")
    df = parse_csv(path)
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DatasetFormatError(
            f"{path}: missing column(s) {missing}; found {list(df.columns)}. Is this the official {info_name} "
            "label file?"
        )
    df["_line"] = line_numbers(path, len(df))
    return df


def line_numbers(path: Path, n_rows: int) -> np.ndarray:
    """The file line (1-based) of each of the `n_rows` data rows pandas read from a CSV with one header line.

    pandas skips blank (and space-only) lines, so counting rows from line 2 would name the wrong line after one;
    they are skipped here too. A file whose rows do not map one to a line (a quoted line break) falls back to
    one row per line."""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
        filled = [k for k, line in enumerate(handle, 1) if line.strip(" \r\n")]
    return np.array(filled[1:]) if len(filled) == n_rows + 1 else np.arange(n_rows) + 2


def parse_csv(path: Path, sep: str = ",") -> pd.DataFrame:
    """Every cell as a string; a file with no header line or an undecodable one is a `DatasetFormatError`."""
    try:
        return pd.read_csv(
            path, sep=sep, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig"
        )
    except pd.errors.EmptyDataError as exc:
        raise DatasetFormatError(f"{path}: no header line (the file is blank); re-download it.") from exc
    except UnicodeDecodeError as exc:
        raise DatasetFormatError(
            f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8 (in a spreadsheet program: "
            "'CSV UTF-8')."
        ) from exc
    except (pd.errors.ParserError, ValueError) as exc:
        raise DatasetFormatError(f"{path}: cannot parse as CSV ({exc}); fix the line it names.") from exc


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


MAT_HEADER = 128  # text (116), subsystem offset (8), version (2), endian indicator (2)
MAT_TIMEOUT = 60.0  # seconds the child parser may take
MAT_CHILD = Path(__file__).with_name("_matchild.py")


def read_mat(path: Path, *, numbers: Sequence[str] = (), strings: Sequence[str] = ()) -> dict:
    """Variables of a MATLAB v5 file: `numbers` as flat float64 arrays, `strings` as lists of str.

    The header and the size of every top-level element are checked here; scipy's `loadmat` then parses in a
    child process (`_matchild`), so a file that crashes the parser is reported as damaged instead of killing
    this process. Nothing in the file is executed.
    """
    sniff(path, "mat")
    check_mat_layout(path)
    wanted = [f"numbers:{v}" for v in numbers] + [f"strings:{v}" for v in strings]
    child = [sys.executable, "-I", str(MAT_CHILD), str(path), *wanted]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    try:
        done = subprocess.run(child, capture_output=True, timeout=MAT_TIMEOUT, env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DatasetFormatError(
            f"{path}: parsing took over {MAT_TIMEOUT:g} s; the file is damaged. Re-download it."
        ) from exc
    if done.returncode < 0:
        raise DatasetFormatError(
            f"{path}: the file is damaged (the MATLAB parser crashed with {_signal_name(-done.returncode)}); "
            "re-download it."
        )
    try:
        result = json.loads(done.stdout)
    except json.JSONDecodeError:
        result = {"error": f"the parser exited with status {done.returncode}"}
    if "error" in result:
        raise DatasetFormatError(f"{path}: cannot read as a MATLAB file ({result['error']}); re-download it.")
    return {
        name: np.asarray(value, dtype=np.float64) if name in numbers else value
        for name, value in result["values"].items()
    }


def check_mat_layout(path: Path) -> None:
    """The cheap checks: a v5 header, then top-level elements whose declared sizes fit inside the file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(MAT_HEADER)
        if len(head) < MAT_HEADER or not head.startswith(b"MATLAB 5.0 MAT-file"):
            raise DatasetFormatError(
                f"{path}: not a MATLAB v5 file (no 'MATLAB 5.0 MAT-file' header); re-download it."
            )
        order = {b"IM": "<", b"MI": ">"}.get(head[126:128])
        if order is None or struct.unpack(order + "H", head[124:126])[0] != 0x0100:
            raise DatasetFormatError(
                f"{path}: the MATLAB header is damaged (version/byte order); re-download it."
            )
        pos = MAT_HEADER
        while pos < size:
            tag = f.read(8)
            if len(tag) < 8:
                raise DatasetFormatError(
                    f"{path}: the file ends inside an element at byte {pos}; re-download it."
                )
            kind, nbytes = struct.unpack(order + "II", tag)
            if kind not in (14, 15) or nbytes > size - pos - 8:  # miMATRIX, miCOMPRESSED
                raise DatasetFormatError(
                    f"{path}: the file is damaged at byte {pos} (element of type {kind}, {nbytes} bytes, in a "
                    f"file of {size}); re-download it."
                )
            pos += 8 + nbytes + (-nbytes % 8 if kind == 14 else 0)
            f.seek(pos)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


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

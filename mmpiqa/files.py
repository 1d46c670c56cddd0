"""Atomic file writes: a reader never sees a half-written file, an interrupted writer leaves the old one.

Files get the permissions of any other file the user creates (0666 less the umask), not tempfile's 0600. A write
that fails for a reason the user can fix (disk full, read-only folder, no permission) raises `WriteError`
naming the path.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmpiqa.errors import InputError

# errors of the place written to, not of the program: say which path and what to do about it
_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space, or choose another output folder (--out)",
    errno.EDQUOT: "the disk quota is used up: free some space, or choose another output folder (--out)",
    errno.EROFS: "choose an output folder you can write to (--out)",
    errno.EACCES: "choose an output folder you can write to (--out)",
    errno.EPERM: "choose an output folder you can write to (--out)",
    errno.ENOTDIR: "a part of that path is a file, not a folder: choose another output folder (--out)",
    errno.EEXIST: "a part of that path is a file, not a folder: choose another output folder (--out)",
}


class WriteError(InputError, OSError):
    """An output file could not be written; the message names the path and the fix."""


def writing(path: Path, error: OSError) -> OSError:
    """`error` as a `WriteError` naming `path` when the user can fix it, else unchanged."""
    if error.errno not in _ADVICE:
        return error
    return WriteError(f"cannot write {path}: {error.strerror or error}; {_ADVICE[error.errno]}.")


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` on a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    tmp_path = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: never follow or reuse someone else's file; mode 0o666 lets the kernel apply the umask
        os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        write(tmp_path)
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            tmp_path.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise writing(path, error) from error
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")

"""Shared parts of the readers: the error type and finding files in a release (case-insensitively)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from mmpiqa.data.info import DatasetInfo
from mmpiqa.errors import InputError, not_a_file


class DatasetFormatError(InputError, ValueError):
    """The files under --root are not the dataset's official release layout, or they are damaged."""


# ---------------------------------------------------------------------------------------------- locating files


class CaseIndex:
    """Find files below `base` by relative path, exact case first, then case-insensitively.

    Directory listings are cached, so resolving ten thousand names costs one listing per folder.
    """

    def __init__(self, base: Path):
        self.base = Path(base)
        self._listing: dict[Path, tuple[set[str], dict[str, str]]] = {}

    def _names(self, folder: Path) -> tuple[set[str], dict[str, str]]:
        if folder not in self._listing:
            try:
                names = os.listdir(folder)
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                names = []
            lower: dict[str, str] = {}
            for n in sorted(names):  # deterministic choice if two names differ only in case
                lower.setdefault(n.lower(), n)
            self._listing[folder] = (set(names), lower)
        return self._listing[folder]

    def find(self, rel: str) -> Path | None:
        folder = self.base
        parts = [p for p in rel.replace("\\", "/").split("/") if p not in ("", ".")]
        if ".." in parts:  # never look outside the root (`finish` refuses such names with their line)
            return None
        for part in parts:
            exact, lower = self._names(folder)
            actual = part if part in exact else lower.get(part.lower())
            if actual is None:
                return None
            folder = folder / actual
        return folder

    def find_any(self, rels: Iterable[str]) -> Path | None:
        for rel in rels:
            hit = self.find(rel)
            if hit is not None:
                return hit
        return None


def locate_root(root: str | os.PathLike, info: DatasetInfo, markers: Sequence[str]) -> Path:
    """The folder holding the dataset's label file: `root` itself or its one sub-folder that has it.

    Unzipping often adds one level (``kadid10k/kadid10k/dmos.csv``), so both the unpacked folder and its parent
    are accepted. `markers` are relative paths of the label file, matched case-insensitively.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetFormatError(
            f"{info.name}: --root {root} does not exist. Point it at the unpacked {info.title} download "
            f"({info.url})."
        )
    if not root.is_dir():
        raise DatasetFormatError(
            f"{info.name}: --root {root} is a file; point it at the folder of the unpacked download."
        )
    if CaseIndex(root).find_any(markers) is not None:
        return root
    hits = [d for d in sorted(root.iterdir()) if d.is_dir() and CaseIndex(d).find_any(markers) is not None]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise DatasetFormatError(
            f"{info.name}: several sub-folders of {root} hold {markers[0]}: {[h.name for h in hits]}. "
            "Point --root at the one you mean."
        )
    raise DatasetFormatError(
        f"{info.name}: label file {markers[0]!r} not found in {root} or its sub-folders. The official "
        f"{info.title} release has it here:\n{info.layout}\nDownload: {info.url}"
    )


def need_file(index: CaseIndex, rels: Sequence[str], info: DatasetInfo, what: str) -> Path:
    hit = index.find_any(rels)
    problem = not_a_file(hit) if hit is not None else None
    if problem and problem != "does not exist":
        raise DatasetFormatError(f"{hit}: the {what} {problem}; put the file of the official release there.")
    if hit is None or problem:
        raise DatasetFormatError(
            f"{info.name}: {what} {rels[0]!r} not found under {index.base}. The official release layout "
            f"is:\n{info.layout}\nDownload: {info.url}"
        )
    return hit


def path_of(idx: CaseIndex, rel: str) -> str:
    """The file on disk for `rel` (case-insensitive), else the expected path (reported as missing later)."""
    hit = idx.find(rel)
    return str(hit if hit is not None else idx.base / rel)

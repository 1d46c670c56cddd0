"""One reader per IQA dataset, each taking the unpacked official download and returning the uniform table.

    >>> from mmpiqa.data.readers import read_dataset
    >>> table = read_dataset("kadid10k", "~/data/kadid10k")        # doctest: +SKIP

Readers never rename or convert files: point `root` at the folder as unpacked (or at its parent when the
archive added one level). Missing labels, missing images, bad scores and duplicate names raise
`DatasetFormatError` naming the file, the line and the fix; ``skip_unreadable=True`` drops missing (and, with
``check_images=True``, undecodable) images instead, with a warning and the list in ``table.attrs['skipped']``.

``table.attrs`` also holds ``root`` (the folder actually read), ``label_files`` and ``mos_norm_range`` (the
range used to rescale `mos_raw` to `mos`).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable

import pandas as pd

from mmpiqa.config import ConfigError
from mmpiqa.data.info import DATASETS, DatasetInfo
from mmpiqa.data.readers._common import DatasetFormatError
from mmpiqa.data.readers._finish import apply_file_policy
from mmpiqa.data.readers.authentic import read_agiqa3k, read_clive, read_koniq10k, read_spaq
from mmpiqa.data.readers.metacsv import read_metacsv
from mmpiqa.data.readers.synthetic import read_csiq, read_kadid10k, read_live, read_tid2013

__all__ = [
    "DATASETS",
    "READERS",
    "DatasetFormatError",
    "DatasetInfo",
    "option_names",
    "read_agiqa3k",
    "read_clive",
    "read_csiq",
    "read_dataset",
    "read_embedded_checked",
    "read_kadid10k",
    "read_koniq10k",
    "read_live",
    "read_metacsv",
    "read_spaq",
    "read_tid2013",
    "reader_key",
]


def read_embedded_checked(
    root: str | os.PathLike | None = None,
    *,
    skip_unreadable: bool = False,
    check_images: bool = False,
    **options,
) -> pd.DataFrame:
    """The embedded synthetic benchmark, built by `mmpiqa.data.embedded.read_embedded` (imported lazily).

    The same file policy as the other readers is applied to the table it returns.
    """
    try:
        from mmpiqa.data.embedded import read_embedded
    except ImportError as exc:  # pragma: no cover - the module ships with the package
        raise DatasetFormatError(f"embedded: mmpiqa.data.embedded is not available ({exc}).") from exc
    table = read_embedded(root, **options)
    info = DATASETS["embedded"]
    attrs = dict(table.attrs)
    build = table.attrs["root"]  # the build folder read_embedded read
    kept, skipped = apply_file_policy(
        table,
        info,
        root=build,
        label="the embedded labels",
        skip_unreadable=skip_unreadable,
        check_images=check_images,
        fix=f"Fix: this build of the embedded benchmark is damaged; delete {build} and the next run builds it "
        "again.",
    )
    kept = kept.reset_index(drop=True)
    kept.attrs.update(attrs, skipped=skipped)
    return kept


READERS: dict[str, Callable[..., pd.DataFrame]] = {
    "koniq10k": read_koniq10k,
    "kadid10k": read_kadid10k,
    "live": read_live,
    "csiq": read_csiq,
    "tid2013": read_tid2013,
    "clive": read_clive,
    "spaq": read_spaq,
    "agiqa3k": read_agiqa3k,
    "metacsv": read_metacsv,
    "embedded": read_embedded_checked,
}


def read_dataset(
    name: str,
    root: str | os.PathLike | None,
    *,
    skip_unreadable: bool = False,
    check_images: bool = False,
    **options,
) -> pd.DataFrame:
    """Read dataset `name` (a key of `DATASETS`) from `root`; `options` go to that dataset's reader.

    Options: koniq10k ``images_dir``; live ``include_originals``, ``realigned``; clive ``include_training``;
    metacsv ``csv``, ``image_root``, ``name_col``, ``mos_col``, ``mos_range``, ``higher_is_better``.
    """
    key = reader_key(name)
    if root is None and key != "embedded":
        raise DatasetFormatError(f"{key}: give the folder of the unpacked download (--root PATH).")
    known = option_names(key)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(
            f"{key}: no reader option {', '.join(map(repr, unknown))} (data.reader_options in a run config); "
            f"its options are {', '.join(known) or 'none'}."
        )
    return READERS[key](root, skip_unreadable=skip_unreadable, check_images=check_images, **options)


def reader_key(name: str) -> str:
    """The `READERS` key of dataset `name`, in any case, with or without dashes, or by a short alias."""
    key = name.lower().replace("-", "").replace("_", "")
    aliases = {
        "koniq": "koniq10k",
        "kadid": "kadid10k",
        "tid": "tid2013",
        "livec": "clive",
        "agiqa": "agiqa3k",
    }
    key = aliases.get(key, key)
    if key not in READERS:
        raise DatasetFormatError(f"unknown dataset {name!r}; choose one of {sorted(READERS)}.")
    return key


def option_names(name: str) -> tuple[str, ...]:
    """The keyword options of dataset `name`'s reader, besides ``root``, ``skip_unreadable``, ``check_images``."""
    key = reader_key(name)
    reader = READERS[key]
    if key == "embedded":
        from mmpiqa.data.embedded import read_embedded as reader
    own = ("root", "skip_unreadable", "check_images")
    return tuple(p for p in inspect.signature(reader).parameters if p not in own)

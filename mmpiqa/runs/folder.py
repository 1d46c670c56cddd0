"""The layout of a run folder, in one place: every module that writes or reads one goes through `RunFolder`.

    <out>/<name>-<key>/
        config.json           the RunConfig (what papermill, --set and sweep grids fill in)
        splits.json           exactly which images were train / val / test in each split
        skipped.json          only with data.skip_unreadable: the unreadable images left out, and why
        log.txt               what happened, with the backbone and data the numbers come from
        error.txt             only in a sweep: the traceback of the point's last failed attempt
        probe.json            only for a linear probe: its features and penalties
        split-00/             prompts.safetensors (best on val), last.safetensors (resume) -- written by the
                              trainer into the folder it is handed, so their names live in mmpiqa.train.trainer --
                              probe.safetensors (a linear probe's fit), predictions.csv (test part),
                              metrics.json (val at the selected epoch, test, history)
        metrics.json          per split and summary (median, mean ± std, bootstrap CI) for val and test

A folder (or split folder) with its `metrics.json` is complete: it is read back, never run again. The name is a
label and the key the config: a run asked for under a new name whose key has a complete folder is a copy of it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from mmpiqa.config import RunConfig
from mmpiqa.errors import MissingFileError
from mmpiqa.files import atomic_write_json
from mmpiqa.model.checkpoint import read_json
from mmpiqa.train.trainer import BEST_FILE, STATE_FILE


@dataclass(frozen=True)
class _Folder:
    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))  # a str is accepted where a folder is given

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.json"

    def is_complete(self) -> bool:
        return self.metrics_file.is_file()

    def read_metrics(self) -> dict:
        return read_json(self.metrics_file)


@dataclass(frozen=True)
class SplitFolder(_Folder):
    """``split-NN/`` of a run: one split's fit, predictions and metrics."""

    @property
    def prompts_file(self) -> Path:
        return self.path / BEST_FILE

    @property
    def state_file(self) -> Path:
        return self.path / STATE_FILE

    @property
    def predictions_file(self) -> Path:
        return self.path / "predictions.csv"

    @property
    def probe_file(self) -> Path:
        return self.path / "probe.safetensors"


@dataclass(frozen=True)
class RunFolder(_Folder):
    """One run's folder: ``<out>/<name>-<key>``."""

    @classmethod
    def named(cls, out: str | Path, name: str, key: str) -> RunFolder:
        return cls(Path(out) / f"{name}-{key}")

    @property
    def config_file(self) -> Path:
        return self.path / "config.json"

    @property
    def splits_file(self) -> Path:
        return self.path / "splits.json"

    @property
    def skipped_file(self) -> Path:
        return self.path / "skipped.json"

    @property
    def log_file(self) -> Path:
        return self.path / "log.txt"

    @property
    def error_file(self) -> Path:
        return self.path / "error.txt"

    @property
    def probe_settings_file(self) -> Path:
        return self.path / "probe.json"

    def split(self, index: int) -> SplitFolder:
        return SplitFolder(self.path / f"split-{index:02d}")

    def split_folders(self) -> list[SplitFolder]:
        """The split folders present, in split order."""
        return [SplitFolder(p) for p in sorted(self.path.glob("split-*"))]

    @classmethod
    def complete_twin(cls, out: str | Path, key: str) -> RunFolder | None:
        """A complete run folder in `out` with this key, under any name (chapters name one run differently: chapter
        05's dual-branch xattn arm is chapter 04's all-blocks arm)."""
        for path in sorted(Path(out).glob(f"*-{key}")):
            found = cls(path)
            if found.is_complete() and found.read_metrics().get("key") == key:
                return found
        return None

    def copy_as(self, target: RunFolder, config: RunConfig) -> None:
        """This complete run as `target`, the same run under `config.name` (config.json and metrics.json carry the
        new name). Made beside `target` and renamed into place, so a half-made copy is never taken for a run
        (another process that made it first wins)."""
        scratch = target.path.with_name(f".{target.path.name}.{os.getpid()}.copy")
        shutil.copytree(self.path, scratch)
        copy = RunFolder(scratch)
        config.save(copy.config_file)
        atomic_write_json(copy.metrics_file, {**self.read_metrics(), "name": config.name})
        try:
            scratch.rename(target.path)
        except OSError:  # made meanwhile by another process
            shutil.rmtree(scratch, ignore_errors=True)

    def read_config(self) -> RunConfig:
        """The RunConfig of the run; a folder without one is named as not being a run folder."""
        if not self.config_file.exists():
            raise MissingFileError(
                f"{self.path} has no config.json: give a run folder (made by `mmpiqa train`)."
            )
        return RunConfig.load(self.config_file)

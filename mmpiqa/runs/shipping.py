"""Shipping a finished pretraining run into the package: `mmpiqa pretrain --ship STEM`.

The package's offline weights (`mmpiqa/weights/<stem>.*`) are exactly what a run exported: its fp16 weights, its
provenance (with their checksum) and its loss history. A stem is shipped only where an offline tag loads it
(`mmpiqa.config.OFFLINE_TAGS`) and only from a run of that tag's backbone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mmpiqa.config import OFFLINE_TAGS, ConfigError
from mmpiqa.errors import MissingFileError
from mmpiqa.files import atomic_write, atomic_write_text
from mmpiqa.model import backbone
from mmpiqa.model.checkpoint import CheckpointError, read_json
from mmpiqa.train.pretrain import PROVENANCE_FILE, WEIGHTS_FILE, PretrainConfig

HISTORY_COLUMNS = (
    "step",
    "lr",
    "seconds",
    "contrastive",
    "bank_quality",
    "bank_group",
    "retrieval_acc",
    "quality_corr",
)


def check_target(stem: str, recipe: PretrainConfig) -> None:
    """Refuse, before any training, a stem no offline tag loads or a recipe of another backbone than the tag's."""
    tags = {s: name for (name, _), s in OFFLINE_TAGS.items()}
    if stem not in tags:
        raise ConfigError(
            f"--ship {stem!r}: no offline tag loads that file; ship as one of {sorted(tags)} "
            "(a new tag is added to mmpiqa.config.OFFLINE_TAGS first)"
        )
    if recipe.backbone != tags[stem]:
        raise ConfigError(
            f"--ship {stem}: the tag loads a '{tags[stem]}' CLIP and this recipe trains '{recipe.backbone}'"
        )


def ship(folder: str | Path, stem: str, weights_dir: Path | None = None) -> Path:
    """Copy a finished run's weights, provenance and loss history into the package (`mmpiqa/weights/<stem>.*`),
    where its offline tag finds them. Everything is read and checked before the first file is written."""
    folder, target = Path(folder), weights_dir or backbone.WEIGHTS_DIR
    if not (folder / PROVENANCE_FILE).is_file():
        raise MissingFileError(
            f"{folder} holds no exported weights: run `mmpiqa pretrain` to its last step first"
        )
    provenance = read_json(folder / PROVENANCE_FILE)
    provenance = provenance if isinstance(provenance, dict) else {}
    recipe = PretrainConfig.from_dict(provenance.get("recipe"), where=f"{folder / PROVENANCE_FILE}: recipe")
    check_target(stem, recipe)
    if provenance.get("sha256") != backbone.file_sha256(folder / WEIGHTS_FILE):
        raise CheckpointError(
            f"{folder / WEIGHTS_FILE}: its checksum is not the one in {PROVENANCE_FILE}; nothing was shipped. "
            f"Remake the run (delete {folder} and run the recipe again)"
        )
    history = read_json(folder / "history.json")
    try:
        rows = [",".join(f"{h[c]:.5g}" for c in HISTORY_COLUMNS) for h in history]
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{folder / 'history.json'}: not the loss history of a finished run ({type(error).__name__}: "
            f"{error}); nothing was shipped"
        ) from error
    # each file lands whole (a copy beside it, then a rename); the weights go first, so an interrupted ship is
    # caught by the checksum check when the tag is loaded
    for source, name in ((WEIGHTS_FILE, f"{stem}.safetensors"), (PROVENANCE_FILE, f"{stem}.json")):
        atomic_write(target / name, lambda tmp, source=source: shutil.copyfile(folder / source, tmp))
    atomic_write_text(target / f"{stem}-history.csv", "\n".join([",".join(HISTORY_COLUMNS), *rows]) + "\n")
    return target / f"{stem}.safetensors"

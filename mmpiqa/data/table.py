"""The uniform table every dataset reader returns.

One row per image. Readers fill what their dataset defines and leave the rest empty, so training and
evaluation code never needs to know which dataset a row came from.
"""

from __future__ import annotations

import pandas as pd

from mmpiqa.labels import DISTORTION_GROUPS, SCENE_CLASSES

__all__ = ["COLUMNS", "DISTORTION_GROUPS", "SCENE_CLASSES", "validate_table"]

# column -> meaning (dtype). Kept as data so `validate_table` and the data cards share one source.
COLUMNS: dict[str, str] = {
    "dataset": "dataset name as used on the command line, e.g. 'koniq10k' (str)",
    "name": "image path relative to the dataset root, '/'-separated: the stable id used in split files (str)",
    "image": "absolute path of the image file (str)",
    "mos_raw": "the score exactly as published: MOS or DMOS on the dataset's own scale (float)",
    "mos": "the score rescaled to [0, 1] with higher = better quality; DMOS is flipped (float)",
    "ref": "reference content id; for authentic datasets the image's own name (str)",
    "dist_type": "the dataset's own distortion name, '' when not defined (str)",
    "dist_group": "one of DISTORTION_GROUPS, '' when unknown (str)",
    "dist_level": "distortion level as the dataset numbers it, -1 when not defined (int)",
    "scenes": "'|'-joined names from SCENE_CLASSES, '' when unknown (str)",
    "split": "the dataset's official split: 'train', 'val', 'test' or '' when it has none (str)",
}


def validate_table(table: pd.DataFrame, source: str = "table") -> pd.DataFrame:
    """Check a reader's output against the schema; return it with columns in canonical order.

    Raises ValueError naming `source` and what is wrong, so a broken reader fails where it is written.
    """
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(
            f"{source}: missing columns {missing}; every reader must fill all of {list(COLUMNS)}"
        )
    bad_mos = table["mos"].isna() | (table["mos"] < 0) | (table["mos"] > 1)
    if bad_mos.any():
        row = int(bad_mos.to_numpy().nonzero()[0][0])
        raise ValueError(
            f"{source}: normalised 'mos' must lie in [0, 1]; row {row} has {table['mos'].iloc[row]!r}"
        )
    unknown = set(table["dist_group"]) - {*DISTORTION_GROUPS, ""}
    if unknown:
        raise ValueError(f"{source}: unknown dist_group {sorted(unknown)}; use one of {DISTORTION_GROUPS}")
    scenes = {s for cell in table["scenes"] for s in str(cell).split("|") if s}
    if scenes - set(SCENE_CLASSES):
        raise ValueError(
            f"{source}: unknown scene {sorted(scenes - set(SCENE_CLASSES))}; use one of {SCENE_CLASSES}"
        )
    dupes = table["image"].duplicated()
    if dupes.any():
        raise ValueError(f"{source}: image listed twice: {table['image'][dupes].iloc[0]}")
    return table[list(COLUMNS)].reset_index(drop=True)

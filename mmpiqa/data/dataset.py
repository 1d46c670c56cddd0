"""A torch ``Dataset`` over a uniform table, a list of names and a crop policy.

Each item is a dict of tensors that the default ``DataLoader`` collate stacks as is:

=============  ======================  =============================================================================
key            shape / dtype           meaning
=============  ======================  =============================================================================
``image``      (n, 3, S, S) float32    the crops of `mmpiqa.data.crops.crop`, RGB in [0, 1]
``mos``        () float32              normalised MOS in [0, 1], higher = better
``index``      () int64                position of the item in ``dataset.names`` (map predictions back with it)
``dataset``    () int64                index into ``dataset.dataset_ids``
``distortion`` () int64                index into ``distortion_classes`` or -1 (unknown / not in the classes)
``scenes``     (len(scene_classes),)   multi-hot float32 over ``scene_classes``; all zeros when unknown
=============  ======================  =============================================================================

plus ``name`` (a str; the collate makes it a list). The label keys (``mos``, ``dataset``, ``distortion``,
``scenes``) are `mmpiqa.labels.BATCH_KEYS`, the keys the training loss reads.

Random crops are deterministic: item ``i`` in epoch ``e`` draws from a generator seeded with (seed, epoch, i), so
the crops do not depend on worker count, batch order or how many items were read before. Call ``set_epoch`` (or
``loader.dataset.set_epoch``) at the start of every epoch.

Images are decoded with `mmpiqa.data.images.load_image` (uint8 for 8-bit sources; the crops are cut from it and
only they are converted to float) and kept in memory as uint8 (full image, before cropping) until ``cache_mb``
megabytes are used; the rest are read from disk each time. Only uint8 images are cached (16-bit sources are
re-read instead), so cached and uncached items are bit-identical. A dataset read once (an evaluation) gains
nothing from the cache: give it ``cache_mb=0``. With
``DataLoader(num_workers>0)`` each worker fills its own cache; call `preload` first to fill it once in the parent
(forked workers then share it).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, default_collate

from mmpiqa.data.crops import CropPolicy, crop
from mmpiqa.data.images import load_image, to_unit_float
from mmpiqa.data.table import DISTORTION_GROUPS, SCENE_CLASSES
from mmpiqa.labels import BATCH_KEYS

__all__ = ["IQADataset", "collate"]


class IQADataset(Dataset):
    """Items of ``table`` listed in ``names`` (default: all rows), cropped by ``policy``."""

    def __init__(
        self,
        table: pd.DataFrame,
        names: Sequence[str] | None = None,
        policy: CropPolicy | None = None,
        *,
        distortion_classes: Sequence[str] = DISTORTION_GROUPS,
        distortion_column: str = "dist_group",
        scene_classes: Sequence[str] = SCENE_CLASSES,
        dataset_ids: Sequence[str] | None = None,
        seed: int = 0,
        cache_mb: float = 1024.0,
    ) -> None:
        self.policy = policy or CropPolicy("center", 224, 1)
        by_name = table.assign(name=table["name"].astype(str)).drop_duplicates("name", keep=False)
        if len(by_name) != len(table):
            raise ValueError("table names must be unique: a name identifies an image in split files")
        by_name = by_name.set_index("name")
        names = list(by_name.index) if names is None else [str(n) for n in names]
        if len(set(names)) != len(names):
            raise ValueError("names lists an image twice")
        missing = [n for n in names if n not in by_name.index]
        if missing:
            raise KeyError(f"{len(missing)} names are not in the table, e.g. {missing[0]!r}")
        rows = by_name.loc[names]
        self.names: tuple[str, ...] = tuple(names)
        self.paths: tuple[str, ...] = tuple(rows["image"].astype(str))
        self.mos = torch.tensor(rows["mos"].to_numpy(dtype=np.float64), dtype=torch.float32)
        if torch.isnan(self.mos).any() or (self.mos < 0).any() or (self.mos > 1).any():
            raise ValueError("every item needs a normalised mos in [0, 1]")

        self.dataset_ids: tuple[str, ...] = (
            tuple(dataset_ids) if dataset_ids is not None else tuple(sorted(set(rows["dataset"].astype(str))))
        )
        ds_index = {d: i for i, d in enumerate(self.dataset_ids)}
        unknown_ds = sorted(set(rows["dataset"].astype(str)) - ds_index.keys())
        if unknown_ds:
            raise ValueError(f"datasets {unknown_ds} are not in dataset_ids {self.dataset_ids}")
        self.dataset_index = torch.tensor(
            [ds_index[d] for d in rows["dataset"].astype(str)], dtype=torch.int64
        )

        self.distortion_classes = tuple(distortion_classes)
        d_index = {d: i for i, d in enumerate(self.distortion_classes)}
        values = (
            rows[distortion_column].fillna("").astype(str) if distortion_column in rows else [""] * len(rows)
        )
        self.distortion = torch.tensor([d_index.get(v, -1) for v in values], dtype=torch.int64)

        self.scene_classes = tuple(scene_classes)
        s_index = {s: i for i, s in enumerate(self.scene_classes)}
        scenes = torch.zeros(len(rows), len(self.scene_classes), dtype=torch.float32)
        cells = rows["scenes"].fillna("").astype(str) if "scenes" in rows else [""] * len(rows)
        for r, cell in enumerate(cells):
            for s in cell.split("|"):
                if s in s_index:
                    scenes[r, s_index[s]] = 1.0
        self.scenes = scenes

        self.seed = int(seed)
        self.epoch = 0
        self.cache_bytes = int(cache_mb * 2**20)
        self._cache: dict[int, torch.Tensor] = {}
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.names)

    def set_epoch(self, epoch: int) -> None:
        """Choose the random crops of ``epoch`` (deterministic policies ignore it)."""
        self.epoch = int(epoch)

    def generator(self, index: int) -> torch.Generator:
        """The generator of item ``index`` in the current epoch."""
        key = zlib.crc32(f"{self.seed}/{self.epoch}/{index}".encode())
        return torch.Generator().manual_seed(key)

    def image(self, index: int) -> torch.Tensor:
        """The full image of item ``index`` as float32 (3, H, W) in [0, 1], from the cache when there."""
        return to_unit_float(self._decoded(index))

    def _decoded(self, index: int) -> torch.Tensor:
        """`load_image` of item ``index`` (uint8, or float32 for wide sources), from the cache when there."""
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        img = load_image(self.paths[index])
        if img.dtype == torch.uint8 and self._cached_bytes + img.numel() <= self.cache_bytes:
            self._cache[index] = img
            self._cached_bytes += img.numel()
        return img

    def preload(self, progress: bool = False) -> int:
        """Decode images into the cache until it is full; returns how many are cached."""
        from tqdm.auto import tqdm

        for i in tqdm(range(len(self)), desc="loading images", disable=not progress):
            if self._cached_bytes >= self.cache_bytes:
                break
            if i not in self._cache:
                self._decoded(i)
        return len(self._cache)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        gen = None if self.policy.deterministic else self.generator(index)
        return {
            "image": crop(self._decoded(index), self.policy, gen),
            BATCH_KEYS["mos"]: self.mos[index],  # the labels under the keys the training loss reads
            "index": torch.tensor(index, dtype=torch.int64),
            BATCH_KEYS["group"]: self.dataset_index[index],
            BATCH_KEYS["distortion"]: self.distortion[index],
            BATCH_KEYS["scene"]: self.scenes[index],
            "name": self.names[index],
        }


def collate(items: list[dict]) -> dict:
    """The default collate, spelled out: tensors stacked (``image`` -> (B, n, 3, S, S)), names as a list."""
    return default_collate(items)

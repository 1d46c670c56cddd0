"""IQADataset: item contents, label indices, deterministic crops, the uint8 cache, DataLoader collate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from mmpiqa.data.crops import CropPolicy
from mmpiqa.data.dataset import IQADataset, collate
from mmpiqa.data.table import DISTORTION_GROUPS, SCENE_CLASSES
from mmpiqa.labels import BATCH_KEYS
from mmpiqa.train.losses import LossWeights, distortion_loss, fidelity_loss, scene_loss, total_loss


@pytest.fixture
def table(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    groups = ["blur", "noise", "", "JPEG", "made-up", "blur"]
    scenes = ["animal", "human|indoor scene", "", "others", "unknown-scene", "plant"]
    for i in range(6):
        h, w = (48, 64) if i % 2 else (70, 40)
        arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        path = tmp_path / f"img{i}.png"
        Image.fromarray(arr).save(path)
        rows.append(
            dict(
                dataset="b" if i < 4 else "a",
                name=f"img{i}.png",
                image=str(path),
                mos_raw=i * 10.0,
                mos=i / 5,
                ref=f"img{i}.png",
                dist_type="",
                dist_group=groups[i],
                dist_level=-1,
                scenes=scenes[i],
                split="",
            )
        )
    return pd.DataFrame(rows)


def test_item_contents(table):
    ds = IQADataset(table, policy=CropPolicy("center", 32))
    assert len(ds) == 6 and ds.dataset_ids == ("a", "b")
    item = ds[1]
    assert item["image"].shape == (1, 3, 32, 32) and item["image"].dtype == torch.float32
    assert 0 <= item["image"].min() and item["image"].max() <= 1
    assert item["mos"].item() == pytest.approx(0.2)
    assert item["index"].item() == 1 and item["dataset"].item() == 1 and item["name"] == "img1.png"
    assert item["distortion"].item() == DISTORTION_GROUPS.index("noise")
    expected = torch.zeros(len(SCENE_CLASSES))
    expected[[SCENE_CLASSES.index("human"), SCENE_CLASSES.index("indoor scene")]] = 1
    assert torch.equal(item["scenes"], expected)
    assert ds[2]["distortion"].item() == -1 and ds[4]["distortion"].item() == -1  # '' and unknown
    assert ds[2]["scenes"].sum() == 0 and ds[4]["scenes"].sum() == 0


def test_names_subset_order_and_custom_classes(table):
    ds = IQADataset(
        table,
        names=["img5.png", "img0.png"],
        policy=CropPolicy("center", 16),
        distortion_classes=("noise", "blur"),
        scene_classes=("plant", "animal"),
    )
    assert ds.names == ("img5.png", "img0.png")
    assert ds[0]["distortion"].item() == 1 and torch.equal(ds[0]["scenes"], torch.tensor([1.0, 0.0]))
    assert torch.equal(ds[1]["scenes"], torch.tensor([0.0, 1.0]))
    with pytest.raises(KeyError, match="not in the table"):
        IQADataset(table, names=["nope.png"])


def test_pixels_match_the_file(table):
    ds = IQADataset(table, policy=CropPolicy("center", 40))
    full = np.asarray(Image.open(table["image"][0]), dtype=np.float32) / 255.0  # 70 x 40
    crop = ds[0]["image"][0].permute(1, 2, 0).numpy()
    assert np.array_equal(crop, full[15:55, 0:40])


def test_random_crops_depend_on_seed_and_epoch_only(table):
    pol = CropPolicy("random", 24, n=3)
    a, b = IQADataset(table, policy=pol, seed=1), IQADataset(table, policy=pol, seed=1)
    b[3]  # reading other items first must not change item 0
    assert torch.equal(a[0]["image"], b[0]["image"])
    first = a[0]["image"]
    a.set_epoch(1)
    assert not torch.equal(first, a[0]["image"])
    a.set_epoch(0)
    assert torch.equal(first, a[0]["image"])
    assert not torch.equal(first, IQADataset(table, policy=pol, seed=2)[0]["image"])


def test_uint8_cache_is_exact_and_bounded(table, monkeypatch):
    ds = IQADataset(table, policy=CropPolicy("center", 32))
    assert ds.preload() == 6
    cold = IQADataset(table, policy=CropPolicy("center", 32), cache_mb=0)
    calls = []
    import mmpiqa.data.dataset as mod

    monkeypatch.setattr(mod, "load_image", lambda p: calls.append(p) or pytest.fail("cache miss"))
    for i in range(6):
        assert ds[i]["image"].dtype == torch.float32
    monkeypatch.undo()
    for i in range(6):
        assert torch.equal(ds[i]["image"], cold[i]["image"])
    assert cold.preload() == 0 and not calls
    small = IQADataset(table, policy=CropPolicy("center", 32), cache_mb=2 * 70 * 40 * 3 / 2**20)
    assert small.preload() == 2


def test_dataloader_default_collate(table):
    ds = IQADataset(table, policy=CropPolicy("grid", 16, n=4))
    batch = next(iter(DataLoader(ds, batch_size=4, shuffle=False)))
    assert batch["image"].shape == (4, 4, 3, 16, 16)
    assert batch["mos"].shape == (4,) and batch["mos"].dtype == torch.float32
    assert batch["index"].tolist() == [0, 1, 2, 3]
    assert batch["scenes"].shape == (4, len(SCENE_CLASSES))
    assert batch["name"] == ["img0.png", "img1.png", "img2.png", "img3.png"]
    again = next(iter(DataLoader(ds, batch_size=4, collate_fn=collate)))
    assert torch.equal(again["image"], batch["image"])


def test_a_batch_carries_every_label_the_training_loss_reads(table):
    """The dataset writes its labels under `BATCH_KEYS`, so a batch goes to `total_loss` as it comes."""
    batch = next(iter(DataLoader(IQADataset(table, policy=CropPolicy("center", 16)), batch_size=6)))
    assert set(BATCH_KEYS.values()) <= set(batch)
    score, scene, dist = (
        torch.randn(6),
        torch.randn(6, len(SCENE_CLASSES)),
        torch.randn(6, len(DISTORTION_GROUPS)),
    )
    _, parts = total_loss(score, scene, dist, batch, LossWeights())
    assert parts["quality"] == pytest.approx(fidelity_loss(score, batch["mos"], batch["dataset"]).item())
    assert parts["scene"] == pytest.approx(scene_loss(scene, batch["scenes"]).item())
    assert parts["distortion"] == pytest.approx(distortion_loss(dist, batch["distortion"]).item())

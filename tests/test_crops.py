"""Crop policies: positions come from the image axes, grid/centre/resize shapes, small-image policy."""

from __future__ import annotations

import pytest
import torch

from mmpiqa.data.crops import CropPolicy, crop, crop_positions, ensure_min_size, merge_crops


def coords(h, w):
    """An image whose channel 0 encodes the row and channel 1 the column of every pixel."""
    rows = torch.arange(h, dtype=torch.float32).view(h, 1).expand(h, w)
    cols = torch.arange(w, dtype=torch.float32).view(1, w).expand(h, w)
    return torch.stack([rows, cols, torch.zeros(h, w)])


@pytest.mark.parametrize("batch", [1, 3, 64])
def test_random_positions_follow_the_image_axes_not_the_batch(batch):
    """Tall, narrow images: tops must range over H - S, lefts over W - S, whatever the batch size is."""
    h, w, s = 300, 40, 32
    images = coords(h, w).unsqueeze(0).repeat(batch, 1, 1, 1)
    generator = torch.Generator().manual_seed(0)
    out = torch.stack([crop(image, CropPolicy("random", s, n=8), generator) for image in images])
    assert out.shape == (batch, 8, 3, s, s)
    tops = out[:, :, 0, 0, 0].flatten()
    lefts = out[:, :, 1, 0, 0].flatten()
    assert lefts.max() <= w - s and tops.max() <= h - s
    assert (out[:, :, 0, :, 0] - tops.view(batch, 8, 1) == torch.arange(s)).all()  # contiguous rows
    # with 1 image only 8 draws: still the tops must escape the range a batch axis (or W) would allow
    assert tops.max() > max(batch, w)


def test_random_positions_cover_the_whole_range_and_are_seeded():
    pol = CropPolicy("random", 16, n=4000)
    pos = crop_positions(100, 20, pol, torch.Generator().manual_seed(1))
    tops, lefts = zip(*pos, strict=True)
    assert min(tops) == 0 and max(tops) == 84 and min(lefts) == 0 and max(lefts) == 4
    assert pos == crop_positions(100, 20, pol, torch.Generator().manual_seed(1))
    assert pos != crop_positions(100, 20, pol, torch.Generator().manual_seed(2))


def test_center_crop():
    out = crop(coords(100, 60), CropPolicy("center", 20))
    assert out.shape == (1, 3, 20, 20)
    assert out[0, 0, 0, 0] == 40 and out[0, 1, 0, 0] == 20


def test_grid_crops_are_fixed_evenly_spaced_and_cover_corners():
    img = coords(120, 200)
    out = crop(img, CropPolicy("grid", 40, n=15))
    assert out.shape == (15, 3, 40, 40)
    tops = sorted({int(t) for t in out[:, 0, 0, 0]})
    lefts = sorted({int(v) for v in out[:, 1, 0, 0]})
    assert tops == [0, 40, 80] and lefts == [0, 40, 80, 120, 160]  # 3 x 5 on a landscape image
    assert torch.equal(out, crop(img, CropPolicy("grid", 40, n=15)))
    portrait = crop(coords(200, 120), CropPolicy("grid", 40, n=15))
    assert len({int(t) for t in portrait[:, 0, 0, 0]}) == 5  # 5 rows x 3 columns


def test_resize_keeps_everything_and_policy_validation():
    out = crop(torch.rand(3, 90, 150), CropPolicy("resize", 32))
    assert out.shape == (1, 3, 32, 32) and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError):
        CropPolicy("center", 32, n=2)
    with pytest.raises(ValueError):
        CropPolicy("zoom", 32)
    with pytest.raises(ValueError, match="one image"):
        crop(torch.rand(2, 3, 40, 40), CropPolicy("center", 32))


def test_small_images_are_upscaled_on_the_shorter_side():
    small = torch.rand(3, 20, 50)
    up = ensure_min_size(small, 40)
    assert up.shape == (3, 40, 100)  # aspect ratio kept
    assert up.min() >= 0 and up.max() <= 1
    for kind, n in (("center", 1), ("grid", 4), ("random", 3)):
        out = crop(small, CropPolicy(kind, 40, n), torch.Generator().manual_seed(0))
        assert out.shape == (n, 3, 40, 40)
    big = torch.rand(3, 64, 64)
    assert ensure_min_size(big, 32) is big
    with pytest.raises(ValueError, match="smaller than the crop"):
        crop_positions(20, 50, CropPolicy("center", 40))


def test_merge_crops_averages_image_major():
    scores = torch.tensor([1.0, 3.0, 10.0, 20.0, 5.0, 5.0])
    assert torch.equal(merge_crops(scores, 2), torch.tensor([2.0, 15.0, 5.0]))
    with pytest.raises(ValueError):
        merge_crops(scores, 4)


@pytest.mark.parametrize(
    "policy",
    [
        CropPolicy("center", 16),
        CropPolicy("grid", 16, n=3),
        CropPolicy("random", 16, n=2),
        CropPolicy("resize", 16),
    ],
)
@pytest.mark.parametrize("shape", [(3, 30, 41), (3, 12, 20)])  # the second is upscaled first
def test_uint8_images_crop_to_the_float_crops_of_the_float_image(policy, shape):
    image = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    as_float = image.float().div_(255.0)
    out = crop(image, policy, torch.Generator().manual_seed(1))
    assert out.dtype == torch.float32
    assert torch.equal(out, crop(as_float, policy, torch.Generator().manual_seed(1)))

"""load_rgb / check_image: every stored mode becomes RGB in [0, 1]; damaged files are refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures_official import html_page, png_gray16, png_rgb16, truncate
from PIL import Image, ImageFile

from mmpiqa.data.images import ImageReadError, check_image, load_image, load_rgb, to_unit_float


def _rgb(seed=0, h=5, w=7):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_rgb_png_exact_and_shaped(tmp_path):
    arr = _rgb()
    Image.fromarray(arr).save(tmp_path / "a.png")
    x = load_rgb(tmp_path / "a.png")
    assert x.dtype == torch.float32 and x.shape == (3, 5, 7) and x.is_contiguous()
    np.testing.assert_allclose(x.permute(1, 2, 0).numpy(), arr / 255.0, atol=1e-7)


def test_grayscale_is_replicated(tmp_path):
    g = _rgb()[:, :, 0]
    Image.fromarray(g, mode="L").save(tmp_path / "g.bmp")
    x = load_rgb(tmp_path / "g.bmp")
    assert x.shape == (3, 5, 7)
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    np.testing.assert_allclose(x[0].numpy(), g / 255.0, atol=1e-7)
    Image.fromarray(g > 128).save(tmp_path / "b.png")  # 1-bit
    assert set(torch.unique(load_rgb(tmp_path / "b.png")).tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_gray_is_scaled_not_clipped(tmp_path, suffix):
    arr = np.array([[0, 255, 256, 32768, 65535]], dtype=np.uint16)
    png_gray16(tmp_path / f"g{suffix}", arr)
    x = load_rgb(tmp_path / f"g{suffix}")[0, 0].numpy()
    np.testing.assert_allclose(x, arr[0] / 65535.0, rtol=1e-6)
    assert x[1] < 0.01 and x[3] == pytest.approx(0.5, abs=1e-4) and x[4] == 1.0


def test_16bit_rgb_png_is_scaled(tmp_path):
    arr = np.zeros((2, 3, 3), dtype=np.uint16)
    arr[0, 0] = (65535, 32768, 256)
    arr[1, 2] = (1000, 40000, 65280)
    png_rgb16(tmp_path / "c.png", arr)
    x = load_rgb(tmp_path / "c.png").permute(1, 2, 0).numpy()
    np.testing.assert_allclose(x, arr / 65535.0, atol=1 / 255)  # 8-bit precision, correct scale
    assert x.max() == 1.0 and x[1, 2, 1] == pytest.approx(40000 / 65535, abs=1 / 255)


def test_transparency_is_composited_on_white(tmp_path):
    rgba = np.zeros((1, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (255, 0, 0, 0)  # fully transparent -> white
    rgba[0, 2] = (0, 0, 0, 128)  # half black -> mid grey
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "t.png")
    x = load_rgb(tmp_path / "t.png")[:, 0, :].T.numpy()
    np.testing.assert_allclose(x[0], [1, 0, 0])
    np.testing.assert_allclose(x[1], [1, 1, 1])
    np.testing.assert_allclose(x[2], [1 - 128 / 255] * 3, atol=1e-6)
    la = np.array([[[0, 0], [100, 255]]], dtype=np.uint8)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    y = load_rgb(tmp_path / "la.png")[:, 0, :].T.numpy()
    np.testing.assert_allclose(y, [[1, 1, 1], [100 / 255] * 3], atol=1e-6)


def test_palette_with_and_without_transparency(tmp_path):
    p = Image.new("P", (2, 1))
    p.putpalette([0, 0, 255] + [0, 255, 0] + [0] * 762)
    p.putpixel((0, 0), 0)
    p.putpixel((1, 0), 1)
    p.save(tmp_path / "p.png")
    np.testing.assert_allclose(load_rgb(tmp_path / "p.png")[:, 0, :].T.numpy(), [[0, 0, 1], [0, 1, 0]])
    p.save(tmp_path / "pt.png", transparency=0)
    np.testing.assert_allclose(load_rgb(tmp_path / "pt.png")[:, 0, :].T.numpy(), [[1, 1, 1], [0, 1, 0]])


def test_cmyk_becomes_rgb(tmp_path):
    cmyk = Image.new("CMYK", (3, 2), (0, 255, 255, 0))  # red ink
    cmyk.save(tmp_path / "c.tif")
    x = load_rgb(tmp_path / "c.tif")
    assert x.shape == (3, 2, 3)
    np.testing.assert_allclose(x[:, 0, 0].numpy(), [1, 0, 0])
    cmyk.save(tmp_path / "c.jpg", quality=95)
    assert load_rgb(tmp_path / "c.jpg")[0].mean() > 0.8


def test_float_image_only_in_unit_range(tmp_path):
    Image.fromarray(np.full((2, 2), 0.25, dtype=np.float32), mode="F").save(tmp_path / "f.tif")
    assert torch.allclose(load_rgb(tmp_path / "f.tif"), torch.full((3, 2, 2), 0.25))
    Image.fromarray(np.full((2, 2), 7.0, dtype=np.float32), mode="F").save(tmp_path / "big.tif")
    with pytest.raises(ImageReadError, match=r"big.tif: floating-point image with values outside \[0, 1\]"):
        load_rgb(tmp_path / "big.tif")


def test_32bit_integer_is_refused(tmp_path):
    Image.fromarray(np.full((2, 2), 2**20, dtype=np.int32), mode="I").save(tmp_path / "i.tif")
    with pytest.raises(ImageReadError, match="32-bit integer image"):
        load_rgb(tmp_path / "i.tif")


@pytest.mark.parametrize("fmt", ["png", "jpg", "bmp"])
def test_truncated_file_names_file_and_fix(tmp_path, fmt):
    path = tmp_path / f"photo.{fmt}"
    Image.fromarray(_rgb(h=64, w=64)).save(path)
    truncate(path, 0.6)
    with pytest.raises(ImageReadError) as err:
        load_rgb(path)
    msg = str(err.value)
    assert str(path) in msg and "Fix:" in msg and "--skip-unreadable" in msg


def test_truncated_refused_even_if_pillow_was_told_to_pad(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.fromarray(_rgb(h=64, w=64)).save(path)
    truncate(path, 0.6)
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with pytest.raises(ImageReadError, match="truncated"):
            load_rgb(path)
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the global is given back as found
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def test_not_an_image(tmp_path):
    html_page(tmp_path / "x.jpg")
    with pytest.raises(ImageReadError, match=r"x.jpg: not an image .*HTML page"):
        load_rgb(tmp_path / "x.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        check_image(tmp_path / "empty.png")
    with pytest.raises(ImageReadError, match="no such image file"):
        load_rgb(tmp_path / "missing.png")


def test_check_image_reports_mode_and_size(tmp_path):
    Image.fromarray(_rgb()).save(tmp_path / "a.png")
    info = check_image(tmp_path / "a.png")
    assert (info.mode, info.size, info.format) == ("RGB", (7, 5), "PNG")


def test_exif_orientation_only_on_request(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(_rgb(h=4, w=8)).save(tmp_path / "o.jpg", exif=exif)
    assert load_rgb(tmp_path / "o.jpg").shape == (3, 4, 8)
    assert load_rgb(tmp_path / "o.jpg", exif_transpose=True).shape == (3, 8, 4)


def test_load_image_keeps_8bit_sources_as_uint8_and_converts_exactly(tmp_path):
    """uint8 for plain 8-bit files (crops are cut before conversion), float for the rest; `to_unit_float` of it
    is what the float path computes, bit for bit."""
    arr = _rgb(3, 40, 50)
    Image.fromarray(arr).save(tmp_path / "a.jpg", quality=70)
    Image.fromarray(arr[:, :, 0], mode="L").save(tmp_path / "g.png")
    Image.fromarray(np.dstack([arr, arr[:, :, :1]])).save(tmp_path / "t.png")
    for name in ("a.jpg", "g.png"):
        raw = load_image(tmp_path / name)
        assert raw.dtype == torch.uint8 and raw.shape == (3, 40, 50)
        with Image.open(tmp_path / name) as img:
            expected = np.asarray(img.convert("RGB"), dtype=np.float32) / np.float32(255.0)
        assert torch.equal(to_unit_float(raw), torch.from_numpy(expected).permute(2, 0, 1))
        assert torch.equal(load_rgb(tmp_path / name), to_unit_float(raw))
    assert load_image(tmp_path / "t.png").dtype == torch.float32  # transparency: composited, float

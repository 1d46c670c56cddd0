"""Decode an image file into the RGB tensor in [0, 1] that every model in this project takes.

Conversions, all explicit:

- grayscale (1-bit, 8-bit, 16-bit, 32-bit integer, float) -> the one channel replicated to R, G, B;
- 16-bit samples are divided by 65535, never clipped at 255; Pillow reads 16-bit *colour* PNG/TIFF as 8-bit RGB
  (the high byte), which is correctly scaled at 8-bit precision;
- palette images -> their RGB colours;
- transparency (RGBA, LA, PA, or a palette/grey image with a transparent colour) -> composited on **white**:
  ``rgb * alpha + 1 * (1 - alpha)``. White matches how the images are shown on a web page or in a viewer;
- CMYK (and YCbCr, LAB, HSV) -> Pillow's conversion to RGB;
- multi-frame files (GIF, TIFF pages) -> the first frame.

EXIF orientation is **not** applied by default: the pixels are used as stored, as the IQA datasets' own tools
do; pass ``exif_transpose=True`` to rotate as a viewer would.

A file that cannot be fully decoded (missing, not a regular file, truncated, not an image, an HTML error page saved
under an image name, a decoder failure of any kind) raises `ImageReadError`, naming the file and the fix; the
file's contents are never echoed. Nothing is silently padded: Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is held
at False while a file is decoded, even if another library set it.

**What one image may cost** is bounded before its pixels are decoded (the size is in the header): at most
`MAX_PIXELS` pixels (a float32 RGB copy of that is 600 MB) and a long side at most `MAX_ASPECT` times the short
side (crops upscale the short side to the crop size, so a 4000 x 1 strip would become 224 x 896,000). Larger
files raise `ImageReadError`; downscale them first, or raise the module constants if the memory is there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from mmpiqa.errors import InputError, not_a_file

__all__ = [
    "MAX_ASPECT",
    "MAX_PIXELS",
    "ImageInfo",
    "ImageReadError",
    "check_image",
    "load_image",
    "load_rgb",
    "strict_truncation",
    "to_rgb_array",
    "to_unit_float",
]

MAX_PIXELS = 50_000_000  # 8K x 6K; the largest IQA photos (SPAQ, 4000 x 4000) are a third of it
MAX_ASPECT = 16.0  # long side / short side

_FIX = (
    "Fix: re-download or re-extract this file (a split archive must be joined before unzipping), "
    "or drop unreadable images with skip_unreadable=True / --skip-unreadable."
)


_EIGHT_BIT_MODES = (
    "1",
    "L",
    "P",
    "RGB",
    "CMYK",
    "YCbCr",
    "LAB",
    "HSV",
    "RGBX",
    "PA",
    "LA",
    "La",
    "RGBA",
    "RGBa",
)
_MODE_FIX = "Convert it to 8- or 16-bit RGB or grey first."


class ImageReadError(InputError, OSError):
    """An image file is missing or cannot be decoded. The message names the file and the fix."""


@dataclass(frozen=True)
class ImageInfo:
    """What `check_image` found: the stored mode, size (width, height) and format."""

    path: str
    mode: str
    size: tuple[int, int]
    format: str | None


def _open_loaded(path: str | os.PathLike) -> Image.Image:
    p = Path(path)
    problem = not_a_file(p)
    if problem:
        reason = "no such image file" if problem == "does not exist" else f"the image path {problem}"
        raise ImageReadError(f"{p}: {reason}. {_FIX}")
    with strict_truncation():
        try:
            img = Image.open(p)
        except UnidentifiedImageError as exc:
            raise ImageReadError(f"{p}: not an image Pillow can identify ({_head(p)}). {_FIX}") from exc
        except Image.DecompressionBombError as exc:
            raise ImageReadError(f"{p}: {exc}. Downscale it first.") from exc
        except Exception as exc:  # a damaged header can raise anything from the format plugin
            raise ImageReadError(f"{p}: cannot read the header ({type(exc).__name__}). {_FIX}") from exc
        try:
            _check_cost(p, img.size)
            img.load()
        except ImageReadError:
            img.close()
            raise
        except Exception as exc:  # OSError for truncation; MemoryError, struct.error, ... for damaged codecs
            img.close()
            raise ImageReadError(
                f"{p}: cannot decode ({type(exc).__name__}: {exc}); the file is truncated or corrupt. {_FIX}"
            ) from exc
    return img


def _check_cost(p: Path, size: tuple[int, int]) -> None:
    w, h = size
    if w < 1 or h < 1:
        raise ImageReadError(f"{p}: the header says {w} x {h} pixels. {_FIX}")
    if w * h > MAX_PIXELS:
        raise ImageReadError(
            f"{p}: {w} x {h} = {w * h / 1e6:.0f} M pixels, more than MAX_PIXELS = {MAX_PIXELS / 1e6:.0f} M that "
            "one image may use. Downscale it first (or raise mmpiqa.data.images.MAX_PIXELS)."
        )
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise ImageReadError(
            f"{p}: {w} x {h} pixels, an aspect ratio beyond {MAX_ASPECT:g}:1; square crops of such a strip "
            "would be mostly upscaled pixels. Crop it to a normal shape first (or raise "
            "mmpiqa.data.images.MAX_ASPECT)."
        )


@contextmanager
def strict_truncation() -> Iterator[None]:
    """Hold Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` at False (another library may have set it to pad
    truncated files silently) and give the setting back afterwards. Wrap a whole thread pool in it rather
    than relying on each worker's own toggle."""
    permissive = ImageFile.LOAD_TRUNCATED_IMAGES
    if not permissive:
        yield
        return
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = permissive


def _head(p: Path) -> str:
    with open(p, "rb") as f:
        head = f.read(64)
    if not head:
        return "the file is empty"
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return "it is an HTML page, probably a failed download"
    return f"an unknown format, {p.stat().st_size} bytes"  # never the bytes themselves: they may be anyone's


def check_image(path: str | os.PathLike) -> ImageInfo:
    """Fully decode `path` and report its mode and size; raise `ImageReadError` when that fails."""
    img = _open_loaded(path)
    with img:
        info = ImageInfo(str(path), img.mode, img.size, img.format)
        if img.mode.startswith("I;16") or img.mode in ("I", "F"):
            _wide_gray(img, str(path))  # the range checks of those modes
        elif img.mode not in _EIGHT_BIT_MODES:
            raise ImageReadError(f"{path}: unsupported image mode {img.mode!r}. {_MODE_FIX}")
    return info


def load_rgb(path: str | os.PathLike, *, exif_transpose: bool = False) -> torch.Tensor:
    """Read an image as a float32 tensor (3, H, W) in [0, 1]; see the module docstring for the conversions."""
    return to_unit_float(load_image(path, exif_transpose=exif_transpose))


def load_image(path: str | os.PathLike, *, exif_transpose: bool = False) -> torch.Tensor:
    """`load_rgb` before its last step: (3, H, W) uint8 where the source is plain 8-bit RGB/grey/palette (most
    files), float32 in [0, 1] otherwise. `to_unit_float` of it is `load_rgb`, bit for bit; cutting crops out of
    the uint8 image first converts only the crops' pixels, and a cached uint8 image takes a quarter of the
    memory."""
    img = _open_loaded(path)
    with img:
        try:
            if exif_transpose:
                img = ImageOps.exif_transpose(img)
            arr = _rgb8(img)
            if arr is None:
                arr = to_rgb_array(img, source=str(path))
        except ImageReadError:
            raise
        except Exception as exc:  # damaged EXIF or palette data surface only here
            raise ImageReadError(
                f"{path}: cannot convert to RGB ({type(exc).__name__}: {exc}). {_FIX}"
            ) from exc
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def to_unit_float(image: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (0..255) as float32 in [0, 1] (the same division as `to_rgb_array`); float passes as is."""
    return image.float().div_(255.0) if image.dtype == torch.uint8 else image


def to_rgb_array(img: Image.Image, *, source: str = "image") -> np.ndarray:
    """Convert a loaded PIL image to float32 (H, W, 3) in [0, 1] (white behind transparency)."""
    mode = img.mode
    rgb8 = _rgb8(img)
    if rgb8 is not None:
        return rgb8.astype(np.float32) / np.float32(255.0)
    if mode.startswith("I;16") or mode in ("I", "F"):
        gray = _wide_gray(img, source)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in _EIGHT_BIT_MODES:  # with transparency
        return _composite_on_white(img.convert("RGBA"))
    raise ImageReadError(f"{source}: unsupported image mode {mode!r}. {_MODE_FIX}")


def _rgb8(img: Image.Image) -> np.ndarray | None:
    """uint8 (H, W, 3) of an 8-bit image without transparency; None for the modes `to_rgb_array` converts
    otherwise (wide grey, transparency composited on white)."""
    mode = img.mode
    if mode not in _EIGHT_BIT_MODES or mode in ("PA", "LA", "La", "RGBA", "RGBa"):
        return None
    if mode in ("P", "L", "1", "RGB") and "transparency" in img.info:
        return None
    return np.asarray(img if mode == "RGB" else img.convert("RGB"))


def _composite_on_white(rgba: Image.Image) -> np.ndarray:
    a = np.asarray(rgba, dtype=np.float32) / np.float32(255.0)
    alpha = a[:, :, 3:4]
    return a[:, :, :3] * alpha + (np.float32(1.0) - alpha)


def _wide_gray(img: Image.Image, source: str) -> np.ndarray:
    """16-bit, 32-bit integer or float grey -> float32 in [0, 1], scaled by the stored bit depth."""
    x = np.asarray(img)
    if img.mode == "F":
        x = x.astype(np.float32)
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise ImageReadError(
                f"{source}: floating-point image with values outside [0, 1] ({x.min():g}..{x.max():g}); "
                "there is no agreed scale to map it from. Save it as 8- or 16-bit integers."
            )
        return x
    bits = _bits_per_sample(img)
    if bits is None:
        bits = 16 if x.min() >= 0 and x.max() <= 65535 else 32
    if bits > 16:
        raise ImageReadError(f"{source}: {bits}-bit integer image; only 8- and 16-bit samples are supported.")
    if x.min() < 0:
        raise ImageReadError(f"{source}: negative sample values in a {img.mode} image.")
    return (x.astype(np.float64) / float(2**bits - 1)).astype(np.float32)


def _bits_per_sample(img: Image.Image) -> int | None:
    if img.mode.startswith("I;16"):
        return 16
    tags = getattr(img, "tag_v2", None)
    if tags is not None and 258 in tags:  # TIFF BitsPerSample
        value = tags[258]
        return int(value[0] if isinstance(value, tuple) else value)
    if img.format == "PNG":  # Pillow opens 16-bit grey PNG as "I" in some versions
        return 16
    return None

"""KADID-style distortion families for the embedded synthetic benchmark.

Every family is a plain function ``f(image, strength, rng) -> image`` on float32 RGB arrays of shape (H, W, 3) in
[0, 1], built on maintained libraries (Pillow for the codecs, palette quantisation and resampling; scipy.ndimage /
scipy.signal for filtering; numpy for noise). Each family has five strengths, ordered from barely visible (level
1) to severe (level 5), and maps to one of ``DISTORTION_GROUPS``.

Randomness (noise fields, the motion-blur direction) comes only from the ``rng`` passed in. The embedded builder
seeds one generator per (seed, content, family) and hands a fresh copy of it to each level, so the five levels of a
family share one noise field / one direction and differ only in strength: the distorted versions are nested and
severity grows monotonically, which keeps the pseudo-MOS ordering clean.

Outputs are returned as float arrays; the caller rounds them to 8 bits (what lands on disk is what is scored).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage, signal

from mmpiqa.data.table import DISTORTION_GROUPS

Array = np.ndarray
DistortFn = Callable[[Array, float, np.random.Generator], Array]

# ITU-R BT.601 luma weights (as in JPEG's YCbCr), used for "towards grey" operations.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class Family:
    """One distortion family: its name (the table's ``dist_type``), group, five strengths and function."""

    name: str
    group: str
    strengths: tuple[float, ...]
    fn: DistortFn
    doc: str

    def __post_init__(self) -> None:
        if self.group not in DISTORTION_GROUPS:
            raise ValueError(f"family {self.name!r}: group {self.group!r} is not one of {DISTORTION_GROUPS}")
        if len(self.strengths) != 5:
            raise ValueError(f"family {self.name!r}: needs 5 strengths, got {len(self.strengths)}")

    def apply(self, image: Array, level: int, rng: np.random.Generator) -> Array:
        """Distort ``image`` at ``level`` (1..5); returns float32 (H, W, 3) clipped to [0, 1]."""
        if not 1 <= level <= len(self.strengths):
            raise ValueError(f"family {self.name!r}: level must be in 1..{len(self.strengths)}, got {level}")
        out = self.fn(np.asarray(image, dtype=np.float32), float(self.strengths[level - 1]), rng)
        return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


# ----------------------------------------------------------------------------------------------- helpers
def to_uint8(image: Array) -> Array:
    """float [0, 1] (H, W, 3) -> uint8, rounding to nearest."""
    return np.clip(np.rint(np.asarray(image) * 255.0), 0, 255).astype(np.uint8)


def _pil(image: Array) -> Image.Image:
    return Image.fromarray(to_uint8(image), mode="RGB")


def _float(img: Image.Image) -> Array:
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def _luma(image: Array) -> Array:
    return (image @ _LUMA)[..., None]


def _convolve_rgb(image: Array, kernel: Array) -> Array:
    """Convolve each channel with ``kernel`` (reflect padding, FFT), keeping the size."""
    kh, kw = kernel.shape
    ph, pw = kh // 2, kw // 2
    padded = np.pad(image, ((ph, kh - 1 - ph), (pw, kw - 1 - pw), (0, 0)), mode="reflect")
    return signal.fftconvolve(padded, kernel[:, :, None].astype(np.float32), mode="valid", axes=(0, 1))


# ----------------------------------------------------------------------------------------------- families
def gaussian_blur(image: Array, sigma: float, rng: np.random.Generator) -> Array:
    return ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0), mode="reflect", truncate=3.0)


def motion_blur(image: Array, length: float, rng: np.random.Generator) -> Array:
    """Uniform linear motion of ``length`` pixels along a direction drawn from ``rng``."""
    angle = rng.uniform(0.0, np.pi)
    size = int(np.ceil(length)) | 1  # odd
    kernel = np.zeros((size, size), dtype=np.float64)
    c = size // 2
    # supersample the segment and splat it bilinearly: a smooth, normalised line kernel at any angle
    t = np.linspace(-(length - 1) / 2, (length - 1) / 2, 16 * size)
    ys, xs = c + t * np.sin(angle), c + t * np.cos(angle)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    fy, fx = ys - y0, xs - x0
    for dy, dx, w in (
        (0, 0, (1 - fy) * (1 - fx)),
        (0, 1, (1 - fy) * fx),
        (1, 0, fy * (1 - fx)),
        (1, 1, fy * fx),
    ):
        yy, xx = np.clip(y0 + dy, 0, size - 1), np.clip(x0 + dx, 0, size - 1)
        np.add.at(kernel, (yy, xx), w)
    return _convolve_rgb(image, kernel / kernel.sum())


def lens_blur(image: Array, radius: float, rng: np.random.Generator) -> Array:
    """Defocus: convolution with an anti-aliased disk of ``radius`` pixels."""
    r = int(np.ceil(radius)) + 1
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    kernel = np.clip(radius + 0.5 - np.hypot(yy, xx), 0.0, 1.0)
    return _convolve_rgb(image, kernel / kernel.sum())


def gaussian_noise(image: Array, sigma: float, rng: np.random.Generator) -> Array:
    """Additive white Gaussian noise, independent per pixel and channel."""
    return image + sigma * rng.standard_normal(image.shape, dtype=np.float32)


def impulse_noise(image: Array, amount: float, rng: np.random.Generator) -> Array:
    """Salt-and-pepper: a fraction ``amount`` of the samples set to 0 or 1 (per channel)."""
    u = rng.random(image.shape, dtype=np.float32)
    salt = rng.random(image.shape, dtype=np.float32) < 0.5
    out = image.copy()
    hit = u < amount
    out[hit] = salt[hit].astype(np.float32)
    return out


def jpeg(image: Array, quality: float, rng: np.random.Generator) -> Array:
    buf = io.BytesIO()
    _pil(image).save(buf, format="JPEG", quality=int(quality), subsampling="4:2:0", optimize=False)
    return _float(Image.open(io.BytesIO(buf.getvalue())))


def jpeg2000(image: Array, ratio: float, rng: np.random.Generator) -> Array:
    """JPEG 2000 (OpenJPEG through Pillow) at a fixed compression ``ratio``."""
    buf = io.BytesIO()
    _pil(image).save(
        buf, format="JPEG2000", quality_mode="rates", quality_layers=[float(ratio)], irreversible=True
    )
    return _float(Image.open(io.BytesIO(buf.getvalue())))


def desaturate(image: Array, keep: float, rng: np.random.Generator) -> Array:
    """Blend towards the luma image, keeping a fraction ``keep`` of the chroma."""
    y = _luma(image)
    return y + keep * (image - y)


def oversaturate(image: Array, gain: float, rng: np.random.Generator) -> Array:
    """Amplify chroma (the deviation from luma) by ``gain``; clipping saturates the strong colours."""
    y = _luma(image)
    return y + gain * (image - y)


def brighten(image: Array, gain: float, rng: np.random.Generator) -> Array:
    """Over-exposure: multiply by ``gain`` > 1 and clip, so highlights burn out."""
    return image * gain


def darken(image: Array, gain: float, rng: np.random.Generator) -> Array:
    """Under-exposure: multiply by ``gain`` < 1; 8-bit rounding then crushes the shadows."""
    return image * gain


def contrast_decrease(image: Array, factor: float, rng: np.random.Generator) -> Array:
    """Shrink deviations from the mean luma by ``factor``."""
    m = float(_luma(image).mean())
    return m + factor * (image - m)


def colour_quantisation(image: Array, colours: float, rng: np.random.Generator) -> Array:
    """Median-cut palette of ``colours`` entries (Pillow), no dithering."""
    img = _pil(image).quantize(colors=int(colours), method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    return _float(img)


def pixelate(image: Array, factor: float, rng: np.random.Generator) -> Array:
    """Box-downsample by ``factor`` and upsample with nearest neighbour (blocky mosaic)."""
    h, w = image.shape[:2]
    small = _pil(image).resize((max(1, round(w / factor)), max(1, round(h / factor))), Image.Resampling.BOX)
    return _float(small.resize((w, h), Image.Resampling.NEAREST))


def oversharpen(image: Array, amount: float, rng: np.random.Generator) -> Array:
    """Unsharp masking (Gaussian sigma 1.5) with a growing ``amount``: halos and ringing."""
    blurred = ndimage.gaussian_filter(image, sigma=(1.5, 1.5, 0), mode="reflect", truncate=3.0)
    return image + amount * (image - blurred)


# name, group, strengths (level 1 -> 5), function, what the strength means
FAMILIES: tuple[Family, ...] = tuple(
    Family(*row)
    for row in (
        ("gaussian_blur", "blur", (0.6, 1.0, 1.6, 2.5, 4.0), gaussian_blur, "Gaussian sigma, px"),
        ("lens_blur", "blur", (0.8, 1.5, 2.4, 3.6, 5.5), lens_blur, "defocus disk radius, px"),
        ("motion_blur", "blur", (3, 5, 8, 12, 18), motion_blur, "motion length, px"),
        ("gaussian_noise", "noise", (0.015, 0.03, 0.05, 0.08, 0.13), gaussian_noise, "noise sigma"),
        (
            "impulse_noise",
            "noise",
            (0.001, 0.004, 0.012, 0.03, 0.08),
            impulse_noise,
            "fraction of samples hit",
        ),
        ("jpeg", "JPEG", (80, 45, 25, 12, 5), jpeg, "JPEG quality (Pillow/libjpeg)"),
        ("jpeg2000", "JPEG2000", (8, 16, 32, 64, 160), jpeg2000, "compression ratio (OpenJPEG)"),
        ("desaturate", "colour", (0.7, 0.5, 0.32, 0.16, 0.0), desaturate, "fraction of chroma kept"),
        ("oversaturate", "colour", (1.4, 1.8, 2.3, 3.0, 4.0), oversaturate, "chroma gain"),
        ("brighten", "over-exposure", (1.2, 1.45, 1.8, 2.3, 3.0), brighten, "exposure gain, then clipping"),
        ("darken", "under-exposure", (0.75, 0.55, 0.4, 0.27, 0.17), darken, "exposure gain"),
        (
            "contrast_decrease",
            "contrast",
            (0.82, 0.62, 0.45, 0.3, 0.18),
            contrast_decrease,
            "contrast factor",
        ),
        ("colour_quantisation", "quantisation", (128, 48, 20, 10, 5), colour_quantisation, "palette size"),
        (
            "pixelate",
            "spatial",
            (1.5, 2.5, 3.5, 5.0, 8.0),
            pixelate,
            "downscale factor (box), nearest upscale",
        ),
        ("oversharpen", "other", (0.4, 1.0, 2.0, 3.5, 6.0), oversharpen, "unsharp-mask amount"),
    )
)
FAMILY_BY_NAME: dict[str, Family] = {f.name: f for f in FAMILIES}


def get_family(name: str) -> Family:
    try:
        return FAMILY_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown distortion family {name!r}; known: {sorted(FAMILY_BY_NAME)}") from None

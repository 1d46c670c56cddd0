"""The procedural captioned corpus that the offline teaching CLIP is pretrained on.

Real CLIP learned what "blurry" or "a bad photo" means from web images and their captions. The teaching CLIP gets
the same kind of lesson from images that can never be the benchmark's photos, because they are drawn from a seed:

* **contents**: dead-leaves images (occluding discs and squares with power-law sizes: a standard model of
  natural-image statistics, used in camera texture-loss testing), 1/f ("pink") coloured-noise textures, smooth
  colour gradients, stripes and checkerboards;
* **damage**: the project's own distortion families (:mod:`mmpiqa.data.distortions`) at a random level 1..5, or
  none; some families are **held out** of the corpus entirely (`HELD_OUT_FAMILIES`), so what the model makes of
  damage it never read about is measured, not assumed;
* **captions** from templates with synonyms, as web captions are: a content phrase, a damage phrase with a strength
  word by level ("slightly blurry", "heavily compressed, blocky"), a quality word by level ("excellent" … "bad"),
  mixed so that not every caption has every part.

An item is fixed by ``(seed, index)``: ``index // versions`` picks the content and ``index % versions`` the
version of it (version 0 is clean, the others carry damage), so a batch of consecutive indices holds several
versions of each content and every caption competes with near-duplicates that differ only in their damage. The
benchmark's pseudo-MOS never enters: quality words come from the distortion level alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmpiqa.data.distortions import FAMILIES, Family, to_uint8

Array = np.ndarray

# Families the corpus never shows: one per damage kind whose group keeps another family (blur, noise), plus two
# whose kind is absent altogether (JPEG 2000 ringing, over-sharpening halos).
HELD_OUT_FAMILIES: tuple[str, ...] = ("lens_blur", "impulse_noise", "jpeg2000", "oversharpen")
PRETRAIN_FAMILIES: tuple[Family, ...] = tuple(f for f in FAMILIES if f.name not in HELD_OUT_FAMILIES)
CONTENT_KINDS: tuple[str, ...] = ("dead leaves", "texture", "gradient", "stripes", "checkerboard")

# Quality word (index into QUALITY_LEVELS, worst = 0) of a version by its distortion level (0 = clean).
LEVEL_TO_QUALITY: tuple[int, ...] = (4, 3, 2, 1, 0, 0)

# --- caption vocabulary ---------------------------------------------------------------------------------------
_CONTENT_WORDS = {
    "dead leaves": (
        "overlapping shapes",
        "dead leaves pattern",
        "scattered discs and squares",
        "layered shapes",
    ),
    "texture": ("noise texture", "cloudy texture", "organic texture", "mottled pattern"),
    "gradient": ("colour gradient", "smooth gradient", "soft colour ramp"),
    "stripes": ("striped pattern", "stripes", "parallel lines"),
    "checkerboard": ("checkerboard", "chequered pattern", "grid of squares"),
}
_STRENGTH = ("", "slightly", "moderately", "noticeably", "heavily", "extremely")
_DAMAGE_WORDS = {
    "gaussian_blur": ("blurry", "blurred", "out of focus", "soft and blurry"),
    "motion_blur": ("motion blurred", "blurred by camera shake", "streaky, motion blurred"),
    "gaussian_noise": ("noisy", "grainy", "full of sensor noise"),
    "jpeg": ("compressed, blocky", "JPEG compressed", "blocky with compression artifacts"),
    "desaturate": ("washed out, faded colours", "desaturated", "dull, colourless"),
    "oversaturate": ("oversaturated", "garish, oversaturated colours", "overly vivid"),
    "brighten": ("overexposed", "too bright, blown out", "overexposed, washed out highlights"),
    "darken": ("underexposed", "too dark", "dark and underexposed"),
    "contrast_decrease": ("low contrast", "flat, low contrast", "hazy, lacking contrast"),
    "colour_quantisation": ("colour banded", "posterized", "with colour banding"),
    "pixelate": ("pixelated", "blocky, pixelated", "low resolution, pixelated"),
}
_CLEAN_WORDS = ("sharp", "clean", "crisp", "pristine", "clear")
_QUALITY_WORDS = (  # per quality index, worst to best; the first of each is the evaluation word
    ("bad", "terrible", "awful"),
    ("poor", "low quality", "weak"),
    ("fair", "mediocre", "acceptable"),
    ("good", "decent", "nice"),
    ("perfect", "excellent", "high quality"),
)
_COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "grey", "brown", "pink", "teal")


@dataclass(frozen=True)
class CorpusItem:
    """One captioned image of the corpus."""

    image: Array  # uint8 (H, W, 3)
    caption: str
    content: str  # one of CONTENT_KINDS
    family: str  # distortion family name, '' when clean
    level: int  # 0 clean, 1..5
    quality: int  # index into QUALITY_LEVELS (0 = bad … 4 = perfect)
    group: str  # distortion group, '' when clean


# --- contents -----------------------------------------------------------------------------------------------
def _palette(rng: np.random.Generator, n: int) -> Array:
    """n random colours, biased away from pure black/white so damage stays visible."""
    return rng.uniform(0.08, 0.92, size=(n, 3)).astype(np.float32)


def dead_leaves(rng: np.random.Generator, size: int) -> Array:
    """Occluding discs and squares with radii ~ r^-3 (scale invariant), painted back to front."""
    image = np.empty((size, size, 3), np.float32)
    image[:] = _palette(rng, 1)[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    r_min, r_max = 1.5, size / 3
    n = int(rng.integers(80, 220))
    # inverse-CDF sampling of p(r) ~ r^-3 on [r_min, r_max]
    u = rng.random(n)
    radii = (r_min**-2 - u * (r_min**-2 - r_max**-2)) ** -0.5
    colours = _palette(rng, n)
    centres = rng.uniform(-0.1 * size, 1.1 * size, size=(n, 2))
    squares = rng.random(n) < 0.3
    for (cy, cx), r, colour, square in zip(centres, radii, colours, squares, strict=True):
        if square:
            mask = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
        else:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        image[mask] = colour
    return image


def pink_texture(rng: np.random.Generator, size: int) -> Array:
    """Coloured noise with a 1/f^beta amplitude spectrum (beta in [0.8, 1.6]), mapped into two colours."""
    beta = rng.uniform(0.8, 1.6)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    amplitude = np.hypot(fy, fx)
    amplitude[0, 0] = 1.0
    amplitude = amplitude**-beta
    amplitude[0, 0] = 0.0
    out = np.empty((size, size, 3), np.float32)
    base = rng.standard_normal((size, size // 2 + 1)) + 1j * rng.standard_normal((size, size // 2 + 1))
    field = np.fft.irfft2(base * amplitude, s=(size, size))
    field = (field - field.mean()) / (field.std() + 1e-8)
    a, b = _palette(rng, 2)
    t = 1 / (1 + np.exp(-1.5 * field))
    out[:] = (a[None, None] * (1 - t[..., None]) + b[None, None] * t[..., None]).astype(np.float32)
    return out


def gradient(rng: np.random.Generator, size: int) -> Array:
    """A linear ramp between two colours along a random direction, with a gentle second ramp."""
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    t = (np.cos(angle) * xx + np.sin(angle) * yy).astype(np.float32)
    t = (t - t.min()) / (t.max() - t.min() + 1e-8)
    a, b = _palette(rng, 2)
    s = (0.5 + 0.5 * np.sin(2 * np.pi * (yy * rng.uniform(0.3, 1.2) + rng.random())))[..., None]
    return (a * (1 - t[..., None]) + b * t[..., None]) * (0.8 + 0.2 * s)


def stripes(rng: np.random.Generator, size: int) -> Array:
    """Parallel bands of two colours, any orientation, period 4-24 px, sharp or softened edges."""
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(4, 24)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    phase = (np.cos(angle) * xx + np.sin(angle) * yy) / period
    t = (np.sin(2 * np.pi * phase) > 0).astype(np.float32)[..., None]
    a, b = _palette(rng, 2)
    return a * (1 - t) + b * t


def checkerboard(rng: np.random.Generator, size: int) -> Array:
    """Squares of two colours, cell 4-28 px, at a random offset."""
    cell = int(rng.integers(4, 29))
    oy, ox = rng.integers(0, cell, size=2)
    yy, xx = np.mgrid[0:size, 0:size]
    t = (((yy + oy) // cell + (xx + ox) // cell) % 2).astype(np.float32)[..., None]
    a, b = _palette(rng, 2)
    return a * (1 - t) + b * t


_GENERATORS = {
    "dead leaves": dead_leaves,
    "texture": pink_texture,
    "gradient": gradient,
    "stripes": stripes,
    "checkerboard": checkerboard,
}
# How often each kind is drawn: the rich, photo-like statistics of dead leaves and 1/f textures dominate.
_CONTENT_WEIGHTS = np.array([0.45, 0.3, 0.08, 0.085, 0.085])


# --- captions -----------------------------------------------------------------------------------------------
def caption(
    rng: np.random.Generator, content: str, colour: str, family: str, level: int, quality: int
) -> str:
    """A caption built from templates with synonyms; each part is present with some probability."""
    noun = str(rng.choice(_CONTENT_WORDS[content]))
    if rng.random() < 0.4:
        noun = f"{colour} {noun}"
    if family:
        damage = str(rng.choice(_DAMAGE_WORDS[family]))
        strength = _STRENGTH[level]
        damage = f"{strength} {damage}" if rng.random() < 0.8 else damage
    else:
        damage = str(rng.choice(_CLEAN_WORDS))
    words = _QUALITY_WORDS[quality]
    word = words[0] if rng.random() < 0.6 else str(rng.choice(words[1:]))
    show_damage, show_quality = rng.random() < 0.8, rng.random() < 0.8
    if not (show_damage or show_quality):
        show_damage = show_quality = True
    form = int(rng.integers(3))
    if show_damage and show_quality:
        return (
            f"a {word} photo of a {damage} {noun}.",
            f"a photo of {word} quality: {noun}, {damage}.",
            f"{noun}, {damage}, {word} quality.",
        )[form]
    if show_quality:
        return (f"a photo of {word} quality.", f"a {word} photo of a {noun}.", f"{noun}, {word} quality.")[
            form
        ]
    return (f"a photo of a {damage} {noun}.", f"{noun}, {damage}.", f"a {damage} image of a {noun}.")[form]


# --- items --------------------------------------------------------------------------------------------------
def corpus_item(seed: int, index: int, size: int, versions: int = 4) -> CorpusItem:
    """Item `index` of the corpus of `seed`: version ``index % versions`` of content ``index // versions``."""
    if versions < 1:
        raise ValueError(f"versions={versions}: at least 1")
    content_id, version = divmod(int(index), versions)
    content_rng = np.random.default_rng([seed, content_id])
    kind = str(content_rng.choice(CONTENT_KINDS, p=_CONTENT_WEIGHTS))
    colour = str(content_rng.choice(_COLOURS))
    clean = np.clip(_GENERATORS[kind](content_rng, size), 0.0, 1.0).astype(np.float32)
    rng = np.random.default_rng([seed, content_id, version, 1])
    # version 0 is clean; later versions are damaged, with a small chance of another clean copy
    if version == 0 or rng.random() < 0.08:
        family, level, image = None, 0, clean
    else:
        family = PRETRAIN_FAMILIES[int(rng.integers(len(PRETRAIN_FAMILIES)))]
        level = int(rng.integers(1, 6))
        image = family.apply(clean, level, rng)
    quality = LEVEL_TO_QUALITY[level]
    text = caption(rng, kind, colour, family.name if family else "", level, quality)
    return CorpusItem(
        image=to_uint8(image),
        caption=text,
        content=kind,
        family=family.name if family else "",
        level=level,
        quality=quality,
        group=family.group if family else "",
    )

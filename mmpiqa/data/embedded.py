"""The embedded synthetic benchmark: built offline from photos that ship inside installed packages.

**References.** Natural colour photos from scikit-image's data folder and matplotlib's sample data, cut into
non-overlapping square content crops (``crop`` px, default 160) on an evenly spaced grid. When a size caps a
source to fewer crops than its grid offers, the most detailed cells (highest mean luma-gradient magnitude) are
kept, so near-flat sky or background patches do not become whole contents. Scene classes, one set per source:

=================  ===============================================  ======================================
source             photo                                            scenes
=================  ===============================================  ======================================
astronaut          skimage ``astronaut`` (NASA portrait, PD)        human
grace_hopper       matplotlib ``grace_hopper.jpg`` (portrait, PD)   human
chelsea            skimage ``chelsea`` (a cat, CC0)                 animal
coffee             skimage ``coffee`` (a cup on a table, CC0)       still-life
rocket             skimage ``rocket`` (SpaceX launch pad at dusk)   cityscape, night scene
hubble             skimage ``hubble_deep_field`` (NASA, PD)         night scene
motorcycle         skimage ``stereo_motorcycle`` left view          indoor scene
=================  ===============================================  ======================================

Left out on purpose: the grey images, the synthetic ones (``color``, ``logo``, checkerboards), the medical ones
(``retina``, ``immunohistochemistry``), and the right motorcycle view (the same scene as the left one: it would
put one content on both sides of a reference-disjoint split).

**Distortions.** Every family of :mod:`mmpiqa.data.distortions` (15 families in 11 groups) at 5 levels, from
barely visible to severe. Randomness comes from one generator per (seed, content, family), so the build is
deterministic for a seed and a content's images do not depend on which other contents are built.

**Pseudo-MOS.** Five full-reference metrics of ``piq`` are computed between each 8-bit distorted image (exactly
the PNG on disk) and its reference: MS-SSIM (RGB, Gaussian window 11; as many of the standard five scales as the
crop allows, i.e. 4 scales at 160 px, weights renormalised), VIF (``piq.vif_p``, luma), GMSD (luma), MDSI
(gradient + chroma) and HaarPSI (YIQ). Each is turned into a quality in [0, 1] by a fixed, piecewise-linear map
through its own deciles (``CALIBRATION``; measured once on the default build, seed 0, and frozen in the code —
they are part of the versioned formula), flipped for GMSD and MDSI where lower is better; values beyond the
extreme knots clip to 0 or 1 (an undistorted image scores 1 on all five). Then::

    mos = mean(q_ms_ssim, q_vif, q_gmsd, q_mdsi, q_haarpsi)        (in [0, 1], higher = better)

Over the 2,250 images of the default build, |SRCC| of each metric with this pseudo-MOS: MS-SSIM 0.877, VIF 0.823,
GMSD 0.940, MDSI 0.952, HaarPSI 0.911 (tables and per-level means in ``data/cards/embedded.md``).
``mos_raw`` holds the same number (the pseudo-MOS *is* the published score of this dataset). Because the map is
fixed per image, an image's label never depends on which other images were built. The raw metric values are kept
in ``labels.csv`` (and returned with ``read_embedded(..., with_metrics=True)``).

**Sizes.** ``"small"`` (tests): 3 contents, 225 images, a few seconds. ``"default"``: 30 contents, 2,250 images,
about 40 s on 2 idle cores. ``"full"``: every grid cell, 76 contents, 5,700 images. Any `EmbeddedSpec` works too.

**References in the table.** The reference crops are written under ``refs/`` and listed in ``labels.csv`` with
``dist_level`` 0 and mos 1, but :func:`read_embedded` leaves them out unless ``include_refs=True``: like
KADID-10k, the labelled set is the distorted images, and a spike of identical labels at 1 would skew rank losses.

**Cache.** ``<base>/<VERSION>-<hash>/`` with ``labels.csv``, ``build.json`` (spec, seed, library versions,
timing), ``refs/*.png`` and ``images/<content>/<family>_<level>.png``. ``<base>`` is the ``root`` argument, else
``$MMPIQA_CACHE/embedded``, else ``~/.cache/mmpiqa/embedded``. The hash covers the version, the spec, the seed and
a checksum of every source photo's pixels. A build happens in a temporary sibling folder renamed into place at the
end, so an interrupted build never leaves a half cache.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from mmpiqa.config import ConfigError
from mmpiqa.data.distortions import FAMILIES, Family, get_family, to_uint8
from mmpiqa.data.readers._common import DatasetFormatError
from mmpiqa.data.table import validate_table
from mmpiqa.files import writing

__all__ = [
    "CALIBRATION",
    "METRICS",
    "SIZES",
    "SOURCES",
    "VERSION",
    "EmbeddedSpec",
    "build_embedded",
    "cache_dir",
    "content_crops",
    "metric_quality",
    "pseudo_mos",
    "read_embedded",
    "score_batch",
]

VERSION = "v1"
DATASET = "embedded"
METRICS: tuple[str, ...] = ("ms_ssim", "vif", "gmsd", "mdsi", "haarpsi")
LOWER_IS_BETTER = frozenset({"gmsd", "mdsi"})

# Knots of the fixed map metric -> quality q in [0, 1], listed from worst to best; q rises linearly by 0.1 from
# knot to knot. The inner nine are the deciles of each raw metric over the 2,250 distorted images of the default
# build (seed 0, before this map existed); the outer two are a rounded worst case and the metric's value for an
# undistorted image. Part of the versioned formula: changing them changes the cache key.
CALIBRATION: dict[str, tuple[float, ...]] = {
    "ms_ssim": (0.25, 0.694, 0.799, 0.861, 0.901, 0.931, 0.953, 0.971, 0.983, 0.992, 1.0),
    "vif": (0.0, 0.211, 0.300, 0.380, 0.453, 0.536, 0.628, 0.723, 0.831, 0.976, 1.0),
    "gmsd": (0.35, 0.193, 0.152, 0.121, 0.089, 0.062, 0.040, 0.023, 0.012, 0.003, 0.0),
    "mdsi": (0.70, 0.501, 0.453, 0.420, 0.389, 0.360, 0.327, 0.295, 0.263, 0.219, 0.0),
    "haarpsi": (0.20, 0.462, 0.566, 0.650, 0.727, 0.791, 0.857, 0.906, 0.946, 0.972, 1.0),
}


# ----------------------------------------------------------------------------------------------- sources
@dataclass(frozen=True)
class Source:
    key: str
    scenes: tuple[str, ...]
    load: Callable[[], np.ndarray]
    credit: str


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        img = getattr(skimage.data, name)()
        return img[0] if isinstance(img, tuple) else img  # stereo_motorcycle -> (left, right, disparity)

    return load


def _grace_hopper() -> np.ndarray:
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as f, Image.open(f) as img:
        return np.asarray(img.convert("RGB"))


SOURCES: tuple[Source, ...] = (
    Source("astronaut", ("human",), _skimage("astronaut"), "scikit-image astronaut (NASA, public domain)"),
    Source(
        "grace_hopper", ("human",), _grace_hopper, "matplotlib sample data grace_hopper.jpg (public domain)"
    ),
    Source("chelsea", ("animal",), _skimage("chelsea"), "scikit-image chelsea (Stefan van der Walt, CC0)"),
    Source("coffee", ("still-life",), _skimage("coffee"), "scikit-image coffee (Rachel Michetti, CC0)"),
    Source(
        "rocket",
        ("cityscape", "night scene"),
        _skimage("rocket"),
        "scikit-image rocket (SpaceX, public domain)",
    ),
    Source(
        "hubble", ("night scene",), _skimage("hubble_deep_field"), "scikit-image hubble_deep_field (NASA, PD)"
    ),
    Source(
        "motorcycle",
        ("indoor scene",),
        _skimage("stereo_motorcycle"),
        "scikit-image stereo_motorcycle left (Middlebury 2014 stereo; no licence stated)",
    ),
)
_SOURCE_BY_KEY = {s.key: s for s in SOURCES}


@cache
def _source_pixels(key: str) -> np.ndarray:
    img = np.asarray(_SOURCE_BY_KEY[key].load())
    if img.ndim != 3 or img.shape[2] < 3 or img.dtype != np.uint8:
        raise ValueError(
            f"embedded source {key!r}: expected an 8-bit colour photo, got {img.dtype} {img.shape}"
        )
    img = np.ascontiguousarray(img[:, :, :3])
    img.setflags(write=False)
    return img


# ----------------------------------------------------------------------------------------------- spec
@dataclass(frozen=True)
class EmbeddedSpec:
    """What to build: crop size, how many crops per source (None = every grid cell), which families."""

    name: str
    crop: int = 160
    caps: tuple[tuple[str, int | None], ...] = ()
    families: tuple[str, ...] = field(default_factory=lambda: tuple(f.name for f in FAMILIES))

    def __post_init__(self) -> None:
        for key, _ in self.caps:
            if key not in _SOURCE_BY_KEY:
                raise ValueError(
                    f"spec {self.name!r}: unknown source {key!r}; known: {sorted(_SOURCE_BY_KEY)}"
                )
        for fam in self.families:
            get_family(fam)
        if self.crop < 32:
            raise ValueError(f"spec {self.name!r}: crop must be >= 32 px, got {self.crop}")


SIZES: dict[str, EmbeddedSpec] = {
    # 3 contents x 15 families x 5 levels = 225 images; for tests (a few seconds).
    "small": EmbeddedSpec("small", caps=(("astronaut", 1), ("chelsea", 1), ("coffee", 1))),
    # 30 contents x 75 = 2,250 images; the default of every offline run.
    "default": EmbeddedSpec(
        "default",
        caps=(
            ("astronaut", 6),
            ("grace_hopper", 5),
            ("chelsea", 2),
            ("coffee", 5),
            ("rocket", 4),
            ("hubble", 3),
            ("motorcycle", 5),
        ),
    ),
    # every grid cell of every source: 76 contents x 75 = 5,700 images.
    "full": EmbeddedSpec("full", caps=tuple((s.key, None) for s in SOURCES)),
}


def _resolve(size: str | EmbeddedSpec) -> EmbeddedSpec:
    if isinstance(size, EmbeddedSpec):
        return size
    try:
        return SIZES[size]
    except KeyError:
        raise ConfigError(
            f"size={size!r}: the embedded benchmark comes in sizes {', '.join(SIZES)} (or pass an EmbeddedSpec)"
        ) from None


def _detail(crop: np.ndarray) -> float:
    y = crop.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    gy, gx = np.gradient(y)
    return float(np.hypot(gx, gy).mean())


def _grid(n_cells: int, length: int, crop: int) -> list[int]:
    if n_cells == 1:
        return [(length - crop) // 2]
    return [round(i * (length - crop) / (n_cells - 1)) for i in range(n_cells)]


def content_crops(spec: str | EmbeddedSpec = "default") -> list[tuple[str, str, np.ndarray]]:
    """The reference contents of a spec: ``(content_id, source_key, uint8 (S, S, 3))``, in a fixed order."""
    spec = _resolve(spec)
    s = spec.crop
    out = []
    for key, cap in spec.caps:
        img = _source_pixels(key)
        h, w = img.shape[:2]
        cells = [
            (f"{key}-r{i}c{j}", img[y : y + s, x : x + s])
            for i, y in enumerate(_grid(h // s, h, s))
            for j, x in enumerate(_grid(w // s, w, s))
        ]
        if cap is not None and cap < len(cells):
            ranked = sorted(range(len(cells)), key=lambda k: (-_detail(cells[k][1]), k))
            keep = set(ranked[:cap])
            cells = [c for k, c in enumerate(cells) if k in keep]
        out.extend((cid, key, np.ascontiguousarray(crop)) for cid, crop in cells)
    return out


# ----------------------------------------------------------------------------------------------- labels
def _ms_ssim_weights(size: int):
    import torch

    standard = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
    levels = 1
    while levels < 5 and (11 - 1) * 2**levels + 1 <= size:
        levels += 1
    return torch.tensor(standard[:levels], dtype=torch.float32)


def score_batch(distorted: np.ndarray, reference: np.ndarray, chunk: int = 16) -> dict[str, np.ndarray]:
    """Raw piq metrics of uint8 images (N, H, W, 3) against one uint8 reference (H, W, 3).

    Scored ``chunk`` images at a time: small batches keep the allocator out of the kernel (large tensors are
    mmap-ed and faulted in afresh on every call, which cost more system time than the metrics themselves).
    """
    import piq
    import torch

    distorted = np.asarray(distorted)
    ref = torch.from_numpy(np.ascontiguousarray(reference)).permute(2, 0, 1).float().div_(255.0).unsqueeze(0)
    weights = _ms_ssim_weights(ref.shape[-1])
    kw = {"reduction": "none", "data_range": 1.0}
    parts: dict[str, list] = {m: [] for m in METRICS}
    with torch.inference_mode():
        for i in range(0, len(distorted), chunk):
            x = torch.from_numpy(np.ascontiguousarray(distorted[i : i + chunk])).permute(0, 3, 1, 2)
            x = x.float().div_(255.0)
            r = ref.expand_as(x).contiguous()
            parts["ms_ssim"].append(piq.multi_scale_ssim(x, r, scale_weights=weights, **kw))
            parts["vif"].append(piq.vif_p(x, r, **kw))
            parts["gmsd"].append(piq.gmsd(x, r, **kw))
            parts["mdsi"].append(piq.mdsi(x, r, **kw))
            parts["haarpsi"].append(piq.haarpsi(x, r, **kw))
    return {m: torch.cat(v).double().numpy() for m, v in parts.items()}


def metric_quality(name: str, values) -> np.ndarray:
    """One metric's raw values -> quality q in [0, 1] through its CALIBRATION knots (clipped beyond them)."""
    knots = np.asarray(CALIBRATION[name], dtype=np.float64)
    levels = np.linspace(0.0, 1.0, len(knots))
    if name in LOWER_IS_BETTER:
        knots, levels = knots[::-1], levels[::-1]
    return np.interp(np.asarray(values, dtype=np.float64), knots, levels)


def pseudo_mos(metrics: dict[str, np.ndarray] | pd.DataFrame) -> np.ndarray:
    """The documented pseudo-MOS: mean over METRICS of each metric mapped through its CALIBRATION deciles."""
    return np.clip(np.mean([metric_quality(name, metrics[name]) for name in METRICS], axis=0), 0.0, 1.0)


# ----------------------------------------------------------------------------------------------- build
def cache_dir(root: str | os.PathLike | None = None) -> Path:
    """The base folder of embedded builds: ``root``, else ``$MMPIQA_CACHE/embedded``, else ~/.cache/mmpiqa/embedded."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("MMPIQA_CACHE")
    if env:
        return Path(env).expanduser() / DATASET
    return Path.home() / ".cache" / "mmpiqa" / DATASET


def _key(spec: EmbeddedSpec, seed: int) -> str:
    sources = {key: zlib.crc32(_source_pixels(key).tobytes()) for key, _ in spec.caps}
    blob = json.dumps(
        {
            "version": VERSION,
            "spec": asdict(spec) | {"name": None},
            "seed": seed,
            "sources": sources,
            "calibration": CALIBRATION,
        },
        sort_keys=True,
    )
    return f"{VERSION}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def _family_rng(seed: int, content: str, family: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(f"{content}/{family}".encode())])


def _build_content(
    content: str, source: str, ref: np.ndarray, families: Sequence[Family], seed: int, out: Path
) -> list[dict]:
    """Distort one content with every family and level, score, write PNGs; return its labels rows."""
    names, images, meta = [], [], []
    for fam in families:
        for level in range(1, 6):
            rng = _family_rng(seed, content, fam.name)  # the same draws at every level: nested distortions
            images.append(to_uint8(fam.apply(ref.astype(np.float32) / 255.0, level, rng)))
            names.append(f"images/{content}/{fam.name}_{level}.png")
            meta.append((fam, level))
    raw = score_batch(np.stack(images), ref)
    mos = pseudo_mos(raw)
    (out / "images" / content).mkdir(parents=True, exist_ok=True)
    Image.fromarray(ref).save(out / "refs" / f"{content}.png", compress_level=1)
    common = {"ref": content, "source": source, "scenes": "|".join(_SOURCE_BY_KEY[source].scenes)}
    # each metric's value for an image compared with itself
    identical = {"ms_ssim": 1.0, "vif": 1.0, "gmsd": 0.0, "mdsi": 0.0, "haarpsi": 1.0}
    rows = [
        {"name": f"refs/{content}.png", **common, "dist_type": "", "dist_group": "", "dist_level": 0,
         "strength": 0.0, **identical, "mos": 1.0}
    ]  # fmt: skip
    for i, (name, img, (fam, level)) in enumerate(zip(names, images, meta, strict=True)):
        Image.fromarray(img).save(out / name, compress_level=1)
        rows.append(
            {"name": name, **common, "dist_type": fam.name, "dist_group": fam.group, "dist_level": level,
             "strength": float(fam.strengths[level - 1]), **{m: round(float(raw[m][i]), 6) for m in METRICS},
             "mos": round(float(mos[i]), 6)}
        )  # fmt: skip
    return rows


def _sweep_stale(base: Path, max_age_s: float = 6 * 3600) -> None:
    for tmp in base.glob(".tmp-*"):
        try:
            if time.time() - tmp.stat().st_mtime > max_age_s:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # the parallelism is across contents, not inside the small convolutions


def _pool(workers: int) -> ProcessPoolExecutor:
    # fork is quick and safe here (children set one torch thread before any parallel region, as DataLoader
    # workers do); spawn where fork does not exist.
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=mp.get_context(method), initializer=_init_worker
    )


def build_embedded(
    size: str | EmbeddedSpec = "default",
    seed: int = 0,
    root: str | os.PathLike | None = None,
    progress: bool = True,
    workers: int | None = None,
    force: bool = False,
) -> Path:
    """Build (or find in the cache) the embedded benchmark; return its folder (holding ``labels.csv``).

    A second call with the same size, seed and root returns at once; ``force=True`` rebuilds. ``workers``
    processes each handle one content at a time (default: the CPU count, at most 8; 1 = in this process).
    """
    from tqdm.auto import tqdm

    spec = _resolve(size)
    base = cache_dir(root)
    final = base / _key(spec, seed)
    if (final / "labels.csv").is_file() and not force:
        return final
    tmp = base / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        base.mkdir(parents=True, exist_ok=True)
        _sweep_stale(base)
        (tmp / "refs").mkdir(parents=True)
    except OSError as error:  # a file where the cache folder should be, a read-only disk: name it
        raise writing(base, error) from error
    families = [get_family(f) for f in spec.families]
    contents = content_crops(spec)
    workers = max(1, min(workers or min(8, os.cpu_count() or 1), len(contents)))
    start = time.perf_counter()
    try:
        jobs = [(cid, src, crop, families, seed, tmp) for cid, src, crop in contents]
        total = len(contents) * (len(families) * 5 + 1)
        with tqdm(total=total, desc=f"embedded[{spec.name}]", unit="img", disable=not progress) as bar:
            if workers == 1:
                import torch

                threads = torch.get_num_threads()
                # small convolutions: one thread is as fast, and far faster on a busy machine
                torch.set_num_threads(1)
                try:
                    parts = []
                    for job in jobs:
                        parts.append(_build_content(*job))
                        bar.update(len(parts[-1]))
                finally:
                    torch.set_num_threads(threads)
            else:
                with _pool(workers) as pool:
                    futures = [pool.submit(_build_content, *job) for job in jobs]
                    try:
                        for fut in as_completed(futures):
                            bar.update(len(fut.result()))
                    except BaseException:
                        for fut in futures:
                            fut.cancel()
                        raise
                    parts = [fut.result() for fut in futures]
        labels = pd.DataFrame([row for part in parts for row in part])
        info = {
            "dataset": DATASET,
            "version": VERSION,
            "key": final.name,
            "seed": seed,
            "spec": asdict(spec),
            "n_contents": len(contents),
            "n_images": int((labels["dist_level"] > 0).sum()),
            "build_seconds": round(time.perf_counter() - start, 2),
            "workers": workers,
            "metrics": list(METRICS),
            "calibration": CALIBRATION,
            "libraries": _library_versions(),
            "sources": {s.key: s.credit for s in SOURCES if s.key in dict(spec.caps)},
        }
        (tmp / "build.json").write_text(json.dumps(info, indent=2))
        labels.to_csv(tmp / "labels.csv", index=False)  # the last file: its presence marks a complete build
        if final.exists() and (force or not (final / "labels.csv").is_file()):
            shutil.rmtree(final)  # rebuilt on request, or a folder left without its labels
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "labels.csv").is_file():  # losing a race is fine once the winner has finished
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("numpy", "scipy", "pillow", "scikit-image", "matplotlib", "torch", "piq"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "?"
    return out


# ----------------------------------------------------------------------------------------------- read
def read_embedded(
    root: str | os.PathLike | None = None,
    size: str | EmbeddedSpec = "default",
    seed: int = 0,
    include_refs: bool = False,
    with_metrics: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """The embedded benchmark as a validated uniform table, building it first when it is not cached.

    ``root`` is either a build folder (one holding ``labels.csv``: read as is) or the cache base folder.
    ``with_metrics=True`` appends the raw metric columns (``ms_ssim``, ``vif``, ...) after the uniform ones.
    """
    given = Path(root).expanduser() if root is not None else None
    if given is not None and (given / "labels.csv").is_file():
        folder = given
    else:
        folder = build_embedded(size=size, seed=seed, root=given, progress=progress)
    try:
        return _build_table(folder, include_refs, with_metrics)
    except (OSError, ValueError, KeyError, TypeError) as error:  # a cut, edited or half-copied build folder
        raise DatasetFormatError(
            f"{folder}: a damaged build of the embedded benchmark ({type(error).__name__}: {error}); delete this "
            f"folder and the next run builds it again"
        ) from error


def _build_table(folder: Path, include_refs: bool, with_metrics: bool) -> pd.DataFrame:
    """A build folder's labels as the uniform table, checked against the build's own record (build.json)."""
    build = json.loads((folder / "build.json").read_text(encoding="utf-8"))
    labels = pd.read_csv(
        folder / "labels.csv", keep_default_na=False, na_values={m: ["", "nan"] for m in METRICS}
    )
    expected = int(build["n_images"]) + int(build["n_contents"])  # every damaged image and every reference
    if len(labels) != expected:
        raise ValueError(f"labels.csv has {len(labels)} rows, build.json says the build made {expected}")
    if not include_refs:
        labels = labels[labels["dist_level"] > 0]
    labels = labels.reset_index(drop=True)
    table = pd.DataFrame(
        {
            "dataset": DATASET,
            "name": labels["name"].astype(str),
            "image": [str((folder / n).resolve()) for n in labels["name"]],
            "mos_raw": labels["mos"].astype("float64"),
            "mos": labels["mos"].astype("float64"),
            "ref": labels["ref"].astype(str),
            "dist_type": labels["dist_type"].astype(str),
            "dist_group": labels["dist_group"].astype(str),
            "dist_level": labels["dist_level"].astype("int64"),
            "scenes": labels["scenes"].astype(str),
            "split": "",
        }
    )
    table = validate_table(table, source=f"embedded ({folder})")
    table.attrs.update(root=str(folder), label_files=[str(folder / "labels.csv")])
    # the photo each content crop was cut from: splits keep a photo on one side (mmpiqa.data.splits)
    table["source"] = labels["source"].astype(str).to_numpy()
    if with_metrics:
        for m in METRICS:
            table[m] = labels[m].astype("float64").to_numpy()
    return table

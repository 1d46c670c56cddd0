"""Tiny copies of each dataset's official release layout, for the reader tests.

Label files use the official names, columns and variables (``.mat`` through scipy.io.savemat, ``.xlsx``
through openpyxl); the images are real but a few pixels large. Each builder returns the folder a user would
pass as ``--root`` and a dict of facts the tests check against.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from openpyxl import Workbook
from PIL import Image
from scipy.io import savemat


def write_image(path: Path, seed: int, size: tuple[int, int] = (6, 4)) -> Path:
    """A small real image; the format follows the suffix (.png, .bmp, .jpg)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


def write_xlsx(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(row)
    wb.save(path)
    return path


def cell_array(names: list[str], shape: tuple[int, int]) -> np.ndarray:
    """A MATLAB cell array of strings as savemat writes it (object array)."""
    arr = np.empty(shape, dtype=object)
    for k, n in enumerate(names):
        arr.flat[k] = n
    return arr


# ---------------------------------------------------------------------------------------------- KADID-10k


def make_kadid10k(base: Path, refs=(1, 2, 3), types=(1, 9, 16, 17, 25), levels=(1, 5)) -> tuple[Path, dict]:
    root = base / "kadid10k"
    lines = ["dist_img,ref_img,dmos,var"]
    k = 0
    for r in refs:
        write_image(root / "images" / f"I{r:02d}.png", r)
        for t in types:
            for lev in levels:
                name = f"I{r:02d}_{t:02d}_{lev:02d}.png"
                write_image(root / "images" / name, 1000 + k)
                dmos = 4.5 - 0.8 * (lev - 1) + 0.01 * r  # higher = better, falls with the level
                lines.append(f"{name},I{r:02d}.png,{dmos:.2f},0.{k % 9 + 1}")
                k += 1
    (root / "dmos.csv").write_text("\n".join(lines) + "\n")
    return root, {"n": k, "refs": {f"I{r:02d}" for r in refs}, "types": types, "levels": levels}


# ---------------------------------------------------------------------------------------------- LIVE


LIVE_COUNTS = (("jp2k", 227), ("jpeg", 233), ("wn", 174), ("gblur", 174), ("fastfading", 174))
LIVE_REFS = ("bikes.bmp", "caps.bmp", "womanhat.bmp", "parrots.bmp")


def make_live(base: Path, *, write_images: bool = True) -> tuple[Path, dict]:
    """databaserelease2/ with all 982 entries, 203 of them originals (orgs == 1) as in the release."""
    root = base / "databaserelease2"
    root.mkdir(parents=True)
    originals = set(range(0, 982, 5)) | {1, 6, 11, 16, 21, 26}  # 197 + 6 = 203
    dmos, orgs, refs = [], [], []
    k = 0
    for folder, count in LIVE_COUNTS:
        for j in range(1, count + 1):
            is_org = k in originals
            ref = LIVE_REFS[k % len(LIVE_REFS)]
            dmos.append(0.0 if is_org else 10.0 + (k * 37) % 90)
            orgs.append(1 if is_org else 0)
            refs.append(ref)
            if write_images and not is_org:
                img = root / folder / f"img{j}.bmp"
                img.parent.mkdir(exist_ok=True)
                Image.new("RGB", (2, 2), (k % 256, 0, 0)).save(img)
            k += 1
    dmos[2] = 104.5  # LIVE's DMOS can leave 0-100
    savemat(root / "dmos.mat", {"dmos": np.array([dmos]), "orgs": np.array([orgs], dtype=np.uint8)})
    savemat(root / "refnames_all.mat", {"refnames_all": cell_array(refs, (1, len(refs)))})
    for r in LIVE_REFS:
        write_image(root / "refimgs" / r, 7)
    n_dist = sum(1 for o in orgs if o == 0)
    per_folder, k = {}, 0
    for folder, count in LIVE_COUNTS:
        per_folder[folder] = count - sum(orgs[k : k + count])
        k += count
    return root, {"n": n_dist, "n_orgs": len(orgs) - n_dist, "entries": len(orgs), "per_folder": per_folder}


# ---------------------------------------------------------------------------------------------- CSIQ


def make_csiq(base: Path) -> tuple[Path, dict]:
    """csiq.DMOS.xlsx as released: a title row, an empty first column, then the all_by_image table."""
    root = base / "CSIQ"
    entries = [  # image, dst_type, level, dmos; folders as released (mixed case on some unpacks)
        (1600, "noise", 1, 0.06, "AWGN/1600.AWGN.1.png"),
        (1600, "noise", 4, 0.52, "AWGN/1600.AWGN.4.png"),
        (1600, "jpeg 2000", 2, 0.21, "jpeg2000/1600.jpeg2000.2.png"),
        ("woman", "contrast", 3, 0.41, "contrast/woman.contrast.3.png"),
        ("woman", "blur", 5, 0.93, "blur/woman.BLUR.5.png"),
        ("woman", "fnoise", 1, 0.0, "fnoise/woman.fnoise.1.png"),
        ("aerial_city", "jpeg", 2, 1.0, "jpeg/aerial_city.JPEG.2.png"),
    ]
    rows: list[list[object]] = [[None, "CSIQ image quality database: DMOS"], []]
    rows.append([None, "image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos"])
    for k, (img, t, lev, d, rel) in enumerate(entries):
        rows.append([None, img, k % 6 + 1, t, float(lev), 0.05, d])
        write_image(root / "dst_imgs" / rel, 50 + k, size=(5, 5))
    write_xlsx(root / "csiq.DMOS.xlsx", {"all_by_distortion": [["note"]], "all_by_image": rows})
    for img in ("1600", "woman", "aerial_city"):
        write_image(root / "src_imgs" / f"{img}.png", 3)
    return root, {"n": len(entries)}


# ---------------------------------------------------------------------------------------------- TID2013


def make_tid2013(base: Path) -> tuple[Path, dict]:
    """mos_with_names.txt with CRLF line ends; i25 files stored as I25_...BMP as in the release."""
    root = base / "tid2013"
    entries = [
        ("i01_01_1.bmp", "i01_01_1.bmp", 5.51429),
        ("i01_08_5.bmp", "i01_08_5.bmp", 1.2),
        ("i02_10_3.bmp", "i02_10_3.bmp", 3.9),
        ("i25_24_5.bmp", "I25_24_5.BMP", 2.7714),
        ("i25_17_2.bmp", "I25_17_2.bmp", 6.1),
    ]
    text = "".join(f"{m:.5f} {label}\r\n" for label, _, m in entries)
    root.mkdir(parents=True)
    (root / "mos_with_names.txt").write_bytes(text.encode())
    for k, (_, disk, _) in enumerate(entries):
        write_image(root / "distorted_images" / disk, 70 + k)
    write_image(root / "reference_images" / "I01.BMP", 1)
    return root, {"n": len(entries)}


# ---------------------------------------------------------------------------------------------- CLIVE


def make_clive(base: Path) -> tuple[Path, dict]:
    """A parent folder holding ChallengeDB_release/ (the unzip adds that level)."""
    root = base / "clive_download" / "ChallengeDB_release"
    names = [f"t{k}.bmp" for k in range(1, 8)] + ["3.bmp", "10.bmp", "1000.JPG", "1164.bmp"]
    mos = [50.0] * 7 + [66.36, 3.42, 92.43, 72.75]
    for k, n in enumerate(names):
        folder = root / "Images" / ("trainingImages" if n.startswith("t") else "")
        write_image(folder / n, 90 + k)
    (root / "Data").mkdir(parents=True)
    savemat(
        root / "Data" / "AllImages_release.mat", {"AllImages_release": cell_array(names, (len(names), 1))}
    )
    savemat(root / "Data" / "AllMOS_release.mat", {"AllMOS_release": np.array([mos])})
    savemat(root / "Data" / "AllStdDev_release.mat", {"AllStdDev_release": np.ones((1, len(names)))})
    return root.parent, {"n": len(names) - 7, "all": len(names)}


# ---------------------------------------------------------------------------------------------- KonIQ-10k


def make_koniq10k(base: Path, *, with_sets: bool = True) -> tuple[Path, dict]:
    root = base / "koniq10k"
    names = ["10004473376.jpg", "10007357496.jpg", "100117038.jpg", "826373.jpg", "9995874256.jpg"]
    mos = [3.82857142857143, 3.47916666666667, 1.09615384615385, 4.31, 3.46296296296296]
    sets = ["training", "test", "training", "validation", "test"]
    lines = ['"image_name","c1","c2","c3","c4","c5","c_total","MOS","SD","MOS_zscore"']
    for k, (n, m) in enumerate(zip(names, mos, strict=True)):
        write_image(root / "1024x768" / n, 10 + k, size=(8, 6))
        lines.append(f'"{n}",0,1,2,3,4,10,{m},0.5,{(m - 1) * 25:.3f}')
    (root / "koniq10k_scores_and_distributions.csv").write_text("\n".join(lines) + "\n")
    if with_sets:
        sl = ["image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,set"]
        sl += [f"{n},0,0,0,0,0,100,{m * 20:.2f},0.5,{s}" for n, m, s in zip(names, mos, sets, strict=True)]
        (root / "koniq10k_distributions_sets.csv").write_text("\n".join(sl) + "\n")
    return root, {"n": len(names), "names": names, "mos": mos, "sets": sets}


# ---------------------------------------------------------------------------------------------- SPAQ


SPAQ_SCENE_COLUMNS = [
    "Animal", "Cityscape", "Human", "Indoor scene", "Landscape", "Night scene", "Plant", "Still-life", "Others",
]  # fmt: skip


def make_spaq(base: Path, *, with_scenes: bool = True) -> tuple[Path, dict]:
    root = base / "SPAQ"
    names = ["00001.jpg", "00002.jpg", "00003.jpg", "11125.jpg"]
    mos = [48.86, 62.5, 2.0, 96.0]
    head = ["Image name", "MOS", "Brightness", "Colorfulness", "Contrast", "Noisiness", "Sharpness"]
    rows = [head] + [[n, m, 50, 51, 52, 53, 54] for n, m in zip(names, mos, strict=True)]
    write_xlsx(root / "Annotations" / "MOS and Image attribute scores.xlsx", {"Sheet1": rows})
    if with_scenes:
        onehot = [
            [1, 0, 0, 0, 0, 0, 0, 0, 0],
            [0, 0, 1, 1, 0, 0, 0, 0, 0],
            [0] * 9,
            [0, 0, 0, 0, 0, 1, 0, 0, 0],
        ]
        srows = [["Image name", *SPAQ_SCENE_COLUMNS]] + [[n, *o] for n, o in zip(names, onehot, strict=True)]
        write_xlsx(root / "Annotations" / "Scene category labels.xlsx", {"Sheet1": srows})
    for k, n in enumerate(names):
        write_image(root / "TestImage" / n, 30 + k)
    scenes = ["animal", "human|indoor scene", "", "night scene"]
    return root, {"n": len(names), "names": names, "mos": mos, "scenes": scenes}


# ---------------------------------------------------------------------------------------------- AGIQA-3K


def make_agiqa3k(base: Path) -> tuple[Path, dict]:
    root = base / "AGIQA-3K-download"
    text = (
        "name,prompt,adj1,adj2,style,mos_quality,std_quality,mos_align,std_align\n"
        "AttnGAN_normal_000.jpg,statue of a man,,,,0.965602553,0.223270101,0.40889324,0.615607722\n"
        'AttnGAN_normal_060.jpg,"artwork with only triangles, anime style",,,anime style,0.919776796,'
        "0.719282241,0.850496237,0.842552058\n"
        "sd1.5_normal_000.jpg,statue of a man,,,,3.2,0.5,3.1,0.4\n"
    )
    root.mkdir(parents=True)
    (root / "data.csv").write_text(text)
    for k, n in enumerate(["AttnGAN_normal_000.jpg", "AttnGAN_normal_060.jpg", "sd1.5_normal_000.jpg"]):
        write_image(root / "AGIQA-3K" / n, 40 + k)
    return root, {"n": 3}


# ---------------------------------------------------------------------------------------------- meta CSV


def make_metacsv(base: Path, *, sep: str = ",") -> tuple[Path, dict]:
    """A pyiqa-style meta file: ref_name, dist_name (LIVE style, no extension on one row), mos, split."""
    root = base / "mydata"
    rows = [
        ("refs/a.bmp", "jp2k/img1.bmp", "28.0", "training"),
        ("refs/a.bmp", "jp2k/img2", "65.1", "validation"),
        ("refs/b.bmp", "wn/img1.bmp", "20.5", "test"),
        ("refs/b.bmp", "wn/img2.bmp", "80.0", "training"),
    ]
    for k, (_, d, _, _) in enumerate(rows):
        write_image(root / (d if d.endswith(".bmp") else d + ".bmp"), 60 + k)
    lines = [sep.join(["ref_name", "dist_name", "dmos", "split", "split_1"])]
    lines += [sep.join([r, d, m, s, "test" if s == "training" else "training"]) for r, d, m, s in rows]
    (root / "meta.csv").write_text("\n".join(lines) + "\n")
    return root / "meta.csv", {"n": len(rows)}


# ---------------------------------------------------------------------------------------------- damage


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def html_page(path: Path) -> None:
    path.write_text("<!DOCTYPE html><html><body>Please log in to download</body></html>")


def png_gray16(path: Path, arr: np.ndarray) -> None:
    Image.fromarray(arr.astype(np.uint16)).save(path)


def png_rgb16(path: Path, arr: np.ndarray) -> None:
    """A 16-bit-per-channel RGB PNG written by hand (Pillow cannot write one)."""
    import struct

    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[i].astype(">u2").tobytes() for i in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )
    path.write_bytes(png)

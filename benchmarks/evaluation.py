"""The `eval` item of benchmarks/run.py: evaluation end to end (JPEG files on disk -> scores) beside the model.

Three rates on the same images, same model (deep visual prompts, xattn head), same batch and crops:

* model only: `model(crops, text_features=...)` on crops already in memory (the `infer` item's measurement);
* data only: the evaluation DataLoader (decode, crops, collation, its workers) without the model, which is
  the decode-bound rate the model cannot exceed;
* end to end: `mmpiqa.train.trainer.predict_scores` over an `IQADataset` of the files, exactly what `mmpiqa eval` runs.

The files are 500 x 500 JPEGs (quality 20-95) cut from scikit-image's sample photos, written to a temporary
folder (so they come from the page cache, as a dataset read a second time does).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from harness import measure

GRID_CROPS = 3  # DataConfig.test_crops default
PLAN = {  # backbone, batch (images), number of files, DataLoader workers
    "cpu": ("tiny", 64, 192, 0),  # batch 64: what `mmpiqa eval` uses with the default train.batch_size
    "cuda": ("ViT-B-16", 128, 2048, min(8, os.cpu_count() or 1)),
}


def write_jpegs(folder: Path, n: int, side: int = 500) -> Path:
    """`n` side x side JPEGs and a meta CSV (name, mos) in `folder`; returns the CSV's path."""
    from PIL import Image
    from skimage import data

    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        img = Image.fromarray(photos[i % len(photos)])
        scale = side / min(img.size) * rng.uniform(1.0, 1.3)
        img = img.resize((round(img.size[0] * scale) + 1, round(img.size[1] * scale) + 1), Image.BICUBIC)
        left, top = (int(rng.integers(0, d - side + 1)) for d in img.size)
        quality = int(rng.integers(20, 96))
        img.crop((left, top, left + side, top + side)).save(folder / f"{i:05d}.jpg", quality=quality)
        rows.append(f"{i:05d}.jpg,{quality}")
    csv = folder / "meta.csv"
    csv.write_text("name,mos\n" + "\n".join(rows) + "\n")
    return csv


def run(bench) -> None:
    """Rows: model only, data only, end to end (ratio to model only; target >= 0.70 on the CPU)."""
    from mmpiqa.data.crops import CropPolicy
    from mmpiqa.data.dataset import IQADataset
    from mmpiqa.data.readers import read_dataset
    from mmpiqa.train.heap import keep_freed_memory
    from mmpiqa.train.trainer import _batches, predict_scores

    keep_freed_memory()  # as `predict` does: the model-only rate is measured with the same allocator settings

    name, batch, n_files, workers = PLAN[bench.device.type]
    if bench.quick:
        n_files //= 2
    model = bench.model(name, visual_depth=-1).eval()
    policy = CropPolicy("grid", model.image_size, GRID_CROPS)
    with tempfile.TemporaryDirectory() as tmp:
        table = read_dataset("metacsv", write_jpegs(Path(tmp), n_files), mos_range=(0, 100))
        dataset = IQADataset(table, None, policy, cache_mb=0)  # what `mmpiqa eval` builds
        with torch.no_grad():
            text = model.text_features()
        crops = bench.images(batch * GRID_CROPS, model.image_size)

        def model_only() -> None:
            with torch.no_grad(), bench.autocast():
                for _ in range(n_files // batch):
                    model(crops, text_features=text)

        def data_only() -> None:
            for _ in _batches(dataset, batch, shuffle_seed=None, workers=workers):
                pass

        def end_to_end() -> None:
            with bench.autocast():
                predict_scores(model, dataset, batch_size=batch, device=bench.device, workers=workers)

        images = {model_only: n_files // batch * batch, data_only: n_files, end_to_end: n_files}
        rates = {}
        for fn, label in (
            (model_only, "model only (crops in memory)"),
            (data_only, "data only (decode, crops, collate)"),
            (end_to_end, "end to end (files -> scores, predict)"),
        ):
            timing = measure(fn, bench.device, repeats=max(2, bench.repeats - 1))
            rates[fn] = images[fn] / timing.seconds
            ratio = "1.00" if fn is model_only else f"{rates[fn] / rates[model_only]:.2f} of model only"
            target = ">= 0.70" if fn is end_to_end and bench.device.type == "cpu" else ""
            bench.row(
                "eval",
                f"{name} b{batch} {GRID_CROPS} grid crops, {workers} workers: {label}",
                f"{rates[fn]:,.1f} img/s ({n_files} 500x500 JPEGs)",
                ratio,
                target,
                timing,
            )

"""Score image files with the prompts of a finished run (`mmpiqa predict`)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import torch

from mmpiqa.data.crops import crop
from mmpiqa.data.images import load_rgb
from mmpiqa.errors import MissingFileError
from mmpiqa.model.checkpoint import load_prompts
from mmpiqa.model.prompted_clip import build_model
from mmpiqa.runs.experiment import crop_policies
from mmpiqa.runs.folder import RunFolder
from mmpiqa.train.trainer import resolve_device


def predict_images(run: str | Path, images: list[str | Path], split: int = 0) -> list[dict]:
    """One row per image: path, score (crop-averaged), most likely scene and distortion where the model has them."""
    folder = RunFolder(run)
    checkpoint = folder.split(split).prompts_file
    if not checkpoint.is_file():
        raise MissingFileError(
            f"{checkpoint} not found: is {folder.path} a finished run folder with split {split}? "
            f"(zero-shot runs have no prompts to load; evaluate them with `mmpiqa eval`)"
        )
    config = folder.read_config()
    # built from config.json: prompts learned on another backbone are refused, not scored
    model = load_prompts(checkpoint, build_model(config.model, device=resolve_device(config.train.device)))
    model.eval()
    _, policy = crop_policies(config.data, model)
    device = next(model.parameters()).device
    rows = []
    with torch.inference_mode():
        text = model.text_features()  # once for all images, and without a graph
        for path in images:
            crops = crop(load_rgb(path), policy).to(device)
            out = model(crops, text_features=text)
            row = {"image": str(path), "score": float(out.score.mean())}
            for branch, classes in (("scene", model.config.scenes), ("distortion", model.config.distortions)):
                if branch in out.logits:
                    probs = out.logits[branch].softmax(-1).mean(0)
                    row[branch] = classes[int(probs.argmax())]
                    row[f"{branch}_p"] = round(float(probs.max()), 4)
            rows.append(row)
    return rows


def format_predictions(rows: list[dict], fmt: str = "csv") -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2)
    buffer = io.StringIO()
    pd.DataFrame(rows).to_csv(buffer, index=False)
    return buffer.getvalue().rstrip("\n")

"""The honest baseline: a linear probe (ridge regression) on frozen image features of the same backbone.

Nothing is learned inside CLIP and no text is used: the image tower runs once over every crop, the features go into
a ridge regression fitted on the train part, the regularisation is chosen on the val part (best SRCC), and the
test part is scored once. It runs through the same orchestrator as prompt learning (`mmpiqa.runs.experiment.run`,
with `RidgeFit` as the per-split fitter): same crops (the training pool and the test policy of the config), same
splits (same `DataConfig`, same seed), same `train_fraction` subset as every other arm, and a run folder of the same
shape, so `mmpiqa.runs.experiment.results_table` shows it next to the prompt-learning runs:

    <out>/probe-<features>-<hash>/
        config.json, probe.json   the RunConfig of the data and backbone, the probe's own settings
        splits.json               the splits (identical to the other arms' for the same DataConfig)
        split-00/                 probe.safetensors (weights, standardisation, chosen alpha), predictions.csv,
                                  metrics.json (val, test, the val SRCC of every alpha)
        metrics.json, log.txt     per split and summary in the same schema as a training run

Features (`features=`): 'pooled' is the unit-norm pooled image embedding the prompt readouts see; 'tokens' the
mean and standard deviation over all tokens of every block's output (the per-layer token statistics that carry
far more quality information in a random or lightly trained tower, DESIGN §7); 'both' concatenates them. Training
features are averaged over each image's pool of training crops, test features over its test crops (for a linear
model that equals averaging the predicted scores over crops, as `mmpiqa.train.trainer.predict_scores` does).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from mmpiqa import metrics
from mmpiqa.config import ConfigError, ModelConfig, RunConfig, TrainConfig
from mmpiqa.data.crops import merge_crops
from mmpiqa.files import atomic_write, atomic_write_json
from mmpiqa.model.prompted_clip import PromptedCLIP, build_model
from mmpiqa.runs.experiment import FittedSplit, RunResult, SplitFitter, run
from mmpiqa.runs.folder import RunFolder
from mmpiqa.train.trainer import autocast

FEATURES = ("pooled", "tokens", "both")
# ridge penalties, in units of the number of training images (features are standardised first)
ALPHAS: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)


# ------------------------------------------------------------------------------------------------ features
def check_features(features: str, name: str = "features") -> str:
    """`features` if it is one of FEATURES, else a ConfigError naming `name` (a chapter's list checks each item)."""
    if features not in FEATURES:
        options = ", ".join(map(repr, FEATURES))
        raise ConfigError(f"{name}: {features!r} is not a probe feature; one of {options}")
    return features


@torch.no_grad()
def image_features(
    model: PromptedCLIP,
    dataset: Dataset,
    features: str = "pooled",
    *,
    batch_size: int = 64,
    device: torch.device | None = None,
    progress: bool = False,
    num_workers: int = 0,
) -> np.ndarray:
    """(N, D) float64 features of every item of `dataset`, averaged over the item's crops.

    'pooled': the unit-norm pooled embedding (equal to `model.image_features(images, normalize=True)` without
    prompts); 'tokens': per block, the mean and std over all tokens (class + patches) of the block's output;
    'both': the two side by side. Computed through open_clip's public `forward_intermediates`."""
    check_features(features)
    device = device or next(model.parameters()).device
    model.eval()
    out = []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    for batch in tqdm(loader, desc="probe features", leave=False, disable=not progress):
        images = batch["image"].to(device)
        n = images.shape[1]  # crops per image
        with autocast(device):
            feats = crop_features(model, images.flatten(0, 1), features)
        out.append(merge_crops(feats, n).double().cpu())
    return torch.cat(out).numpy()


def crop_features(model: PromptedCLIP, images: torch.Tensor, features: str = "pooled") -> torch.Tensor:
    """(B, D) float32 features of [0, 1] RGB images (B, 3, S, S) through the frozen, unprompted image tower."""
    result = model.clip.visual.forward_intermediates(
        model.normalize(images), output_fmt="NLC", output_extra_tokens=True
    )
    parts = []
    if features in ("pooled", "both"):
        parts.append(F.normalize(result["image_features"].float(), dim=-1))
    if features in ("tokens", "both"):
        for prefix, patches in zip(
            result["image_intermediates_prefix"], result["image_intermediates"], strict=True
        ):
            tokens = torch.cat([prefix, patches], dim=1).float()
            parts += [tokens.mean(1), tokens.std(1)]
    return torch.cat(parts, dim=-1)


# ------------------------------------------------------------------------------------------------ ridge
@dataclass
class RidgeProbe:
    """y = ((x - mean) / scale) @ coef + intercept, fitted with penalty `alpha` (absolute)."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    alpha: float
    val_srcc: dict[float, float]  # relative alpha -> val SRCC, for the record

    def predict(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float64) - self.mean) / self.scale) @ self.coef + self.intercept


def ridge_path(x: np.ndarray, y: np.ndarray, alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ridge coefficients of standardised-and-centred `x` for every penalty in `alphas`: (len(alphas), D).

    One eigendecomposition of the smaller Gram matrix (D x D or N x N) serves all penalties."""
    n, d = x.shape
    if d <= n:
        values, vectors = np.linalg.eigh(x.T @ x)
        proj = vectors.T @ (x.T @ y)
        coefs = np.stack([vectors @ (proj / (values + a)) for a in alphas])
    else:
        values, vectors = np.linalg.eigh(x @ x.T)
        proj = vectors.T @ y
        coefs = np.stack([x.T @ (vectors @ (proj / (values + a))) for a in alphas])
    return coefs, values


def fit_ridge(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    alphas: tuple[float, ...] = ALPHAS,
) -> RidgeProbe:
    """Standardise on train, fit ridge for every alpha (x number of training images), keep the best val SRCC
    (ties: the larger alpha, i.e. the simpler model)."""
    x_train, y_train = np.asarray(x_train, np.float64), np.asarray(y_train, np.float64)
    if len(x_train) < 2:
        raise ValueError("a linear probe needs at least 2 training images")
    mean = x_train.mean(0)
    scale = x_train.std(0)
    scale[scale < 1e-12] = 1.0  # constant features stay at 0 after centring
    xs = (x_train - mean) / scale
    y_mean = float(y_train.mean())
    absolute = np.asarray(alphas, np.float64) * len(x_train)
    coefs, _ = ridge_path(xs, y_train - y_mean, absolute)
    xv = (np.asarray(x_val, np.float64) - mean) / scale
    scores = {}
    for a, coef in zip(alphas, coefs, strict=True):
        pred = xv @ coef
        value = metrics.srcc(pred, y_val) if np.ptp(pred) > 0 else float("nan")
        scores[float(a)] = float(value)
    ranked = [a for a in alphas if np.isfinite(scores[float(a)])]
    best = max(ranked, key=lambda a: (scores[float(a)], a)) if ranked else max(alphas)
    index = list(alphas).index(best)
    return RidgeProbe(mean, scale, coefs[index], y_mean, float(absolute[index]), scores)


# ------------------------------------------------------------------------------------------------ runs
def probe_config(config: RunConfig, features: str = "pooled") -> RunConfig:
    """The part of `config` a probe depends on: backbone, data, crops, seed, device. Every arm of a study (any
    prompt settings) maps to the same probe, so it is computed once."""
    model = ModelConfig(
        backbone=config.model.backbone,
        pretrained=config.model.pretrained,
        backbone_seed=config.model.backbone_seed,
        text_depth=0,
        visual_depth=0,
        head="levels",
    )
    train = TrainConfig(
        seed=config.train.seed,
        device=config.train.device,
        batch_size=config.train.batch_size,
        num_workers=config.train.num_workers,  # not part of the key
        epochs=1,
    )
    return RunConfig(name=f"probe-{features}", model=model, data=config.data, train=train)


def probe_key(config: RunConfig, features: str, alphas: tuple[float, ...]) -> str:
    text = json.dumps({"run": config.key(), "features": features, "alphas": list(alphas)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def probe_folder(
    config: RunConfig, out: str | Path, features: str = "pooled", alphas: tuple[float, ...] = ALPHAS
) -> Path:
    pc = probe_config(config, features)
    return RunFolder.named(out, pc.name, RidgeFit(features, alphas).key(pc)).path


class RidgeFit(SplitFitter):
    """The linear probe as the per-split fitter of `mmpiqa.runs.experiment.run`: features of the frozen tower,
    ridge fitted on train, the penalty chosen on val."""

    def __init__(self, features: str = "pooled", alphas: tuple[float, ...] = ALPHAS) -> None:
        check_features(features)
        self.features, self.alphas = features, tuple(float(a) for a in alphas)
        self._model: PromptedCLIP | None = None

    def key(self, config: RunConfig) -> str:
        return probe_key(config, self.features, self.alphas)

    def begin(self, folder: RunFolder) -> None:
        atomic_write_json(
            folder.probe_settings_file, {"features": self.features, "alphas": list(self.alphas)}
        )

    def model(self, config: RunConfig, device: torch.device) -> PromptedCLIP:
        if self._model is None:  # nothing in it is learned: one model serves every split
            self._model = build_model(config.model, device=device)
        return self._model

    def describe(self, model: PromptedCLIP) -> str:
        return f"{model.identity.describe()}; linear probe on {self.features} features"

    def fit(self, config, model, parts, folder, *, device, log, progress) -> FittedSplit:
        feats = {
            name: _cached_features(config, model, ds, self.features, device, progress)
            for name, ds in parts.items()
        }
        mos = {name: ds.mos.numpy().astype(np.float64) for name, ds in parts.items()}
        probe = fit_ridge(feats["train"], mos["train"], feats["val"], mos["val"], self.alphas)
        _save_probe(folder.probe_file, probe, self.features)
        predictions = {
            part: {
                "score": probe.predict(feats[part]),
                "mos": mos[part],
                "index": np.arange(len(parts[part])),
            }
            for part in ("val", "test")
        }
        record = {
            "n_train": len(parts["train"]),
            "alpha": probe.alpha,
            "val_srcc_by_alpha": {str(k): v for k, v in probe.val_srcc.items()},
        }
        note = f"{len(parts['train'])} train images, {probe.coef.size} features, alpha {probe.alpha:.3g}"
        return FittedSplit(predictions, record, note)


def run_probe(
    config: RunConfig,
    out: str | Path = "runs",
    *,
    features: str = "pooled",
    alphas: tuple[float, ...] = ALPHAS,
    splits: int | None = None,
    table: pd.DataFrame | None = None,
    progress: bool = True,
    echo: bool = True,
) -> RunResult:
    """Fit and evaluate the linear probe for the data and backbone of `config` (any arm of a study) over its
    splits; skip if the folder is complete. Returns a `RunResult` like `mmpiqa.runs.experiment.run`."""
    fitter = RidgeFit(features, alphas)
    pc = probe_config(config, features)
    return run(pc, out, fitter=fitter, splits=splits, table=table, progress=progress, echo=echo)


_FEATURES: dict[
    str, np.ndarray
] = {}  # recent feature arrays of this process (val/test repeat across fractions)


def _cached_features(pc: RunConfig, model, dataset, features: str, device, progress: bool) -> np.ndarray:
    """`image_features`, reused within a process when the backbone, images, crops and seed are the same (e.g. the
    val and test parts of one split at every training fraction of a data-efficiency study)."""
    key = json.dumps(
        [pc.model.to_dict(), features, dataset.paths, repr(dataset.policy), dataset.seed], sort_keys=True
    )
    key = hashlib.sha256(key.encode()).hexdigest()
    if key not in _FEATURES:
        if len(_FEATURES) >= 8:
            _FEATURES.pop(next(iter(_FEATURES)))
        _FEATURES[key] = image_features(
            model,
            dataset,
            features,
            batch_size=pc.train.batch_size * 2,
            device=device,
            progress=progress,
            num_workers=pc.train.num_workers,
        )
    return _FEATURES[key]


def _save_probe(path: Path, probe: RidgeProbe, features: str) -> None:
    from safetensors.torch import save_file

    tensors = {
        "mean": torch.from_numpy(probe.mean.copy()),
        "scale": torch.from_numpy(probe.scale.copy()),
        "coef": torch.from_numpy(np.asarray(probe.coef).copy()),
    }
    meta = {"intercept": repr(probe.intercept), "alpha": repr(probe.alpha), "features": features}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_probe(path: str | Path) -> RidgeProbe:
    """A probe written by `run_probe` (safetensors + JSON metadata; nothing is unpickled)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
        t = {k: handle.get_tensor(k).numpy() for k in handle.keys()}
    return RidgeProbe(t["mean"], t["scale"], t["coef"], float(meta["intercept"]), float(meta["alpha"]), {})

"""One training loop for every variant: prompts and head learn, the backbone never does.

AdamW with linear warm-up and cosine decay, gradient clipping, bf16 autocast on CUDA, validation every epoch with
best-on-val selection (the test part never touches selection), an atomic checkpoint per epoch that `resume`
continues from exactly, and a guard that stops on a non-finite loss and leaves the last good checkpoint intact.

Training crops come from a fixed pool of `train_crops` random crops per image (positions drawn once from the
seed); each epoch draws one pool entry per image from a generator seeded by (seed, epoch). Everything random is
a function of (seed, epoch), so a resumed run replays exactly what an uninterrupted run would have done. The pool
also makes the frozen-feature cache exact: when the image tower has no prompts, the features of every pool crop
are computed once and every epoch reads them instead of running the image tower.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from mmpiqa import metrics
from mmpiqa.config import ConfigError, TrainConfig
from mmpiqa.data.crops import merge_crops
from mmpiqa.errors import InputError
from mmpiqa.files import atomic_write
from mmpiqa.model.checkpoint import save_prompts
from mmpiqa.model.prompted_clip import PromptedCLIP
from mmpiqa.train.heap import keep_freed_memory
from mmpiqa.train.losses import LossWeights, total_loss

STATE_FILE = "last.safetensors"  # per-epoch training state (resume)
BEST_FILE = "prompts.safetensors"  # best-on-val prompts (what evaluation and `predict` load)


class TrainingDiverged(InputError, FloatingPointError):
    """The loss became NaN or infinite; the message names the step, the last good checkpoint and the setting to
    change (a learning rate too high for the data is the user's to fix, not a bug: one line, no traceback)."""


def resolve_device(name: str | torch.device) -> torch.device:
    """'auto' (CUDA when available), or a device torch knows that exists here; else a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = torch.device("meta")  # not a device name: refused below
    if device.type not in ("cpu", "cuda"):  # the towers are tested on these; 'mps', 'meta', ... are not
        raise ConfigError(f"device={name!r}: 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if device.type == "cuda" and (device.index or 0) >= (count := torch.cuda.device_count()):
        raise ConfigError(f"device={name!r}: this machine has {count} CUDA device(s); use 'auto' or 'cpu'")
    return device


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (seeds third-party code that uses the legacy global state)
    torch.manual_seed(seed)


def lr_factor(step: int, total: int, warmup: float) -> float:
    """Linear warm-up over the first `warmup` fraction of steps, then cosine decay to zero."""
    warm = max(1, round(warmup * total)) if warmup > 0 else 0
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _pick_crops(indices: torch.Tensor, n_crops: int, seed: int, epoch: int) -> torch.Tensor:
    """Which pool crop each image uses this epoch: a function of (seed, epoch, image index) only."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    table = torch.randint(n_crops, (int(indices.max()) + 1,), generator=generator)
    return table[indices]


def _batches(
    dataset: Dataset, batch_size: int, *, shuffle_seed: int | None, workers: int, epoch: int = 0
) -> DataLoader:
    """Batches in a seeded order; under torchrun each rank takes its shard of the same order."""
    rank, world = world_info()
    if shuffle_seed is not None and world > 1:
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=shuffle_seed)
        sampler.set_epoch(epoch)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers)
    generator = torch.Generator().manual_seed(shuffle_seed + epoch) if shuffle_seed is not None else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle_seed is not None,
        generator=generator,
        num_workers=workers,
    )


class FrozenFeatures:
    """Image features of every (image, crop) of a dataset, computed once: valid while the image tower is frozen.

    Stored per dataset index and crop: pooled (N, n_crops, E) in float32 and, when the readout needs them, patch
    tokens (N, n_crops, T, E) in the model's dtype. Both unit-normalised, exactly what `readout` consumes.
    """

    def __init__(
        self,
        model: PromptedCLIP,
        dataset: Dataset,
        batch_size: int,
        device: torch.device,
        desc: str = "caching image features",
    ) -> None:
        pooled, tokens = [], []
        with torch.no_grad(), autocast(device):
            for batch in tqdm(
                _batches(dataset, batch_size, shuffle_seed=None, workers=0), desc=desc, leave=False
            ):
                images = batch["image"].to(device)
                b, n = images.shape[:2]
                p, t = model.image_features(images.flatten(0, 1), normalize=True, return_tokens=True)
                pooled.append(p.float().view(b, n, -1).cpu())
                if model.needs_tokens:
                    tokens.append(t.view(b, n, *t.shape[1:]).cpu())
        self.pooled = torch.cat(pooled)
        self.tokens = torch.cat(tokens) if tokens else None

    def take(self, indices: torch.Tensor, crops: torch.Tensor, device: torch.device):
        pooled = self.pooled[indices, crops].to(device)
        tokens = self.tokens[indices, crops].to(device) if self.tokens is not None else None
        return pooled, tokens


def autocast(device: torch.device):
    """bf16 autocast on CUDA (training, evaluation and every measurement of them); off elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def predict_scores(
    model: PromptedCLIP,
    dataset: Dataset,
    *,
    batch_size: int = 64,
    device: torch.device | None = None,
    progress: bool = False,
    workers: int = 0,
) -> dict[str, np.ndarray]:
    """Per-image predictions on an evaluation dataset (scores averaged over each image's crops).

    Returns score, mos, index and, for each branch, the crop-averaged class probabilities.
    """
    device = device or next(model.parameters()).device
    model.eval()
    keep_freed_memory()  # batches reuse memory instead of faulting it in again (mmpiqa/train/heap.py)
    text = model.text_features()
    out: dict[str, list] = {"score": [], "mos": [], "index": []}
    probs: dict[str, list] = {b: [] for b in model.text_prompts.branch_names}
    loader = _batches(dataset, batch_size, shuffle_seed=None, workers=workers)
    for batch in tqdm(loader, desc="evaluating", leave=False, disable=not progress):
        images = batch["image"].to(device)
        n = images.shape[1]  # crops per image
        with autocast(device):
            result = model(images.flatten(0, 1), text_features=text)
        out["score"].append(merge_crops(result.score, n).cpu())
        out["mos"].append(batch["mos"].float())
        out["index"].append(batch["index"])
        for branch, logits in result.logits.items():
            probs[branch].append(merge_crops(logits.softmax(-1), n).cpu())
    result = {k: torch.cat(v).numpy() for k, v in out.items()}
    result.update({f"prob_{b}": torch.cat(v).numpy() for b, v in probs.items()})
    return result


@dataclass
class TrainResult:
    best_epoch: int
    best_val: dict
    history: list[dict] = field(default_factory=list)
    checkpoint: Path | None = None
    # `predict_scores` on the val part with the best prompts, when this process scored that epoch (None when the
    # best epoch was scored before a resume): evaluation reuses it instead of scoring val a second time
    best_val_predictions: dict[str, np.ndarray] | None = None


class Trainer:
    """Fit one model on one split. `out_dir` receives `prompts.safetensors` (best on val) and `last.safetensors`.

    `train_set` items carry a pool of crops (image: (n_pool, 3, S, S)) and the labels under their keys in
    `mmpiqa.labels.BATCH_KEYS`; `val_set` items the evaluation crops. `fit` runs the loop; `step` is one
    training step of it, the one the runtime projection and the tower measurements time (they need no
    `out_dir`: only `fit` writes).
    """

    def __init__(
        self,
        model: PromptedCLIP,
        config: TrainConfig,
        train_set: Dataset,
        val_set: Dataset,
        out_dir: str | Path | None = None,
        *,
        log: Callable[[str], None] = print,
        progress: bool = True,
        on_epoch: Callable[[dict], None] | None = None,
    ) -> None:
        self.model, self.config = model, config
        self.train_set, self.val_set = train_set, val_set
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.log, self.progress, self.on_epoch = log, progress, on_epoch
        self.device = next(model.parameters()).device
        keep_freed_memory()
        self.weights = LossWeights(
            quality=config.quality_weight,
            scene=config.scene_weight if "scene" in model.text_prompts.branch_names else 0.0,
            distortion=config.distortion_weight if "distortion" in model.text_prompts.branch_names else 0.0,
            quality_loss=config.quality_loss,
        )
        self.params = model.trainable_parameters()
        if not any(p.numel() for p in self.params):
            raise ValueError(
                "Nothing to train: this config learns no prompt and has no head (text_depth=0, visual_depth=0, "
                "head 'levels'/'antonym'). Evaluate it as a zero-shot baseline instead."
            )
        self.optimizer = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=config.weight_decay)
        self.rank, self.world = world_info()
        # the steps this rank takes: under torchrun each rank sees its shard, about 1/world of the set
        self.steps_per_epoch = len(self._loader(0))
        self.total_steps = self.steps_per_epoch * config.epochs
        self.cache = None

    # --- state ------------------------------------------------------------------------------------------
    def _save_state(self, epoch: int, history: list[dict], best: dict) -> None:
        tensors = {f"param.{i}": p.detach().cpu().contiguous() for i, p in enumerate(self.params)}
        state = self.optimizer.state_dict()
        for pid, slots in state["state"].items():
            for name, value in slots.items():
                tensors[f"optim.{pid}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
        meta = {
            "epoch": json.dumps(epoch),
            "history": json.dumps(history),
            "best": json.dumps(best),
            "param_groups": json.dumps(state["param_groups"]),
        }
        atomic_write(self.out_dir / STATE_FILE, lambda tmp: save_file(tensors, str(tmp), metadata=meta))

    def _load_state(self) -> tuple[int, list[dict], dict]:
        path = self.out_dir / STATE_FILE
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata()
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}
        with torch.no_grad():
            for i, p in enumerate(self.params):
                p.copy_(tensors[f"param.{i}"].to(p.device, p.dtype))
        optim_state: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, pid, name = key.split(".", 2)
                optim_state.setdefault(int(pid), {})[name] = (
                    value.to(self.device) if name != "step" else value
                )
        self.optimizer.load_state_dict(
            {"state": optim_state, "param_groups": json.loads(meta["param_groups"])}
        )
        return json.loads(meta["epoch"]), json.loads(meta["history"]), json.loads(meta["best"])

    # --- loop -------------------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> TrainResult:
        cfg = self.config
        if self.out_dir is None:
            raise ValueError("Trainer.fit needs an out_dir: it writes the checkpoints there")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        start, history, best = 0, [], {"epoch": -1, "srcc": -math.inf}
        best_predictions = None
        if resume and (self.out_dir / STATE_FILE).is_file():
            last, history, best = self._load_state()
            start = last + 1
            self.log(f"resumed from {self.out_dir / STATE_FILE} after epoch {last + 1}/{cfg.epochs}")
        if start < cfg.epochs:
            self.cache_features()
        for epoch in range(start, cfg.epochs):
            train_stats = self._train_epoch(epoch)
            predictions = self._val_predictions()
            val = metrics.evaluate(predictions["score"], predictions["mos"])
            row = {
                "epoch": epoch + 1,
                **{f"train_{k}": v for k, v in train_stats.items()},
                **{f"val_{k}": v for k, v in val.items()},
            }
            history.append(row)
            if val["srcc"] > best["srcc"]:
                best, best_predictions = {"epoch": epoch + 1, **val}, predictions
                if self.rank == 0:
                    save_prompts(self.model, self.out_dir / BEST_FILE, extra={"epoch": epoch + 1, "val": val})
            if self.rank == 0:
                self._save_state(epoch, history, best)
            barrier()
            self.log(
                f"epoch {epoch + 1}/{cfg.epochs}  loss {train_stats['loss']:.4f}  val SRCC {val['srcc']:.3f} "
                f"PLCC {val['plcc']:.3f}" + ("  (best)" if best["epoch"] == epoch + 1 else "")
            )
            if self.on_epoch is not None:
                self.on_epoch(row)
        return TrainResult(
            best_epoch=best["epoch"],
            best_val=best,
            history=history,
            checkpoint=self.out_dir / BEST_FILE,
            best_val_predictions=best_predictions,
        )

    def _val_predictions(self) -> dict[str, np.ndarray]:
        return predict_scores(
            self.model,
            self.val_set,
            batch_size=self.config.batch_size * 2,
            device=self.device,
            workers=self.config.num_workers,
        )

    def _train_epoch(self, epoch: int) -> dict:
        cfg = self.config
        loader = self._loader(epoch)
        totals: dict[str, float] = {}
        lrs: list[float] = []
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not self.progress)
        for i, batch in enumerate(bar):
            step = epoch * self.steps_per_epoch + i
            lrs.append(cfg.lr * lr_factor(step, self.total_steps, cfg.warmup))
            for group in self.optimizer.param_groups:
                group["lr"] = lrs[-1]
            try:
                parts = self.step(batch, epoch)
            except FloatingPointError as error:  # raised by the loss, before anything was updated
                raise TrainingDiverged(
                    f"non-finite loss at epoch {epoch + 1}, step {i + 1} ({error}). The last good checkpoint is "
                    f"{self.out_dir / STATE_FILE} (best: {self.out_dir / BEST_FILE}); lower train.lr or check "
                    f"the labels, then run again with --resume."
                ) from error
            for key, value in parts.items():
                totals[key] = totals.get(key, 0.0) + value
            bar.set_postfix(loss=f"{parts['total']:.4f}")
        n = max(1, len(loader))
        stats = {("loss" if k == "total" else f"loss_{k}"): v / n for k, v in totals.items()}
        return {**stats, "lr_first": lrs[0], "lr_last": lrs[-1], "steps": len(lrs)}

    # --- one training step ----------------------------------------------------------------------------------
    def cache_features(self) -> None:
        """Build the frozen-feature cache of `train_set` when it is exact (image tower frozen) and switched on."""
        if self.model.image_tower_frozen and self.config.feature_cache:
            self.cache = FrozenFeatures(self.model, self.train_set, self.config.batch_size * 2, self.device)

    def step(self, batch: dict, epoch: int = 0) -> dict[str, float]:
        """One training step on a batch of `train_set` items at the optimiser's current learning rate: `loss`,
        then `update`. Returns the loss parts (unweighted branches and the weighted total, floats)."""
        loss, parts = self.loss(batch, epoch)
        self.update(loss)
        return parts

    def loss(self, batch: dict, epoch: int = 0) -> tuple[torch.Tensor, dict[str, float]]:
        """The forward half of `step`: each image's pool crop of `epoch` through the model (from the feature cache
        when it is built), then the weighted loss of its branches (`total_loss` reads the labels by `BATCH_KEYS`)."""
        model = self.model
        model.train()
        crops = _pick_crops(batch["index"], batch["image"].shape[1], self.config.seed, epoch)
        with autocast(self.device):
            text = model.text_features()
            if self.cache is not None:
                pooled, tokens = self.cache.take(batch["index"], crops, self.device)
                out = model.readout(pooled, tokens, text)
            else:
                images = batch["image"][torch.arange(len(crops)), crops].to(self.device)
                out = model(images, text_features=text)
        # in float32: the readout's outputs are (see PromptedCLIP.readout)
        return total_loss(
            out.score, out.logits.get("scene"), out.logits.get("distortion"), batch, self.weights
        )

    def update(self, loss: torch.Tensor) -> None:
        """The backward half of `step`: gradients (averaged over ranks under torchrun), clipping, one AdamW step."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.world > 1:  # the prompts are tiny: averaging their gradients by hand is what DDP would do
            for p in self.params:
                if p.grad is not None:
                    dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                    p.grad /= self.world
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
        self.optimizer.step()

    def _loader(self, epoch: int) -> DataLoader:
        return _batches(
            self.train_set,
            self.config.batch_size,
            shuffle_seed=self.config.seed * 1_000,
            epoch=epoch,
            workers=self.config.num_workers,
        )


def world_info() -> tuple[int, int]:
    """(rank, world size) of an initialised process group (torchrun), (0, 1) otherwise."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed() -> torch.device | None:
    """Under torchrun (WORLD_SIZE > 1) join the process group; return this rank's device, else None."""
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1:
        return None
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def barrier() -> None:
    if world_info()[1] > 1:
        dist.barrier()

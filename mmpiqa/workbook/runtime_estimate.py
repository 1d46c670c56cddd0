"""How long will a run take? A projection from one dry training step, made before anything is trained.

`estimate_runtime(config, table)` builds the run's model and its first split's datasets, times the Trainer's
own training step (`Trainer.step` on a batch from the training part: text pass, image tower or cached features,
losses, backward, AdamW) and the scoring of a few evaluation images, and multiplies by what the run will do:

    training    splits x epochs x ceil(n_train / batch_size) steps x (step + batch loading)
                (loading from disk in the first epoch, from the dataset's memory cache afterwards)
    cache       splits x n_train x train_crops crops x one no-grad crop   (frozen image tower only)
    evaluation  splits x (epochs x n_val + n_test) images x test crops x one no-grad crop
                (the best epoch's validation scores are reused; zero-shot scores val and test once)

The dry step changes nothing on disk (it trains a throwaway model); the numbers are wall-clock times on this
machine, as noisy as its load. Model building, data loading between epochs and the bootstrap intervals are not counted.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import pandas as pd
import torch
from torch.utils.data import Subset, default_collate

from mmpiqa.config import RunConfig
from mmpiqa.data.splits import Split, make_splits
from mmpiqa.model.prompted_clip import build_model
from mmpiqa.runs.experiment import part_datasets, training_images
from mmpiqa.train.trainer import Trainer, autocast, resolve_device, seed_everything


@dataclass(frozen=True)
class RuntimeEstimate:
    """Measured unit costs and the counts they are multiplied by."""

    step_s: float  # one training step on a batch of `batch_size` (0 when nothing is trained)
    load_s: float  # loading and cropping one training batch from disk (first epoch)
    load_cached_s: float  # the same from the dataset's in-memory cache of decoded images (later epochs)
    eval_crop_s: float  # scoring one crop without gradient (the image tower's forward pass)
    n_train: int  # training images per split (after train_fraction)
    n_val: int
    n_test: int
    epochs: int
    batch_size: int
    splits: int
    test_crops: int  # crops scored per evaluation image
    train_crops: int  # pool of training crops per image (the frozen-feature cache encodes all of them)
    trains: bool  # False for a zero-shot config: evaluation only
    cache: bool  # the image tower is frozen: training reads cached features

    @property
    def steps(self) -> int:
        """Training steps per split."""
        return self.epochs * math.ceil(self.n_train / self.batch_size) if self.trains else 0

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n_train / self.batch_size) if self.trains else 0

    @property
    def train_s(self) -> float:
        """Every step, plus loading: from disk in the first epoch, from memory afterwards."""
        first, later = self.steps_per_epoch, self.steps - self.steps_per_epoch
        return self.splits * (self.steps * self.step_s + first * self.load_s + later * self.load_cached_s)

    @property
    def cache_s(self) -> float:
        return self.splits * self.n_train * self.train_crops * self.eval_crop_s if self.cache else 0.0

    @property
    def eval_images(self) -> int:
        """Evaluation images per split: validation after every epoch (once for zero-shot), then test once."""
        return (self.epochs if self.trains else 1) * self.n_val + self.n_test

    @property
    def eval_s(self) -> float:
        return self.splits * self.eval_images * self.test_crops * self.eval_crop_s

    @property
    def total_s(self) -> float:
        return self.train_s + self.cache_s + self.eval_s

    def table(self) -> pd.DataFrame:
        """One row per part of the projection, in seconds."""
        rows = [
            ("training", f"{self.splits} x {self.steps} steps x {self.step_s:.3f} s + loading", self.train_s),
            ("feature cache", f"{self.splits} x {self.n_train * self.train_crops} crops x {self.eval_crop_s:.4f} s"
             if self.cache else "-", self.cache_s),
            ("evaluation", f"{self.splits} x {self.eval_images} images x {self.test_crops} crops x "
             f"{self.eval_crop_s:.4f} s", self.eval_s),
            ("total", "", self.total_s),
        ]  # fmt: skip
        return pd.DataFrame(rows, columns=["part", "how", "seconds"]).set_index("part")

    def describe(self) -> str:
        what = (
            f"{self.steps} training steps ({self.epochs} epochs x {self.steps_per_epoch}) at {self.step_s:.2f} s"
            if self.trains
            else "nothing to train (zero-shot)"
        )
        return (
            f"projected runtime {_clock(self.total_s)} per {self.splits} split(s): {what}; "
            f"{self.eval_images} evaluation images x {self.test_crops} crops at {1000 * self.eval_crop_s:.1f} ms"
        )


def _clock(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def estimate_runtime(
    config: RunConfig,
    table: pd.DataFrame,
    *,
    splits: int | None = None,
    steps: int = 1,
    warmup: int | None = None,
    eval_batch: int | None = None,
) -> RuntimeEstimate:
    """Project the runtime of `experiment.run(config, ..., splits=splits)` on `table` from a dry step.

    Times `warmup` untimed and `steps` timed training steps on the first batch of the first split's training
    part, and one evaluation batch of `eval_batch` validation images with all their crops without gradient.
    Nothing is written. The defaults differ by device, so that the projection costs little beside the run:
    on a GPU one warm-up step (its first steps select kernels) and 2 x batch_size images (the batch
    `predict_scores` uses: a GPU's time per image depends on it); on a CPU no warm-up (the first step of the tiny
    backbone took ~10 % longer than later ones, and a run pays it too) and 16 images (its time per image was the
    same, within the noise, for 8 to 64)."""
    device = resolve_device(config.train.device)
    gpu = device.type == "cuda"
    warmup = (1 if gpu else 0) if warmup is None else warmup
    split = _first_split(config, table)
    seed_everything(config.train.seed)
    model = build_model(config.model, device=device)
    parts = part_datasets(table, split, config.data, model, config.train.seed)
    train, val = parts["train"], parts["val"]
    trains = any(p.numel() for p in model.trainable_parameters())

    rows = range(min(config.train.batch_size, len(train)))
    start = time.perf_counter()
    batch = default_collate([train[i] for i in rows])  # first access: decodes the files
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    default_collate([train[i] for i in rows])  # later epochs: decoded images come from the dataset's cache
    load_cached_s = time.perf_counter() - start

    # one evaluation batch of n_eval images with all their crops, after a one-image warm-up
    n_eval = min(eval_batch or (2 * config.train.batch_size if gpu else 16), len(val))
    with torch.no_grad(), autocast(device):
        model.eval()
        text = model.text_features()
        model(val[0]["image"].to(device), text_features=text)
        views = torch.cat([val[i]["image"] for i in range(n_eval)]).to(device)
        start = time.perf_counter()
        model(views, text_features=text)
        _sync(device)
        eval_crop_s = (time.perf_counter() - start) / len(views)

    step_s, cache = 0.0, False
    if trains:
        # a Trainer over this batch's images only (their positions in `train`: the cache's indices match), so
        # that its feature cache, when the run has one, covers just them
        trainer = Trainer(model, config.train, Subset(train, rows), val, progress=False)
        trainer.cache_features()
        cache = trainer.cache is not None
        step_s = _step_time(trainer, batch, steps, warmup)
    return RuntimeEstimate(
        step_s=step_s,
        load_s=load_s,
        load_cached_s=load_cached_s,
        eval_crop_s=eval_crop_s,
        n_train=len(train),
        n_val=len(val),
        n_test=len(parts["test"]),
        epochs=config.train.epochs,
        batch_size=config.train.batch_size,
        splits=splits or config.data.n_splits,
        test_crops=val[0]["image"].shape[0],
        train_crops=batch["image"].shape[1],
        trains=trains,
        cache=cache,
    )


def _first_split(config: RunConfig, table: pd.DataFrame) -> Split:
    d = config.data
    return make_splits(table, n_splits=1, seed=d.split_seed, fractions=d.fractions, by=d.protocol)[0]


def _step_time(trainer: Trainer, batch: dict, steps: int, warmup: int) -> float:
    """Median seconds of `trainer.step` on `batch`."""
    timings = []
    for _ in range(warmup + steps):
        start = time.perf_counter()
        trainer.step(batch)
        _sync(trainer.device)
        timings.append(time.perf_counter() - start)
    timings = sorted(timings[warmup:])
    return timings[len(timings) // 2]


def project(configs: list[RunConfig], table: pd.DataFrame) -> pd.DataFrame:
    """The projected runtime of several runs (an ablation's arms) on this machine, one dry step per distinct
    run (arms that differ only in their training fraction share one).

    One row per config (run folder name, training steps per split, seconds); ``frame.attrs["summary"]`` is a line with the
    total to print before the long cell. Runs whose folders are complete are read back, not re-run, so the total
    is the worst case (nothing there yet)."""
    rows = []
    measured: dict[str, RuntimeEstimate] = {}
    for config in configs:
        # the unit costs do not depend on how many training images a run uses: arms that differ only in
        # data.train_fraction (a data-efficiency study) share one dry step and differ in their counts
        costs = config.replace(data=config.data.replace(train_fraction=None)).key()
        if costs in measured:
            n_train = len(training_images(_first_split(config, table), config.data))
            estimate = dataclasses.replace(measured[costs], n_train=n_train)
        else:
            estimate = measured[costs] = estimate_runtime(config, table)
        run = f"{config.name}-{config.key()}"  # the run folder's name: unique, unlike the arm's name
        rows.append({"run": run, "steps per split": estimate.steps, "seconds": estimate.total_s})
    frame = pd.DataFrame(rows).set_index("run")
    backbone = configs[0].model.backbone if configs else "-"
    frame.attrs["summary"] = (
        f"projected runtime of {len(configs)} run(s) on {backbone}: {_clock(frame['seconds'].sum())} "
        f"if none of their run folders is complete yet"
    )
    return frame

"""Runs are data: a RunConfig becomes a folder of results, over the n-split protocol.

    <out>/<name>-<config hash>/
        config.json           the RunConfig (what papermill, --set and sweep grids fill in)
        splits.json           exactly which images were train / val / test in each split
        skipped.json          only with data.skip_unreadable: the unreadable images left out, and why
        split-00/             prompts.safetensors (best on val), last.safetensors (resume), predictions.csv,
                              metrics.json (val at the selected epoch, test, history)
        metrics.json          per split and summary (median, mean ± std, bootstrap CI) for val and test
        log.txt               what happened, with the backbone and data the numbers come from

A folder with `metrics.json` is complete and is skipped when asked again; an incomplete one resumes where it
stopped (finished splits are kept, the running split continues from its last epoch).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mmpiqa import metrics
from mmpiqa.model.checkpoint import CheckpointError, load_prompts
from mmpiqa.config import ConfigError, DataConfig, RunConfig
from mmpiqa.data.crops import CropPolicy
from mmpiqa.data.dataset import IQADataset
from mmpiqa.data.readers import read_dataset
from mmpiqa.data.splits import Split, check_no_leakage, load_splits, make_splits, save_splits, subsample_train
from mmpiqa.errors import MissingFileError
from mmpiqa.files import atomic_write_json, writing
from mmpiqa.model.prompted_clip import PromptedCLIP, build_model
from mmpiqa.train.trainer import (
    BEST_FILE,
    Trainer,
    barrier,
    init_distributed,
    predict_scores,
    resolve_device,
    seed_everything,
    world_info,
)

METRIC_NAMES = ("srcc", "plcc", "krcc", "plcc_logistic", "rmse")
SKIPPED_FILE = "skipped.json"  # the images data.skip_unreadable dropped: name, path, reason


@dataclass
class RunResult:
    folder: Path
    config: RunConfig
    metrics: dict
    skipped: bool = False

    def summary(self, part: str = "test", metric: str = "srcc") -> dict:
        return self.metrics["summary"][part][metric]


def run_folder(config: RunConfig, out: str | Path) -> Path:
    return Path(out) / f"{config.name}-{config.key()}"


def load_table(data: DataConfig, progress: bool = True) -> pd.DataFrame:
    """The dataset's table with every image decoded once, so a corrupt file is found before the first step.

    With ``data.skip_unreadable`` unreadable images are dropped and listed in ``table.attrs['skipped']``;
    otherwise the first problem is a `DatasetFormatError` naming the files."""
    options = {"size": data.size, "progress": progress} if data.dataset == "embedded" else {}
    return read_dataset(
        data.dataset, data.root, skip_unreadable=data.skip_unreadable, check_images=True, **options
    )


def crop_policies(data: DataConfig, model: PromptedCLIP) -> tuple[CropPolicy, CropPolicy]:
    if data.crop_size is not None and data.crop_size != model.image_size:
        raise ConfigError(
            f"data.crop_size={data.crop_size}: the backbone {model.identity.name} takes {model.image_size} px "
            f"images (its position embeddings are fixed); set data.crop_size={model.image_size} or null."
        )
    size = model.image_size
    train = CropPolicy(kind="random", size=size, n=data.train_crops)
    test = CropPolicy(kind=data.test_crop, size=size, n=data.test_crops if data.test_crop == "grid" else 1)
    return train, test


def part_datasets(
    table: pd.DataFrame, split: Split, data: DataConfig, model: PromptedCLIP, seed: int
) -> dict[str, IQADataset]:
    """train / val / test datasets of one split, labels mapped onto the model's class lists."""
    train_policy, test_policy = crop_policies(data, model)
    train_names = split.train
    if data.train_fraction is not None:
        train_names = subsample_train(split, fraction=data.train_fraction, seed=split.seed).train
    common = dict(scene_classes=model.config.scenes, distortion_classes=model.config.distortions)
    return {
        # epoch fixed at 0: the training pool of crops is drawn once; the trainer picks one per epoch
        "train": IQADataset(table, train_names, train_policy, seed=seed, **common),
        "val": IQADataset(table, split.val, test_policy, **common),
        "test": IQADataset(table, split.test, test_policy, **common),
    }


class RunLog:
    """Lines to the console and to the run's log.txt."""

    def __init__(self, path: Path, echo: bool = True, write: bool = True) -> None:
        self.path, self.echo, self.write = path, echo, write

    def __call__(self, message: str) -> None:
        if self.echo:
            print(message, flush=True)
        if not self.write:
            return
        try:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {message}\n")
        except OSError as error:
            raise writing(self.path, error) from error


def run(
    config: RunConfig,
    out: str | Path = "runs",
    *,
    splits: int | None = None,
    table: pd.DataFrame | None = None,
    progress: bool = True,
    echo: bool = True,
    on_epoch: Callable[[dict], None] | None = None,
) -> RunResult:
    """Train and evaluate `config` over the first `splits` (default: data.n_splits) splits; skip if complete.

    `on_epoch(row)` is called after every training epoch with the history row (e.g. a live plot)."""
    folder = run_folder(config, out)
    if (folder / "metrics.json").is_file():
        stored = read_json(folder / "metrics.json")
        if echo:
            print(f"{folder}: complete, skipped (delete the folder to run it again)")
        return RunResult(folder, config, stored, skipped=True)
    check_run(config, splits)
    device = init_distributed() or resolve_device(config.train.device)
    main = world_info()[0] == 0  # under torchrun only rank 0 writes
    table = table if table is not None else load_table(config.data, progress=progress)
    # everything the user can get wrong is checked by now: only from here on is the folder written
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise writing(folder, error) from error
    if main:
        config.save(folder / "config.json")
    log = RunLog(folder / "log.txt", echo=echo and main, write=main)
    skipped = table.attrs.get("skipped", [])
    if skipped and main:
        atomic_write_json(folder / SKIPPED_FILE, skipped)
        log(
            f"skipped {len(skipped)} unreadable image(s) (data.skip_unreadable=true); listed in {SKIPPED_FILE}"
        )
    split_file = folder / "splits.json"
    if split_file.is_file():
        all_splits = load_splits(split_file)
    else:  # deterministic: every rank makes the same splits
        all_splits = make_splits(
            table,
            n_splits=config.data.n_splits,
            seed=config.data.split_seed,
            fractions=config.data.fractions,
            by=config.data.protocol,
        )
        if main:
            save_splits(all_splits, split_file, dataset=config.data.dataset)
    chosen = all_splits[: splits or config.data.n_splits]

    per_split = []
    for index, split in enumerate(chosen):
        per_split.append(
            _run_split(
                config, table, split, index, folder / f"split-{index:02d}", device, log, progress, on_epoch
            )
        )
    result = {
        "name": config.name,
        "key": config.key(),
        "backbone": per_split[0]["backbone"],
        "data": f"{config.data.dataset} ({len(table)} images; protocol {chosen[0].by}; {len(chosen)} split(s))",
        "skipped_images": len(skipped),
        "per_split": per_split,
        "summary": summarise_splits(per_split),
    }
    if main:
        atomic_write_json(folder / "metrics.json", result)
    test = result["summary"]["test"]["srcc"]
    log(
        f"done: test SRCC median {test['median']:.3f} [{test['ci_low']:.3f}, {test['ci_high']:.3f}] "
        f"over {len(per_split)} split(s)"
    )
    return RunResult(folder, config, result)


def check_run(config: RunConfig, splits: int | None = None) -> None:
    """What the run config cannot check alone, before any file exists: the split count, and the model itself.

    The model is built once (on the CPU, outside the global random state), so an unknown backbone, missing
    weights, a prompt depth beyond the towers or a crop size the backbone cannot take fail here."""
    if splits is not None and not 1 <= splits <= config.data.n_splits:
        raise ConfigError(f"--splits {splits}: between 1 and data.n_splits={config.data.n_splits}")
    with torch.random.fork_rng(devices=[]):
        model = build_model(config.model, device="cpu")
    crop_policies(config.data, model)


def read_json(path: Path) -> dict:
    """A JSON file of a run folder; damage names the file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(
            f"{path}: not valid JSON ({error}); delete the file (a run folder rebuilds it) or restore it."
        ) from error


def summarise_splits(per_split: list[dict]) -> dict:
    """part -> metric -> summary over splits (median, mean ± std, bootstrap CI); one split keeps its image CI."""
    return {
        part: {
            m: metrics.summarise([s[part][m] for s in per_split])
            if len(per_split) > 1
            else _single(per_split[0], part, m)
            for m in METRIC_NAMES
        }
        for part in ("val", "test")
    }


def _single(split_metrics: dict, part: str, metric: str) -> dict:
    """Summary of one split: the value, with a bootstrap CI over its test images where it has one."""
    value = split_metrics[part][metric]
    low, high = split_metrics[part].get(f"{metric}_ci", (float("nan"), float("nan")))
    return {"median": value, "mean": value, "std": float("nan"), "ci_low": low, "ci_high": high, "n": 1}


def _run_split(config, table, split, index, folder: Path, device, log, progress, on_epoch=None) -> dict:
    if (folder / "metrics.json").is_file():
        return read_json(folder / "metrics.json")
    check_no_leakage(table, split)
    seed = config.train.seed + index
    seed_everything(seed)
    model = build_model(config.model, device=device)
    parts = part_datasets(table, split, config.data, model, seed)
    if index == 0:
        log(f"backbone: {model.describe()}")
        log(
            f"data: {config.data.dataset}, {len(table)} images; split {split.by}: "
            f"{len(parts['train'])} train / {len(parts['val'])} val / {len(parts['test'])} test"
        )
    history, best_epoch = [], 0
    if any(p.numel() for p in model.trainable_parameters()):
        trainer = Trainer(
            model,
            config.train,
            parts["train"],
            parts["val"],
            folder,
            log=log,
            progress=progress,
            on_epoch=on_epoch,
        )
        result = trainer.fit(resume=True)
        history, best_epoch = result.history, result.best_epoch
        barrier()
        load_prompts(folder / BEST_FILE, model)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        log(f"split {index}: nothing to learn (zero-shot); evaluating the hand-written prompts")
    evaluation = {}
    for part in ("val", "test"):
        pred = predict_scores(
            model,
            parts[part],
            batch_size=config.train.batch_size * 2,
            device=device,
            workers=config.train.num_workers,
        )
        evaluation[part] = part_metrics(pred, table, parts[part])
        if part == "test" and world_info()[0] == 0:
            save_predictions(folder / "predictions.csv", table, parts[part], pred)
    out = {
        "split": index,
        "seed": split.seed,
        "best_epoch": best_epoch,
        "backbone": model.describe(),
        **evaluation,
        "history": history,
    }
    if world_info()[0] == 0:
        atomic_write_json(folder / "metrics.json", out)
    log(
        f"split {index}: test SRCC {evaluation['test']['srcc']:.3f}  PLCC {evaluation['test']['plcc']:.3f} "
        f"(best val epoch {best_epoch})"
    )
    return out


def part_metrics(pred: dict, table: pd.DataFrame, dataset: IQADataset) -> dict:
    """Metrics of one part's predictions. The CIs resample reference contents, not images, wherever several
    contents repeat: the distorted versions of one content are not independent draws (metrics.bootstrap_ci).
    A part holding a single content can only resample its images: that interval speaks for this content alone."""
    values = metrics.evaluate(pred["score"], pred["mos"])
    ref_of = dict(zip(table["name"].astype(str), table["ref"].astype(str), strict=True))
    refs = np.array([ref_of[dataset.names[i]] for i in pred["index"]])
    n_contents = len(set(refs.tolist()))
    clusters = refs if 1 < n_contents < len(refs) else None
    for name in ("srcc", "plcc"):
        ci = metrics.bootstrap_ci(pred["score"], pred["mos"], metric=name, n_boot=500, clusters=clusters)
        values[f"{name}_ci"] = list(ci)
    return values


def save_predictions(path: Path, table: pd.DataFrame, dataset: IQADataset, pred: dict) -> None:
    names = [dataset.names[i] for i in pred["index"]]
    rows = table.set_index("name").loc[names].reset_index()
    frame = pd.DataFrame(
        {
            "name": rows["name"].to_numpy(),
            "mos": pred["mos"],
            "score": pred["score"],
            "dist_group": rows["dist_group"].to_numpy(),
            "dist_type": rows["dist_type"].to_numpy(),
        }
    )
    for key, probs in pred.items():
        if key.startswith("prob_"):
            frame[f"{key[5:]}_top"] = np.argmax(probs, axis=1)
    from mmpiqa.files import atomic_write_text

    atomic_write_text(path, frame.to_csv(index=False))


def evaluate_run(folder: str | Path, data: DataConfig, progress: bool = True) -> dict:
    """Evaluate every split's best prompts of a finished run on all images of another dataset."""
    folder = Path(folder)
    config = read_run_config(folder)
    table = load_table(data, progress=progress)
    device = resolve_device(config.train.device)
    results = []
    for split_dir in sorted(folder.glob("split-*")):
        checkpoint = split_dir / BEST_FILE
        model = build_model(config.model, device=device)
        if checkpoint.is_file():  # refused when learned on another backbone than config.json names
            load_prompts(checkpoint, model)
        _, test_policy = crop_policies(data, model)
        dataset = IQADataset(
            table,
            tuple(table["name"]),
            test_policy,
            scene_classes=model.config.scenes,
            distortion_classes=model.config.distortions,
            cache_mb=0,  # each image is read once
        )
        pred = predict_scores(
            model,
            dataset,
            batch_size=config.train.batch_size * 2,
            device=device,
            progress=progress,
            workers=config.train.num_workers,
        )
        results.append(part_metrics(pred, table, dataset))
    if not results:
        raise MissingFileError(f"{folder} holds no split-*/ folders: is it a run folder?")
    return {
        "run": str(folder),
        "dataset": data.dataset,
        "n_images": len(table),
        "skipped_images": len(table.attrs.get("skipped", [])),
        "per_split": results,
        "summary": {
            m: metrics.summarise([r[m] for r in results])
            if len(results) > 1
            else {
                "median": results[0][m],
                "ci_low": results[0].get(f"{m}_ci", [np.nan])[0],
                "ci_high": results[0].get(f"{m}_ci", [np.nan, np.nan])[1],
            }
            for m in METRIC_NAMES
        },
    }


def read_run_config(folder: Path) -> RunConfig:
    """The RunConfig of a run folder; a folder without one is named as not being a run folder."""
    if not (folder / "config.json").exists():
        raise MissingFileError(f"{folder} has no config.json: give a run folder (made by `mmpiqa train`).")
    return RunConfig.load(folder / "config.json")


def results_table(folders: list[Path] | list[RunResult], part: str = "test") -> pd.DataFrame:
    """One row per run: name, key, median and CI of each metric (read from the run folders)."""
    rows = []
    for item in folders:
        folder = item.folder if isinstance(item, RunResult) else Path(item)
        stored = json.loads((folder / "metrics.json").read_text())
        row = {"run": stored["name"], "key": stored["key"], "splits": len(stored["per_split"])}
        for m in ("srcc", "plcc"):
            s = stored["summary"][part][m]
            row[m], row[f"{m}_low"], row[f"{m}_high"] = s["median"], s["ci_low"], s["ci_high"]
        rows.append(row)
    return pd.DataFrame(rows)

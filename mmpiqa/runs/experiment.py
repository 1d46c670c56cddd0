"""Runs are data: a RunConfig becomes a run folder of results (`mmpiqa.runs.folder` owns its layout), over the
n-split protocol.

`run` is the one orchestrator: splits, leakage check, one folder per split, predictions, metrics, the summary over
splits, and the reuse of complete runs. What happens inside a split is a `SplitFitter`: prompt training
(`PromptTraining`, the default) or one passed in (the workbook's linear probe).

A complete folder is skipped when asked again; an incomplete one resumes where it stopped (finished splits are
kept, the running split continues from its last epoch).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mmpiqa import metrics
from mmpiqa.config import ConfigError, DataConfig, RunConfig
from mmpiqa.data.crops import CropPolicy
from mmpiqa.data.dataset import IQADataset
from mmpiqa.data.readers import read_dataset
from mmpiqa.data.splits import (
    Split,
    check_no_leakage,
    load_splits,
    make_splits,
    repeated_tests,
    save_splits,
    subsample_train,
)
from mmpiqa.errors import MissingFileError
from mmpiqa.files import atomic_write_json, atomic_write_text, writing
from mmpiqa.model.checkpoint import CheckpointError, load_prompts
from mmpiqa.model.prompted_clip import PromptedCLIP, build_model
from mmpiqa.runs.folder import RunFolder, SplitFolder
from mmpiqa.train.trainer import (
    Trainer,
    barrier,
    init_distributed,
    predict_scores,
    resolve_device,
    seed_everything,
    world_info,
)

METRIC_NAMES = ("srcc", "plcc", "krcc", "plcc_logistic", "rmse")


@dataclass
class RunResult:
    folder: Path
    config: RunConfig
    metrics: dict
    skipped: bool = False

    def summary(self, part: str = "test", metric: str = "srcc") -> dict:
        return self.metrics["summary"][part][metric]


def run_folder(config: RunConfig, out: str | Path) -> Path:
    """Where `run(config, out)` writes (prompt training; other fitters key their folders themselves)."""
    return RunFolder.named(out, config.name, config.key()).path


def load_table(data: DataConfig, progress: bool = True) -> pd.DataFrame:
    """The dataset's table with every image decoded once, so a corrupt file is found before the first step.

    With ``data.skip_unreadable`` unreadable images are dropped and listed in ``table.attrs['skipped']``;
    otherwise the first problem is a `DatasetFormatError` naming the files."""
    own = {"size": data.size, "progress": progress} if data.dataset == "embedded" else {}
    taken = sorted(set(data.reader_options) & {*own, "skip_unreadable", "check_images"})
    if taken:
        raise ConfigError(
            f"data.reader_options: {', '.join(taken)} cannot be a reader option here; "
            "set data.size / data.skip_unreadable instead"
        )
    return read_dataset(
        data.dataset,
        data.root,
        skip_unreadable=data.skip_unreadable,
        check_images=True,
        **own,
        **data.reader_options,
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


def training_images(split: Split, data: DataConfig) -> list[str]:
    """The images a run trains on in `split`: its training part, or the `data.train_fraction` subset of it."""
    if data.train_fraction is None:
        return split.train
    return subsample_train(split, fraction=data.train_fraction, seed=split.seed).train


def part_datasets(
    table: pd.DataFrame, split: Split, data: DataConfig, model: PromptedCLIP, seed: int
) -> dict[str, IQADataset]:
    """train / val / test datasets of one split, labels mapped onto the model's class lists."""
    train_policy, test_policy = crop_policies(data, model)
    common = dict(scene_classes=model.config.scenes, distortion_classes=model.config.distortions)
    return {
        # epoch fixed at 0: the training pool of crops is drawn once; the trainer picks one per epoch
        "train": IQADataset(table, training_images(split, data), train_policy, seed=seed, **common),
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


@dataclass
class FittedSplit:
    """What a fitter hands back for one split: the predictions of the val and test parts (score, mos, index, and
    prob_* where the model has them), what the split's metrics.json records about the fit, a note for the log."""

    predictions: dict[str, dict]
    record: dict
    note: str
    history: list = field(default_factory=list)


class SplitFitter:
    """How one split is fitted; `run` does everything around it. By default the folder is keyed by the config
    and every split builds the configured model after its seed is set; a fitter overrides what differs."""

    def key(self, config: RunConfig) -> str:
        """The run folder's key: ``<out>/<name>-<key>``."""
        return config.key()

    def begin(self, folder: RunFolder) -> None:
        """Record the fitter's own settings in the folder (once, on the writing rank)."""

    def model(self, config: RunConfig, device: torch.device) -> PromptedCLIP:
        """The model of a split; its crop size and class lists shape the split's datasets."""
        return build_model(config.model, device=device)

    def describe(self, model: PromptedCLIP) -> str:
        """What the numbers come from (the log and metrics.json's ``backbone``)."""
        return model.describe()

    def fit(
        self,
        config: RunConfig,
        model: PromptedCLIP,
        parts: dict[str, IQADataset],
        folder: SplitFolder,
        *,
        device: torch.device,
        log: RunLog,
        progress: bool,
    ) -> FittedSplit:
        """Fit on ``parts['train']`` (choosing on ``parts['val']``), write the fit into `folder`, and predict the
        val and test parts."""
        raise NotImplementedError


class PromptTraining(SplitFitter):
    """The default fitter: train the prompts (resuming from the split's last epoch) and keep the best on val; a
    config with nothing to learn (zero-shot) is evaluated as it is. `on_epoch(row)` gets every epoch's history
    row (e.g. a live plot)."""

    def __init__(self, on_epoch: Callable[[dict], None] | None = None) -> None:
        self.on_epoch = on_epoch

    def fit(self, config, model, parts, folder, *, device, log, progress) -> FittedSplit:
        history, best_epoch, predictions = [], 0, {}
        if any(p.numel() for p in model.trainable_parameters()):
            trainer = Trainer(
                model,
                config.train,
                parts["train"],
                parts["val"],
                folder.path,
                log=log,
                progress=progress,
                on_epoch=self.on_epoch,
            )
            result = trainer.fit(resume=True)
            history, best_epoch = result.history, result.best_epoch
            barrier()
            load_prompts(folder.prompts_file, model)
            if result.best_val_predictions is not None:  # the trainer scored val with these very prompts
                predictions["val"] = result.best_val_predictions
        else:
            log(f"{folder.path.name}: nothing to learn (zero-shot); evaluating the hand-written prompts")
        for part in ("val", "test"):
            if part not in predictions:
                predictions[part] = predict_scores(
                    model,
                    parts[part],
                    batch_size=config.train.batch_size * 2,
                    device=device,
                    workers=config.train.num_workers,
                )
        return FittedSplit(predictions, {"best_epoch": best_epoch}, f"best val epoch {best_epoch}", history)


def run(
    config: RunConfig,
    out: str | Path = "runs",
    *,
    fitter: SplitFitter | None = None,
    splits: int | None = None,
    table: pd.DataFrame | None = None,
    progress: bool = True,
    echo: bool = True,
    on_epoch: Callable[[dict], None] | None = None,
) -> RunResult:
    """Fit and evaluate `config` over the first `splits` (default: data.n_splits) splits; skip if complete.

    `fitter` fits each split (default: `PromptTraining(on_epoch)`: `on_epoch(row)` is called after every
    training epoch with the history row, e.g. a live plot)."""
    if fitter is None:
        fitter = PromptTraining(on_epoch)
    elif on_epoch is not None:
        raise ValueError("on_epoch belongs to prompt training: pass fitter=PromptTraining(on_epoch)")
    key = fitter.key(config)
    folder = RunFolder.named(out, config.name, key)
    twin = None if folder.path.exists() else RunFolder.complete_twin(out, key)
    if twin is not None:
        try:
            twin.copy_as(folder, config)
        except OSError as error:
            raise writing(folder.path, error) from error
        RunLog(folder.log_file, echo=False)(
            f"copied from {twin.path.name}: the same config key, not run again"
        )
    if folder.is_complete():
        if echo:
            done = f"the same run as {twin.path.name}, copied" if twin else "complete, skipped"
            print(f"{folder.path}: {done} (delete the folder to run it again)")
        return RunResult(folder.path, config, folder.read_metrics(), skipped=True)
    check_run(config, splits)
    device = init_distributed() or resolve_device(config.train.device)
    main = world_info()[0] == 0  # under torchrun only rank 0 writes
    table = table if table is not None else load_table(config.data, progress=progress)
    all_splits = run_splits(config, table, folder.splits_file)
    # everything the user can get wrong is checked by now: only from here on is the folder written
    try:
        folder.path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise writing(folder.path, error) from error
    if main:
        config.save(folder.config_file)
        fitter.begin(folder)
    log = RunLog(folder.log_file, echo=echo and main, write=main)
    skipped = table.attrs.get("skipped", [])
    if skipped and main:
        atomic_write_json(folder.skipped_file, skipped)
        log(
            f"skipped {len(skipped)} unreadable image(s) (data.skip_unreadable=true); "
            f"listed in {folder.skipped_file.name}"
        )
    if main and not folder.splits_file.is_file():
        save_splits(all_splits, folder.splits_file, dataset=config.data.dataset)
    chosen = all_splits[: splits or config.data.n_splits]
    repeats = repeated_tests(chosen)
    if repeats:
        same = "; ".join(" and ".join(str(i) for i in group) for group in repeats)
        distinct = len({split.test for split in chosen})
        log(
            f"note: splits {same} test the same images ({distinct} distinct test sets in {len(chosen)} splits: "
            "the data has few references); a statistic over splits counts them as independent"
        )

    per_split = []
    for index, split in enumerate(chosen):
        per_split.append(
            _run_split(config, table, split, index, folder.split(index), fitter, device, log, progress)
        )
    result = {
        "name": config.name,
        "key": key,
        "backbone": per_split[0]["backbone"],
        "data": f"{config.data.dataset} ({len(table)} images; protocol {chosen[0].by}; {len(chosen)} split(s))",
        "skipped_images": len(skipped),
        "per_split": per_split,
        "summary": summarise_splits(per_split),
    }
    if main:
        atomic_write_json(folder.metrics_file, result)
    test = result["summary"]["test"]["srcc"]
    log(
        f"done: test SRCC median {test['median']:.3f} [{test['ci_low']:.3f}, {test['ci_high']:.3f}] "
        f"over {len(per_split)} split(s)"
    )
    return RunResult(folder.path, config, result)


def check_run(config: RunConfig, splits: int | None = None) -> None:
    """What the run config cannot check alone, before any file exists: the split count, and the model itself.

    The model is built once (on the CPU, outside the global random state), so an unknown backbone, missing
    weights, a prompt depth beyond the towers or a crop size the backbone cannot take fail here."""
    if splits is not None and not 1 <= splits <= config.data.n_splits:
        raise ConfigError(f"--splits {splits}: between 1 and data.n_splits={config.data.n_splits}")
    with torch.random.fork_rng(devices=[]):
        model = build_model(config.model, device="cpu")
    crop_policies(config.data, model)


def run_splits(config: RunConfig, table: pd.DataFrame, saved: Path) -> list[Split]:
    """The run's splits, checked against `table` before anything is written: read back from `saved` (the run
    folder's splits.json) when it exists, else made from the config (deterministic: every rank makes the same)."""
    from_file = saved.is_file()
    if from_file:
        try:
            splits = load_splits(saved)
        except ValueError as error:
            raise CheckpointError(f"{error}; delete it, and the run makes the same splits again") from None
    else:
        try:
            splits = make_splits(
                table,
                n_splits=config.data.n_splits,
                seed=config.data.split_seed,
                fractions=config.data.fractions,
                by=config.data.protocol,
            )
        except ValueError as error:
            raise ConfigError(
                f"data: {config.data.dataset} cannot be split as configured: {error} "
                f"(the run config's field is data.protocol: auto, ref, random or official)"
            ) from None
    for split in splits:
        try:
            check_no_leakage(table, split)
        except ValueError as error:
            if from_file:  # a table changed under a saved splits.json
                raise ConfigError(
                    f"{saved}: these splits do not fit the dataset as it reads now ({error}); the data changed "
                    f"since the run began: use another output folder or delete {saved.parent}"
                ) from None
            raise ConfigError(
                f"data.protocol={config.data.protocol}: {error}; images of one reference must stay on one side "
                f"of a split: use data.protocol=ref (or auto)"
            ) from None
        sizes = {part: len(split.part(part)) for part in ("val", "test")}
        if min(sizes.values()) < metrics.MIN_ITEMS:
            raise ConfigError(
                f"data: split {split.index} has too few images to score (val {sizes['val']}, test "
                f"{sizes['test']}; a correlation needs {metrics.MIN_ITEMS} in each): use a larger dataset or give "
                f"val and test more of it (data.fractions={config.data.fractions})"
            )
        kept = len(training_images(split, config.data))
        if config.data.train_fraction is not None and kept < 2:
            raise ConfigError(
                f"data.train_fraction={config.data.train_fraction}: split {split.index} keeps {kept} of its "
                f"{len(split.train)} training images; training compares images in pairs and needs at least 2"
            )
    return splits


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


def _run_split(
    config: RunConfig,
    table: pd.DataFrame,
    split: Split,
    index: int,
    folder: SplitFolder,
    fitter: SplitFitter,
    device: torch.device,
    log: RunLog,
    progress: bool,
) -> dict:
    if folder.is_complete():
        return folder.read_metrics()
    seed = config.train.seed + index
    seed_everything(seed)
    model = fitter.model(config, device)
    parts = part_datasets(table, split, config.data, model, seed)
    backbone = fitter.describe(model)
    if index == 0:
        log(f"backbone: {backbone}")
        log(
            f"data: {config.data.dataset}, {len(table)} images; split {split.by}: "
            f"{len(parts['train'])} train / {len(parts['val'])} val / {len(parts['test'])} test"
        )
    fitted = fitter.fit(config, model, parts, folder, device=device, log=log, progress=progress)
    main = world_info()[0] == 0
    evaluation = {
        part: part_metrics(fitted.predictions[part], table, parts[part]) for part in ("val", "test")
    }
    if main:
        save_predictions(folder.predictions_file, table, parts["test"], fitted.predictions["test"])
    out = {
        "split": index,
        "seed": split.seed,
        **fitted.record,
        "backbone": backbone,
        **evaluation,
        "history": fitted.history,
    }
    if main:
        atomic_write_json(folder.metrics_file, out)
    log(
        f"split {index}: test SRCC {evaluation['test']['srcc']:.3f}  PLCC {evaluation['test']['plcc']:.3f} "
        f"({fitted.note})"
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
    atomic_write_text(path, frame.to_csv(index=False))


def evaluate_run(folder: str | Path, data: DataConfig, progress: bool = True) -> dict:
    """Evaluate every split's best prompts of a finished run on all images of another dataset."""
    folder = RunFolder(folder)
    config = folder.read_config()
    table = load_table(data, progress=progress)
    device = resolve_device(config.train.device)
    results = []
    for split_folder in folder.split_folders():
        checkpoint = split_folder.prompts_file
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
        raise MissingFileError(f"{folder.path} holds no split-*/ folders: is it a run folder?")
    return {
        "run": str(folder.path),
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


def results_table(folders: list[Path] | list[RunResult], part: str = "test") -> pd.DataFrame:
    """One row per run: name, key, median and CI of each metric (read from the run folders)."""
    rows = []
    for item in folders:
        stored = RunFolder(item.folder if isinstance(item, RunResult) else item).read_metrics()
        row = {"run": stored["name"], "key": stored["key"], "splits": len(stored["per_split"])}
        for m in ("srcc", "plcc"):
            s = stored["summary"][part][m]
            row[m], row[f"{m}_low"], row[f"{m}_high"] = s["median"], s["ci_low"], s["ci_high"]
        rows.append(row)
    return pd.DataFrame(rows)

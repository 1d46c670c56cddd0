"""What a finished run did and what its prompts became: the numbers and figures of chapters 06 and 07.

Everything here reads run folders (``predictions.csv``, ``metrics.json``, ``prompts.safetensors``) or a loaded
model; nothing trains. Evaluation (chapter 06):

* `per_family_srcc`     SRCC within each distortion family of the test predictions, with a bootstrap CI;
* `largest_errors`      the images furthest from their MOS after the 4-parameter logistic mapping;
* `cross_dataset_matrix` rows = training runs, columns = test datasets (the diagonal is the run's own test part).

What the prompts learned (chapter 07):

* `nearest_words`       the vocabulary tokens closest (cosine) to each learned input context vector;
* `prompt_norms`        L2 norm of every learned prompt token per layer, next to `reference_norms` of the tokens
                        the prompts sit among (token embeddings, residual-stream tokens);
* `class_labels`, `confusion`, `accuracy`, `chance_accuracy`  the auxiliary scene / distortion classification.

Their figures are in `mmpiqa.workbook.analysis_plots`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from mmpiqa import metrics
from mmpiqa.config import ConfigError, DataConfig
from mmpiqa.model.prompted_clip import PromptedCLIP
from mmpiqa.runs import experiment
from mmpiqa.runs.folder import RunFolder
from mmpiqa.workbook.parameters import whole_number

# ------------------------------------------------------------------------------------------------ evaluation


def per_family_srcc(
    predictions: pd.DataFrame, by: str = "dist_group", n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> pd.DataFrame:
    """SRCC between score and MOS within each value of column `by` ('dist_group' or 'dist_type'), with a
    percentile bootstrap CI over that family's images, plus one row 'all'. Sorted by SRCC, 'all' last.

    Columns: family, n, srcc, ci_low, ci_high. A family with constant scores or MOS gets nan (no warning).
    """
    if by not in predictions.columns:
        raise ConfigError(
            f"per_family_srcc: by={by!r} is not a column of the predictions; families are read from "
            "'dist_type', 'dist_group' or (joined from the table) 'dist_level'"
        )
    # checked here, not only in bootstrap_ci: a family too small for a CI never reaches it
    whole_number(
        "n_boot", n_boot, 2, what="bootstrap resamples", why="a percentile CI needs 2; 1000 is the default"
    )
    groups = [(str(name), part) for name, part in predictions.groupby(by, sort=True) if str(name)]
    rows = []
    for name, part in [*groups, ("all", predictions)]:
        row = {"family": name, "n": len(part), "srcc": np.nan, "ci_low": np.nan, "ci_high": np.nan}
        if len(part) >= metrics.MIN_ITEMS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", metrics.MetricWarning)
                row["srcc"] = metrics.srcc(part["score"], part["mos"])
                if np.isfinite(row["srcc"]):
                    row["ci_low"], row["ci_high"] = metrics.bootstrap_ci(
                        part["score"], part["mos"], "srcc", n_boot=n_boot, alpha=alpha, seed=seed
                    )
        rows.append(row)
    table = pd.DataFrame(rows)
    head = table[table["family"] != "all"].sort_values("srcc", ascending=False, na_position="last")
    return pd.concat([head, table[table["family"] == "all"]], ignore_index=True)


def largest_errors(predictions: pd.DataFrame, k: int = 8) -> pd.DataFrame:
    """The `k` images with the largest |mapped score - MOS|, where `mapped` is the score on the MOS scale after
    the 4-parameter logistic fitted on all `predictions` (the mapping PLCC and RMSE use).

    Returns those rows with the added columns mapped, error (mapped - MOS; > 0: the model thinks the image is
    better than people do) and abs_error, largest first.
    """
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(predictions):
        raise ConfigError(f"largest_errors: k={k!r} images; between 1 and the {len(predictions)} predicted")
    fit = metrics.fit_logistic4(predictions["score"], predictions["mos"])
    out = predictions.assign(mapped=fit(predictions["score"]))
    out["error"] = out["mapped"] - out["mos"]
    out["abs_error"] = out["error"].abs()
    return out.sort_values("abs_error", ascending=False, kind="stable").head(k).reset_index(drop=True)


def with_table_columns(
    predictions: pd.DataFrame, table: pd.DataFrame, columns: Sequence[str]
) -> pd.DataFrame:
    """`predictions` with `columns` of the dataset table (e.g. 'image', 'dist_level', 'scenes') joined by name."""
    wanted = [c for c in columns if c not in predictions.columns]
    joined = predictions.merge(table[["name", *wanted]], on="name", how="left", validate="one_to_one")
    missing = joined[wanted].isna().all(axis=1) if wanted else pd.Series(False, index=joined.index)
    if missing.any():
        raise KeyError(
            f"{int(missing.sum())} predicted names are not in the table, e.g. {joined['name'][missing].iloc[0]!r}"
        )
    return joined


def cross_dataset_results(
    run_folders: Mapping[str, str | Path],
    datasets: Mapping[str, DataConfig],
    metric: str = "srcc",
    progress: bool = False,
) -> pd.DataFrame:
    """Long table of the train-on-one / test-on-another protocol: one row per (run, test dataset).

    `run_folders`: label -> finished run folder; `datasets`: test label -> DataConfig. Where the test dataset is
    the one the run was trained on (same dataset name; for 'embedded' also the same size), the cell is the run's
    own **test part** (median over its splits, read from metrics.json): evaluating on all of that dataset would
    score the training images too.
    Every other cell evaluates the run's best prompts on all images of the test dataset
    (`mmpiqa.runs.experiment.evaluate_run`). Columns: train, test, kind ('within: test part' / 'cross: all images'),
    n_images, value, ci_low, ci_high.
    """
    rows = []
    for label, folder in run_folders.items():
        run = RunFolder(folder)
        config, stored = run.read_config(), run.read_metrics()
        for test_label, data in datasets.items():
            same = data.dataset == config.data.dataset  # wherever its copy lives (root)
            if same and data.dataset == "embedded":
                same = data.size == config.data.size  # other sizes are other image sets
            if same:
                s = stored["summary"]["test"][metric]
                n = sum(part["test"]["n"] for part in stored["per_split"]) // len(stored["per_split"])
                kind = "within: test part"
            else:
                result = experiment.evaluate_run(run.path, data, progress=progress)
                s, n, kind = result["summary"][metric], result["n_images"], "cross: all images"
            rows.append(
                {
                    "train": label,
                    "test": test_label,
                    "kind": kind,
                    "n_images": int(n),
                    "value": s["median"],
                    "ci_low": s["ci_low"],
                    "ci_high": s["ci_high"],
                }
            )
    return pd.DataFrame(rows)


def extra_test_sets(extra: Any, main: str) -> dict[str, DataConfig]:
    """Chapter 06's `extra_datasets` parameter as test sets: datasets other than `main`, name -> unpacked folder
    ('' only for the embedded benchmark)."""
    if not isinstance(extra, Mapping) or main in extra or not all(isinstance(k, str) for k in extra):
        raise ConfigError(
            f"extra_datasets={extra!r}: a mapping of datasets other than the main one ({main!r}) to their "
            "folders, e.g. {'koniq10k': '/data/koniq10k'}"
        )
    return {name: DataConfig(dataset=name, root=str(path) if path else None) for name, path in extra.items()}


def cross_dataset_matrix(
    run_folders: Mapping[str, str | Path],
    datasets: Mapping[str, DataConfig],
    metric: str = "srcc",
    progress: bool = False,
) -> pd.DataFrame:
    """Rows = training runs, columns = test datasets, cells = median `metric` (see `cross_dataset_results`).
    The long table with CIs and the kind of every cell is kept in ``matrix.attrs['long']``."""
    long = cross_dataset_results(run_folders, datasets, metric=metric, progress=progress)
    matrix = long.pivot(index="train", columns="test", values="value")
    matrix = matrix.reindex(index=list(run_folders), columns=list(datasets))
    matrix.index.name, matrix.columns.name = "trained on", "tested on"
    matrix.attrs["long"] = long
    return matrix


# ------------------------------------------------------------------------------------------ prompt contents


def nearest_words(model: PromptedCLIP, k: int = 3, tokenizer=None, skip_special: bool = True) -> pd.DataFrame:
    """The `k` vocabulary tokens nearest (cosine) to each input context vector of each text branch.

    Compares `model.text_prompts.ctx` (branches, n_ctx, W) with every row of `model.clip.token_embedding.weight`; tokens
    are decoded with the backbone's open_clip tokenizer (``tokenizer.decode``). Deep context (layers >= 1) lives in
    the residual stream, not in the embedding space, so only the input context has nearest words.
    Columns: branch, slot, rank (1 = nearest), token_id, word, cosine.
    """
    if tokenizer is None:
        from mmpiqa.model.backbone import tokenizer_for

        tokenizer = tokenizer_for(model.config.backbone)
    vocab = F.normalize(model.clip.token_embedding.weight.detach().float(), dim=-1)
    ctx = F.normalize(model.text_prompts.ctx.detach().float().to(vocab.device), dim=-1)  # (B, n, W)
    cos = ctx @ vocab.t()  # (B, n, V)
    skipped: set[int] = set()
    if skip_special:
        for token in (getattr(tokenizer, "sot_token_id", None), getattr(tokenizer, "eot_token_id", None)):
            if token is not None and token < cos.shape[-1]:
                cos[..., int(token)] = -2.0
                skipped.add(int(token))
    why = "the vocabulary" + (" less its start and end tokens" if skipped else "")
    whole_number("k", k, 1, cos.shape[-1] - len(skipped), what="nearest words per context vector", why=why)
    values, ids = cos.topk(k, dim=-1)
    rows = []
    for b, branch in enumerate(model.text_prompts.branch_names):
        for slot in range(ids.shape[1]):
            for rank in range(k):
                token = int(ids[b, slot, rank])
                rows.append(
                    {
                        "branch": branch,
                        "slot": slot,
                        "rank": rank + 1,
                        "token_id": token,
                        "word": tokenizer.decode([token]).strip(),
                        "cosine": float(values[b, slot, rank]),
                    }
                )
    return pd.DataFrame(rows)


def words_before_after(before: pd.DataFrame, after: pd.DataFrame, k: int | None = None) -> pd.DataFrame:
    """One row per (branch, slot): the nearest words (top `k`, 'word (cosine)') before and after training."""

    def summary(frame: pd.DataFrame) -> pd.Series:
        top = frame[frame["rank"] <= (k or frame["rank"].max())]
        return top.groupby(["branch", "slot"], sort=False).apply(
            lambda g: ", ".join(f"{w} ({c:.2f})" for w, c in zip(g["word"], g["cosine"], strict=True)),
            include_groups=False,
        )

    return pd.DataFrame({"before": summary(before), "after": summary(after)}).reset_index()


def context_drift(before: PromptedCLIP, after: PromptedCLIP) -> pd.DataFrame:
    """How far each input context vector moved: cosine(before, after) and ||after - before|| / ||before||."""
    b, a = (
        before.text_prompts.ctx.detach().float(),
        after.text_prompts.ctx.detach().float().to(before.text_prompts.ctx.device),
    )
    cos = F.cosine_similarity(a, b, dim=-1)
    rel = (a - b).norm(dim=-1) / b.norm(dim=-1).clamp_min(1e-12)
    rows = [
        {"branch": name, "slot": s, "cosine_to_start": float(cos[i, s]), "relative_change": float(rel[i, s])}
        for i, name in enumerate(before.text_prompts.branch_names)
        for s in range(cos.shape[1])
    ]
    return pd.DataFrame(rows)


def prompt_norms(model: PromptedCLIP) -> pd.DataFrame:
    """L2 norm of every learned prompt token, per tower and layer.

    Text: layer 0 is the input context (`text.ctx`), layer l >= 1 the deep context replacing it before block l.
    Visual: layer l are the tokens put in before block l (layer 0 before ``ln_pre``); coupled prompts are the
    maps of the text context. Columns: tower, layer, branch ('' for visual), slot, norm.
    """
    rows = []
    text = model.text_prompts
    layers = [text.ctx, *text.deep] if text.depth >= 1 else []
    for layer, ctx in enumerate(layers):
        norms = ctx.detach().float().norm(dim=-1)  # (branches, n_ctx)
        for b, branch in enumerate(text.branch_names):
            rows += [
                {"tower": "text", "layer": layer, "branch": branch, "slot": s, "norm": float(norms[b, s])}
                for s in range(norms.shape[1])
            ]
    if model.visual_prompts is not None:
        with torch.no_grad():
            for layer, tokens in enumerate(model.visual_prompts.layer_prompts(text)):
                norms = tokens.detach().float().norm(dim=-1)
                rows += [
                    {"tower": "visual", "layer": layer, "branch": "", "slot": s, "norm": float(n)}
                    for s, n in enumerate(norms)
                ]
    return pd.DataFrame(rows, columns=["tower", "layer", "branch", "slot", "norm"])


@torch.no_grad()
def reference_norms(model: PromptedCLIP, images: torch.Tensor | None = None) -> pd.DataFrame:
    """Norms of the tokens the prompts sit among, per tower and layer (median, 10th and 90th percentile).

    Text layer 0: the rows of the token embedding (the space the input context lives in); text layer l >= 1:
    the class-prompt tokens in the residual stream entering block l. Visual (with `images`, [0, 1] RGB at the
    backbone's input size): layer 0 the patch tokens before ``ln_pre``, layer l the patch tokens entering block l
    (measured without prompts). Columns: tower, layer, median, q10, q90, what.
    """
    rows = []

    def add(tower: str, layer: int, norms: torch.Tensor, what: str) -> None:
        q = torch.quantile(norms.float().flatten().cpu(), torch.tensor([0.5, 0.1, 0.9]))
        rows.append(
            {
                "tower": tower,
                "layer": layer,
                "median": float(q[0]),
                "q10": float(q[1]),
                "q90": float(q[2]),
                "what": what,
            }
        )

    clip = model.clip
    add("text", 0, clip.token_embedding.weight.norm(dim=-1), "token embeddings (vocabulary)")
    captured: list[torch.Tensor] = []
    hooks = [
        b.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        for b in clip.transformer.resblocks
    ]
    try:
        clip.encode_text(model.text_prompts.tokens)
    finally:
        for h in hooks:
            h.remove()
    real = model.text_prompts.tokens != 0  # real tokens, not padding
    for layer, x in enumerate(captured[1:], start=1):
        add("text", layer, x.norm(dim=-1)[real], "prompt tokens in the residual stream")
    if images is not None:
        visual = clip.visual
        n_patches = visual.positional_embedding.shape[0] - 1
        captured = []
        pre = visual.ln_pre.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        hooks = [
            b.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
            for b in visual.transformer.resblocks
        ]
        try:
            clip.encode_image(model.normalize(images.to(model.mean.device)))
        finally:
            for h in [pre, *hooks]:
                h.remove()
        for layer, x in enumerate([captured[0], *captured[2:]]):
            add("visual", layer, x[:, 1 : 1 + n_patches].norm(dim=-1), "patch tokens in the residual stream")
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------ classification


def class_labels(
    predictions: pd.DataFrame, table: pd.DataFrame, classes: Sequence[str], branch: str
) -> list[frozenset[int]]:
    """The true classes of each predicted image as index sets into `classes` (empty: unknown).

    branch 'distortion' reads the table's dist_group (one class), 'scene' its '|'-joined scenes (one or more)."""
    column = {"distortion": "dist_group", "scene": "scenes"}[branch]
    index = {c: i for i, c in enumerate(classes)}
    cells = predictions[["name"]].merge(table[["name", column]], on="name", how="left")[column]
    return [frozenset(index[v] for v in str(c).split("|") if v in index) for c in cells.fillna("")]


def _as_sets(true: Sequence) -> list[frozenset[int]]:
    return [
        frozenset(int(v) for v in t)
        if isinstance(t, Sequence | set | frozenset | np.ndarray) and not isinstance(t, str)
        else frozenset([int(t)])
        for t in true
    ]


def confusion(
    true: Sequence,
    predicted: Sequence[int],
    classes: Sequence[str],
    normalize: bool = True,
    drop_empty: bool = True,
) -> pd.DataFrame:
    """Confusion matrix, rows = true class, columns = predicted class (top-1).

    `true[i]` is a class index or a set of indices (multi-label: the image counts 1/len in each of its rows);
    images with no known class are skipped. `normalize`: each row sums to 1 (the share of that class's images
    predicted as each class). `drop_empty`: leave out rows of classes no image has.
    """
    sets = _as_sets(true)
    counts = np.zeros((len(classes), len(classes)))
    for labels, pred in zip(sets, predicted, strict=True):
        for t in labels:
            counts[t, int(pred)] += 1.0 / len(labels)
    frame = pd.DataFrame(
        counts, index=pd.Index(classes, name="true"), columns=pd.Index(classes, name="predicted")
    )
    if drop_empty:
        frame = frame[frame.sum(axis=1) > 0]
    if normalize:
        frame = frame.div(frame.sum(axis=1).replace(0, np.nan), axis=0)
    return frame


def accuracy(true: Sequence, predicted: Sequence[int]) -> float:
    """Share of images (with a known class) whose top-1 prediction is one of their true classes."""
    pairs = [(t, int(p)) for t, p in zip(_as_sets(true), predicted, strict=True) if t]
    return float(np.mean([p in t for t, p in pairs])) if pairs else float("nan")


def chance_accuracy(true: Sequence, n_classes: int) -> dict[str, float]:
    """Two baselines for `accuracy`: 'uniform' (a random class: mean |true set| / n_classes) and 'majority'
    (always the class most images have; the stronger baseline when classes are unbalanced)."""
    sets = [t for t in _as_sets(true) if t]
    if not sets:
        return {"uniform": float("nan"), "majority": float("nan")}
    counts = np.zeros(n_classes)
    for t in sets:
        counts[list(t)] += 1
    return {
        "uniform": float(np.mean([len(t) for t in sets]) / n_classes),
        "majority": float(counts.max() / len(sets)),
    }

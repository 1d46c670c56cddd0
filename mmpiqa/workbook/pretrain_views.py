"""What the pretraining chapter shows: the corpus, the loss curve, retrieval, the quality prompts in text space, and
zero-shot quality per family.

Workbook-only helpers (figures and small tables) over `mmpiqa.data.corpus`, the shipped provenance and history
of the teaching CLIP, and the prompted model's zero-shot readout.
"""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from mmpiqa import metrics
from mmpiqa.config import ConfigError, DataConfig, ModelConfig
from mmpiqa.data.corpus import HELD_OUT_FAMILIES, corpus_item
from mmpiqa.data.dataset import IQADataset
from mmpiqa.model.backbone import WEIGHTS_DIR, load_backbone, tokenizer_for
from mmpiqa.model.prompted_clip import build_model
from mmpiqa.runs.experiment import crop_policies
from mmpiqa.train.pretrain import normalised_images
from mmpiqa.train.trainer import predict_scores
from mmpiqa.workbook.parameters import whole_number

# Items from a seed the shipped recipe never used: pairs the teaching CLIP has not seen.
FRESH_SEED = 20261130


def corpus_items(n: int, seed: int = FRESH_SEED, size: int = 112, versions: int = 4) -> list:
    """The first `n` items of the corpus of `seed`: `n / versions` contents with all their versions each."""
    what = f"corpus pairs, a multiple of versions={versions} (whole contents), e.g. {12 * versions}"
    if whole_number("n", n, versions, what=what) % versions:
        raise ConfigError(f"n={n!r}: {what}")
    return [corpus_item(seed, i, size, versions) for i in range(n)]


def corpus_gallery(items: list, columns: int = 4, width: int = 36):
    """Images with their captions, one content's versions per row."""
    rows = int(np.ceil(len(items) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, item in zip(axes.flat, items, strict=False):
        ax.imshow(item.image)
        damage = f"{item.family} L{item.level}" if item.level else "clean"
        ax.set_title(f"[{damage}]\n" + textwrap.fill(item.caption, width), fontsize=7.5)
    fig.tight_layout()
    return fig


def training_history(stem: str = "tiny-synthetic") -> pd.DataFrame:
    """The loss history shipped beside an offline tag's weights (one row per optimiser step)."""
    return pd.read_csv(WEIGHTS_DIR / f"{stem}-history.csv")


def plot_history(history: pd.DataFrame, window: int = 25):
    """Contrastive loss, in-batch retrieval accuracy and the quality-word correlation, smoothed."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    smooth = history.rolling(window, min_periods=1).mean()
    for ax, column, label in zip(
        axes,
        ("contrastive", "retrieval_acc", "quality_corr"),
        ("in-batch contrastive loss", "in-batch retrieval accuracy", "corr(quality readout, level)"),
        strict=True,
    ):
        ax.plot(history["step"], history[column], alpha=0.25, color="C0")
        ax.plot(history["step"], smooth[column], color="C0")
        ax.set(xlabel="optimiser step", title=label)
    axes[0].axhline(np.log(64), color="grey", linestyle=":", label="chance (ln 64)")
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    return fig


@torch.no_grad()
def retrieval(name: str, pretrained: str | None, items: list) -> tuple[np.ndarray, float, float]:
    """Cosine similarity of every image with every caption of `items`: (matrix, image->text top-1 accuracy,
    chance). A caption shared by several items counts as a hit for each of them."""
    clip, _ = load_backbone(name, pretrained)
    images = normalised_images(items)
    captions = [it.caption for it in items]
    image = F.normalize(clip.encode_image(images), dim=-1)
    text = F.normalize(clip.encode_text(tokenizer_for(name)(captions)), dim=-1)
    sim = (image @ text.t()).numpy()
    best = sim.argmax(axis=1)
    hits = np.array([captions[j] == captions[i] for i, j in enumerate(best)])
    chance = float(np.mean([captions.count(c) / len(captions) for c in captions]))
    return sim, float(hits.mean()), chance


@torch.no_grad()
def prompt_similarity(name: str, pretrained: str | None, template: str, words: list[str]) -> pd.DataFrame:
    """Cosine similarity between the text embeddings of `template` filled with each of `words` (rows and columns
    labelled by word). Zero-shot quality compares an image with such prompts: the more parallel they are, the
    fainter the difference between them that the image can show."""
    clip, _ = load_backbone(name, pretrained)
    text = clip.encode_text(tokenizer_for(name)([template.format(w) for w in words]))
    text = F.normalize(text, dim=-1)
    return pd.DataFrame((text @ text.t()).numpy(), index=list(words), columns=list(words))


def zero_shot_scores(
    name: str, pretrained: str | None, table: pd.DataFrame, head: str = "levels"
) -> np.ndarray:
    """Zero-shot quality (hand-written prompts, no learning) of every image of `table`, centre crop."""
    model = build_model(
        ModelConfig(backbone=name, pretrained=pretrained, head=head, text_depth=0, visual_depth=0)
    )
    _, policy = crop_policies(DataConfig(test_crop="center"), model)
    dataset = IQADataset(table, tuple(table["name"]), policy)
    pred = predict_scores(model, dataset)
    scores = np.empty(len(table))
    scores[pred["index"]] = pred["score"]
    return scores


def per_family_srcc(table: pd.DataFrame, scores: np.ndarray) -> pd.DataFrame:
    """SRCC with the MOS within each distortion family, with whether pretraining ever showed that family."""
    rows = []
    for family, part in table.assign(score=scores).groupby("dist_type"):
        rows.append(
            {
                "family": family,
                "srcc": metrics.srcc(part["score"], part["mos"]),
                "held_out": family in HELD_OUT_FAMILIES,
            }
        )
    return pd.DataFrame(rows).sort_values(["held_out", "family"]).reset_index(drop=True)


def family_bars(frames: dict[str, pd.DataFrame], ax=None):
    """Per-family zero-shot SRCC of several backbones side by side; held-out families hatched."""
    ax = ax or plt.subplots(figsize=(11, 3.6))[1]
    families = next(iter(frames.values()))["family"].tolist()
    x = np.arange(len(families))
    width = 0.8 / len(frames)
    for k, (label, frame) in enumerate(frames.items()):
        frame = frame.set_index("family").loc[families]
        bars = ax.bar(x + k * width, frame["srcc"], width, label=label, color=f"C{k}")
        for bar, held in zip(bars, frame["held_out"], strict=True):
            if held:
                bar.set_hatch("//")
    ax.set_xticks(
        x + width * (len(frames) - 1) / 2, [f + (" *" if f in HELD_OUT_FAMILIES else "") for f in families]
    )
    ax.tick_params(axis="x", rotation=45)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set(ylabel="zero-shot SRCC within the family", title="* / hatched: families pretraining never showed")
    ax.legend(fontsize="small")
    return ax

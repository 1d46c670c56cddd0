"""Contrastive pretraining of the offline teaching CLIP on the procedural captioned corpus.

Both towers of an offline config (``tiny``) are trained from random weights, as CLIP was: image and caption
embeddings of matching pairs are pulled together, the rest of the batch pushed apart. Two terms:

* **in-batch contrastive** (CLIP's symmetric InfoNCE). Captions are drawn from templates, so two items of a batch
  can carry the very same caption; such pairs count as positives of each other (targets spread evenly over every
  matching caption). With all captions distinct this is exactly open_clip's ``ClipLoss`` (a test checks it).
* **caption bank** (UniCL-style): every image is also contrasted against a fixed bank of captions in the forms the
  workbook's zero-shot readouts use ("a photo of {bad … perfect} quality.", "a photo of {group} artifacts."), with
  soft targets by distortion level. It is still image–text contrast, with more positives per caption.

The corpus item of a step is fixed by (seed, step), and so is every random draw (patch dropout), so on the CPU a
run resumes from its last checkpoint to exactly the weights of an uninterrupted run (on CUDA, atomic adds in the
backward pass round in varying order, so the same recipe lands close to, not exactly on, the same weights). The
result is exported as fp16 safetensors with a provenance record; `mmpiqa.model.backbone` loads it as
``backbone="tiny", pretrained="synthetic"``.
"""

from __future__ import annotations

import json
import math
import pickle
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.transformer import PatchDropout
from torch import nn

from mmpiqa.config import ConfigBase, ConfigError
from mmpiqa.data.corpus import HELD_OUT_FAMILIES, PRETRAIN_FAMILIES, corpus_item
from mmpiqa.files import atomic_write, atomic_write_text, writing
from mmpiqa.labels import QUALITY_LEVELS
from mmpiqa.model.backbone import OFFLINE_CONFIGS, file_sha256, registry_name
from mmpiqa.model.checkpoint import CheckpointError, read_json
from mmpiqa.train.trainer import TrainingDiverged, lr_factor, resolve_device

STATE_FILE = "state.pt"
LOG_FILE = "log.csv"
WEIGHTS_FILE = "weights.safetensors"
PROVENANCE_FILE = "provenance.json"


@dataclass(frozen=True)
class PretrainConfig(ConfigBase):
    """The recipe: everything that decides the weights (the output folder and progress bars do not)."""

    backbone: str = "tiny"  # an offline config of mmpiqa/model_configs
    seed: int = 0  # weights init, corpus and patch-dropout draws
    steps: int = 4000  # optimiser steps
    batch_size: int = 64  # images (and captions) per step
    versions: int = 4  # versions of each content in a batch (1 clean + damaged ones)
    lr: float = 1e-3  # peak AdamW learning rate (linear warm-up, cosine decay to 0)
    warmup: float = 0.05  # fraction of steps spent warming up
    weight_decay: float = 0.1  # on matrices only (not biases, norms, embeddings, logit scale)
    patch_keep: float = 0.5  # fraction of image patches kept (patch dropout) early in training
    full_patches_from: float = 0.8  # from this fraction of steps on, every patch is seen
    bank_weight: float = 1.0  # weight of the caption-bank term beside the in-batch term
    quality_sigma: float = 0.6  # width (in quality levels) of the bank's soft quality targets
    checkpoint_every: int = 100  # steps between resumable checkpoints
    corpus_contents: int = 0  # 0: a fresh content for every item group; n: cycle through n contents (tests)
    highpass_stem: float = 0.0  # >0: half the patch-embedding filters start zero-mean, scaled by this gain
    chroma_stem: float = 0.0  # >0: a quarter start blind to grey levels (colour only), scaled by this gain
    bank_scale: float = 0.0  # >0: a fixed logit scale for the caption-bank term; 0: the model's learnable one
    freeze_stem: bool = False  # keep the patch embedding at its init (docs/teaching-clip.md: why)
    frozen_blocks: int = 0  # keep the first k blocks of the image tower at their init too

    def __post_init__(self) -> None:
        if self.backbone not in OFFLINE_CONFIGS:
            raise ConfigError(f"backbone={self.backbone!r}: pretraining is for {sorted(OFFLINE_CONFIGS)}")
        layers = open_clip.get_model_config(registry_name(self.backbone))["vision_cfg"]["layers"]
        gain = "0 (open_clip's init) or a positive gain"
        divides = self.versions >= 1 and self.batch_size % self.versions == 0
        rules = {  # field: (valid, what is allowed); NaN fails every comparison
            "steps": (self.steps >= 1, "at least 1"),
            "batch_size": (self.batch_size >= 2, "at least 2"),
            "versions": (
                divides,
                f"a divisor of batch_size={self.batch_size} (1 clean + versions - 1 damaged)",
            ),
            "seed": (0 <= self.seed < 2**32, "a whole number from 0 to 2**32 - 1"),
            "checkpoint_every": (self.checkpoint_every >= 1, "at least 1"),
            "corpus_contents": (self.corpus_contents >= 0, "0 (a fresh content per item group) or more"),
            "lr": (0 < self.lr < math.inf, "a positive number such as 1e-3"),
            "warmup": (0 <= self.warmup < 1, "a fraction of all steps in [0, 1)"),
            "weight_decay": (0 <= self.weight_decay < math.inf, "a number >= 0"),
            "patch_keep": (0 < self.patch_keep <= 1, "in (0, 1]"),
            "full_patches_from": (0 <= self.full_patches_from <= 1, "in [0, 1]"),
            "bank_weight": (0 <= self.bank_weight < math.inf, "a number >= 0"),
            "quality_sigma": (0 < self.quality_sigma < math.inf, "a positive width in quality levels"),
            "highpass_stem": (0 <= self.highpass_stem < math.inf, gain),
            "chroma_stem": (0 <= self.chroma_stem < math.inf, gain),
            "bank_scale": (0 <= self.bank_scale <= 100, "0 (the model's logit scale) or a scale in (0, 100]"),
            "frozen_blocks": (0 <= self.frozen_blocks <= layers, f"0 to the image tower's {layers} blocks"),
        }
        for name, (valid, allowed) in rules.items():
            if not valid:
                raise ConfigError(f"{name}={getattr(self, name)!r}: {allowed}")


# --- captions of the bank -----------------------------------------------------------------------------------
def bank_captions() -> tuple[list[str], list[str]]:
    """(quality captions worst → best, distortion-group captions of the groups the corpus shows)."""
    quality = [f"a photo of {word} quality." for word in QUALITY_LEVELS]
    return quality, [f"a photo of {group} artifacts." for group in _groups()]


def _groups() -> list[str]:
    return sorted({f.group for f in PRETRAIN_FAMILIES})


# --- losses -------------------------------------------------------------------------------------------------
def caption_contrastive_loss(
    image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor, caption_id: torch.Tensor
) -> torch.Tensor:
    """CLIP's symmetric InfoNCE between B unit-norm image features and U <= B distinct captions.

    `caption_id[i]` is the caption of image i. An image's target is its caption; a caption's targets are spread
    evenly over the images that carry it. With all captions distinct (U = B, caption_id = arange) this is exactly
    open_clip's ``ClipLoss``."""
    logits = scale * image @ text.t()  # (B, U)
    carriers = (caption_id[None, :] == torch.arange(text.shape[0], device=caption_id.device)[:, None]).float()
    per_image = F.cross_entropy(logits, caption_id)
    per_caption = F.cross_entropy(logits.t(), carriers / carriers.sum(dim=1, keepdim=True))
    return 0.5 * (per_image + per_caption)


def quality_targets(quality: torch.Tensor, levels: int, sigma: float) -> torch.Tensor:
    """Soft targets over the quality captions: a Gaussian of width `sigma` around each item's level."""
    grid = torch.arange(levels, dtype=torch.float32, device=quality.device)
    weights = torch.exp(-0.5 * ((grid[None, :] - quality[:, None].float()) / sigma) ** 2)
    return weights / weights.sum(dim=1, keepdim=True)


# --- the model ----------------------------------------------------------------------------------------------
def new_model(config: PretrainConfig) -> nn.Module:
    """The offline config with random weights from the recipe's seed, both towers trainable."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = open_clip.create_model(registry_name(config.backbone), pretrained=None)
    if config.highpass_stem:
        highpass_stem(model.visual.conv1.weight, config.highpass_stem)
    if config.chroma_stem:
        chroma_stem(model.visual.conv1.weight, config.chroma_stem)
    model.requires_grad_(True)
    # A random patch embedding passes texture on (a ridge probe reads noise from random tokens, not from trained
    # ones); frozen, contrastive training cannot turn it into a colour-only stem.
    model.visual.conv1.requires_grad_(not config.freeze_stem)
    for block in model.visual.transformer.resblocks[: config.frozen_blocks]:
        block.requires_grad_(False)
    return model


@torch.no_grad()
def highpass_stem(weight: torch.Tensor, gain: float) -> None:
    """Make the first half of the patch-embedding filters (out, 3, p, p) blind to flat colour, and louder.

    A ViT from open_clip's init reads colour and exposure at once but learns local damage (noise, blur,
    compression) very slowly: in a patch token, noise is a small second-order term beside the patch's colour, and
    LayerNorm takes the magnitude away (benchmarks/stem_screen.py: 100 supervised steps learn darkening to SRCC
    0.86 and noise to 0.1-0.2). Zero-mean filters respond to texture and damage only; the gain puts their response where the MLP's
    nonlinearity can turn it into energy. The other half keeps its colour response. Every weight stays trainable:
    this is where training starts, not a fixed filter bank."""
    half = weight.shape[0] // 2
    weight[:half] -= weight[:half].mean(dim=(2, 3), keepdim=True)
    weight[:half] *= gain


@torch.no_grad()
def chroma_stem(weight: torch.Tensor, gain: float) -> None:
    """Make the third quarter of the patch-embedding filters (out, 3, p, p) blind to grey levels, and louder.

    With the stem frozen and half of it high-pass (the shipped recipe), brightness and saturation reach the tower
    only through the random half left, mixed with everything else (the 1,000-step frozen-front-end file read them
    at about 0 on photos, the 3,000-step one at 0.17-0.33: docs/teaching-clip.md). At every pixel these filters'
    three colour weights are made orthogonal to a grey step as the model sees it, (1/std_R, 1/std_G, 1/std_B)
    after open_clip's normalisation, so a grey patch of any level gives them one constant and what they answer is
    colour: tint and saturation. The last quarter keeps open_clip's init (brightness)."""
    half, quarter = weight.shape[0] // 2, weight.shape[0] // 4
    grey = 1.0 / torch.tensor(open_clip.OPENAI_DATASET_STD, dtype=weight.dtype, device=weight.device)
    filters = weight[half : half + quarter]
    along_grey = torch.einsum("ocij,c->oij", filters, grey) / (grey @ grey)
    filters -= along_grey[:, None] * grey[None, :, None, None]
    filters *= gain


def _image_size(model: nn.Module) -> int:
    size = model.visual.image_size
    return int(size[0] if isinstance(size, tuple | list) else size)


def normalised_images(items: list) -> torch.Tensor:
    """Corpus items' uint8 images as a (B, 3, H, W) batch, normalised as open_clip's (OpenAI) configs expect."""
    images = torch.from_numpy(np.stack([it.image for it in items])).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def batch(config: PretrainConfig, step: int, size: int) -> tuple[torch.Tensor, list[str], dict]:
    """The step's images (normalised, (B, 3, H, W)), captions and labels: a pure function of (seed, step)."""
    indices = [step * config.batch_size + i for i in range(config.batch_size)]
    if config.corpus_contents:
        indices = [i % (config.corpus_contents * config.versions) for i in indices]
    items = [corpus_item(config.seed, i, size, config.versions) for i in indices]
    images = normalised_images(items)
    groups = _groups()
    labels = {
        "quality": torch.tensor([it.quality for it in items]),
        "group": torch.tensor([groups.index(it.group) if it.group else -1 for it in items]),
    }
    return images, [it.caption for it in items], labels


def _optimizer(model: nn.Module, config: PretrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        plain = p.ndim < 2 or "embedding" in name or "logit_scale" in name
        (no_decay if plain else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.98), eps=1e-6)


def train_step(
    model: nn.Module,
    tokenizer,
    config: PretrainConfig,
    step: int,
    size: int,
    bank_tokens: torch.Tensor,
    n_quality: int,
) -> dict[str, float]:
    """One optimiser step's forward and loss (no backward); returns the loss tensor and its parts."""
    images, captions, labels = batch(config, step, size)
    device = model.logit_scale.device
    images, labels = images.to(device), {k: v.to(device) for k, v in labels.items()}
    keep = config.patch_keep if step < config.full_patches_from * config.steps else 1.0
    model.visual.patch_dropout = PatchDropout(1.0 - keep) if keep < 1.0 else nn.Identity()
    image = F.normalize(model.encode_image(images), dim=-1)
    unique = sorted(set(captions))
    text = F.normalize(model.encode_text(tokenizer(unique).to(device)), dim=-1)
    caption_id = torch.tensor([unique.index(c) for c in captions], device=device)
    scale = model.logit_scale.exp().clamp(max=100.0)
    contrastive = caption_contrastive_loss(image, text, scale, caption_id)
    bank = F.normalize(model.encode_text(bank_tokens.to(device)), dim=-1)
    # The five quality captions differ by one word and their embeddings stay nearly parallel (cosine ~0.97), so at the
    # model's scale (~14) the logit gap between them is ~1: `bank_scale` fixes a sharper one for this term (the
    # shipped recipe: 50; docs/teaching-clip.md measures it with and without the frozen front end).
    bank_scale = config.bank_scale or scale
    bank_logits = bank_scale * image @ bank.t()
    q_logits, g_logits = bank_logits[:, :n_quality], bank_logits[:, n_quality:]
    q_loss = F.cross_entropy(q_logits, quality_targets(labels["quality"], n_quality, config.quality_sigma))
    damaged = labels["group"] >= 0
    g_loss = F.cross_entropy(g_logits[damaged], labels["group"][damaged]) if damaged.any() else q_loss * 0
    loss = contrastive + config.bank_weight * (q_loss + g_loss)
    with torch.no_grad():
        hit = (image @ text.t()).argmax(dim=1) == caption_id
        values = torch.linspace(0, 1, n_quality, device=device)
        expected = (q_logits.softmax(dim=1) @ values).cpu().numpy()
        quality = labels["quality"].cpu().numpy()
        # a batch of one quality level has no correlation
        corr = float(np.corrcoef(expected, quality)[0, 1]) if len(set(quality)) > 1 else math.nan
    return {
        "loss": loss,
        "contrastive": contrastive.item(),
        "bank_quality": q_loss.item(),
        "bank_group": g_loss.item(),
        "retrieval_acc": hit.float().mean().item(),
        "quality_acc": (q_logits.argmax(dim=1) == labels["quality"]).float().mean().item(),
        "quality_corr": corr,
        "logit_scale": scale.item(),
        "patch_keep": keep,
        "unique_captions": len(unique),
    }


# --- the run ------------------------------------------------------------------------------------------------
@dataclass
class PretrainResult:
    folder: Path
    weights: Path | None
    history: list[dict]
    steps_done: int


def pretrain(
    config: PretrainConfig,
    out: str | Path,
    *,
    stop_after: int | None = None,
    progress: bool = True,
    export: bool = True,
    device: str | torch.device = "cpu",
) -> PretrainResult:
    """Run (or resume) the recipe in `out`; export fp16 weights + provenance when every step is done.

    `stop_after` ends this call after that many steps of the recipe (a resumable pause, not a shorter recipe).
    `device` is where the model trains (corpus images are drawn on the CPU); it is not part of the recipe, but
    another device gives other rounding, so the provenance records the machine."""
    if stop_after is not None and stop_after < 1:
        raise ConfigError(f"stop_after={stop_after}: pause after step 1 or later (or leave it out)")
    device = resolve_device(device)  # before anything is written: a bad device leaves no folder to clean up
    folder, state_path = Path(out), Path(out) / STATE_FILE
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise writing(folder, error) from error
    recipe_file = folder / "recipe.json"
    if recipe_file.exists() or state_path.exists():
        saved = PretrainConfig.from_dict(read_json(recipe_file), where=str(recipe_file))
        if saved != config:
            raise ConfigError(
                f"{folder} holds a pretraining run of another recipe ({recipe_file}); "
                f"use another --out folder or delete that one"
            )
    # a finished run whose state.pt was deleted for space: its exported weights stand, nothing is trained again
    if (folder / PROVENANCE_FILE).is_file() and not state_path.exists():
        return PretrainResult(folder, folder / WEIGHTS_FILE, read_json(folder / "history.json"), config.steps)
    model = new_model(config).to(device)
    model.train()
    tokenizer = open_clip.get_tokenizer(registry_name(config.backbone))
    optimizer = _optimizer(model, config)
    # wall seconds (what a reader waits) and process CPU seconds summed over threads (what the run cost: a shared
    # or paused machine inflates the first, not the second); a state saved before CPU time was kept has none
    step, history, seconds, cpu_seconds = 0, [], 0.0, 0.0
    if state_path.exists():
        try:
            state = torch.load(state_path, map_location=device, weights_only=True)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, ValueError, EOFError, OSError, pickle.UnpicklingError) as error:
            message = f"damaged, or not a checkpoint of this recipe ({type(error).__name__}); delete it to start over"
            raise CheckpointError(f"{state_path}: {message}") from error
        step, seconds = int(state["step"]), float(state["seconds"])
        cpu_seconds = state.get("cpu_seconds")
        history = read_json(folder / "history.json")
        if not (
            isinstance(history, list) and len(history) >= step and all(isinstance(h, dict) for h in history)
        ):
            raise CheckpointError(
                f"{folder / 'history.json'}: not the loss history of {state_path} (step {step}); restore it, "
                f"or delete {folder} to start over"
            )
        history = history[:step]
    saved = step  # the step the folder's checkpoint holds
    size = _image_size(model)
    quality, groups = bank_captions()
    bank_tokens = tokenizer(quality + groups)
    last = config.steps if stop_after is None else min(config.steps, stop_after)
    trained = step < last
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=step, desc="pretrain", unit="step")
    while step < last:
        start, cpu_start = time.perf_counter(), time.process_time()
        for group in optimizer.param_groups:
            group["lr"] = config.lr * lr_factor(step, config.steps, config.warmup)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed * 1_000_003 + step)  # patch dropout draws: fixed by (seed, step)
            parts = train_step(model, tokenizer, config, step, size, bank_tokens, len(quality))
        if not torch.isfinite(parts["loss"]):
            # stop before the step: the last checkpoint stays finite, and nothing non-finite is ever exported
            terms = ", ".join(f"{k} {parts[k]:.4g}" for k in ("contrastive", "bank_quality", "bank_group"))
            kept = f"in a new --out (this one keeps step {saved})" if saved else "(nothing was saved)"
            fix = f"lower lr (now {config.lr:g}) or bank_scale and run again {kept}"
            raise TrainingDiverged(f"{folder}: the loss of step {step + 1} is not finite ({terms}): {fix}")
        optimizer.zero_grad(set_to_none=True)
        parts.pop("loss").backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        seconds += time.perf_counter() - start
        if cpu_seconds is not None:
            cpu_seconds += time.process_time() - cpu_start
        step += 1
        history.append(
            {"step": step, "lr": optimizer.param_groups[0]["lr"], "seconds": round(seconds, 2), **parts}
        )
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{parts['contrastive']:.3f}", acc=f"{parts['retrieval_acc']:.2f}")
        if step % config.checkpoint_every == 0 or step == last:
            if not recipe_file.exists():  # with the first checkpoint: it names the recipe of state.pt
                atomic_write_text(recipe_file, config.to_json() + "\n")
            _checkpoint(folder, model, optimizer, step, seconds, cpu_seconds, history)
            saved = step
    if bar is not None:
        bar.close()
    # a finished run is exported once, by the call that trained its last step: exporting again (e.g. to --ship
    # it later) would record the machine of that later call in the provenance
    if export and step >= config.steps and (trained or not (folder / PROVENANCE_FILE).is_file()):
        export_weights(folder, model, config, history, seconds, cpu_seconds, device)
    exported = step >= config.steps and (folder / PROVENANCE_FILE).is_file()
    weights = folder / WEIGHTS_FILE if exported else None
    return PretrainResult(folder=folder, weights=weights, history=history, steps_done=step)


def _checkpoint(
    folder: Path, model, optimizer, step: int, seconds: float, cpu_seconds: float | None, history: list[dict]
) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "seconds": seconds,
    }
    if cpu_seconds is not None:
        state["cpu_seconds"] = cpu_seconds
    # history first: a crash between the two writes leaves a longer history, which resume cuts to `step`
    atomic_write_text(folder / "history.json", json.dumps(history))
    atomic_write(folder / STATE_FILE, lambda tmp: torch.save(state, tmp))


def export_weights(
    folder: Path,
    model: nn.Module,
    config: PretrainConfig,
    history: list[dict],
    seconds: float,
    cpu_seconds: float | None,
    device: torch.device,
):
    """fp16 safetensors of the whole CLIP (what open_clip loads) and a provenance record beside it."""
    from safetensors.torch import save

    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    # bytes into the file atomic_write made (save_file would re-create it with mode 0600)
    data = save(state, metadata={"recipe": config.to_json(indent=None)})
    weights = atomic_write(folder / WEIGHTS_FILE, lambda tmp: tmp.write_bytes(data))
    tail = history[-min(50, len(history)) :]
    provenance = {
        "what": (
            f"mmpiqa '{config.backbone}' CLIP pretrained offline on the procedural captioned corpus "
            f"(mmpiqa.data.corpus): not OpenAI CLIP"
        ),
        "recipe": config.to_dict(),
        "corpus": {
            "module": "mmpiqa.data.corpus",
            "held_out_families": list(HELD_OUT_FAMILIES),
            "families": [f.name for f in PRETRAIN_FAMILIES],
            "pairs_seen": config.steps * config.batch_size,
        },
        "final": {  # a batch of one quality level has no correlation (nan): the only mean that skips gaps
            "contrastive": float(np.mean([h["contrastive"] for h in tail])),
            "retrieval_acc": float(np.mean([h["retrieval_acc"] for h in tail])),
            "quality_corr": float(np.nanmean([h["quality_corr"] for h in tail])),
        },
        "train_minutes": round(seconds / 60, 1),
        # CPU time of this process summed over its threads (null: resumed from a state that did not keep it)
        "cpu_minutes": None if cpu_seconds is None else round(cpu_seconds / 60, 1),
        # where the call that finished the run trained (a run paused elsewhere records only its last leg)
        "machine": f"{_device_name(device)}, {platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, open_clip {open_clip.__version__}",
        "sha256": file_sha256(weights),
        # every field, so the command stays exact when a later version changes a default
        "command": f"mmpiqa pretrain --out {folder.name} "
        + " ".join(f"--set {k}={v}" for k, v in config.to_dict().items())
        + ("" if device.type == "cpu" else f" --device {device}"),
    }
    atomic_write_text(folder / PROVENANCE_FILE, json.dumps(provenance, indent=2) + "\n")
    return weights


def _device_name(device: torch.device) -> str:
    return f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else device.type

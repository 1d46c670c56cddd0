"""Looking inside the prompted image tower: where visual prompts sit, what they cost, what attends to them.

Measurements for the visual-prompts chapter; none of them changes the model or open_clip.

* `prompt_layout` — the token sequence ``[CLS | patches | prompts]`` before every block and where each block's
  prompt slots come from (appended at the input, replaced by fresh learnable tokens, or carried over from the
  previous block's output); `draw_layout` draws it.
* `depth_table` — learned parameter counts (`PromptedCLIP.parameter_counts`) and the visual prompt tensor's shape
  for several prompt depths.
* `cost_per_depth` — time of the Trainer's training step (forward and loss, then backward + AdamW) per prompt
  depth: CPU time of one thread on a CPU (robust to other programs' load), wall-clock time on a GPU.
* `prompt_attention` / `attention_by_depth` — how much of the class token's attention goes to the prompt tokens
  in each block. The weights are recomputed from each block's own modules on the block's input (captured by a
  forward pre-hook): ``block.attn(ln_1(x), ln_1(x), ln_1(x), need_weights=True)``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import default_collate

from mmpiqa.config import ModelConfig, TrainConfig
from mmpiqa.labels import BATCH_KEYS
from mmpiqa.model.backbone import load_backbone
from mmpiqa.model.prompted_clip import PromptedCLIP, build_model
from mmpiqa.train.trainer import Trainer
from mmpiqa.workbook.parameters import whole_number

SOURCES = ("none", "appended", "replaced", "carried")  # where a block's prompt slots come from


def models_per_depth(
    config: ModelConfig, depths: Sequence[int], device: str | torch.device = "cpu"
) -> dict[int, PromptedCLIP]:
    """One `build_model` per visual prompt depth (keyed by the resolved depth), all around ONE frozen backbone
    loaded once."""
    backbone = load_backbone(config.backbone, config.pretrained, seed=config.backbone_seed, device=device)
    models = {}
    for depth in depths:
        model = build_model(config.replace(visual_depth=depth), device, backbone=backbone)
        models[model.visual_depth] = model
    return models


@dataclass(frozen=True)
class TokenLayout:
    """The image tower's token sequence and the origin of the prompt slots before each block."""

    n_patches: int  # patch tokens (grid_h * grid_w)
    n_prompts: int  # visual prompt tokens (0 without visual prompts)
    n_blocks: int  # transformer blocks of the image tower
    depth: int  # visual prompt depth (0: none; 1: input only; k: replaced before blocks 1..k-1)

    @property
    def length(self) -> int:
        """Tokens every block sees: 1 class token + patches + prompts."""
        return 1 + self.n_patches + self.n_prompts

    @property
    def prompt_slots(self) -> slice:
        """Positions of the prompt tokens: after the patches, so the class token stays at index 0."""
        return slice(1 + self.n_patches, self.length)

    def source(self, block: int) -> str:
        """Where block `block`'s prompt slots come from: 'none', 'appended', 'replaced' or 'carried'."""
        if not 0 <= block < self.n_blocks:
            raise IndexError(f"block {block}: the tower has blocks 0..{self.n_blocks - 1}")
        if self.depth == 0:
            return "none"
        if block == 0:
            return "appended"  # after the positional embedding, before ln_pre
        return "replaced" if block < self.depth else "carried"

    def table(self) -> pd.DataFrame:
        """One row per block: sequence length, prompt positions, where the prompt slots come from."""
        slots = self.prompt_slots
        return pd.DataFrame(
            {
                "block": range(self.n_blocks),
                "tokens": self.length,
                "prompt positions": [
                    f"{slots.start}..{slots.stop - 1}" if self.n_prompts else "-"
                    for _ in range(self.n_blocks)
                ],
                "prompt source": [self.source(b) for b in range(self.n_blocks)],
                "learned tensor": [
                    f"prompts[{b}]" if self.source(b) in ("appended", "replaced") else "-"
                    for b in range(self.n_blocks)
                ],
            }
        ).set_index("block")


def prompt_layout(model: PromptedCLIP) -> TokenLayout:
    """The token layout of `model`'s prompted image tower."""
    visual = model.clip.visual
    grid = visual.grid_size if hasattr(visual, "grid_size") else None
    n_patches = int(np.prod(grid)) if grid is not None else visual.positional_embedding.shape[0] - 1
    n_prompts = model.visual_prompts.n_vis if model.visual_prompts is not None else 0
    return TokenLayout(n_patches, n_prompts, len(visual.transformer.resblocks), model.visual_depth)


_COLOURS = {
    "cls": "#4c72b0",
    "patch": "#c9d6e8",
    "none": "white",
    "appended": "#dd8452",
    "replaced": "#c44e52",
    "carried": "#f2c9a8",
}


def draw_layout(layout: TokenLayout, ax=None, *, show_patches: int = 4, title: str | None = None):
    """A diagram of the sequence before each block: rows are blocks, columns the CLS token, the first
    `show_patches` patch tokens (the rest elided), and the prompt slots coloured by where they come from."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    ax = ax or plt.subplots(figsize=(5, 0.45 * layout.n_blocks + 1.2))[1]
    shown = min(show_patches, layout.n_patches)
    labels = ["CLS", *[f"p{i + 1}" for i in range(shown)]]
    labels += ["…"] if layout.n_patches > shown else []
    labels += [f"v{i + 1}" for i in range(layout.n_prompts)]
    for row in range(layout.n_blocks):
        source = layout.source(row)
        for col, label in enumerate(labels):
            kind = "cls" if label == "CLS" else source if label.startswith("v") else "patch"
            colour = "white" if label == "…" else _COLOURS[kind]
            ax.add_patch(Rectangle((col, row), 0.92, 0.85, facecolor=colour, edgecolor="0.3", linewidth=0.6))
            ax.text(col + 0.46, row + 0.43, label, ha="center", va="center", fontsize=7)
    ax.set(
        xlim=(-0.1, len(labels)),
        ylim=(layout.n_blocks, -0.15),
        xticks=[],
        yticks=[r + 0.43 for r in range(layout.n_blocks)],
        yticklabels=[f"before block {r}" for r in range(layout.n_blocks)],
    )
    ax.grid(False)
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(title if title is not None else f"visual_depth={layout.depth}", fontsize=10)
    used = ["cls", "patch"] + [
        s for s in SOURCES[1:] if any(layout.source(b) == s for b in range(layout.n_blocks))
    ]
    ax.legend(
        handles=[Patch(facecolor=_COLOURS[k], edgecolor="0.3", label=k) for k in used],
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=len(used),
        fontsize=7,
        frameon=False,
    )
    return ax


def depth_table(config: ModelConfig, depths: Sequence[int]) -> pd.DataFrame:
    """Learned parameters per visual prompt depth (models built from `config` with `visual_depth` replaced)."""
    rows = []
    for model in models_per_depth(config, depths).values():
        counts = model.parameter_counts()
        shape = (
            tuple(model.visual_prompts.tokens.shape)
            if model.visual_prompts is not None and not model.visual_prompts.coupled
            else None
        )
        rows.append(
            {
                "visual_depth": model.visual_depth,
                **counts,
                "learned": counts["text"] + counts["visual"] + counts["head"],
                "visual tensor": str(shape) if shape else ("coupled maps" if model.visual_prompts else "-"),
            }
        )
    return pd.DataFrame(rows).set_index("visual_depth")


@contextmanager
def _threads(n: int | None):
    """Run the body with `n` intra-op threads (None: leave the setting alone)."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cost_per_depth(
    config: ModelConfig,
    depths: Sequence[int],
    *,
    batch: int = 8,
    steps: int = 3,
    warmup: int = 1,
    device: str | torch.device = "cpu",
    clock: str = "auto",
    seed: int = 0,
) -> pd.DataFrame:
    """Seconds of one training step per visual prompt depth, the Trainer's own (`Trainer.step`), split into its
    forward half (text pass, image tower, readout, losses) and its backward half (backward, clipping, AdamW), on
    `batch` random [0, 1] images at the input size with random labels for every branch.

    `clock`: 'wall' (wall-clock time; CUDA is synchronised), 'cpu' (CPU time of the process on ONE thread: the
    work a step takes, which other programs on a shared machine barely change) or 'auto' ('cpu' on a CPU device,
    'wall' on a GPU). The depths take turns (round robin: `warmup` untimed rounds, then `steps` timed ones) so
    that a burst of load hits every depth alike, and each depth reports its fastest timed step (with its forward
    and backward parts), the usual estimate of a cost under noise."""
    whole_number("batch", batch, 1, what="images per timed training step")
    whole_number("steps", steps, 1, what="timed training steps per depth (the fastest counts)")
    whole_number("warmup", warmup, 0, what="untimed rounds before the timed steps")
    device = torch.device(device)
    clock = ("cpu" if device.type == "cpu" else "wall") if clock == "auto" else clock
    if clock not in ("wall", "cpu") or (clock == "cpu" and device.type != "cpu"):
        raise ValueError(f"clock={clock!r}: 'wall', 'auto', or 'cpu' (CPU devices only)")
    now = time.process_time if clock == "cpu" else time.perf_counter
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    models = models_per_depth(config, depths, device)
    size = next(iter(models.values())).image_size
    items = _random_items(config, batch, size, torch.Generator().manual_seed(seed))
    labelled = default_collate(items)
    labelled["image"] = labelled["image"].to(device)  # the step times the model, not the copy to the device
    trainers = {d: Trainer(m, TrainConfig(), items, items, progress=False) for d, m in models.items()}
    times: dict[int, list[tuple[float, float]]] = {d: [] for d in models}
    with _threads(1 if clock == "cpu" else None):
        for round_ in range(warmup + steps):
            for depth, trainer in trainers.items():
                start = now()
                loss, _ = trainer.loss(labelled)
                sync()
                middle = now()
                trainer.update(loss)
                sync()
                if round_ >= warmup:
                    times[depth].append((middle - start, now() - middle))
    rows = []
    for depth, model in models.items():
        f, b = min(times[depth], key=sum)  # the fastest timed step
        rows.append({"visual_depth": depth, "forward_s": f, "backward_s": b, "step_s": f + b,
                     "images_per_s": batch / (f + b), "clock": clock,
                     "learned": sum(p.numel() for p in model.trainable_parameters())})  # fmt: skip
    return pd.DataFrame(rows).set_index("visual_depth")


def _random_items(config: ModelConfig, n: int, size: int, generator: torch.Generator) -> list[dict]:
    """`n` training items: one random [0, 1] image crop each, a random MOS, scene class and distortion group."""
    images = torch.rand(n, 1, 3, size, size, generator=generator)
    mos = torch.rand(n, generator=generator)
    scenes = torch.eye(len(config.scenes))[torch.randint(len(config.scenes), (n,), generator=generator)]
    distortions = torch.randint(len(config.distortions), (n,), generator=generator)
    return [
        {"image": images[i], "index": i, BATCH_KEYS["mos"]: mos[i], BATCH_KEYS["group"]: 0,
         BATCH_KEYS["scene"]: scenes[i], BATCH_KEYS["distortion"]: distortions[i]}
        for i in range(n)
    ]  # fmt: skip


def _check_attention(block: nn.Module) -> nn.MultiheadAttention:
    attn = getattr(block, "attn", None)
    if not isinstance(attn, nn.MultiheadAttention) or not attn.batch_first or not hasattr(block, "ln_1"):
        raise TypeError(
            f"prompt_attention needs open_clip blocks with a batch-first nn.MultiheadAttention `attn` and `ln_1`; "
            f"got {type(block).__name__} with attn={type(attn).__name__}"
        )
    return attn


@torch.no_grad()
def attention_maps(model: PromptedCLIP, images: torch.Tensor) -> list[torch.Tensor]:
    """Per block, the self-attention weights (B, heads, L, L) of the prompted image tower on [0, 1] images.

    A forward pre-hook records each block's input x; the weights are then recomputed with the block's own
    modules, ``attn(ln_1(x), ln_1(x), ln_1(x), need_weights=True, average_attn_weights=False)``. Rows sum to 1."""
    blocks = model.clip.visual.transformer.resblocks
    attns = [_check_attention(block) for block in blocks]
    inputs: list[torch.Tensor] = []
    handles = [block.register_forward_pre_hook(lambda _m, args: inputs.append(args[0])) for block in blocks]
    try:
        model.eval()
        model.image_features(images)
    finally:
        for handle in handles:
            handle.remove()
    if len(inputs) != len(blocks):
        raise RuntimeError(f"captured {len(inputs)} block inputs for {len(blocks)} blocks")
    maps = []
    for block, attn, x in zip(blocks, attns, inputs, strict=True):
        y = block.ln_1(x)
        maps.append(attn(y, y, y, need_weights=True, average_attn_weights=False)[1])
    return maps


def prompt_attention(model: PromptedCLIP, images: torch.Tensor) -> pd.DataFrame:
    """Where the class token looks, per block: the share of its attention on itself, on the patches and on the
    prompt tokens (averaged over images and heads; the three sum to 1), and `uniform`, the prompt share if
    attention were spread evenly over all tokens."""
    layout = prompt_layout(model)
    rows = []
    for block, weights in enumerate(attention_maps(model, images)):
        cls_row = weights[:, :, 0, :].float().mean(dim=(0, 1))  # (L,)
        rows.append(
            {
                "block": block,
                "cls": float(cls_row[0]),
                "patches": float(cls_row[1 : 1 + layout.n_patches].sum()),
                "prompts": float(cls_row[layout.prompt_slots].sum()),
                "uniform": layout.n_prompts / layout.length,
                "source": layout.source(block),
            }
        )
    return pd.DataFrame(rows).set_index("block")


def attention_by_depth(
    config: ModelConfig, depths: Sequence[int], images: torch.Tensor, device: str | torch.device = "cpu"
) -> pd.DataFrame:
    """Prompt share of the class token's attention: rows are visual prompt depths, columns blocks."""
    rows = {
        depth: prompt_attention(model, images.to(device))["prompts"]
        for depth, model in models_per_depth(config, depths, device).items()
    }
    table = pd.DataFrame(rows).T
    table.index.name, table.columns.name = "visual_depth", "block"
    return table

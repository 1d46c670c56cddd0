"""PromptedCLIP: a frozen open_clip CLIP, learnable text and visual prompts, and a quality readout.

The model knows tensors, not files: images enter as RGB in [0, 1] with shape (B, 3, H, W) at the backbone's
input size, and are normalised here with the backbone's own mean and std.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mmpiqa.config import ALL_BLOCKS, ConfigError, ModelConfig
from mmpiqa.model.backbone import BackboneIdentity, load_backbone, tokenizer_for
from mmpiqa.model.heads import CrossAttentionHead, antonym_probability, expected_level
from mmpiqa.model.prompts import TextPrompts, VisualPrompts, prompted_image_tower, prompted_text_tower


@dataclass
class IQAOutput:
    """What one forward pass returns."""

    score: (
        torch.Tensor
    )  # (B,) float32 predicted quality; in [0, 1] for 'levels'/'antonym', unbounded for 'xattn'
    logits: dict[str, torch.Tensor] = field(
        default_factory=dict
    )  # branch -> (B, classes) float32 scaled cosines
    image_features: torch.Tensor | None = None  # (B, E) unit-norm pooled image features


def prompted_blocks(config: ModelConfig, field: str, tower: nn.Module, backbone: str) -> int:
    """How many blocks of `tower` (open_clip's Transformer), from the first, get learned prompt tokens: the
    config's text_depth or visual_depth (`field`), with "all" (stored as ALL_BLOCKS) read as every block. The one
    place a depth is read against a backbone."""
    depth, n_blocks = getattr(config, field), len(tower.resblocks)
    if depth == ALL_BLOCKS:
        return n_blocks
    if depth > n_blocks:
        which = "text" if field == "text_depth" else "image"
        raise ConfigError(
            f"model.{field}={depth} exceeds the {which} tower's {n_blocks} blocks of {backbone}: choose "
            f'0..{n_blocks}, or "all"'
        )
    return depth


class PromptedCLIP(nn.Module):
    """Frozen CLIP + text branches {quality, scene, distortion} + visual prompts + readout head."""

    def __init__(self, config: ModelConfig, clip: nn.Module, tokenizer, identity: BackboneIdentity) -> None:
        super().__init__()
        self.config = config
        self.identity = identity
        self.clip = clip
        # blocks, from the first, that see learned prompt tokens
        self.text_depth = prompted_blocks(config, "text_depth", clip.transformer, identity.name)
        self.visual_depth = prompted_blocks(config, "visual_depth", clip.visual.transformer, identity.name)
        device = clip.logit_scale.device
        self.text_prompts = TextPrompts(
            clip,
            tokenizer,
            {b: [config.template(b).format(c) for c in config.classes(b)] for b in config.branches},
            n_ctx=config.n_ctx,
            ctx_init=config.ctx_init,
            depth=self.text_depth,
        ).to(device)
        self.visual_prompts = None
        if self.visual_depth:
            if config.coupled and self.text_depth < self.visual_depth:
                raise ConfigError(
                    f"coupled=True maps the text context of each layer: text_depth ({self.text_depth}) must be "
                    f">= visual_depth ({self.visual_depth})"
                )
            if config.coupled and config.n_vis != self.text_prompts.n_ctx:
                raise ConfigError(
                    f"coupled=True: n_vis ({config.n_vis}) must equal the number of context tokens "
                    f"({self.text_prompts.n_ctx}) because each visual token is a map of one text token"
                )
            self.visual_prompts = VisualPrompts(
                n_vis=config.n_vis,
                depth=self.visual_depth,
                width=clip.visual.conv1.out_channels,
                coupled=config.coupled,
                text_width=clip.token_embedding.embedding_dim,
            ).to(device)
        embed_dim = clip.text_projection.shape[-1] if isinstance(clip.text_projection, torch.Tensor) else None
        embed_dim = embed_dim or clip.visual.output_dim
        self.head = (
            CrossAttentionHead(
                embed_dim, config.head_heads, config.head_hidden, zero_init=config.xattn_prior == "levels"
            ).to(device)
            if config.head == "xattn"
            else None
        )
        mean = torch.tensor(clip.visual.image_mean or (0.48145466, 0.4578275, 0.40821073)).view(1, 3, 1, 1)
        std = torch.tensor(clip.visual.image_std or (0.26862954, 0.26130258, 0.27577711)).view(1, 3, 1, 1)
        self.register_buffer("mean", mean.to(device), persistent=False)
        self.register_buffer("std", std.to(device), persistent=False)

    # --- the frozen part stays frozen -------------------------------------------------------------------
    def train(self, mode: bool = True) -> PromptedCLIP:
        super().train(mode)
        self.clip.eval()  # dropout/patch dropout of the backbone never switch on
        return self

    @property
    def image_size(self) -> int:
        size = self.clip.visual.image_size
        return size[0] if isinstance(size, tuple | list) else int(size)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if p.requires_grad and not name.startswith("clip.")]

    def learned_state_dict(self) -> dict[str, torch.Tensor]:
        """Only what was learned: prompt and head parameters (what a checkpoint holds)."""
        return {
            n: p.detach() for n, p in self.named_parameters() if not n.startswith("clip.") and p.requires_grad
        }

    def parameter_counts(self) -> dict[str, int]:
        """Learned numbers of the text prompts, the visual prompts and the head, and the frozen backbone's."""
        parts = {"text": self.text_prompts, "visual": self.visual_prompts, "head": self.head}
        counts = {
            part: sum(p.numel() for p in module.parameters() if p.requires_grad) if module is not None else 0
            for part, module in parts.items()
        }
        counts["backbone (frozen)"] = sum(p.numel() for p in self.clip.parameters())
        return counts

    # --- encoders ---------------------------------------------------------------------------------------
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Check what enters the image tower, then normalise with the backbone's mean and std."""
        self.check_images(images)
        return (images - self.mean) / self.std

    def check_images(self, images: torch.Tensor) -> None:
        """Refuse a batch that is not float RGB (B, 3, S, S) in [0, 1] at S = `image_size`, saying how to get
        there. One min/max pass over the batch: cheap beside the image tower."""
        s = self.image_size
        how = (
            f"Load files with mmpiqa.data.images.load_rgb (float RGB in [0, 1]) and cut them to {s} px with "
            f"mmpiqa.data.crops.crop(image, CropPolicy('center', {s})) (or 'grid', 'resize')."
        )
        if not isinstance(images, torch.Tensor):
            raise TypeError(
                f"images must be a torch.Tensor (B, 3, {s}, {s}); got {type(images).__name__}. {how}"
            )
        if not images.is_floating_point():
            raise TypeError(
                f"images must be floating point in [0, 1]; got {images.dtype} (divide 8-bit images by 255). {how}"
            )
        if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != (s, s):
            raise ValueError(
                f"images must be RGB (B, 3, {s}, {s}) for {self.identity.name}; got shape {tuple(images.shape)}. {how}"
            )
        if images.numel():
            low, high = torch.aminmax(images.detach())
            if not (low >= 0 and high <= 1):  # also false for NaN
                raise ValueError(
                    f"images must hold values in [0, 1] (normalisation happens inside the model); got "
                    f"{low.item():.3g}..{high.item():.3g}. {how}"
                )

    def visual_prompt_tokens(self) -> list[torch.Tensor]:
        """The (n_vis, W) prompt tokens each prompted image block receives, first block first."""
        if self.visual_prompts is None:
            return []
        return self.visual_prompts.layer_prompts(self.text_prompts)

    def image_features(
        self, images: torch.Tensor, normalize: bool = False, return_tokens: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Pooled features (B, E) of [0, 1] RGB images (normalised here) through the prompted image tower, and
        with `return_tokens` the projected patch tokens (B, N, E) too. ``clip.encode_image`` takes normalised
        images and no prompts."""
        pooled, tokens = prompted_image_tower(self.clip, self.normalize(images), self.visual_prompt_tokens())
        if normalize:
            pooled, tokens = F.normalize(pooled, dim=-1), F.normalize(tokens, dim=-1)
        return (pooled, tokens) if return_tokens else pooled

    def text_features(self, normalize: bool = True) -> dict[str, torch.Tensor]:
        """branch -> (classes, E) features of every branch, from one batched pass through the text tower."""
        features = prompted_text_tower(self.clip, self.text_prompts)
        if normalize:
            features = F.normalize(features, dim=-1)
        return self.text_prompts.split(features)

    def branch_features(self, branch: str, normalize: bool = False) -> torch.Tensor:
        """(classes, E) features of one branch's prompts, by branch name (``clip.encode_text`` takes tokens)."""
        if branch not in self.text_prompts.branch_names:
            raise KeyError(f"branch {branch!r} is not in this model; it has {self.text_prompts.branch_names}")
        return self.text_features(normalize=normalize)[branch]

    # --- readout ----------------------------------------------------------------------------------------
    def forward(
        self, images: torch.Tensor, text_features: dict[str, torch.Tensor] | None = None
    ) -> IQAOutput:
        """Score a batch of [0, 1] RGB images. `text_features` (unit-norm, from `text_features()`) may be
        passed in to reuse one text pass for several image batches, e.g. during evaluation."""
        text = text_features if text_features is not None else self.text_features()
        pooled, tokens = self.image_features(images, normalize=True, return_tokens=True)
        return self.readout(pooled, tokens, text)

    def readout(
        self, pooled: torch.Tensor, tokens: torch.Tensor | None, text_features: dict[str, torch.Tensor]
    ) -> IQAOutput:
        """Scores and branch logits from unit-norm image features (B, E), patch tokens (B, N, E) and text
        features. Split from `forward` so frozen image features can be computed once and reused.

        Runs in float32 whatever autocast is on: in bf16 (8 significant bits) the scaled logits (about +-30 at
        CLIP's logit scale 100) and the scores fall onto coarse steps, distinct scores become ties, and ties
        change SRCC. The readout is a few small matmuls, so this costs next to nothing."""
        with torch.autocast(pooled.device.type, enabled=False):
            pooled = pooled.float()
            tokens = tokens.float() if tokens is not None else None
            text_features = {b: f.float() for b, f in text_features.items()}
            scale = self.clip.logit_scale.float().exp()
            logits = {b: scale * pooled @ feats.t() for b, feats in text_features.items()}
            head = self.config.head
            if head == "levels":
                score = expected_level(logits["quality"])
            elif head == "antonym":
                score = antonym_probability(logits["quality"])
            else:
                queries = torch.cat([text_features[b] for b in self.text_prompts.branch_names])
                score = self.head(queries, tokens, pooled)
                if self.config.xattn_prior == "levels":
                    score = score + expected_level(logits["quality"])
        return IQAOutput(score=score, logits=logits, image_features=pooled)

    @property
    def needs_tokens(self) -> bool:
        """Whether the readout looks at patch tokens (only the xattn head does)."""
        return self.head is not None

    @property
    def image_tower_frozen(self) -> bool:
        """No visual prompts: image features do not change during training and can be cached."""
        return self.visual_prompts is None

    def describe(self) -> str:
        """One line saying what the numbers come from, for banners and run logs."""
        c = self.config
        parts = [
            self.identity.describe(),
            f"branches={','.join(c.branches) or 'none'}",
            f"text_depth={self.text_depth} (n_ctx={self.text_prompts.n_ctx})",
            f"visual_depth={self.visual_depth}"
            + (f" (n_vis={c.n_vis}{', coupled' if c.coupled else ''})" if self.visual_depth else ""),
            f"head={c.head}",
        ]
        return "; ".join(parts)


def build_model(
    config: ModelConfig | None = None,
    device: str | torch.device = "cpu",
    *,
    backbone: tuple[nn.Module, BackboneIdentity] | None = None,
) -> PromptedCLIP:
    """A PromptedCLIP for `config` (default: the MP-IQE variant on the offline tiny backbone).

    `backbone`: the `load_backbone` result for this config to build around instead of loading it again (several
    models sharing one frozen backbone)."""
    config = config or ModelConfig()
    clip, identity = backbone or load_backbone(
        config.backbone, config.pretrained, seed=config.backbone_seed, device=device
    )
    # Prompts drawn from their own seeded stream, so the same config gives the same initial prompts.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.backbone_seed + 1)
        model = PromptedCLIP(config, clip, tokenizer_for(config.backbone), identity)
    return model.to(device)

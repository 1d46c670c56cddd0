"""Learnable prompts and the prompted encoders: explicit loops over open_clip's public blocks.

Text (CoOp, deep as in MaPLe): each branch's prompts read ``<SOT> c_1 … c_n <class words>. <EOT>``; the n
context slots hold learnable vectors shared by the branch's classes. With ``text_depth = k > 1`` the same slots
are overwritten by fresh learnable vectors before each block 1..k-1, so every early block sees learned context.

Image (VPT-deep / MaPLe placement): ``n_vis`` tokens are appended after the patch tokens, after the positional
embedding and before ``ln_pre`` (the class token stays at index 0, so class-token pooling is untouched); with
``visual_depth = k > 1`` those last ``n_vis`` tokens are replaced before each block 1..k-1. In coupled mode the
visual tokens of layer l are a linear map of that layer's text context (averaged over branches).

At neutral settings (context initialised from the prompt's own words, no deep prompts, no visual prompts) these
loops reproduce ``clip.encode_text`` / ``clip.encode_image`` bit for bit; tests/test_equivalence.py holds them
to it.

Speed only: where the loops would call ``block(x, attn_mask=mask)`` they call `fast.run_block`, and the text
sequence passes through `fast.drop_padding` first. Both return what the plain code returns (bit for bit without a
gradient, to float rounding with one) and only make training faster; `mmpiqa.model.fast` says how, and which
test proves it.
"""

from __future__ import annotations

import torch
from open_clip.transformer import text_global_pool
from torch import nn

from mmpiqa.model import fast

CTX_STD = 0.02  # init scale of random context and deep prompts (CoOp, VPT, MaPLe all use 0.02)


def context_words(tokenizer, n_ctx: int | None, ctx_init: str | None) -> tuple[str, int]:
    """The words standing in the context slots and how many tokens they take."""
    if ctx_init is None:
        return " ".join(["X"] * n_ctx), n_ctx
    sot, eot = _special_ids(tokenizer)
    ids = [int(t) for t in tokenizer([ctx_init])[0] if int(t) not in (0, sot, eot)]
    if n_ctx is not None and len(ids) != n_ctx:
        raise ValueError(
            f"ctx_init={ctx_init!r} is {len(ids)} tokens but n_ctx={n_ctx}: set n_ctx=None (take the count "
            f"from ctx_init) or {len(ids)}, or change ctx_init"
        )
    return ctx_init, len(ids)


def _special_ids(tokenizer) -> tuple[int, int]:
    return int(tokenizer.sot_token_id), int(tokenizer.eot_token_id)


class TextPrompts(nn.Module):
    """The text branches: frozen token embeddings of the class prompts with learnable context slots.

    All branches are encoded in one batched pass; each keeps its own context. Buffers hold what is derived
    from the frozen backbone (tokens, prefix and suffix embeddings), parameters only what is learned.
    """

    def __init__(
        self,
        clip: nn.Module,
        tokenizer,
        branches: dict[str, list[str]],
        *,
        n_ctx: int | None,
        ctx_init: str | None,
        depth: int,
    ) -> None:
        super().__init__()
        words, self.n_ctx = context_words(tokenizer, n_ctx, ctx_init)
        _, eot = _special_ids(tokenizer)
        self.branch_names = tuple(branches)
        self.branch_sizes = tuple(len(p) for p in branches.values())
        self.depth = depth
        width = clip.token_embedding.embedding_dim
        prompts = [f"{words} {phrase}." for phrases in branches.values() for phrase in phrases]
        tokens = tokenizer(prompts)
        self._check_fits(tokens, prompts, tokenizer)
        with torch.no_grad():  # on the embedding's device (a backbone already on the GPU takes GPU token ids)
            embeds = clip.token_embedding(tokens.to(clip.token_embedding.weight.device)).to(tokens.device)
        n = self.n_ctx
        self.register_buffer("tokens", tokens, persistent=False)
        # Speed only: the positions end-token pooling can see, what training runs (fast.drop_padding).
        self.used_length = fast.used_length(clip, tokens, eot)
        self.register_buffer("prefix", embeds[:, :1].clone(), persistent=False)
        self.register_buffer("suffix", embeds[:, 1 + n :].clone(), persistent=False)
        self.prompts = prompts

        ctx = []
        for start, _size in zip(self._starts(), self.branch_sizes, strict=True):
            if ctx_init is None:
                ctx.append(torch.randn(n, width) * CTX_STD)
            else:
                ctx.append(embeds[start, 1 : 1 + n].clone())
        ctx = torch.stack(ctx)  # (branches, n_ctx, width)
        if depth >= 1:
            self.ctx = nn.Parameter(ctx)
        else:
            self.register_buffer("ctx", ctx, persistent=False)
        # deep[l] replaces the context slots before block l + 1
        self.deep = nn.Parameter(torch.randn(max(depth - 1, 0), len(branches), n, width) * CTX_STD)

    @staticmethod
    def _check_fits(tokens: torch.Tensor, prompts: list[str], tokenizer) -> None:
        _, eot = _special_ids(tokenizer)
        cut = [p for p, row in zip(prompts, tokens, strict=True) if eot not in row.tolist()]
        if cut:
            raise ValueError(
                f"prompt {cut[0]!r} does not fit the text context length {tokens.shape[1]}: "
                f"shorten the class phrase or the template, or use fewer context tokens"
            )

    def _starts(self) -> list[int]:
        starts, at = [], 0
        for size in self.branch_sizes:
            starts.append(at)
            at += size
        return starts

    def _per_prompt(self, ctx: torch.Tensor) -> torch.Tensor:
        """(branches, n_ctx, W) -> (prompts, n_ctx, W): each branch's context repeated for its classes."""
        return torch.cat(
            [c.unsqueeze(0).expand(size, -1, -1) for c, size in zip(ctx, self.branch_sizes, strict=True)]
        )

    def input_embeddings(self) -> torch.Tensor:
        return torch.cat([self.prefix, self._per_prompt(self.ctx).to(self.prefix.dtype), self.suffix], dim=1)

    def layer_context(self, layer: int) -> torch.Tensor:
        """The (branches, n_ctx, W) context the text tower sees at `layer` (0 = input)."""
        return self.ctx if layer == 0 else self.deep[layer - 1]

    def split(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.branch_names, features.split(list(self.branch_sizes)), strict=True))


def prompted_text_tower(clip: nn.Module, text: TextPrompts) -> torch.Tensor:
    """Features of every prompt (prompts, embed_dim), unnormalised, as ``clip.encode_text`` computes them."""
    cast = clip.transformer.get_cast_dtype()
    x = text.input_embeddings().to(cast)
    x = x + clip.positional_embedding.to(cast)
    # the whole sequence; while training, without the padding no pooled position sees (speed only)
    x, tokens, mask = fast.drop_padding(x, text.tokens, clip.attn_mask, text.used_length)
    n = text.n_ctx
    for i, block in enumerate(clip.transformer.resblocks):
        if 1 <= i < text.depth:
            deep = text._per_prompt(text.deep[i - 1]).to(cast)
            x = torch.cat([x[:, :1], deep, x[:, 1 + n :]], dim=1)
        x = fast.run_block(block, x, attn_mask=mask)  # block(x, attn_mask=mask), faster under a gradient
    x = clip.ln_final(x)
    x = text_global_pool(x, tokens, clip.text_pool_type, eos_token_id=getattr(clip, "text_eos_id", None))
    if clip.text_projection is not None:
        x = (
            clip.text_projection(x)
            if isinstance(clip.text_projection, nn.Linear)
            else x @ clip.text_projection
        )
    return x


class VisualPrompts(nn.Module):
    """Learnable image-side prompt tokens, free (VPT-deep) or coupled to the text context (MaPLe)."""

    def __init__(
        self, *, n_vis: int, depth: int, width: int, coupled: bool = False, text_width: int | None = None
    ) -> None:
        super().__init__()
        self.n_vis, self.depth, self.coupled = n_vis, depth, coupled
        if coupled:
            self.maps = nn.ModuleList(nn.Linear(text_width, width) for _ in range(depth))
        else:
            self.tokens = nn.Parameter(torch.randn(depth, n_vis, width) * CTX_STD)

    def layer_prompts(self, text: TextPrompts | None = None) -> list[torch.Tensor]:
        """The (n_vis, W) tokens for each layer below `depth`."""
        if not self.coupled:
            return list(self.tokens)
        return [m(text.layer_context(i).mean(dim=0)) for i, m in enumerate(self.maps)]


def prompted_image_tower(
    clip: nn.Module, images: torch.Tensor, prompts: list[torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled, patch tokens) of normalised images, both projected to the embedding space, unnormalised.

    pooled equals ``clip.encode_image`` when `prompts` is empty; tokens are the ln_post'ed patch tokens (without
    the class token and without prompt tokens) mapped through the same projection, for token-level readouts.
    """
    visual = clip.visual
    x = visual.conv1(images)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    batch = x.shape[0]
    x = torch.cat([visual.class_embedding.view(1, 1, -1).expand(batch, -1, -1).to(x.dtype), x], dim=1)
    x = x + visual.positional_embedding.to(x.dtype)
    x = visual.patch_dropout(x)
    n_seq = x.shape[1]
    prompts = prompts or []
    if prompts:
        x = torch.cat([x, prompts[0].unsqueeze(0).expand(batch, -1, -1).to(x.dtype)], dim=1)
    x = visual.ln_pre(x)
    for i, block in enumerate(visual.transformer.resblocks):
        if 1 <= i < len(prompts):
            x = torch.cat([x[:, :n_seq], prompts[i].unsqueeze(0).expand(batch, -1, -1).to(x.dtype)], dim=1)
        x = fast.run_block(block, x)  # block(x), faster under a gradient
    x = visual.ln_post(x)
    pooled, tokens = x[:, 0], x[:, 1:n_seq]
    if visual.proj is not None:
        pooled, tokens = pooled @ visual.proj, tokens @ visual.proj
    return pooled, tokens

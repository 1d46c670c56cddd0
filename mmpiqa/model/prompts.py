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

Speed (benchmarks/RESULTS.md has the numbers). When a gradient flows through a tower (training with learnable
prompts) two things change, neither of which changes the maths; without a gradient (evaluation, the equivalence
tests, frozen towers) every block is called as open_clip calls it:

* `run_block` computes a block's self-attention in the batch-first layout (one GEMM for the packed in-projection)
  instead of ``nn.MultiheadAttention``'s slow path, which open_clip's block takes whenever a gradient flows: that
  path transposes to (L, B, D) and runs the in-projection of the non-contiguous input, forward and backward, as
  L small batched GEMMs (``aten::bmm``) plus copies.
* `encode_text` drops the padding after the longest prompt's end token: with a causal mask nothing before a
  position attends to it, so the pooled end-token features are the same and the text tower does ~5x less work.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock, text_global_pool
from torch import nn

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
        # Positions a causal text tower needs for end-token pooling: up to the last end token (see encode_text).
        self.used_length = _used_length(clip, tokens, eot)
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


def _used_length(clip: nn.Module, tokens: torch.Tensor, eot: int) -> int | None:
    """How many leading positions the pooled features depend on, or None when all of them (no causal mask, or
    pooling at the last position). Under a causal mask position i sees positions <= i only, so with end-token
    (or first-token) pooling the positions after the last end token of every prompt cannot change the output."""
    mask = getattr(clip, "attn_mask", None)
    if mask is None or clip.text_pool_type not in ("argmax", "eos", "first"):
        return None
    causal = torch.ones(mask.shape, dtype=torch.bool, device=mask.device).triu(1)
    if not torch.equal(torch.isneginf(mask), causal) or not torch.isfinite(mask[~causal]).all():
        return None
    if clip.text_pool_type == "argmax":  # the highest token id: the end token, which _check_fits ensures
        ends = tokens.argmax(dim=1)
    else:
        eos = getattr(clip, "text_eos_id", None)
        ends = (tokens == (eot if eos is None else eos)).int().argmax(dim=1)
    return int(ends.max()) + 1


def encode_text(clip: nn.Module, text: TextPrompts) -> torch.Tensor:
    """Features of every prompt (prompts, embed_dim), unnormalised, as ``clip.encode_text`` computes them."""
    cast = clip.transformer.get_cast_dtype()
    x = text.input_embeddings().to(cast)
    x = x + clip.positional_embedding.to(cast)
    tokens, mask = text.tokens, clip.attn_mask
    if torch.is_grad_enabled() and x.requires_grad and text.used_length is not None:
        # Training: drop the padding no pooled position can see (module docstring). Without a gradient the full
        # context runs, so evaluation reproduces clip.encode_text bit for bit.
        keep = text.used_length
        x, tokens, mask = x[:, :keep], tokens[:, :keep], mask[:keep, :keep]
    n = text.n_ctx
    for i, block in enumerate(clip.transformer.resblocks):
        if 1 <= i < text.depth:
            deep = text._per_prompt(text.deep[i - 1]).to(cast)
            x = torch.cat([x[:, :1], deep, x[:, 1 + n :]], dim=1)
        x = run_block(block, x, attn_mask=mask)
    x = clip.ln_final(x)
    x = text_global_pool(x, tokens, clip.text_pool_type, eos_token_id=getattr(clip, "text_eos_id", None))
    if clip.text_projection is not None:
        x = (
            clip.text_projection(x)
            if isinstance(clip.text_projection, nn.Linear)
            else x @ clip.text_projection
        )
    return x


def run_block(block: nn.Module, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``block(x, attn_mask=attn_mask)``; when a gradient flows through `x`, the same block with its attention in
    the batch-first layout (see the module docstring; the maths, weights and the result up to rounding are those
    of ``ResidualAttentionBlock.forward``). Blocks of any other kind are always called as they are."""
    if not (torch.is_grad_enabled() and x.requires_grad and _plain_block(block)):
        return block(x, attn_mask=attn_mask)
    mask = attn_mask.to(x.dtype) if attn_mask is not None else None  # as open_clip's block casts it
    x = x + block.ls_1(_self_attention(block.attn, block.ln_1(x), mask))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def _plain_block(block: nn.Module) -> bool:
    """A standard open_clip self-attention block around a packed, batch-first nn.MultiheadAttention."""
    attn = getattr(block, "attn", None)
    return (
        type(block) is ResidualAttentionBlock
        and not hasattr(block, "ln_1_kv")
        and type(attn) is nn.MultiheadAttention
        and attn.batch_first
        and attn._qkv_same_embed_dim
        and attn.bias_k is None
        and not attn.add_zero_attn
    )


def _self_attention(attn: nn.MultiheadAttention, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``attn(x, x, x, need_weights=False, attn_mask=mask)[0]`` for x (B, L, D), without leaving (B, L, D)."""
    b, length, width = x.shape
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)  # one (B*L, D) x (D, 3D) GEMM
    q, k, v = qkv.view(b, length, 3, attn.num_heads, width // attn.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
    dropout = attn.dropout if attn.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)  # (B, H, L, D/H)
    return attn.out_proj(out.transpose(1, 2).reshape(b, length, width))


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


def encode_image(
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
        x = run_block(block, x)
    x = visual.ln_post(x)
    pooled, tokens = x[:, 0], x[:, 1:n_seq]
    if visual.proj is not None:
        pooled, tokens = pooled @ visual.proj, tokens @ visual.proj
    return pooled, tokens

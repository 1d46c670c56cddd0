"""Speed only: three exact rewrites the model uses in place of a plain call (benchmarks/RESULTS.md, "fast").

Each function here returns what the plain call named in its docstring returns: the same maths and weights,
the result equal up to float rounding. The teaching code (prompts.py, heads.py) calls them where it would call
the plain version and says which one; read the plain call there and come here only for the speed.

* `run_block` - ``block(x, attn_mask=mask)`` for an open_clip transformer block. While a gradient flows,
  ``nn.MultiheadAttention`` leaves its fused path for a slow one that transposes (B, L, D) to (L, B, D) and runs
  the in-projection of the non-contiguous input, forward and backward, as L small batched GEMMs (``aten::bmm``)
  plus copies. Here the block's self-attention stays batch-first: one GEMM for the packed q/k/v projection and
  ``scaled_dot_product_attention``. Exact because it is the block's own computation (ln_1, attention, ls_1,
  ln_2, mlp, ls_2) with the same weights, only laid out differently. Without a gradient (evaluation) the block
  is called as it is, so the prompted encoders reproduce open_clip bit for bit.
* `drop_padding` - keeps the text sequence as it is, except while a gradient flows: then it cuts it after the
  last end token of all prompts (`used_length`), ~5x less text-tower work. Exact because the text tower is
  causal (position i attends to positions <= i only) and pools at the end token (or the first one), so no
  pooled position ever sees the padding after it.
* `cross_attention` - ``attn(q, kv, kv)`` of the xattn head with the queries q shared by every image. The query
  side is folded into the key projection and the value projection is applied after the attention, so the
  B x N image tokens are never projected (see its docstring for the two identities that make it exact).

Proofs: tests/test_fast_paths.py compares features, scores and gradients of the training path with open_clip's
own block calls and the full text context (`run_block`, `drop_padding`), and the head with an
``nn.MultiheadAttention`` call (`cross_attention`); tests/test_equivalence.py holds the evaluation path to bit
equality with ``clip.encode_text`` / ``clip.encode_image``. The benchmark item ``fastpath`` (benchmarks/run.py)
switches each rewrite off in turn and times what it is worth.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock
from torch import nn


def run_block(block: nn.Module, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``block(x, attn_mask=attn_mask)``; when a gradient flows through `x`, the same block with its attention in
    the batch-first layout (the maths, weights and the result up to rounding are those of
    ``ResidualAttentionBlock.forward``). Blocks of any other kind are always called as they are."""
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


def used_length(clip: nn.Module, tokens: torch.Tensor, eot: int) -> int | None:
    """How many leading positions the pooled text features depend on, or None when all of them (no causal mask,
    or pooling at the last position). Under a causal mask position i sees positions <= i only, so with end-token
    (or first-token) pooling the positions after the last end token of every prompt cannot change the output."""
    mask = getattr(clip, "attn_mask", None)
    if mask is None or clip.text_pool_type not in ("argmax", "eos", "first"):
        return None
    causal = torch.ones(mask.shape, dtype=torch.bool, device=mask.device).triu(1)
    if not torch.equal(torch.isneginf(mask), causal) or not torch.isfinite(mask[~causal]).all():
        return None
    if clip.text_pool_type == "argmax":  # the highest token id: the end token, which every prompt holds
        ends = tokens.argmax(dim=1)
    else:
        eos = getattr(clip, "text_eos_id", None)
        ends = (tokens == (eot if eos is None else eos)).int().argmax(dim=1)
    return int(ends.max()) + 1


def drop_padding(
    x: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor | None, used: int | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(x, tokens, mask) cut to the first `used` positions (see `used_length`) while a gradient flows through the
    text embeddings `x` (prompts, L, W); otherwise unchanged, so evaluation runs the full context as
    ``clip.encode_text`` does and reproduces it bit for bit."""
    if not (torch.is_grad_enabled() and x.requires_grad and used is not None):
        return x, tokens, mask
    return x[:, :used], tokens[:, :used], mask[:used, :used]


def cross_attention(
    attn: nn.MultiheadAttention, q: torch.Tensor, kv: torch.Tensor, need_weights: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``attn(q, kv, kv, need_weights=need_weights)`` with q (Q, E) shared by the batch (the plain call takes q
    expanded to (B, Q, E)): the attended queries (B, Q, E) and, if asked, the head-averaged weights (B, Q, N).

    The same parameters and maths as nn.MultiheadAttention, reordered for speed (its training path spent most
    of a cached text-only step projecting every image token to keys and values, B*N rows of E x 2E):
    * keys: q_h . (W_kh x + b_kh) = (W_kh^T q_h) . x + q_h . b_kh. The query side is folded into the key
      projection once per step (H*Q vectors of width E) and the bias term, the same for all of a query's
      scores, cancels in the softmax; so the scores are taken against the tokens x themselves;
    * values: P_h (x W_vh^T + b_vh) = (P_h x) W_vh^T + b_vh, as each row of P_h sums to one; so only the
      Q attended mixtures per image are projected, not the N tokens.
    All heads share the keys and values x, so they run as one attention with H*Q queries of width E.
    """
    batch, n_tokens, dim = kv.shape
    heads, head_dim, n_q = attn.num_heads, dim // attn.num_heads, q.shape[0]
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    b_q, _, b_v = attn.in_proj_bias.chunk(3)
    qh = F.linear(q, w_q, b_q).view(n_q, heads, head_dim).transpose(0, 1)  # (H, Q, d)
    folded = (qh @ w_k.view(heads, head_dim, dim)).view(1, 1, heads * n_q, dim)  # (1, 1, H*Q, E)
    x = kv.unsqueeze(1)  # (B, 1, N, E): keys and values alike
    weights = None
    if need_weights:
        probs = (folded * head_dim**-0.5 @ x.transpose(-2, -1)).softmax(dim=-1)  # (B, 1, H*Q, N)
        mixed = probs @ x
        weights = probs.view(batch, heads, n_q, n_tokens).mean(dim=1)
    else:
        mixed = F.scaled_dot_product_attention(
            folded.expand(batch, -1, -1, -1), x, x, scale=head_dim**-0.5
        )  # (B, 1, H*Q, E)
    mixed = mixed.view(batch, heads, n_q, dim)
    out = torch.einsum("bhqe,hde->bqhd", mixed, w_v.view(heads, head_dim, dim)).reshape(batch, n_q, dim)
    return F.linear(out + b_v, attn.out_proj.weight, attn.out_proj.bias), weights

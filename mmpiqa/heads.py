"""Readout heads: from image and prompt features to one quality score per image.

* ``levels``  - softmax over the quality-level prompts (bad … perfect), read out as the expected level in [0, 1];
* ``antonym`` - CLIP-IQA: softmax over a (positive, negative) pair, the score is p(positive) in [0, 1];
* ``xattn``   - MP-IQE style: the encoded prompt features of the text branches are queries of a small
  cross-attention block over the image's patch tokens; an MLP maps the attended queries and the image feature
  to a score. This is the only head with parameters of its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def expected_level(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over K ordered levels, expectation of the level values 0, 1/(K-1), …, 1."""
    values = torch.linspace(0, 1, logits.shape[-1], device=logits.device, dtype=logits.dtype)
    return logits.softmax(dim=-1) @ values


def antonym_probability(logits: torch.Tensor) -> torch.Tensor:
    """p(positive) from (positive, negative) logits."""
    return logits.softmax(dim=-1)[:, 0]


class CrossAttentionHead(nn.Module):
    """Prompt features attend over image tokens; an MLP regresses the score.

    Queries are the unit-norm text features of every class prompt of every branch (shared across images), keys
    and values the image's projected patch tokens. The attended queries are averaged and concatenated with the
    image's pooled feature before the MLP, so the head sees both what the prompts found and the global view.
    """

    def __init__(self, dim: int, heads: int = 4, hidden: int = 128) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"xattn head: embedding width {dim} is not divisible by head_heads={heads}")
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(2 * dim, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(
        self,
        queries: torch.Tensor,
        tokens: torch.Tensor,
        pooled: torch.Tensor,
        *,
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """queries (Q, E), tokens (B, N, E), pooled (B, E) -> score (B,) [, attention (B, Q, N)]."""
        q = self.norm_q(queries)
        attended, weights = self._attend(q, self.norm_kv(tokens), return_attention)
        # (attended + q).mean(1), with q shared by every image
        summary = attended.mean(dim=1) + q.mean(dim=0)
        score = self.mlp(torch.cat([summary, pooled], dim=-1)).squeeze(-1)
        return (score, weights) if return_attention else score

    def _attend(
        self, q: torch.Tensor, kv: torch.Tensor, need_weights: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``self.attn(q, kv, kv)`` with q (Q, E) shared by the batch: (B, Q, E) and the head-averaged weights.

        The same maths and parameters as nn.MultiheadAttention, laid out for speed: the queries are projected
        once rather than once per image, and keys/values are projected in the batch-first layout with one GEMM
        (the module's own slow path, taken in training, transposes to (N, B, E) and projects the non-contiguous
        tokens as N small batched GEMMs plus copies).
        """
        attn = self.attn
        batch, n_tokens, dim = kv.shape
        heads, head_dim = attn.num_heads, dim // attn.num_heads
        w_q, w_kv = attn.in_proj_weight.split([dim, 2 * dim])
        b_q, b_kv = attn.in_proj_bias.split([dim, 2 * dim])
        qh = F.linear(q, w_q, b_q).view(1, -1, heads, head_dim).transpose(1, 2)  # (1, H, Q, d)
        k, v = F.linear(kv, w_kv, b_kv).view(batch, n_tokens, 2, heads, head_dim).permute(2, 0, 3, 1, 4)
        weights = None
        if need_weights:
            probs = (qh * head_dim**-0.5 @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, H, Q, N)
            out, weights = probs @ v, probs.mean(dim=1)
        else:
            out = F.scaled_dot_product_attention(qh.expand(batch, -1, -1, -1), k, v)
        out = out.transpose(1, 2).reshape(batch, -1, dim)
        return F.linear(out, attn.out_proj.weight, attn.out_proj.bias), weights

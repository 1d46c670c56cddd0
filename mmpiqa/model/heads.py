"""Readout heads: from image and prompt features to one quality score per image.

* ``levels``  - softmax over the quality-level prompts (bad … perfect), read out as the expected level in [0, 1];
* ``antonym`` - CLIP-IQA: softmax over a (positive, negative) pair, the score is p(positive) in [0, 1];
* ``xattn``   - MP-IQE style: the encoded prompt features of the text branches are queries of a small
  cross-attention block over the image's patch tokens; an MLP maps the attended queries and the image feature
  to a score. This is the only head with parameters of its own. By default (``xattn_prior='levels'``) its
  score is a correction added to the levels readout, and the MLP's last layer starts at zero: training starts
  from the zero-shot answer instead of throwing it away.
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

    def __init__(self, dim: int, heads: int = 4, hidden: int = 128, zero_init: bool = False) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"xattn head: embedding width {dim} is not divisible by head_heads={heads}")
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(2 * dim, hidden), nn.GELU(), nn.Linear(hidden, 1))
        if zero_init:  # a residual on a prior score: start as the prior itself
            nn.init.zeros_(self.mlp[-1].weight)
            nn.init.zeros_(self.mlp[-1].bias)

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

        The same parameters and maths as nn.MultiheadAttention, reordered for speed (its training path spent
        most of a cached text-only step projecting every image token to keys and values, B*N rows of E x 2E):
        * keys: q_h . (W_kh x + b_kh) = (W_kh^T q_h) . x + q_h . b_kh. The query side is folded into the key
          projection once per step (H*Q vectors of width E) and the bias term, the same for all of a query's
          scores, cancels in the softmax; so the scores are taken against the normalised tokens x themselves;
        * values: P_h (x W_vh^T + b_vh) = (P_h x) W_vh^T + b_vh, as each row of P_h sums to one; so only the
          Q attended mixtures per image are projected, not the N tokens.
        All heads share the keys and values x, so they run as one attention with H*Q queries of width E.
        """
        attn = self.attn
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

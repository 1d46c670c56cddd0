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
from torch import nn

from mmpiqa.model import fast


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
        # self.attn(q for every image, kv, kv), reordered so the image tokens are never projected (speed only)
        attended, weights = fast.cross_attention(self.attn, q, self.norm_kv(tokens), return_attention)
        # (attended + q).mean(1), with q shared by every image
        summary = attended.mean(dim=1) + q.mean(dim=0)
        score = self.mlp(torch.cat([summary, pooled], dim=-1)).squeeze(-1)
        return (score, weights) if return_attention else score

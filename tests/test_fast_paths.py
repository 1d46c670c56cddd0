"""The training-time fast paths (mmpiqa/model/fast.py) compute what open_clip's own calls compute.

Without a gradient the prompted encoders call open_clip's blocks as they are (test_equivalence.py holds them to
bit equality); with one, blocks run their attention in the batch-first layout and the text tower skips the
padding after the last end token. Same maths, so features and gradients agree to float rounding.
"""

import pytest
import torch

from mmpiqa import ModelConfig, build_model
from mmpiqa.model import fast
from mmpiqa.model.heads import CrossAttentionHead


def _reference_blocks(monkeypatch, model):
    """Route every block through open_clip's own forward and keep the full text context."""
    monkeypatch.setattr(fast, "run_block", lambda block, x, attn_mask=None: block(x, attn_mask=attn_mask))
    monkeypatch.setattr(model.text_prompts, "used_length", None)


def _features_and_grads(model, images):
    model.zero_grad(set_to_none=True)
    text = model.text_features(normalize=False)
    pooled, tokens = model.image_features(images, return_tokens=True)
    out = model.readout(pooled, tokens, {b: f / f.norm(dim=-1, keepdim=True) for b, f in text.items()})
    (out.score.sum() + sum(v.logsumexp(-1).sum() for v in out.logits.values())).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return torch.cat([*text.values(), pooled, tokens.flatten(0, 1)]).detach(), out.score.detach(), grads


def test_training_path_matches_open_clip_blocks(monkeypatch):
    model = build_model(ModelConfig(backbone="micro", text_depth=2, visual_depth=-1, head="xattn")).train()
    images = torch.rand(3, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(0))
    assert (
        model.text_prompts.used_length is not None
        and model.text_prompts.used_length < model.text_prompts.tokens.shape[1]
    )
    fast = _features_and_grads(model, images)
    _reference_blocks(monkeypatch, model)
    ref = _features_and_grads(model, images)
    torch.testing.assert_close(fast[0], ref[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fast[1], ref[1], rtol=1e-4, atol=1e-5)
    assert (
        fast[2].keys() == ref[2].keys()
        and {"text_prompts.ctx", "text_prompts.deep", "visual_prompts.tokens"} <= fast[2].keys()
    )
    for name, grad in fast[2].items():
        torch.testing.assert_close(grad, ref[2][name], rtol=1e-3, atol=1e-5, msg=name)


def test_evaluation_path_is_open_clip_exactly():
    """No gradient: the blocks are open_clip's calls and the full context runs (what test_equivalence needs)."""
    model = build_model(ModelConfig(backbone="micro", visual_depth=2, head="levels"))
    images = torch.rand(2, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = model.image_features(images)
        with pytest.MonkeyPatch.context() as patch:
            _reference_blocks(patch, model)
            b = model.image_features(images)
    assert torch.equal(a, b)


def test_used_length_is_the_last_end_token():
    model = build_model(ModelConfig(backbone="micro", visual_depth=0, head="levels"))
    ends = model.text_prompts.tokens.argmax(dim=1)
    assert model.text_prompts.used_length == int(ends.max()) + 1


def _reference_head(head, queries, tokens, pooled, need_weights):
    q = head.norm_q(queries).unsqueeze(0).expand(tokens.shape[0], -1, -1)
    kv = head.norm_kv(tokens)
    attended, weights = head.attn(q, kv, kv, need_weights=need_weights)
    return head.mlp(torch.cat([(attended + q).mean(dim=1), pooled], dim=-1)).squeeze(-1), weights


@pytest.mark.parametrize("need_weights", [False, True])
def test_cross_attention_head_matches_multihead_attention(need_weights):
    torch.manual_seed(0)
    head = CrossAttentionHead(64, heads=4, hidden=16).train()
    with torch.no_grad():
        for p in head.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # away from the symmetric init
    queries, tokens, pooled = torch.randn(25, 64), torch.randn(3, 16, 64), torch.randn(3, 64)
    got = head(queries, tokens, pooled, return_attention=need_weights)
    score = got[0] if need_weights else got
    grads = torch.autograd.grad(score.sum(), list(head.parameters()))
    ref_score, ref_weights = _reference_head(head, queries, tokens, pooled, need_weights)
    ref_grads = torch.autograd.grad(ref_score.sum(), list(head.parameters()))
    torch.testing.assert_close(score, ref_score, rtol=1e-5, atol=1e-6)
    if need_weights:
        assert got[1].shape == (3, 25, 16)
        torch.testing.assert_close(got[1], ref_weights, rtol=1e-5, atol=1e-6)
    for grad, ref in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(grad, ref, rtol=1e-4, atol=1e-6)

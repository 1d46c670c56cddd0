"""The switches do what they say; only prompts and head learn; the backbone stays frozen and in eval mode."""

import pytest
import torch

from mmpiqa import ModelConfig, build_model
from mmpiqa.config import ConfigError


def test_only_prompts_and_head_are_trainable_and_backbone_is_bit_identical_after_a_step(micro_images):
    model = build_model(ModelConfig(backbone="micro", visual_depth=2, text_depth=2))
    assert all(not p.requires_grad for p in model.clip.parameters())
    assert not model.clip.logit_scale.requires_grad
    before = {k: v.clone() for k, v in model.clip.state_dict().items()}
    learned_before = {k: v.clone() for k, v in model.learned_state_dict().items()}
    model.train()
    assert not model.clip.training and model.training  # backbone stays in eval mode
    optimiser = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2)
    out = model(micro_images)
    loss = out.score.pow(2).mean() + sum(v.logsumexp(-1).mean() for v in out.logits.values())
    loss.backward()
    assert all(p.grad is None for p in model.clip.parameters())
    optimiser.step()
    after = model.clip.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    changed = [
        k
        for k, v in model.learned_state_dict().items()
        if v.numel() and not torch.equal(v, learned_before[k])
    ]
    assert {"text_prompts.ctx", "text_prompts.deep", "visual_prompts.tokens"} <= set(changed)
    assert any(k.startswith("head.") for k in changed)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_visual_depth_uses_exactly_depth_prompt_slots(depth, micro_images):
    model = build_model(ModelConfig(backbone="micro", visual_depth=depth, n_vis=5, head="levels"))
    assert model.visual_prompts.tokens.shape == (depth, 5, 64)
    # a layer's prompt matters iff it is below the depth: zeroing layer `depth - 1` changes the output
    with torch.no_grad():
        base = model.image_features(micro_images)
        model.visual_prompts.tokens[depth - 1].zero_()
        assert not torch.equal(base, model.image_features(micro_images))


def test_visual_depth_all_blocks():
    model = build_model(ModelConfig(backbone="micro", visual_depth=-1))
    assert model.visual_depth == len(model.clip.visual.transformer.resblocks) == 3


def test_depth_all_is_every_block_of_either_tower():
    model = build_model(ModelConfig(backbone="micro", text_depth="all", visual_depth="all", head="levels"))
    n_text = len(model.clip.transformer.resblocks)
    assert model.text_depth == n_text and model.visual_depth == len(model.clip.visual.transformer.resblocks)
    assert model.text_prompts.deep.shape[0] == n_text - 1  # fresh context before every block after the first
    with pytest.raises(ValueError, match=r"model.text_depth=9 exceeds the text tower's .* or \"all\""):
        build_model(ModelConfig(backbone="micro", text_depth=9))


def test_deep_text_prompts_replace_slots_before_early_blocks():
    model = build_model(ModelConfig(backbone="micro", text_depth=3, head="levels", visual_depth=0))
    assert model.text_prompts.deep.shape == (2, 3, 3, 48)  # (depth - 1, branches, n_ctx, width)
    with torch.no_grad():
        base = model.branch_features("scene")
        model.text_prompts.deep[1].zero_()
        assert not torch.equal(base, model.branch_features("scene"))


def test_parameter_counts_match_the_documented_formula():
    cfg = ModelConfig(
        backbone="micro",
        n_ctx=4,
        ctx_init=None,
        text_depth=2,
        n_vis=3,
        visual_depth=2,
        head="xattn",
        head_heads=4,
        head_hidden=16,
    )
    counts = build_model(cfg).parameter_counts()
    branches, n_ctx, wt, wv, e, h = 3, 4, 48, 64, 64, 16
    assert counts["text"] == branches * n_ctx * wt * cfg.text_depth
    assert counts["visual"] == cfg.n_vis * wv * cfg.visual_depth
    assert counts["head"] == (4 * e * e + 4 * e) + 4 * e + (2 * e * h + h) + (h + 1)


def test_coupled_mode_has_no_free_visual_tokens(micro_images):
    cfg = ModelConfig(backbone="micro", coupled=True, n_vis=3, text_depth=3, visual_depth=3)
    model = build_model(cfg)
    assert not hasattr(model.visual_prompts, "tokens")
    assert model.parameter_counts()["visual"] == 3 * (48 * 64 + 64)
    # the visual prompts follow the text context
    with torch.no_grad():
        base = model.image_features(micro_images)
        model.text_prompts.ctx.add_(1.0)
        assert not torch.equal(base, model.image_features(micro_images))


def test_coupled_mode_checks_its_requirements():
    with pytest.raises(ValueError, match="n_vis"):
        build_model(ModelConfig(backbone="micro", coupled=True, n_vis=5, text_depth=2, visual_depth=2))
    with pytest.raises(ValueError, match="text_depth"):
        build_model(ModelConfig(backbone="micro", coupled=True, n_vis=3, text_depth=1, visual_depth=2))


def test_text_depth_zero_freezes_the_context():
    model = build_model(
        ModelConfig(backbone="micro", text_depth=0, visual_depth=0, head="antonym", branches=("quality",))
    )
    assert model.trainable_parameters() == [] or all(p.numel() == 0 for p in model.trainable_parameters())


@pytest.mark.parametrize("head", ["levels", "antonym", "xattn"])
def test_heads_return_scores_and_branch_logits(head, micro_images):
    model = build_model(ModelConfig(backbone="micro", head=head))
    out = model(micro_images)
    assert out.score.shape == (3,)
    assert out.logits["quality"].shape == (3, 2 if head == "antonym" else 5)
    assert out.logits["scene"].shape == (3, 9) and out.logits["distortion"].shape == (3, 11)
    if head != "xattn":
        assert ((out.score >= 0) & (out.score <= 1)).all()


def test_zero_shot_levels_score_is_the_expected_level(micro_images):
    model = build_model(ModelConfig(backbone="micro", head="levels", text_depth=0, visual_depth=0))
    with torch.no_grad():
        out = model(micro_images)
    p = out.logits["quality"].softmax(-1)
    assert torch.allclose(out.score, p @ torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))


def test_class_lists_are_config():
    model = build_model(
        ModelConfig(
            backbone="micro",
            scenes=("cat", "dog"),
            distortions=("blur",),
            quality_levels=("low", "high"),
            head="levels",
        )
    )
    assert model.text_prompts.branch_sizes == (2, 2, 1)
    assert "a photo of a dog." in model.text_prompts.prompts


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(head="nope"), "head"),
        (dict(branches=("scene",), head="levels"), "quality"),
        (dict(branches=("quality", "quality")), "branches"),
        (dict(ctx_init=None), "n_ctx"),
        (dict(ctx_init="a photo of", n_ctx=5), "n_ctx"),
        (dict(visual_depth=-2), "visual_depth"),
        (dict(scene_template="no placeholder"), "scene_template"),
    ],
)
def test_bad_configs_are_refused_with_the_field_named(kwargs, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        build_model(ModelConfig(backbone="micro", **kwargs))


def test_images_must_be_rgb_batches():
    model = build_model(ModelConfig(backbone="micro"))
    with pytest.raises(ValueError, match="RGB"):
        model(torch.rand(3, 32, 32))


def test_same_config_gives_same_model(micro_images):
    a, b = build_model(ModelConfig(backbone="micro")), build_model(ModelConfig(backbone="micro"))
    assert a.identity == b.identity
    with torch.no_grad():
        assert torch.equal(a(micro_images).score, b(micro_images).score)


def test_xattn_starts_from_the_levels_readout_and_learns_a_correction(micro_images):
    levels = build_model(ModelConfig(backbone="micro", head="levels", visual_depth=0))
    xattn = build_model(ModelConfig(backbone="micro", head="xattn", visual_depth=0))
    with torch.no_grad():
        assert torch.allclose(xattn(micro_images).score, levels(micro_images).score, atol=1e-6)
    out = xattn(micro_images)
    out.score.sum().backward()
    assert xattn.head.mlp[-1].weight.grad.abs().sum() > 0  # the correction's last layer learns from step one
    plain = build_model(ModelConfig(backbone="micro", head="xattn", xattn_prior="none", visual_depth=0))
    assert plain.head.mlp[-1].weight.abs().sum() > 0  # without the prior the MLP starts random, as before
    with pytest.raises(ConfigError, match="xattn_prior='none'"):
        ModelConfig(head="xattn", branches=("scene", "distortion"))
    with pytest.raises(ConfigError, match="xattn_prior"):
        ModelConfig(xattn_prior="antonym")


@pytest.mark.parametrize("head", ["levels", "antonym", "xattn"])
def test_readout_runs_in_float32_under_bf16_autocast(head):
    """On CUDA the encoders run under bf16 autocast; the scores must not: bf16 logits (+-30 at CLIP's logit
    scale) and scores fall onto coarse steps and 2,000 distinct scores collapse into a few hundred ties."""
    model = build_model(ModelConfig(backbone="micro", head=head, visual_depth=0)).eval()
    generator = torch.Generator().manual_seed(0)
    pooled = torch.nn.functional.normalize(torch.randn(2000, 64, generator=generator), dim=-1)
    tokens = torch.nn.functional.normalize(torch.randn(2000, 5, 64, generator=generator), dim=-1)
    with torch.no_grad():
        text = model.text_features()
        # what the encoders hand over under autocast: bf16 features
        inputs = (pooled.bfloat16(), tokens.bfloat16(), {b: f.bfloat16() for b, f in text.items()})
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model.readout(*inputs)
        plain = model.readout(*inputs)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # what the readout gave before it left autocast
            coarse = (model.clip.logit_scale.exp() * inputs[0] @ inputs[2]["quality"].t()).softmax(-1)[:, 0]
    assert out.score.dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in out.logits.values())
    assert torch.equal(out.score, plain.score)
    assert out.score.unique().numel() >= 1990  # ties only where the bf16 inputs themselves coincide
    assert coarse.dtype == torch.bfloat16 and coarse.unique().numel() < 1500  # the control: bf16 ties

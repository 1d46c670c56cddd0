"""At neutral prompts the prompted encoders must reproduce open_clip exactly (torch.equal, not allclose).

MMPIQA_TEST_DEVICE=cuda runs the comparisons on a GPU (benchmarks/gpu.sh does); the default is the CPU.
"""

import os

import open_clip
import pytest
import torch

from mmpiqa import ModelConfig, build_model

NEUTRAL = dict(ctx_init="X X X X", text_depth=1, visual_depth=0, head="levels")
DEVICE = torch.device(os.environ.get("MMPIQA_TEST_DEVICE", "cpu"))


@pytest.mark.parametrize("backbone", ["micro", "tiny", "ViT-B-32"])
def test_prompted_encoders_equal_open_clip(backbone):
    model = build_model(ModelConfig(backbone=backbone, **NEUTRAL), device=DEVICE)
    clip, size = model.clip, model.image_size
    with torch.no_grad():
        # Compared on the same batch: open_clip itself is not bit-stable across batch sizes.
        expected = clip.encode_text(model.text_prompts.tokens)
        got = torch.cat([model.branch_features(branch) for branch in model.text_prompts.branch_names])
        assert torch.equal(got, expected)
        images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1)).to(DEVICE)
        assert torch.equal(model.image_features(images), clip.encode_image(model.normalize(images)))


def test_neutral_prompts_are_the_placeholder_words():
    """The prompts the equivalence is checked on are the hand-written ones, tokenised by open_clip."""
    model = build_model(ModelConfig(backbone="micro", **NEUTRAL))
    assert model.text_prompts.prompts[0] == "X X X X bad quality."
    assert model.text_prompts.prompts[-1] == "X X X X other artifacts."


def test_hand_written_context_equals_plain_prompt():
    """ctx_init words in the learnable slots give the same features as the plain sentences."""
    model = build_model(
        ModelConfig(backbone="micro", ctx_init="a photo of", head="levels", visual_depth=0), device=DEVICE
    )
    tokenizer = open_clip.get_tokenizer("mmpiqa-micro")
    sentences = [
        f"a photo of {p}"
        for p in [
            *(f"{q} quality." for q in model.config.quality_levels),
            *(f"a {s}." for s in model.config.scenes),
            *(f"{d} artifacts." for d in model.config.distortions),
        ]
    ]
    assert sentences == model.text_prompts.prompts
    with torch.no_grad():
        expected = model.clip.encode_text(tokenizer(sentences).to(DEVICE))
        got = torch.cat(list(model.text_features(normalize=False).values()))
    assert torch.equal(got, expected)


def test_visual_prompts_change_features_and_keep_shapes(micro_images):
    base = build_model(ModelConfig(backbone="micro", **NEUTRAL))
    prompted = build_model(ModelConfig(backbone="micro", **{**NEUTRAL, "visual_depth": 2}))
    with torch.no_grad():
        a, b = base.image_features(micro_images), prompted.image_features(micro_images)
        _pooled, tokens = prompted.image_features(micro_images, return_tokens=True)
    assert a.shape == b.shape and not torch.equal(a, b)
    assert tokens.shape == (3, 16, 64)  # 4x4 patches, no class token, no prompt tokens

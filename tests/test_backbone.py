"""Backbone loading: offline configs, local files, and the clear error when weights cannot be had."""

import json
import time

import open_clip
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mmpiqa import ModelConfig, build_model
from mmpiqa.model import backbone as backbone_module
from mmpiqa.model.backbone import (
    UnsupportedBackbone,
    WeightsUnavailable,
    check_supported,
    load_backbone,
    tag_uses_quick_gelu,
)
from mmpiqa.model.checkpoint import CheckpointMismatch, load_prompts, save_prompts


def test_tiny_is_a_small_clip():
    clip, identity = load_backbone("tiny")
    n = sum(p.numel() for p in clip.parameters())
    assert 2e6 <= n <= 10e6
    assert identity.pretrained is None and "random weights" in identity.describe()


def test_named_tag_not_cached_fails_fast_with_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    start = time.monotonic()
    with pytest.raises(WeightsUnavailable) as info:
        build_model(ModelConfig(backbone="ViT-B-16", pretrained="openai"))
    assert time.monotonic() - start < 20
    message = str(info.value)
    assert "ViT-B-16" in message and "'openai'" in message and "--pretrained" in message
    assert "cache" in message


def test_unknown_tag_lists_the_known_ones():
    with pytest.raises(WeightsUnavailable, match="Known tags:.*openai"):
        load_backbone("ViT-B-32", "no-such-tag")


def test_unknown_model_name():
    with pytest.raises(ValueError, match="Unknown backbone 'ViT-Q-99'"):
        load_backbone("ViT-Q-99")


def test_local_checkpoint_file_and_folder(tmp_path):
    """A checkpoint saved by open_clip loads from its path, as a file or as the folder holding it."""
    source, _ = load_backbone("micro", seed=7)
    path = tmp_path / "weights" / "open_clip_pytorch_model.bin"
    path.parent.mkdir()
    torch.save(source.state_dict(), path)
    for given in (path, path.parent):
        clip, identity = load_backbone("micro", str(given))
        assert identity.pretrained == str(given)
        assert all(
            torch.equal(a, b)
            for a, b in zip(source.state_dict().values(), clip.state_dict().values(), strict=True)
        )


def test_a_tag_is_not_shadowed_by_a_folder_of_that_name(tmp_path, monkeypatch):
    # a stray `synthetic/` in the working folder must not stand in for the shipped, checksummed weights
    source, _ = load_backbone("micro", seed=7)
    (tmp_path / "synthetic").mkdir()
    save_file(source.state_dict(), str(tmp_path / "synthetic" / "open_clip_model.safetensors"))
    monkeypatch.chdir(tmp_path)
    shipped, identity = load_backbone("tiny", "synthetic")
    assert identity.pretrained == "synthetic"
    assert not torch.equal(shipped.visual.conv1.weight, load_backbone("tiny")[0].visual.conv1.weight)
    local, _ = load_backbone("micro", "./synthetic")  # spelled as a path, the folder is what loads
    assert torch.equal(local.visual.conv1.weight, source.visual.conv1.weight)


def test_missing_local_path_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_backbone("micro", str(tmp_path / "nothing.safetensors"))


def test_random_backbone_depends_on_seed_only():
    fingerprints = []
    for seed in (1, 1, 2):
        backbone_module._built_offline.cache_clear()  # built anew each time, not copied from memory
        fingerprints.append(load_backbone("micro", seed=seed)[1].fingerprint)
    assert fingerprints[0] == fingerprints[1] != fingerprints[2]


def test_offline_backbones_are_built_once_and_handed_out_as_copies():
    backbone_module._built_offline.cache_clear()
    first, identity = load_backbone("micro", seed=3)
    with torch.no_grad():
        first.visual.conv1.weight.add_(1.0)  # one caller's edit never reaches the next
    second, again = load_backbone("micro", seed=3)
    built = backbone_module._create("micro", None, 3)
    assert again == identity and backbone_module._built_offline.cache_info().currsize == 1
    assert all(
        torch.equal(a, b)
        for a, b in zip(second.state_dict().values(), built.state_dict().values(), strict=True)
    )
    assert not second.training and not any(p.requires_grad for p in second.parameters())
    load_backbone("tiny", "synthetic")  # kept apart from the random micro: one copy per backbone
    assert backbone_module._built_offline.cache_info().currsize == 2


def test_unsupported_models_are_refused():
    coca = open_clip.create_model("coca_ViT-B-32", pretrained=None)
    with pytest.raises(UnsupportedBackbone, match="not supported"):
        check_supported(coca)


@pytest.mark.parametrize(
    ("name", "tag", "quick"),
    [
        ("ViT-B-16", "openai", True),
        ("ViT-B-32", "openai", True),
        ("ViT-L-14", "openai", True),
        ("ViT-B-16", "laion2b_s34b_b88k", False),
        ("ViT-B-32", "laion2b_s34b_b79k", False),
    ],
)
def test_activation_comes_from_the_tags_pretrained_config(name, tag, quick):
    assert tag_uses_quick_gelu(name, tag) is quick


@pytest.fixture
def weights_not_loaded(monkeypatch):
    """open_clip builds the model a tag asks for, with random weights instead of downloading them."""
    real = open_clip.create_model
    calls = []

    def create(model_name, pretrained=None, require_pretrained=False, **options):
        calls.append((model_name, pretrained, options))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return real(model_name, pretrained=None, **options)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(open_clip, "create_model", create)
    return calls


def _activations(clip):
    blocks = [*clip.visual.transformer.resblocks, *clip.transformer.resblocks]
    return {type(block.mlp.gelu) for block in blocks}


@pytest.mark.slow
def test_openai_tag_is_built_with_quick_gelu_and_laion_tag_with_gelu(weights_not_loaded):
    quick, quick_id = load_backbone("ViT-B-32", "openai")
    assert _activations(quick) == {open_clip.transformer.QuickGELU}
    assert quick_id.activation == "quick_gelu" and "QuickGELU" in quick_id.describe()
    plain, plain_id = load_backbone("ViT-B-32", "laion2b_s34b_b79k")
    assert _activations(plain) == {torch.nn.GELU}
    assert plain_id.activation == "gelu" and "QuickGELU" not in plain_id.describe()
    # same weights, different activation: the fingerprint tells them apart
    assert all(torch.equal(a, b) for a, b in zip(quick.parameters(), plain.parameters(), strict=True))
    assert quick_id.fingerprint != plain_id.fingerprint
    assert [c[2].get("force_quick_gelu") for c in weights_not_loaded] == [True, False]


def test_gelu_fingerprints_are_unchanged_and_old_identities_load(tmp_path):
    """Checkpoints written before the activation was recorded still load (GELU backbones only existed then)."""
    model = build_model(ModelConfig(backbone="micro", visual_depth=1))
    assert model.identity.activation == "gelu"
    assert model.identity.fingerprint == "3e346330bfb7b7b4"  # the digest micro/seed 0 had before
    path = save_prompts(model, tmp_path / "p.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    old = json.loads(meta["backbone"])
    del old["activation"]
    old_file = tmp_path / "old.safetensors"
    save_file(load_file(path), str(old_file), metadata={**meta, "backbone": json.dumps(old)})
    assert load_prompts(old_file).identity == model.identity
    quick = json.dumps({**old, "activation": "quick_gelu", "fingerprint": "0" * 16})
    save_file(load_file(path), str(tmp_path / "quick.safetensors"), metadata={**meta, "backbone": quick})
    with pytest.raises(CheckpointMismatch, match="used quick_gelu, this one gelu"):
        load_prompts(tmp_path / "quick.safetensors", model)

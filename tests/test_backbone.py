"""Backbone loading: offline configs, local files, and the clear error when weights cannot be had."""

import time

import open_clip
import pytest
import torch

from mmpiqa import ModelConfig, build_model
from mmpiqa.backbone import UnsupportedBackbone, WeightsUnavailable, check_supported, load_backbone


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


def test_missing_local_path_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_backbone("micro", str(tmp_path / "nothing.safetensors"))


def test_random_backbone_depends_on_seed_only():
    _a, ia = load_backbone("micro", seed=1)
    _b, ib = load_backbone("micro", seed=1)
    _c, ic = load_backbone("micro", seed=2)
    assert ia.fingerprint == ib.fingerprint != ic.fingerprint


def test_unsupported_models_are_refused():
    coca = open_clip.create_model("coca_ViT-B-32", pretrained=None)
    with pytest.raises(UnsupportedBackbone, match="not supported"):
        check_supported(coca)

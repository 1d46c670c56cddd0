import json

import pytest
import torch

from mmpiqa import ModelConfig, build_model, load_prompts, save_prompts
from mmpiqa.model.checkpoint import CheckpointMismatch


def _trained(config):
    model = build_model(config)
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.add_(torch.randn_like(p))
    return model


def test_round_trip_reproduces_outputs_exactly(tmp_path, micro_images):
    model = _trained(ModelConfig(backbone="micro", visual_depth=2, text_depth=2))
    path = save_prompts(model, tmp_path / "prompts.safetensors")
    assert path.stat().st_size < 200_000  # prompts and head only, never the backbone
    loaded = load_prompts(path)
    with torch.no_grad():
        assert torch.equal(model(micro_images).score, loaded(micro_images).score)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left nothing behind


def test_checkpoint_holds_no_backbone_tensor(tmp_path):
    from safetensors import safe_open

    path = save_prompts(_trained(ModelConfig(backbone="micro")), tmp_path / "p.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        assert not any(k.startswith("clip.") for k in handle.keys())
        meta = handle.metadata()
    assert json.loads(meta["backbone"])["name"] == "micro"


def test_mismatched_backbone_is_rejected(tmp_path):
    path = save_prompts(_trained(ModelConfig(backbone="micro", backbone_seed=0)), tmp_path / "p.safetensors")
    other = build_model(ModelConfig(backbone="micro", backbone_seed=0))
    load_prompts(path, other)  # same backbone: fine
    with pytest.raises(CheckpointMismatch, match="different model config"):
        load_prompts(path, build_model(ModelConfig(backbone="micro", backbone_seed=3)))
    object.__setattr__(other.identity, "fingerprint", "0" * 16)
    with pytest.raises(CheckpointMismatch, match="trained on backbone micro"):
        load_prompts(path, other)


def test_not_a_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"this is not safetensors")
    with pytest.raises(ValueError, match="not a safetensors prompt checkpoint"):
        load_prompts(bad)


def test_format_1_checkpoint_with_the_old_tensor_names_loads(tmp_path, micro_images):
    """Checkpoints written before the prompt modules were renamed (format 1: text.*, visual.*) still load."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    model = _trained(ModelConfig(backbone="micro", visual_depth=2, text_depth=2, head="xattn"))
    path = save_prompts(model, tmp_path / "new.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        old = {
            key.replace("text_prompts.", "text.", 1).replace(
                "visual_prompts.", "visual.", 1
            ): handle.get_tensor(key)
            for key in handle.keys()
        }
    assert {"text.ctx", "text.deep", "visual.tokens"} <= old.keys() and any(
        k.startswith("head.") for k in old
    )
    save_file(old, str(tmp_path / "old.safetensors"), metadata={**metadata, "format": "mmpiqa-prompts/1"})
    loaded = load_prompts(tmp_path / "old.safetensors")
    with torch.no_grad():
        assert torch.equal(model(micro_images).score, loaded(micro_images).score)


def test_unknown_format_is_refused_naming_the_formats_read(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "future.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"format": "mmpiqa-prompts/9"})
    with pytest.raises(ValueError, match="mmpiqa-prompts/9.*reads mmpiqa-prompts/1 and mmpiqa-prompts/2"):
        load_prompts(path)

"""Prompt checkpoints: what was learned (prompts and head) plus the config and the backbone's identity.

One safetensors file; its header metadata carries the model config and the backbone identity as JSON. No
pickle anywhere, and the file is written atomically. Loading into a different backbone or config is refused
with a message naming both.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from mmpiqa.backbone import BackboneIdentity
from mmpiqa.config import ModelConfig
from mmpiqa.io import atomic_write
from mmpiqa.model import PromptedCLIP, build_model

FORMAT = "mmpiqa-prompts/1"


class CheckpointMismatch(ValueError):
    """The checkpoint was learned on another backbone or with another model config."""


def save_prompts(model: PromptedCLIP, path: str | Path, extra: dict | None = None) -> Path:
    """Write the learned tensors of `model` to `path` (a .safetensors file), atomically."""
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.learned_state_dict().items()}
    metadata = {
        "format": FORMAT,
        "model_config": model.config.to_json(),
        "backbone": json.dumps(model.identity.to_dict()),
        "extra": json.dumps(extra or {}),
    }
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def read_prompts(path: str | Path) -> tuple[dict[str, torch.Tensor], ModelConfig, BackboneIdentity, dict]:
    """The tensors, model config, backbone identity and extra metadata stored in a prompt checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No prompt checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{path} is not a safetensors prompt checkpoint ({error})") from error
    if metadata.get("format") != FORMAT:
        raise ValueError(
            f"{path} is a safetensors file but not an mmpiqa prompt checkpoint (format {FORMAT})"
        )
    config = ModelConfig.from_dict(json.loads(metadata["model_config"]), where=f"{path}:model_config")
    identity = BackboneIdentity(**json.loads(metadata["backbone"]))
    return tensors, config, identity, json.loads(metadata.get("extra", "{}"))


def load_prompts(
    path: str | Path, model: PromptedCLIP | None = None, device: str | torch.device = "cpu"
) -> PromptedCLIP:
    """Rebuild the model a checkpoint was trained with (or fill `model`, if given) and load its prompts."""
    tensors, config, identity, _ = read_prompts(path)
    if model is None:
        model = build_model(config, device=device)
    elif model.config != config:
        diff = {
            k: (v, getattr(model.config, k))
            for k, v in config.to_dict().items()
            if model.config.to_dict()[k] != v
        }
        raise CheckpointMismatch(
            f"{path} was trained with a different model config; differing fields (checkpoint, model): {diff}"
        )
    if model.identity.fingerprint != identity.fingerprint or model.identity.name != identity.name:
        why = ""
        if model.identity.activation != identity.activation:
            why = (
                f" The checkpoint's backbone used {identity.activation}, this one {model.identity.activation}: "
                f"prompts learned before mmpiqa built OpenAI tags with QuickGELU were fitted to the wrong "
                f"activation; train them again."
            )
        raise CheckpointMismatch(
            f"{path} was trained on backbone {identity.describe()} [fingerprint {identity.fingerprint}], "
            f"but the model has {model.identity.describe()} [fingerprint {model.identity.fingerprint}]. "
            f"Load it with the backbone it was trained on (--backbone/--pretrained)." + why
        )
    own = model.learned_state_dict()
    if set(own) != set(tensors):
        raise CheckpointMismatch(
            f"{path}: tensors {sorted(set(tensors) ^ set(own))} do not match the model's learned parameters"
        )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in tensors:
                if param.shape != tensors[name].shape:
                    raise CheckpointMismatch(
                        f"{path}: {name} has shape {tuple(tensors[name].shape)}, model {tuple(param.shape)}"
                    )
                param.copy_(tensors[name].to(param.device, param.dtype))
    return model

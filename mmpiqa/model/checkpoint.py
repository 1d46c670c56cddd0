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

from mmpiqa.config import ModelConfig
from mmpiqa.errors import InputError, MissingFileError, not_a_file
from mmpiqa.files import atomic_write
from mmpiqa.model.backbone import BackboneIdentity
from mmpiqa.model.prompted_clip import PromptedCLIP, build_model

FORMAT = "mmpiqa-prompts/2"
# Format 1 held the same tensors under the prompt modules' old names (text.*, visual.*); read_prompts renames them.
FORMAT_1 = "mmpiqa-prompts/1"
_NAMES_IN_FORMAT_1 = {"text.": "text_prompts.", "visual.": "visual_prompts."}


class CheckpointError(InputError, ValueError):
    """A file is not a usable prompt checkpoint (not one at all, damaged metadata, non-finite tensors)."""


def read_json(path: Path):
    """A JSON file of a run folder (a training or pretraining run); a missing or damaged one names the file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MissingFileError(
            f"{path} is missing from its run folder; restore it, or delete {path.parent} to start the run over"
        ) from None
    except (ValueError, OSError) as error:  # undecodable or not JSON (both ValueErrors), or e.g. a folder
        raise CheckpointError(
            f"{path}: not valid JSON ({error}); delete the file (a run folder rebuilds it) or restore it."
        ) from error


class CheckpointMismatch(CheckpointError):
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
    problem = not_a_file(path)
    if problem:
        raise MissingFileError(f"{path}: the prompt checkpoint {problem}; is the run finished?")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a safetensors prompt checkpoint ({error})") from error
    version = metadata.get("format")
    if version not in (FORMAT, FORMAT_1):
        raise CheckpointError(
            f"{path} is a safetensors file but not an mmpiqa prompt checkpoint this version reads (format "
            f"{version!r}; this version reads {FORMAT_1} and {FORMAT})"
        )
    if version == FORMAT_1:
        tensors = {_format_1_name(name): t for name, t in tensors.items()}
    bad = [name for name, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise CheckpointError(
            f"{path}: tensor(s) {bad} hold NaN or infinite values (training diverged before this was saved); "
            "retrain with a lower train.lr, or use another split's checkpoint."
        )
    try:
        config = ModelConfig.from_dict(json.loads(metadata["model_config"]), where=f"{path}:model_config")
        identity = BackboneIdentity(**json.loads(metadata["backbone"]))
        extra = json.loads(metadata.get("extra", "{}"))
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise CheckpointError(
            f"{path}: the checkpoint's metadata is damaged ({type(error).__name__}: {error}); retrain this "
            "split or restore the file."
        ) from error
    return tensors, config, identity, extra


def _format_1_name(name: str) -> str:
    for old, new in _NAMES_IN_FORMAT_1.items():
        if name.startswith(old):
            return new + name[len(old) :]
    return name


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

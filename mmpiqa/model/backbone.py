"""Build, load and freeze the open_clip backbone.

Three sources of weights, one function (`load_backbone`):

* a named open_clip model with a pretrained tag (``"ViT-B-16"`` + ``"openai"``), fetched into or read from the
  usual caches (Hugging Face hub cache, ``~/.cache/clip``);
* a local file or folder (``pretrained="/path/open_clip_model.safetensors"`` or a folder holding one, optionally
  with an ``open_clip_config.json``);
* the offline configs shipped with this package (``"tiny"``, ``"micro"``) with random weights drawn from a fixed
  seed, so the same backbone can be rebuilt anywhere and a prompt checkpoint fits it again;
* the offline teaching CLIP: ``backbone="tiny", pretrained="synthetic"``, weights this project pretrained itself
  (``mmpiqa pretrain``) on a procedural captioned corpus and ships in ``mmpiqa/weights/`` with their provenance and
  checksum. They load through open_clip exactly as a local checkpoint file does.

The backbone is never edited: it is frozen (every tensor, ``logit_scale`` included) and kept in eval mode.
"""

from __future__ import annotations

import copy
import hashlib
import os
from dataclasses import asdict, dataclass
from functools import cache, lru_cache
from pathlib import Path
from pickle import UnpicklingError

import open_clip
import torch
from open_clip.transformer import QuickGELU, VisionTransformer
from safetensors import SafetensorError

from mmpiqa.config import OFFLINE_TAGS, WEIGHTS_DIR, offline_provenance, shipped_weights_sha256
from mmpiqa.errors import InputError, MissingFileError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "model_configs"
# short name -> open_clip registry name of the configs shipped in `model_configs/`
OFFLINE_CONFIGS: dict[str, str] = {"tiny": "mmpiqa-tiny", "micro": "mmpiqa-micro"}
# where open_clip keeps weights it downloads from a plain URL (the Hugging Face hub has its own cache)
URL_CACHE = Path("~/.cache/clip").expanduser()
CHECKPOINT_NAMES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "pytorch_model.bin",
    "model.safetensors",
)


open_clip.add_model_config(CONFIG_DIR)


# what open_clip raises for a local file that is not its weights (damaged, another format, another model)
NOT_WEIGHTS = (RuntimeError, ValueError, EOFError, NotImplementedError, UnpicklingError, SafetensorError)


class WeightsUnavailable(InputError, RuntimeError):
    """Pretrained weights were asked for and cannot be had; the message says how to provide them."""


class UnsupportedBackbone(InputError, ValueError):
    """The open_clip model has a layout the prompted encoders do not handle."""


@dataclass(frozen=True)
class BackboneIdentity:
    """What a checkpoint records about the backbone it was trained on."""

    name: str
    pretrained: str | None
    seed: int | None
    fingerprint: str
    # 'gelu' or 'quick_gelu' (x * sigmoid(1.702 x), OpenAI's CLIP weights); checkpoints written before this
    # field existed were all built with open_clip's plain GELU
    activation: str = "gelu"

    def describe(self) -> str:
        if self.pretrained is None:
            return (
                f"{self.name} (random weights, seed {self.seed}: an offline teaching backbone, not real CLIP)"
            )
        if (self.name, self.pretrained) in OFFLINE_TAGS:
            return f"{self.name}/{self.pretrained}: {offline_summary(self.name, self.pretrained)}"
        quick = ", QuickGELU" if self.activation == "quick_gelu" else ""
        return f"{self.name} with pretrained weights '{self.pretrained}'{quick}"

    def to_dict(self) -> dict:
        return asdict(self)


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def registry_name(name: str) -> str:
    return OFFLINE_CONFIGS.get(name, name)


def cached_weights(name: str, tag: str) -> Path | None:
    """The local file open_clip would load for `name` + `tag`, if it is already cached; never downloads."""
    cfg = open_clip.get_pretrained_cfg(registry_name(name), tag)
    if not cfg:
        return None
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        parts = hub.strip("/").split("/")
        repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
        candidates = [filename] if filename else []
        candidates += ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        for candidate in candidates:
            found = try_to_load_from_cache(repo_id=repo, filename=candidate)
            if isinstance(found, str):
                return Path(found)
    url = cfg.get("url", "")
    if url:
        target = URL_CACHE / os.path.basename(url)
        if target.is_file():
            return target
    return None


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def offline_summary(name: str, tag: str) -> str:
    """One honest line on where an offline tag's weights come from, for banners and run logs."""
    p = offline_provenance(name, tag)
    recipe, corpus = p["recipe"], p["corpus"]
    return (
        f"CLIP pretrained offline by mmpiqa on a synthetic captioned corpus (procedural images, "
        f"{corpus['pairs_seen']:,} image-caption pairs, {p['train_minutes']:.0f} min of training on "
        f"{'a GPU' if p.get('machine', '').startswith('cuda') else 'the CPU'}, seed {recipe['seed']}, "
        f"families {', '.join(corpus['held_out_families'])} held out; sha256 {p['sha256'][:12]}): "
        f"a teaching backbone, not OpenAI CLIP"
    )


@cache
def _verified(path: Path, size: int, mtime: float, expected: str) -> bool:
    return file_sha256(path) == expected


def offline_weights(name: str, tag: str) -> Path:
    """The shipped weights file of an offline tag, checked against the checksum in its provenance."""
    path = WEIGHTS_DIR / f"{OFFLINE_TAGS[(name, tag)]}.safetensors"
    expected = shipped_weights_sha256(name, tag)
    if not path.is_file():
        raise WeightsUnavailable(f"{path}: the weights of '{name}/{tag}' are missing; reinstall mmpiqa")
    stat = path.stat()
    if not _verified(path, stat.st_size, stat.st_mtime, expected):
        raise WeightsUnavailable(
            f"{path}: checksum differs from the one recorded in its provenance ({expected[:12]}…): the file is "
            f"damaged or was replaced. Reinstall mmpiqa, or remake it with `mmpiqa pretrain --config "
            f"params/pretrain_teaching_clip.yaml --ship {path.stem}` (its recipe is also in the provenance)."
        )
    return path


def tag_uses_quick_gelu(name: str, tag: str) -> bool:
    """Whether open_clip's pretrained config says the weights of `name` + `tag` were trained with QuickGELU.

    OpenAI's CLIP weights were (open_clip marks them ``quick_gelu=True``); most LAION/DataComp tags were not.
    open_clip's plain configs (``ViT-B-16``) build GELU whatever the tag, so the activation has to be forced to
    match. Reads the registry only: nothing is downloaded.
    """
    return bool(open_clip.get_pretrained_cfg(registry_name(name), tag).get("quick_gelu", False))


def activation_of(model: torch.nn.Module) -> str:
    """'quick_gelu' when the model's MLPs use open_clip's QuickGELU, else 'gelu'."""
    return "quick_gelu" if any(isinstance(m, QuickGELU) for m in model.modules()) else "gelu"


def _unavailable(name: str, tag: str, reason: str) -> WeightsUnavailable:
    from huggingface_hub.constants import HF_HUB_CACHE

    return WeightsUnavailable(
        f"Cannot load pretrained weights for model '{name}' with tag '{tag}': {reason}.\n"
        f"  Weights are looked for in the Hugging Face cache ({HF_HUB_CACHE}) and in {URL_CACHE}.\n"
        f'  Fix: on a machine with internet run once `python -c "import open_clip; '
        f"open_clip.create_model('{name}', pretrained='{tag}')\"` to fill the cache (unset HF_HUB_OFFLINE), "
        f"or download the checkpoint yourself and pass its path: `--pretrained /path/to/open_clip_model.safetensors` "
        f"(ModelConfig(pretrained=PATH)); a folder holding the file works too.\n"
        f"  Offline teaching backbone with random weights: backbone='tiny', pretrained=None."
    )


def _resolve_local(name: str, path: Path) -> tuple[str, str | None]:
    """(model_name, pretrained) arguments for open_clip from a local file or folder."""
    if path.is_file():
        return registry_name(name), str(path)
    if (path / "open_clip_config.json").is_file():
        return f"local-dir:{path}", None
    for candidate in CHECKPOINT_NAMES:
        if (path / candidate).is_file():
            return registry_name(name), str(path / candidate)
    raise MissingFileError(
        f"Folder {path} holds no open_clip checkpoint: expected one of {', '.join(CHECKPOINT_NAMES)} "
        f"(optionally with open_clip_config.json). Point --pretrained at the checkpoint file itself."
    )


def _looks_like_path(name: str, pretrained: str) -> bool:
    if os.sep in pretrained or pretrained.endswith((".bin", ".pt", ".pth", ".safetensors")):
        return True
    # a bare word is a tag when it names one, even if the working folder happens to hold a file of that name:
    # otherwise a stray `synthetic/` would load unchecked weights under the shipped file's name (`./x` is a path)
    tags = {tag for (model, tag) in OFFLINE_TAGS if model == name}
    tags.update(open_clip.list_pretrained_tags_by_model(registry_name(name)))
    return pretrained not in tags and Path(pretrained).exists()


def _create(name: str, pretrained: str | None, seed: int | None) -> torch.nn.Module:
    if pretrained is None:
        # Random weights from a fixed seed: the same backbone is rebuilt anywhere from (name, seed).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed if seed is not None else 0)
            return open_clip.create_model(registry_name(name), pretrained=None)
    if _looks_like_path(name, pretrained):
        path = Path(pretrained).expanduser()
        if not path.exists():
            raise MissingFileError(
                f"pretrained={pretrained!r} looks like a path but does not exist. Give the checkpoint file or the "
                f"folder holding it, or a tag from open_clip.list_pretrained_tags_by_model('{name}')."
            )
        model_name, weights = _resolve_local(name, path)
        required = weights is not None  # a "local-dir:" folder: open_clip finds its weights itself
        try:
            return open_clip.create_model(model_name, pretrained=weights, require_pretrained=required)
        except NOT_WEIGHTS as error:
            raise WeightsUnavailable(
                f"{weights or path}: not weights of a '{model_name}' CLIP ({type(error).__name__}); give open_clip "
                "weights of that model (of a pretraining run: its weights.safetensors, not state.pt)"
            ) from error
    if (name, pretrained) in OFFLINE_TAGS:  # shipped weights: the same open_clip path as any local file
        weights = offline_weights(name, pretrained)
        return open_clip.create_model(registry_name(name), pretrained=str(weights), require_pretrained=True)
    tags = open_clip.list_pretrained_tags_by_model(registry_name(name))
    tags += [tag for (model, tag) in OFFLINE_TAGS if model == name]
    if pretrained not in tags:
        raise WeightsUnavailable(
            f"Model '{name}' has no pretrained tag '{pretrained}'. Known tags: {', '.join(tags) or 'none'}. "
            f"A local checkpoint can be given as a path instead."
        )
    if hub_offline() and cached_weights(name, pretrained) is None:
        raise _unavailable(name, pretrained, "HF_HUB_OFFLINE is set and the weights are not cached")
    try:
        return open_clip.create_model(
            registry_name(name),
            pretrained=pretrained,
            require_pretrained=True,
            force_quick_gelu=tag_uses_quick_gelu(name, pretrained),
        )
    except (RuntimeError, OSError) as error:
        raise _unavailable(name, pretrained, f"download failed ({type(error).__name__}: {error})") from error


def check_supported(model: torch.nn.Module) -> None:
    """Refuse, with a clear message, open_clip models whose layout the prompted loops do not reproduce."""
    if not isinstance(model, open_clip.CLIP):
        raise UnsupportedBackbone(
            f"{type(model).__name__} is not supported: the prompted text encoder needs open_clip.CLIP's built-in "
            f"text tower (models with custom_text or Hugging Face text towers are CustomTextCLIP)."
        )
    visual = model.visual
    problems = []
    if not isinstance(visual, VisionTransformer):
        problems.append(f"image tower is {type(visual).__name__}, not a VisionTransformer")
    else:
        if visual.attn_pool is not None:
            problems.append("attention pooling in the image tower")
        if visual.pool_type != "tok":
            problems.append(
                f"image pooling '{visual.pool_type}' (only class-token pooling 'tok' is supported)"
            )
        if visual.final_ln_after_pool:
            problems.append("final_ln_after_pool=True")
        if not visual.transformer.batch_first:
            problems.append("a sequence-first image transformer (open_clip < 2.26)")
    if model.text_pool_type not in {"argmax", "eos", "last", "first"}:
        problems.append(f"text pooling '{model.text_pool_type}'")
    if not model.transformer.batch_first:
        problems.append("a sequence-first text transformer (open_clip < 2.26)")
    if problems:
        raise UnsupportedBackbone(
            "This open_clip model is not supported by the prompted encoders: " + "; ".join(problems) + "."
        )


def fingerprint(model: torch.nn.Module) -> str:
    """A cheap, stable digest of the backbone: weights (names, shapes, sums and a few values per tensor) and,
    when it is QuickGELU, the activation (GELU models keep the digests they had before it was recorded)."""
    digest = hashlib.sha256()
    if activation_of(model) == "quick_gelu":
        digest.update(b"activation=quick_gelu")
    for key, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().float().flatten().cpu()
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(f"{flat.double().sum().item():.6e}".encode())
        digest.update(flat[:8].numpy().tobytes())
    return digest.hexdigest()[:16]


def check_backbone_name(name: str) -> None:
    """Refuse, before anything is built, a name that is neither an open_clip model nor an offline config."""
    if name not in set(open_clip.list_models()) | set(OFFLINE_CONFIGS):
        raise UnsupportedBackbone(
            f"Unknown backbone '{name}'. Offline configs: {', '.join(OFFLINE_CONFIGS)}; open_clip models include "
            f"ViT-B-32, ViT-B-16, ViT-L-14 (see open_clip.list_models())."
        )


def load_backbone(
    name: str = "tiny", pretrained: str | None = None, *, seed: int = 0, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, BackboneIdentity]:
    """A frozen, supported open_clip CLIP in eval mode and its identity.

    `name`: an open_clip model name (``open_clip.list_models()``) or a shipped offline config (``OFFLINE_CONFIGS``).
    `pretrained`: ``None`` (random weights from `seed`), an open_clip tag, or a local checkpoint file/folder.
    Raises WeightsUnavailable (with the fix in its message) rather than ever falling back to random weights.
    A named tag is built with the activation its weights were trained with (`tag_uses_quick_gelu`); a local
    file takes the activation of the config `name` names (``ViT-B-16-quickgelu`` for OpenAI weights).
    An offline config with random or shipped weights is built once per process and handed out as copies.
    """
    check_backbone_name(name)
    if name not in OFFLINE_CONFIGS or (pretrained is not None and (name, pretrained) not in OFFLINE_TAGS):
        return _build(name, pretrained, seed, device)
    # keyed by the shipped file as it is on disk now (checked first), so a replaced file is never served from memory
    stat = offline_weights(name, pretrained).stat() if pretrained is not None else None
    on_disk = stat and (stat.st_ino, stat.st_dev, stat.st_size, stat.st_mtime_ns)
    model, identity = _built_offline(name, pretrained, seed, on_disk)
    return copy.deepcopy(model).to(device), identity


# Offline backbones are rebuilt for every split, runtime projection and chapter cell, and building one (random
# init of every layer, then the weights copied in) takes longer than its forward pass on a batch: a frozen CPU
# copy of the latest few is kept. Real CLIPs are not kept: their memory matters more than their build time.
@lru_cache(maxsize=4)
def _built_offline(name: str, pretrained: str | None, seed: int, on_disk: tuple | None) -> tuple:
    return _build(name, pretrained, seed, "cpu")


def _build(name: str, pretrained: str | None, seed: int, device) -> tuple[torch.nn.Module, BackboneIdentity]:
    # every tensor frozen (open_clip's lock_*_tower would leave logit_scale trainable), in eval mode
    model = _create(name, pretrained, seed).requires_grad_(False).eval().to(device)
    check_supported(model)
    seed = seed if pretrained is None else None  # recorded for random weights only
    return model, BackboneIdentity(name, pretrained, seed, fingerprint(model), activation_of(model))


@cache  # stateless apart from its BPE memo; building one reads the vocabulary file
def tokenizer_for(name: str):
    return open_clip.get_tokenizer(registry_name(name))

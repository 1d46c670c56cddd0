"""Typed, frozen configs that round-trip through JSON and YAML.

Every ablation is a field here, so a papermill parameter, a `--set key=value` on the command line and a line in a
sweep grid all set the same thing, and the config saved in a run folder says exactly what was run.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from mmpiqa.labels import ANTONYMS, DISTORTION_GROUPS, QUALITY_LEVELS, SCENE_CLASSES

C = TypeVar("C", bound="ConfigBase")

BRANCHES = ("quality", "scene", "distortion")
HEADS = ("levels", "antonym", "xattn")


class ConfigError(ValueError):
    """A config value is invalid; the message names the field and what is allowed."""


@dataclass(frozen=True)
class ConfigBase:
    """JSON/YAML round trip with strict keys: a typo is an error, never silently ignored."""

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if isinstance(value, ConfigBase) else _plain(value)
        return out

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], *, where: str = "") -> C:
        if not isinstance(data, dict):
            raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{where or cls.__name__}: unknown field(s) {unknown}; valid fields are {sorted(known)}"
            )
        kwargs = {}
        for name, value in data.items():
            kwargs[name] = _coerce(hints[name], value, f"{where}.{name}" if where else name)
        return cls(**kwargs)

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        text = self.to_json() if path.suffix == ".json" else _yaml_dump(self.to_dict())
        from mmpiqa.io import atomic_write_text

        atomic_write_text(path, text + "\n")
        return path

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        path = Path(path)
        text = path.read_text()
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text) or {}
        return cls.from_dict(data, where=str(path))

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _yaml_dump(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False).rstrip("\n")


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Turn JSON/YAML values into the field's type (lists into tuples, nested dicts into configs)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError("; ".join(errors))
    if isinstance(hint, type) and issubclass(hint, ConfigBase):
        return hint.from_dict(value, where=where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return tuple(_coerce(item, v, where) for v in value)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool):
        if isinstance(value, bool) and hint is not bool:
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
        if not isinstance(value, hint):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
        return value
    return value


@dataclass(frozen=True)
class ModelConfig(ConfigBase):
    """What the prompted model is: backbone, text branches, visual prompts, readout head.

    Learned parameter counts (W_t text width, W_v image width, E embedding width, B branches):
      text context   B * n_ctx * W_t * text_depth          (0 when text_depth = 0: a hand-written prompt)
      visual, free   n_vis * W_v * visual_depth
      visual, coupled visual_depth * (W_t * W_v + W_v)     (per-layer linear maps from the text context)
      xattn head     4E^2 + 4E (attention) + 4E (two norms) + 2E*h + h + h + 1 (MLP), h = head_hidden
    """

    backbone: str = "tiny"  # offline config ('tiny', 'micro') or an open_clip model name ('ViT-B-16')
    pretrained: str | None = (
        None  # None: random weights from backbone_seed; an open_clip tag; or a local path
    )
    backbone_seed: int = 0  # seed of the random backbone weights when pretrained is None
    # --- text branches -------------------------------------------------------------------------------
    branches: tuple[str, ...] = BRANCHES  # any of quality / scene / distortion
    n_ctx: int | None = None  # context vectors per branch; None = the number of tokens in ctx_init
    ctx_init: str | None = "a photo of"  # words the context starts from; None = random N(0, 0.02)
    text_depth: int = 1  # 0: context frozen; 1: learned at the input (CoOp); k: replaced before blocks < k
    quality_levels: tuple[str, ...] = QUALITY_LEVELS  # worst to best, for the 'levels' readout
    antonyms: tuple[str, ...] = ANTONYMS  # (positive, negative), for the 'antonym' readout
    scenes: tuple[str, ...] = SCENE_CLASSES
    distortions: tuple[str, ...] = DISTORTION_GROUPS
    quality_template: str = "{} quality"  # the prompt is '<context> <template.format(class)>.'
    scene_template: str = "a {}"
    distortion_template: str = "{} artifacts"
    # --- visual prompts ------------------------------------------------------------------------------
    n_vis: int = 4  # prompt tokens appended to the image sequence
    visual_depth: int = -1  # 0: none; 1: input only; k: replaced before blocks < k; -1: every block
    coupled: bool = False  # visual prompts = per-layer linear maps of the text context (MaPLe), n_vis = n_ctx
    # --- readout -------------------------------------------------------------------------------------
    head: str = "xattn"  # 'levels' (expected quality level), 'antonym' (CLIP-IQA), 'xattn' (MP-IQE)
    head_heads: int = 4  # attention heads of the xattn head
    head_hidden: int = 128  # hidden width of the xattn head's MLP

    def __post_init__(self) -> None:
        bad = [b for b in self.branches if b not in BRANCHES]
        if bad or len(set(self.branches)) != len(self.branches):
            raise ConfigError(f"branches={self.branches!r}: each of {BRANCHES} at most once")
        if self.head not in HEADS:
            raise ConfigError(f"head={self.head!r}: choose one of {HEADS}")
        if self.head in ("levels", "antonym") and "quality" not in self.branches:
            raise ConfigError(f"head={self.head!r} reads the quality branch: add 'quality' to branches")
        if self.head == "xattn" and not self.branches:
            raise ConfigError("head='xattn' uses the text branches as queries: give at least one branch")
        if self.head == "antonym" and len(self.antonyms) != 2:
            raise ConfigError(f"antonyms={self.antonyms!r}: exactly two words, (positive, negative)")
        if self.ctx_init is None and self.n_ctx is None:
            raise ConfigError("n_ctx: give a number of context vectors when ctx_init is None (random init)")
        if self.n_ctx is not None and self.n_ctx < 1:
            raise ConfigError(f"n_ctx={self.n_ctx}: at least 1")
        if self.text_depth < 0:
            raise ConfigError(f"text_depth={self.text_depth}: 0 (frozen), 1 (input) or more (deep)")
        if self.visual_depth < -1:
            raise ConfigError(f"visual_depth={self.visual_depth}: 0 (none), 1..blocks, or -1 (all blocks)")
        if self.visual_depth != 0 and self.n_vis < 1:
            raise ConfigError(f"n_vis={self.n_vis}: at least 1 when visual_depth != 0")
        if self.coupled and self.visual_depth == 0:
            raise ConfigError("coupled=True needs visual prompts: set visual_depth to 1 or more")
        if self.coupled and self.text_depth == 0:
            raise ConfigError("coupled=True maps the learned text context: set text_depth >= 1")
        for name in ("quality_template", "scene_template", "distortion_template"):
            if getattr(self, name).count("{}") != 1:
                raise ConfigError(f"{name}={getattr(self, name)!r}: must contain exactly one '{{}}'")

    def classes(self, branch: str) -> tuple[str, ...]:
        """The class words of a branch; the quality branch uses the antonym pair for the antonym head."""
        if branch == "quality":
            return self.antonyms if self.head == "antonym" else self.quality_levels
        return {"scene": self.scenes, "distortion": self.distortions}[branch]

    def template(self, branch: str) -> str:
        return getattr(self, f"{branch}_template")

"""Typed, frozen configs that round-trip through JSON and YAML.

Every ablation is a field here, so a papermill parameter, a `--set key=value` on the command line and a line in a
sweep grid all set the same thing, and the config saved in a run folder says exactly what was run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from mmpiqa.errors import InputError, not_a_file
from mmpiqa.labels import ANTONYMS, DISTORTION_GROUPS, QUALITY_LEVELS, SCENE_CLASSES

C = TypeVar("C", bound="ConfigBase")

BRANCHES = ("quality", "scene", "distortion")
HEADS = ("levels", "antonym", "xattn")
XATTN_PRIORS = ("levels", "none")


# Prompt depth, text and image alike: 0 = no learned prompt tokens, k = learned tokens in the first k blocks,
# "all" = in every block (mmpiqa.model.prompted_clip.prompted_blocks reads it against a backbone). "all" is stored
# as -1, the spelling run folders and checkpoints have always held, so their configs and run-folder keys stay as
# they were.
ALL_BLOCKS = -1

# Weights shipped in the package: (offline config, tag) -> file stem in WEIGHTS_DIR, i.e. `<stem>.safetensors`
# (fp16) + `<stem>.json` (provenance with the sha256). Kept here, not in model/, because a run's key holds the
# shipped file's checksum: new teaching weights must never read back run folders trained on the old ones.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
OFFLINE_TAGS: dict[tuple[str, str], str] = {("tiny", "synthetic"): "tiny-synthetic"}

MAX_SPLITS = 1000  # more splits add nothing to a median or a CI and make splits.json huge
# How `data.splits.make_splits` turns the data fields into splits; part of every run key, so a run folder made
# under another rule is never read back as this one. 1: each split drawn at random; 2: splits rotate (k-fold).
SPLIT_SCHEME = 2


class ConfigError(InputError, ValueError):
    """A config value is invalid; the message names the field (or file) and what is allowed."""


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
        try:
            return cls(**kwargs)
        except ConfigError as error:
            raise (ConfigError(f"{where}: {error}") if where else error) from None

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        text = self.to_json() if path.suffix == ".json" else _yaml_dump(self.to_dict())
        from mmpiqa.files import atomic_write_text

        atomic_write_text(path, text + "\n")
        return path

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        return cls.from_dict(read_config_file(path), where=str(path))

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)


def read_config_file(path: str | Path, what: str = "config file") -> Any:
    """The data of a YAML or JSON file (by suffix); a missing, unreadable or malformed file is a ConfigError that
    names it and says where it breaks."""
    path = Path(path)
    problem = not_a_file(path)
    if problem:
        raise ConfigError(f"{path}: the {what} {problem}; give the path of a YAML or JSON {what}.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the {what} ({error}); save it as UTF-8 text.") from error
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(
                f"{path}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); fix the file."
            ) from error
    import yaml

    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(error)}); fix the file.") from error


def _yaml_problem(error: Exception) -> str:
    """One line from a PyYAML error: where and what."""
    mark = getattr(error, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + (getattr(error, "problem", None) or type(error).__name__)


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
    if hint is float and isinstance(value, str):
        # YAML 1.1 reads 1e-3 (no dot) as a string; accept every spelling Python's float() does
        try:
            return float(value.strip())
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if hint in (int, float, str, bool):
        if isinstance(value, bool) and hint is not bool:
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
        if not isinstance(value, hint):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
        return value
    return value


def _depth(name: str, value: Any) -> int:
    """A prompt depth as stored: k >= 0, or ALL_BLOCKS for "all" (also the value older configs hold)."""
    if value == "all":
        return ALL_BLOCKS
    if isinstance(value, bool) or not isinstance(value, int) or value < ALL_BLOCKS:
        raise ConfigError(
            f"{name}={value!r}: expected int 0 (no learned prompt tokens), k (learned tokens in the first k "
            f'blocks) or "all" (every block)'
        )
    return value


@dataclass(frozen=True)
class ModelConfig(ConfigBase):
    """What the prompted model is: backbone, text branches, visual prompts, readout head.

    Learned parameter counts (W_t text width, W_v image width, E embedding width, B branches):
      text context   B * n_ctx * W_t * text_depth          (0 when text_depth = 0: a hand-written prompt)
      visual, free   n_vis * W_v * visual_depth
      visual, coupled visual_depth * (W_t * W_v + W_v)     (per-layer linear maps from the text context)
      xattn head     4E^2 + 4E (attention) + 4E (two norms) + 2E*h + h + h + 1 (MLP), h = head_hidden
    with each depth counted in blocks ("all": the tower's blocks).
    """

    backbone: str = "tiny"  # offline config ('tiny', 'micro') or an open_clip model name ('ViT-B-16')
    # None: random weights from backbone_seed; an open_clip tag ('openai', 'synthetic'); or a local path
    pretrained: str | None = None
    backbone_seed: int = 0  # seed of the random backbone weights when pretrained is None
    # --- text branches -------------------------------------------------------------------------------
    branches: tuple[str, ...] = BRANCHES  # any of quality / scene / distortion
    n_ctx: int | None = None  # context vectors per branch; None = the number of tokens in ctx_init
    ctx_init: str | None = "a photo of"  # words the context starts from; None = random N(0, 0.02)
    text_depth: int | str = 1  # 0: hand-written context, frozen; 1: learned at the input (CoOp); k; "all"
    quality_levels: tuple[str, ...] = QUALITY_LEVELS  # worst to best, for the 'levels' readout
    antonyms: tuple[str, ...] = ANTONYMS  # (positive, negative), for the 'antonym' readout
    scenes: tuple[str, ...] = SCENE_CLASSES
    distortions: tuple[str, ...] = DISTORTION_GROUPS
    quality_template: str = "{} quality"  # the prompt is '<context> <template.format(class)>.'
    scene_template: str = "a {}"
    distortion_template: str = "{} artifacts"
    # --- visual prompts ------------------------------------------------------------------------------
    n_vis: int = 4  # prompt tokens appended to the image sequence
    visual_depth: int | str = ALL_BLOCKS  # 0: no visual prompt; 1: at the input (VPT-shallow); k; "all"
    coupled: bool = False  # visual prompts = per-layer linear maps of the text context (MaPLe), n_vis = n_ctx
    # --- readout -------------------------------------------------------------------------------------
    head: str = "xattn"  # 'levels' (expected quality level), 'antonym' (CLIP-IQA), 'xattn' (MP-IQE)
    head_heads: int = 4  # attention heads of the xattn head
    head_hidden: int = 128  # hidden width of the xattn head's MLP
    # 'levels': the xattn score starts from the zero-shot levels readout and the MLP learns a correction (its
    # last layer starts at zero, as CoOp starts from the hand-written prompt); 'none': the MLP's score alone
    xattn_prior: str = "levels"

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
        if self.xattn_prior not in XATTN_PRIORS:
            raise ConfigError(f"xattn_prior={self.xattn_prior!r}: choose one of {XATTN_PRIORS}")
        if self.head == "xattn" and self.xattn_prior == "levels" and "quality" not in self.branches:
            raise ConfigError(
                "xattn_prior='levels' starts the score from the quality branch: add 'quality' to branches "
                "or set xattn_prior='none'"
            )
        if self.head == "antonym" and len(self.antonyms) != 2:
            raise ConfigError(f"antonyms={self.antonyms!r}: exactly two words, (positive, negative)")
        if self.ctx_init is None and self.n_ctx is None:
            raise ConfigError("n_ctx: give a number of context vectors when ctx_init is None (random init)")
        if self.n_ctx is not None and self.n_ctx < 1:
            raise ConfigError(f"n_ctx={self.n_ctx}: at least 1")
        for name in ("text_depth", "visual_depth"):
            object.__setattr__(self, name, _depth(name, getattr(self, name)))
        if self.visual_depth != 0 and self.n_vis < 1:
            raise ConfigError(f"n_vis={self.n_vis}: at least 1 when visual_depth != 0")
        if self.coupled and self.visual_depth == 0:
            raise ConfigError("coupled=True needs visual prompts: set visual_depth to 1 or more")
        if self.coupled and self.text_depth == 0:
            raise ConfigError("coupled=True maps the learned text context: set text_depth >= 1")
        if self.head_heads < 1 or self.head_hidden < 1:
            raise ConfigError(
                f"head_heads={self.head_heads}, head_hidden={self.head_hidden}: at least 1 each"
            )
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


@dataclass(frozen=True)
class DataConfig(ConfigBase):
    """Which images, which split protocol, which crops."""

    dataset: str = "embedded"  # a name from `mmpiqa data list`
    root: str | None = None  # the unpacked official release (None for 'embedded': the package cache)
    size: str = "default"  # embedded benchmark size: 'small', 'default' or 'full'
    protocol: str = "auto"  # 'auto', 'ref' (reference-disjoint), 'random' or 'official'
    n_splits: int = 10  # splits of the n-split protocol (they rotate the test references: data.splits)
    split_seed: int = 0  # seed of the splits' shuffles
    fractions: tuple[float, ...] = (0.7, 0.1, 0.2)  # train / val / test
    train_fraction: float | None = None  # data-efficiency: keep this fraction of the training part
    crop_size: int | None = None  # None: the backbone's input size
    train_crops: int = 4  # fixed pool of random training crops per image; each epoch draws one of them
    test_crop: str = "grid"  # 'center', 'grid' (n crops averaged) or 'resize'
    test_crops: int = 3  # crops per image for test_crop='grid'
    skip_unreadable: bool = False  # drop unreadable images (reported) instead of failing
    # keyword options of the dataset's reader, e.g. metacsv {mos_col: dmos, mos_range: [0, 100],
    # higher_is_better: false}; `mmpiqa data card NAME` lists them
    reader_options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if (
            len(self.fractions) != 3
            or any(f <= 0 for f in self.fractions)
            or abs(sum(self.fractions) - 1) > 1e-6
        ):
            raise ConfigError(
                f"fractions={self.fractions}: three positive numbers (train, val, test) summing to 1"
            )
        if not 1 <= self.n_splits <= MAX_SPLITS:
            raise ConfigError(f"n_splits={self.n_splits}: between 1 and {MAX_SPLITS}")
        if self.split_seed < 0:
            raise ConfigError(f"split_seed={self.split_seed}: a whole number >= 0")
        if self.root == "":  # a notebook's "no folder": as a path it would be the working folder
            object.__setattr__(self, "root", None)
        if self.crop_size is not None and self.crop_size < 1:
            raise ConfigError(
                f"crop_size={self.crop_size}: null (the backbone's input size) or its size in px"
            )
        if self.train_fraction is not None and not 0 < self.train_fraction <= 1:
            raise ConfigError(f"train_fraction={self.train_fraction}: in (0, 1], or None for all")
        if self.test_crop not in ("center", "grid", "resize"):
            raise ConfigError(f"test_crop={self.test_crop!r}: 'center', 'grid' or 'resize'")
        if self.train_crops < 1 or self.test_crops < 1:
            raise ConfigError("train_crops and test_crops: at least 1")
        options = self.reader_options
        if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
            raise ConfigError(f"reader_options={self.reader_options!r}: a mapping, e.g. {{mos_col: dmos}}")


@dataclass(frozen=True)
class TrainConfig(ConfigBase):
    """How prompts are optimised. Defaults are the CPU demo; GPU parameter files raise epochs and batch size."""

    epochs: int = 6
    batch_size: int = 32
    lr: float = 2e-3  # peak learning rate of AdamW
    weight_decay: float = 1e-4
    warmup: float = 0.1  # fraction of all steps with linear warm-up, then cosine decay to 0
    grad_clip: float = 1.0  # max gradient norm (0: off)
    quality_loss: str = "fidelity"  # 'fidelity' (pairwise, within a dataset), 'l1', 'mse' or 'plcc'
    quality_weight: float = 1.0
    scene_weight: float = 0.1  # auxiliary scene classification (multi-label)
    distortion_weight: float = 0.1  # auxiliary distortion classification
    seed: int = 0
    device: str = "auto"  # 'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1', ...
    feature_cache: bool = True  # reuse frozen image features when the image tower has no prompts
    num_workers: int = 0  # DataLoader workers

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2:
            raise ConfigError("epochs >= 1 and batch_size >= 2 (pairwise losses need two images)")
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"warmup={self.warmup}: a fraction of all steps in [0, 1)")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr={self.lr}: a positive number such as 2e-3")
        for name in ("weight_decay", "grad_clip", "quality_weight", "scene_weight", "distortion_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(
                    f"{name}={value}: a number >= 0" + (" (0: off)" if name == "grad_clip" else "")
                )
        if self.num_workers < 0:
            raise ConfigError(f"num_workers={self.num_workers}: 0 (load in the main process) or more")
        if self.quality_loss not in ("fidelity", "l1", "mse", "plcc"):
            raise ConfigError(f"quality_loss={self.quality_loss!r}: 'fidelity', 'l1', 'mse' or 'plcc'")


@dataclass(frozen=True)
class RunConfig(ConfigBase):
    """Everything a run depends on; its hash names the run folder."""

    name: str = "run"  # a label for humans; not part of the hash
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def key(self) -> str:
        """Hash of everything that changes the result (not `name`, `device`, `num_workers`, nor `size` off the
        embedded benchmark), including the checksum of shipped offline weights and the rule that draws splits."""
        import hashlib

        data = self.to_dict()
        data.pop("name")
        data["train"] = {k: v for k, v in data["train"].items() if k not in ("device", "num_workers")}
        shipped = shipped_weights_sha256(self.model.backbone, self.model.pretrained)
        if shipped:
            data["model"]["weights_sha256"] = shipped
        if data["data"]["dataset"] != "embedded":
            data["data"].pop("size")  # the embedded benchmark's size means nothing for a real dataset
        if not data["data"]["reader_options"]:
            data["data"].pop("reader_options")  # so runs made before the field existed keep their keys
        data["data"]["split_scheme"] = SPLIT_SCHEME
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:10]

    def with_overrides(self, assignments: list[str] | dict[str, Any]) -> RunConfig:
        """Apply `section.field=value` assignments (values parsed as YAML: 3, 0.1, null, [a, b], true)."""
        data = self.to_dict()
        for key, value in parse_assignments(assignments):
            section, _, field_name = key.partition(".")
            if not field_name:
                if section != "name":
                    raise ConfigError(f"--set {key}: use section.field, e.g. model.visual_depth=3")
                data["name"] = value
                continue
            if section not in ("model", "data", "train"):
                raise ConfigError(f"--set {key}: section must be model, data or train")
            data[section][field_name] = value
        return RunConfig.from_dict(data)


def parse_assignments(
    assignments: list[str] | dict[str, Any], flag: str = "--set", form: str = "section.field"
) -> list[tuple[str, Any]]:
    """`form=value` strings (a `--set`, or the `flag` named in errors) as (key, value) pairs, values read as
    YAML; a dict passes through."""
    if isinstance(assignments, dict):
        return list(assignments.items())
    import yaml

    pairs = []
    for text in assignments:
        key, sep, value = (part.strip() for part in text.partition("="))
        if not sep:
            raise ConfigError(f"{flag} {text!r}: expected {form}=value")
        try:
            pairs.append((key, yaml.safe_load(value)))
        except yaml.YAMLError as error:
            raise ConfigError(
                f"{flag} {key}={value}: not a value YAML can read ({_yaml_problem(error)}); quote text, "
                "write lists as [a, b]"
            ) from None
    return pairs


def offline_provenance(name: str, tag: str) -> dict:
    """The provenance record shipped beside an offline tag's weights (recipe, corpus, minutes, checksum)."""
    path = WEIGHTS_DIR / f"{OFFLINE_TAGS[(name, tag)]}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(
            f"{path}: the provenance of '{name}/{tag}' cannot be read ({error}); reinstall mmpiqa"
        ) from error


def shipped_weights_sha256(backbone: str, pretrained: str | None) -> str | None:
    """The sha256 recorded beside the package's weights for (backbone, tag); None for any other backbone."""
    if (backbone, pretrained) not in OFFLINE_TAGS:
        return None
    record = offline_provenance(backbone, pretrained)
    if "sha256" not in record:
        raise InputError(
            f"{WEIGHTS_DIR / OFFLINE_TAGS[(backbone, pretrained)]}.json: no sha256; reinstall mmpiqa"
        )
    return record["sha256"]

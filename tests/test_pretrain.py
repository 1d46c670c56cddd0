"""The procedural captioned corpus, contrastive pretraining, and the shipped teaching CLIP."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from mmpiqa.cli import main
from mmpiqa.config import ConfigError
from mmpiqa.data.corpus import (
    HELD_OUT_FAMILIES,
    LEVEL_TO_QUALITY,
    PRETRAIN_FAMILIES,
    corpus_item,
)
from mmpiqa.errors import InputError
from mmpiqa.files import WriteError
from mmpiqa.model.backbone import (
    OFFLINE_TAGS,
    WEIGHTS_DIR,
    file_sha256,
    load_backbone,
    offline_provenance,
    tokenizer_for,
)
from mmpiqa.model.checkpoint import CheckpointError
from mmpiqa.runs import shipping
from mmpiqa.runs.shipping import ship
from mmpiqa.train.pretrain import (
    PROVENANCE_FILE,
    STATE_FILE,
    WEIGHTS_FILE,
    PretrainConfig,
    bank_captions,
    caption_contrastive_loss,
    new_model,
    pretrain,
    quality_targets,
    train_step,
)
from mmpiqa.train.trainer import TrainingDiverged, lr_factor

MICRO = dict(backbone="micro", batch_size=8, versions=4, checkpoint_every=3, warmup=0.1)


# --- corpus ---------------------------------------------------------------------------------------------------
def test_corpus_items_are_a_pure_function_of_seed_and_index():
    a, b = corpus_item(3, 17, 48), corpus_item(3, 17, 48)
    assert np.array_equal(a.image, b.image) and a.caption == b.caption
    assert a.image.shape == (48, 48, 3) and a.image.dtype == np.uint8
    assert not np.array_equal(corpus_item(4, 17, 48).image, a.image)  # another seed, another corpus


def test_the_chapter_corpus_is_whole_contents():
    from mmpiqa.workbook.pretrain_views import corpus_items

    items = corpus_items(8, seed=3, size=32)
    assert [it.level == 0 for it in items[::4]] == [True, True]  # two contents, each clean first
    for n in (0, 10, -4, 8.0):
        with pytest.raises(ConfigError, match=rf"n={n!r}: corpus pairs, a multiple of versions=4"):
            corpus_items(n, size=32)


def test_versions_of_one_content_differ_only_in_damage():
    items = [corpus_item(0, i, 48, versions=4) for i in range(40)]
    for start in range(0, 40, 4):
        group = items[start : start + 4]
        assert len({it.content for it in group}) == 1
        assert group[0].level == 0 and group[0].family == ""  # version 0 is the clean original
    damaged = [it for it in items if it.level]
    assert damaged and all(1 <= it.level <= 5 for it in damaged)
    assert all(it.quality == LEVEL_TO_QUALITY[it.level] for it in items)


def test_held_out_families_never_appear():
    seen = {corpus_item(1, i, 32).family for i in range(600)} - {""}
    assert seen and not seen & set(HELD_OUT_FAMILIES)
    assert seen <= {f.name for f in PRETRAIN_FAMILIES}


def test_bank_captions_are_the_zero_shot_prompts():
    quality, groups = bank_captions()
    assert quality == [f"a photo of {w} quality." for w in ("bad", "poor", "fair", "good", "perfect")]
    assert "a photo of blur artifacts." in groups and "a photo of JPEG2000 artifacts." not in groups


# --- losses and schedule -------------------------------------------------------------------------------------
def test_contrastive_loss_is_clip_loss_when_captions_are_distinct():
    torch.manual_seed(0)
    image, text = F.normalize(torch.randn(6, 16), dim=-1), F.normalize(torch.randn(6, 16), dim=-1)
    scale = torch.tensor(20.0)
    ours = caption_contrastive_loss(image, text, scale, torch.arange(6))
    assert torch.allclose(ours, ClipLoss()(image, text, scale), atol=1e-6)


def test_shared_captions_are_positives_of_each_other():
    image = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), dim=-1)
    text = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1)
    # images 0 and 1 carry caption 0: a perfect match has a lower loss than a swapped one
    right = caption_contrastive_loss(image, text, torch.tensor(10.0), torch.tensor([0, 0, 1]))
    wrong = caption_contrastive_loss(image, text, torch.tensor(10.0), torch.tensor([1, 1, 0]))
    assert right < wrong / 10  # (the floor is the entropy of the shared targets, not 0)


def test_quality_targets_peak_at_the_level():
    targets = quality_targets(torch.tensor([0, 4, 2]), 5, 0.6)
    assert torch.allclose(targets.sum(1), torch.ones(3))
    assert targets.argmax(1).tolist() == [0, 4, 2]


def test_schedule_warms_up_then_decays_to_zero():
    config = PretrainConfig(steps=100, warmup=0.1)
    factors = [lr_factor(s, config.steps, config.warmup) for s in range(100)]  # the trainer's schedule
    assert factors[0] == pytest.approx(0.1) and max(factors) == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[10:])) and factors[-1] < 0.01


def test_recipe_is_validated():
    with pytest.raises(ConfigError, match="pretraining is for"):
        PretrainConfig(backbone="ViT-B-16")
    with pytest.raises(ConfigError, match="versions=4: a divisor of batch_size=10"):
        PretrainConfig(batch_size=10, versions=4)
    with pytest.raises(ConfigError, match="highpass_stem"):
        PretrainConfig(highpass_stem=-1.0)
    with pytest.raises(ConfigError, match="bank_scale"):
        PretrainConfig(bank_scale=500.0)
    with pytest.raises(ConfigError, match="chroma_stem"):
        PretrainConfig(chroma_stem=math.nan)
    # each of these once crashed deep in a run, or trained to nan weights that were exported and checksummed
    for field, value in [
        ("seed", -1),
        ("versions", 0),
        ("warmup", 5.0),
        ("quality_sigma", 0.0),
        ("bank_weight", math.nan),
        ("weight_decay", math.inf),
    ]:
        with pytest.raises(ConfigError, match=field):
            PretrainConfig(**{**MICRO, field: value})


def test_highpass_stem_starts_half_the_patch_filters_blind_to_flat_colour():
    plain = new_model(PretrainConfig(**MICRO)).visual.conv1.weight
    stem = new_model(PretrainConfig(highpass_stem=4.0, **MICRO)).visual.conv1.weight
    half = plain.shape[0] // 2
    flat = torch.ones(1, 3, *plain.shape[2:])
    response = F.conv2d(flat, stem).flatten()
    assert response[:half].abs().max() < 1e-5  # a flat patch of any colour gives nothing
    assert torch.equal(stem[half:], plain[half:])  # the colour half is open_clip's init
    centred = plain[:half] - plain[:half].mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(stem[:half], 4.0 * centred)


def test_chroma_stem_starts_a_quarter_of_the_patch_filters_blind_to_grey_levels():
    plain = new_model(PretrainConfig(highpass_stem=4.0, **MICRO)).visual.conv1.weight
    stem = new_model(PretrainConfig(highpass_stem=4.0, chroma_stem=2.0, **MICRO)).visual.conv1.weight
    half, quarter = plain.shape[0] // 2, plain.shape[0] // 4
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)

    def response(
        rgb: tuple[float, float, float],
    ) -> torch.Tensor:  # a flat patch, normalised as the model sees it
        patch = torch.tensor(rgb).view(1, 3, 1, 1).expand(1, 3, *plain.shape[2:])
        return F.conv2d((patch - mean) / std, stem).flatten()[half : half + quarter]

    dark, light = response((0.1, 0.1, 0.1)), response((0.9, 0.9, 0.9))
    torch.testing.assert_close(dark, light, atol=1e-4, rtol=0)  # any grey level: the same constant
    assert (response((0.9, 0.2, 0.2)) - light).abs().max() > 0.1  # a colour is answered
    assert torch.equal(stem[:half], plain[:half]) and torch.equal(
        stem[half + quarter :], plain[half + quarter :]
    )


def test_bank_scale_replaces_the_model_scale_in_the_bank_term_only():
    def parts(bank_scale: float, log_scale: float) -> dict:
        config = PretrainConfig(bank_scale=bank_scale, **MICRO)
        model = new_model(PretrainConfig(**MICRO))
        with torch.no_grad():
            model.logit_scale.fill_(log_scale)
        tokenizer = tokenizer_for("micro")
        quality, groups = bank_captions()
        torch.manual_seed(0)  # the same patch-dropout draws for every call
        with torch.no_grad():
            out = train_step(model, tokenizer, config, 0, 32, tokenizer(quality + groups), len(quality))
        return {k: out[k] for k in ("contrastive", "bank_quality", "bank_group")}

    default = float(np.log(1 / 0.07))
    shared, fixed = parts(0.0, default), parts(50.0, default)
    assert fixed["contrastive"] == shared["contrastive"]  # the in-batch term keeps the model's scale
    assert fixed["bank_quality"] != pytest.approx(shared["bank_quality"])
    # a fixed bank scale of 50 is exactly the model's scale set to 50, in the bank term
    assert parts(0.0, float(np.log(50.0)))["bank_quality"] == pytest.approx(fixed["bank_quality"], rel=1e-5)


def test_frozen_stem_and_blocks_keep_their_init_and_the_rest_trains(tmp_path):
    config = PretrainConfig(steps=3, highpass_stem=4.0, freeze_stem=True, frozen_blocks=1, **MICRO)
    before = new_model(config).state_dict()
    pretrain(config, tmp_path, progress=False, export=False)
    after = torch.load(tmp_path / STATE_FILE, weights_only=True)["model"]
    frozen = {
        k for k in before if k == "visual.conv1.weight" or k.startswith("visual.transformer.resblocks.0.")
    }
    assert len(frozen) > 1
    for name in before:
        # frozen weights are not even decayed; every trainable one moved
        assert torch.equal(after[name], before[name]) == (name in frozen or "attn_mask" in name), name
    with pytest.raises(ConfigError, match="frozen_blocks"):
        PretrainConfig(**{**MICRO, "frozen_blocks": 99})


# --- the run --------------------------------------------------------------------------------------------------
def test_loss_falls_on_a_tiny_corpus(tmp_path):
    config = PretrainConfig(steps=30, lr=3e-3, corpus_contents=2, **MICRO)
    history = pretrain(config, tmp_path, progress=False, export=False).history
    first = np.mean([h["contrastive"] + h["bank_quality"] for h in history[:3]])
    last = np.mean([h["contrastive"] + h["bank_quality"] for h in history[-3:]])
    assert last < 0.75 * first  # measured 4.03 -> 2.45
    assert history[-1]["retrieval_acc"] > history[0]["retrieval_acc"]


def test_resume_reaches_exactly_the_uninterrupted_weights(tmp_path):
    config = PretrainConfig(steps=6, **MICRO)
    straight = pretrain(config, tmp_path / "a", progress=False)
    pretrain(config, tmp_path / "b", stop_after=3, progress=False)
    resumed = pretrain(config, tmp_path / "b", progress=False)
    assert resumed.steps_done == 6
    timeless = [
        [{k: v for k, v in h.items() if k != "seconds"} for h in r.history] for r in (straight, resumed)
    ]
    assert timeless[0] == timeless[1]
    a = torch.load(tmp_path / "a" / "state.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "state.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert file_sha256(straight.weights) == file_sha256(resumed.weights)


def test_cpu_time_is_recorded_across_a_resume_and_left_unknown_where_a_state_never_kept_it(tmp_path):
    config = PretrainConfig(steps=4, **MICRO)
    pretrain(config, tmp_path / "a", stop_after=2, progress=False)
    paused = torch.load(tmp_path / "a" / STATE_FILE, weights_only=True)
    assert paused["cpu_seconds"] > 0
    pretrain(config, tmp_path / "a", progress=False)
    assert torch.load(tmp_path / "a" / STATE_FILE, weights_only=True)["cpu_seconds"] > paused["cpu_seconds"]
    assert json.loads((tmp_path / "a" / PROVENANCE_FILE).read_text())["cpu_minutes"] >= 0
    # a state written before CPU time was kept: the run resumes, and its provenance says "not measured"
    pretrain(config, tmp_path / "b", stop_after=2, progress=False)
    old = torch.load(tmp_path / "b" / STATE_FILE, weights_only=True)
    del old["cpu_seconds"]
    torch.save(old, tmp_path / "b" / STATE_FILE)
    pretrain(config, tmp_path / "b", progress=False)
    assert json.loads((tmp_path / "b" / PROVENANCE_FILE).read_text())["cpu_minutes"] is None


def test_a_finished_run_is_exported_once_so_shipping_it_later_keeps_its_provenance(tmp_path):
    config = PretrainConfig(steps=2, **MICRO)
    first = pretrain(config, tmp_path, progress=False)
    record = json.loads((tmp_path / PROVENANCE_FILE).read_text())
    record["machine"] = "the machine that trained it"
    (tmp_path / PROVENANCE_FILE).write_text(json.dumps(record))
    again = pretrain(config, tmp_path, progress=False)  # what `mmpiqa pretrain ... --ship` does on a done run
    assert again.weights == first.weights and again.steps_done == 2
    assert json.loads((tmp_path / PROVENANCE_FILE).read_text())["machine"] == "the machine that trained it"


def test_a_diverging_run_stops_before_the_bad_step_and_exports_nothing(tmp_path, monkeypatch):
    import mmpiqa.train.pretrain as module

    real = module.train_step

    def nan_at_step_5(model, tokenizer, config, step, *args):
        parts = real(model, tokenizer, config, step, *args)
        if step == 4:
            parts["loss"] = parts["loss"] * math.nan
        return parts

    monkeypatch.setattr(module, "train_step", nan_at_step_5)
    config = PretrainConfig(steps=6, **{**MICRO, "checkpoint_every": 2})
    with pytest.raises(
        TrainingDiverged, match="step 5 is not finite.*lower lr.*new --out .this one keeps step 4"
    ):
        pretrain(config, tmp_path, progress=False)
    state = torch.load(tmp_path / STATE_FILE, weights_only=True)
    assert state["step"] == 4 and all(v.isfinite().all() for v in state["model"].values())
    assert not (tmp_path / WEIGHTS_FILE).exists() and not (tmp_path / PROVENANCE_FILE).exists()


def test_a_diverging_first_step_leaves_the_folder_free_for_another_recipe(tmp_path, monkeypatch):
    """recipe.json is written with the first checkpoint, so a run that diverges before it pins nothing."""
    import mmpiqa.train.pretrain as module

    real = module.train_step

    def nan_loss(*args):
        parts = real(*args)
        parts["loss"] = parts["loss"] * math.nan
        return parts

    monkeypatch.setattr(module, "train_step", nan_loss)
    with pytest.raises(TrainingDiverged, match=r"step 1 is not finite.*run again \(nothing was saved\)"):
        pretrain(PretrainConfig(steps=2, lr=1.0, **MICRO), tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(module, "train_step", real)
    assert pretrain(PretrainConfig(steps=1, **MICRO), tmp_path, progress=False).steps_done == 1


@pytest.mark.parametrize("device", ["cdua", "mps", "meta", "cuda:7"])
def test_a_device_this_machine_cannot_train_on_is_refused_before_anything_is_written(tmp_path, device):
    with pytest.raises(ConfigError, match=f"device='{device}'"):
        pretrain(PretrainConfig(steps=2, **MICRO), tmp_path / "run", device=device, progress=False)
    assert not (tmp_path / "run").exists()


def test_damaged_run_folders_are_named_with_the_way_out(tmp_path):
    config = PretrainConfig(steps=2, **MICRO)
    run = tmp_path / "run"
    pretrain(config, run, stop_after=1, progress=False)
    good = {name: (run / name).read_bytes() for name in ("recipe.json", "history.json", STATE_FILE)}

    def damaged(name, content):
        """The run folder as saved, with `name` removed (None), made a folder, or overwritten."""
        for other, data in good.items():
            if (run / other).is_dir():
                (run / other).rmdir()
            (run / other).write_bytes(data)
        (run / name).unlink()
        if content == "folder":
            (run / name).mkdir()
        elif content is not None:
            (run / name).write_bytes(content)
        return pytest.raises(InputError)

    with damaged("history.json", None) as error:
        pretrain(config, run, progress=False)
    assert "history.json is missing" in str(error.value)
    with damaged("history.json", b"[1, 2, 3]") as error:
        pretrain(config, run, progress=False)
    assert "not the loss history of" in str(error.value) and f"delete {run} to start over" in str(error.value)
    for content in (b"not a checkpoint", "folder"):
        with damaged(STATE_FILE, content) as error:
            pretrain(config, run, progress=False)
        assert "state.pt: damaged, or not a checkpoint of this recipe" in str(error.value)
        assert "Weights only load failed" not in str(error.value)  # one line, not torch's page of advice
    # a checkpoint without the recipe it belongs to is never resumed under another recipe
    with damaged("recipe.json", None) as error:
        pretrain(config.replace(seed=5), run, progress=False)
    assert "recipe.json is missing" in str(error.value)
    damaged("history.json", good["history.json"])  # every file as saved
    assert pretrain(config, run, progress=False).steps_done == 2  # the intact folder resumes


def test_an_output_folder_that_cannot_be_made_and_a_seed_out_of_range_are_one_line(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        with pytest.raises(WriteError, match="cannot write"):
            pretrain(PretrainConfig(steps=1, **MICRO), out, progress=False)
    with pytest.raises(ConfigError, match="seed=100000000000000: a whole number from 0 to 2"):
        PretrainConfig(**{**MICRO, "seed": 10**14})


def test_a_finished_run_whose_state_was_deleted_is_not_trained_again(tmp_path):
    config = PretrainConfig(steps=2, **MICRO)
    first = pretrain(config, tmp_path, progress=False)
    digest = file_sha256(first.weights)
    (tmp_path / STATE_FILE).unlink()  # 100 MB a run: not needed once it is exported
    again = pretrain(config, tmp_path, progress=False)
    assert again.steps_done == 2 and again.weights == first.weights and file_sha256(again.weights) == digest
    assert again.history == first.history and not (tmp_path / STATE_FILE).exists()


def test_exported_weights_follow_the_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        weights = pretrain(PretrainConfig(steps=1, **MICRO), tmp_path, progress=False).weights
    finally:
        os.umask(old)
    assert weights.stat().st_mode & 0o777 == 0o644


def test_local_weights_that_are_not_clip_weights_are_named(tmp_path):
    from mmpiqa.model.backbone import WeightsUnavailable

    pretrain(PretrainConfig(steps=1, **MICRO), tmp_path / "run", progress=False)
    for name, data in [("a.safetensors", b"garbage"), ("a.pt", b"garbage"), ("a.bin", b"")]:
        (tmp_path / name).write_bytes(data)
    cases = [tmp_path / "a.safetensors", tmp_path / "a.pt", tmp_path / "a.bin", tmp_path / "run" / STATE_FILE]
    for path in cases:
        with pytest.raises(WeightsUnavailable, match="not weights of a 'mmpiqa-micro' CLIP|not weights of a"):
            load_backbone("micro", str(path))
    with pytest.raises(WeightsUnavailable, match="run: its weights.safetensors, not state.pt"):
        load_backbone("tiny", str(tmp_path / "run" / WEIGHTS_FILE))  # micro weights in the tiny config


@pytest.fixture
def micro_tag(monkeypatch):
    """An offline tag for the micro config, so shipping can be tested on runs of seconds."""
    monkeypatch.setattr(shipping, "OFFLINE_TAGS", {("micro", "test"): "micro-test"})
    return "micro-test"


def test_ship_refuses_weights_that_do_not_match_their_provenance(tmp_path, micro_tag):
    pretrain(PretrainConfig(steps=1, **MICRO), tmp_path / "run", progress=False)
    weights = tmp_path / "run" / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-1] + b"x")
    with pytest.raises(CheckpointError, match="checksum is not the one"):
        ship(tmp_path / "run", micro_tag, weights_dir=tmp_path / "package")
    assert not list((tmp_path / "package").glob("*"))


def test_ship_checks_the_target_and_the_history_before_writing_anything(tmp_path, micro_tag):
    run, package = tmp_path / "run", tmp_path / "package"
    pretrain(PretrainConfig(steps=2, **MICRO), run, progress=False)
    with pytest.raises(ConfigError, match="--ship 'micro-tset': no offline tag loads that file"):
        ship(run, "micro-tset", weights_dir=package)
    history = json.loads((run / "history.json").read_text())
    (run / "history.json").write_text(
        json.dumps([{k: v for k, v in h.items() if k != "quality_corr"} for h in history])
    )
    with pytest.raises(CheckpointError, match="history.json: not the loss history of a finished run"):
        ship(run, micro_tag, weights_dir=package)
    (run / "history.json").unlink()
    with pytest.raises(InputError, match="history.json is missing"):
        ship(run, micro_tag, weights_dir=package)
    assert not package.exists()  # nothing half-shipped
    (run / "history.json").write_text(json.dumps(history))
    shipped = ship(run, micro_tag, weights_dir=package)
    assert file_sha256(shipped) == file_sha256(run / WEIGHTS_FILE)
    assert (package / "micro-test-history.csv").read_text().count("\n") == 3  # header + 2 steps


def test_a_recipe_file_and_set_values_are_checked_together(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("backbone: micro\nbatch_size: 6\nsteps: 1\n")  # 4 versions do not divide 6...
    args = ["pretrain", "--config", str(recipe), "--out", str(tmp_path / "run"), "--quiet"]
    assert main([*args, "--set", "versions=3"]) == 0  # ...3 do
    assert json.loads((tmp_path / "run" / "recipe.json").read_text())["batch_size"] == 6
    assert main([*args, "--set", "steps"]) == 2
    assert "error: --set 'steps': expected field=value" in capsys.readouterr().err
    recipe.write_text("- steps: 1\n")
    assert main(args) == 2
    assert "recipe.yaml: a recipe file is a mapping of recipe fields" in capsys.readouterr().err


def test_a_run_is_shipped_only_as_a_tag_of_its_own_backbone(tmp_path, capsys):
    pretrain(PretrainConfig(steps=1, **MICRO), tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="the tag loads a 'tiny' CLIP and this recipe trains 'micro'"):
        ship(tmp_path / "run", "tiny-synthetic", weights_dir=tmp_path / "package")
    args = [
        "pretrain",
        "--out",
        str(tmp_path / "cli"),
        "--quiet",
        "--set",
        "backbone=micro",
        "--set",
        "steps=1",
    ]
    assert main([*args, "--ship", "tiny-synthtic"]) == 2  # refused before training
    assert "no offline tag loads that file; ship as one of ['tiny-synthetic']" in capsys.readouterr().err
    assert not (tmp_path / "cli").exists()


def test_the_provenance_command_names_every_recipe_field_and_the_machine(tmp_path):
    config = PretrainConfig(steps=1, **MICRO)
    pretrain(config, tmp_path, progress=False)
    provenance = json.loads((tmp_path / PROVENANCE_FILE).read_text())
    assert all(f"--set {field}=" in provenance["command"] for field in config.to_dict())
    assert "--device" not in provenance["command"] and provenance["machine"].startswith("cpu, ")


def test_another_recipe_in_the_same_folder_is_refused(tmp_path):
    pretrain(PretrainConfig(steps=1, **MICRO), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="another recipe"):
        pretrain(PretrainConfig(steps=2, **MICRO), tmp_path, progress=False)


def test_exported_weights_load_through_open_clip_as_a_local_file(tmp_path):
    result = pretrain(PretrainConfig(steps=2, **MICRO), tmp_path, progress=False)
    provenance = json.loads((tmp_path / PROVENANCE_FILE).read_text())
    assert provenance["sha256"] == file_sha256(tmp_path / WEIGHTS_FILE)
    assert provenance["corpus"]["held_out_families"] == list(HELD_OUT_FAMILIES)
    assert "--set steps=2" in provenance["command"]
    model, _ = load_backbone("micro", str(result.weights))
    state = torch.load(tmp_path / "state.pt", weights_only=True)["model"]
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], state[k].half().float()) for k in state)  # fp16 on disk
    assert not any(p.requires_grad for p in model.parameters())


def test_cli_pretrain_runs_and_resumes(tmp_path, capsys):
    args = ["pretrain", "--out", str(tmp_path), "--quiet", "--set", "backbone=micro", "--set", "batch_size=8"]
    args += ["--set", "steps=2"]
    assert main([*args, "--stop-after", "1"]) == 0
    assert "1/2 steps" in capsys.readouterr().out
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2/2 steps" in out and "sha256" in out
    assert (
        main([*args, "--set", "steps=3", "--stop-after", "1", "--ship", "x"]) == 2
    )  # refused before training
    assert "--ship with --stop-after 1" in capsys.readouterr().err
    assert json.loads((tmp_path / "history.json").read_text())[-1]["step"] == 2


# --- the shipped teaching CLIP --------------------------------------------------------------------------------
def test_shipped_weights_match_their_checksum_and_provenance():
    for (name, tag), stem in OFFLINE_TAGS.items():
        provenance = offline_provenance(name, tag)
        assert file_sha256(WEIGHTS_DIR / f"{stem}.safetensors") == provenance["sha256"]
        assert provenance["recipe"]["backbone"] == name
        assert PretrainConfig.from_dict(provenance["recipe"])  # the recipe is one `mmpiqa pretrain` can run


def test_the_committed_recipe_file_is_the_shipped_teaching_clips_recipe():
    # the README remakes the shipped file with `mmpiqa pretrain --config params/pretrain_teaching_clip.yaml`
    committed = PretrainConfig.load(Path(__file__).parents[1] / "params" / "pretrain_teaching_clip.yaml")
    assert committed == PretrainConfig.from_dict(offline_provenance("tiny", "synthetic")["recipe"])


def test_teaching_clip_loads_by_tag_and_says_what_it_is():
    model, identity = load_backbone("tiny", "synthetic")
    assert identity.pretrained == "synthetic" and identity.seed is None
    assert "not OpenAI CLIP" in identity.describe() and "synthetic captioned corpus" in identity.describe()
    random_model, _ = load_backbone("tiny", None)
    assert not torch.equal(model.visual.conv1.weight, random_model.visual.conv1.weight)
    assert isinstance(model, open_clip.CLIP)


def test_damaged_shipped_weights_are_refused(tmp_path, monkeypatch):
    import mmpiqa.model.backbone as backbone

    stem = OFFLINE_TAGS[("tiny", "synthetic")]
    (tmp_path / f"{stem}.json").write_text((WEIGHTS_DIR / f"{stem}.json").read_text())
    damaged = bytearray((WEIGHTS_DIR / f"{stem}.safetensors").read_bytes())
    damaged[-1] ^= 0xFF
    (tmp_path / f"{stem}.safetensors").write_bytes(bytes(damaged))
    monkeypatch.setattr(backbone, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(backbone.WeightsUnavailable, match="checksum differs"):
        load_backbone("tiny", "synthetic")


def test_prompt_similarity_is_the_cosine_of_the_filled_templates():
    from mmpiqa.workbook.pretrain_views import prompt_similarity

    words = ["bad", "fair", "perfect"]
    sim = prompt_similarity("micro", None, "a photo of {} quality.", words)
    assert list(sim.index) == words and list(sim.columns) == words
    np.testing.assert_allclose(np.diag(sim), 1.0, atol=1e-6)
    np.testing.assert_allclose(sim.to_numpy(), sim.to_numpy().T, atol=1e-6)
    clip, _ = load_backbone("micro", None)
    tokens = tokenizer_for("micro")(["a photo of bad quality.", "a photo of perfect quality."])
    with torch.no_grad():
        a, b = F.normalize(clip.encode_text(tokens), dim=-1)
    assert sim.loc["bad", "perfect"] == pytest.approx(float(a @ b), abs=1e-6)

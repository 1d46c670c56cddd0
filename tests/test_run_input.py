"""The CLI and the library as a user meets them with bad input (issue 13): one `error:` line and exit 2, nothing
written before the input is known good, corrupt images found before the first step, checkpoints checked."""

from __future__ import annotations

import errno
import json
import os
import warnings

import pytest
import torch
from fixtures_official import truncate, write_image

from mmpiqa.cli import main
from mmpiqa.config import ConfigError, DataConfig, ModelConfig, RunConfig
from mmpiqa.files import WriteError, atomic_write_text
from mmpiqa.model.checkpoint import CheckpointError, CheckpointMismatch, read_prompts, save_prompts
from mmpiqa.model.prompted_clip import build_model
from mmpiqa.runs.experiment import load_table

TRAIN = ["--set", "model.backbone=micro", "--quiet", "--set", "train.epochs=1", "--set", "train.batch_size=8"]
TRAIN += ["--set", "data.n_splits=1", "--set", "data.train_crops=1", "--set", "data.test_crop=center"]


def metacsv(tmp_path, n: int = 40):
    """A meta CSV of `n` tiny JPEGs with spread scores."""
    root = tmp_path / "data"
    lines = ["name,mos"]
    for k in range(n):
        write_image(root / f"img{k:02d}.jpg", k, size=(40, 30))
        lines.append(f"img{k:02d}.jpg,{1 + 4 * k / (n - 1):.3f}")
    (root / "meta.csv").write_text("\n".join(lines) + "\n")
    return root / "meta.csv"


def train(out, csv, *extra: str) -> int:
    return main(
        [
            "train",
            "--out",
            str(out),
            *TRAIN,
            "--set",
            "data.dataset=metacsv",
            "--set",
            f"data.root={csv}",
            *extra,
        ]
    )


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------------------------------------- 2: corrupt images


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    base = tmp_path_factory.mktemp("broken")
    csv = metacsv(base)
    truncate(csv.parent / "img07.jpg", keep=0.4)
    return csv


@pytest.mark.filterwarnings("ignore")
def test_a_corrupt_image_stops_the_run_before_anything_is_written(tmp_path, broken, capsys):
    assert train(tmp_path / "runs", broken) == 2
    assert "img07.jpg" in one_error_line(capsys)
    assert not (tmp_path / "runs").exists()


@pytest.mark.filterwarnings("ignore")
def test_skip_unreadable_skips_it_everywhere_and_records_it(tmp_path, broken, capsys):
    assert train(tmp_path, broken, "--set", "data.skip_unreadable=true") == 0
    assert "skipped 1 unreadable image(s)" in capsys.readouterr().out
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    (skipped,) = json.loads((folder / "skipped.json").read_text())
    assert skipped["name"] == "img07.jpg"
    assert json.loads((folder / "metrics.json").read_text())["skipped_images"] == 1
    assert "skipped 1 unreadable image(s)" in (folder / "log.txt").read_text()

    argv = ["eval", "--run", str(folder), "--dataset", "metacsv", "--root", str(broken), "--quiet"]
    assert main(argv) == 2
    assert "img07.jpg" in one_error_line(capsys)
    assert main([*argv, "--skip-unreadable"]) == 0
    assert "skipped 1 unreadable image(s)" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------- 3: checkpoints


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    base = tmp_path_factory.mktemp("finished")
    with pytest.warns(UserWarning):  # no mos_range: the observed range is used, and said
        assert train(base / "runs", metacsv(base)) == 0
    (folder,) = list((base / "runs").iterdir())
    return folder


def test_a_repeat_run_is_identical_after_the_checks_built_their_model(tmp_path, finished):
    """check_run builds a model before the run: the run's own random stream must not see it."""
    from safetensors.torch import load_file

    with pytest.warns(UserWarning):
        assert train(tmp_path, finished.parent.parent / "data" / "meta.csv") == 0
    again = tmp_path / finished.name
    for name in ("split-00/predictions.csv", "metrics.json"):
        assert (again / name).read_text() == (finished / name).read_text(), name
    first, second = (load_file(f / "split-00" / "prompts.safetensors") for f in (finished, again))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_non_finite_prompts_are_refused_with_the_file_named(tmp_path):
    model = build_model(ModelConfig(backbone="micro"))
    with torch.no_grad():
        next(iter(model.learned_state_dict().values())).view(-1)[0] = float("nan")
    path = save_prompts(model, tmp_path / "nan.safetensors")
    with pytest.raises(CheckpointError, match=r"nan\.safetensors: tensor\(s\) .* NaN or infinite"):
        read_prompts(path)


def test_prompts_of_another_backbone_than_the_run_config_are_refused(tmp_path, finished, capsys):
    image = write_image(tmp_path / "x.png", 1, size=(50, 50))
    assert main(["predict", "--run", str(finished), str(image)]) == 0
    capsys.readouterr()
    config = json.loads((finished / "config.json").read_text())
    (finished / "config.json").write_text(
        json.dumps({**config, "model": {**config["model"], "backbone": "tiny"}})
    )
    try:
        assert main(["predict", "--run", str(finished), str(image)]) == 2
        assert "different model config" in one_error_line(capsys)
        (finished / "config.json").write_text(
            json.dumps({**config, "model": {**config["model"], "backbone_seed": 7}})
        )
        with pytest.raises(CheckpointMismatch, match="backbone_seed.: \\(0, 7\\)"):
            main(["--debug", "predict", "--run", str(finished), str(image)])
    finally:
        (finished / "config.json").write_text(json.dumps(config))


def test_damaged_json_names_the_file(tmp_path, finished, capsys):
    bad = tmp_path / "config.json"
    bad.write_text('{"model": {"backbone": "micro",}')
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "runs")]) == 2
    assert f"{bad}: not valid JSON (line 1" in one_error_line(capsys)

    from safetensors.torch import save_file

    path = tmp_path / "meta.safetensors"
    save_file(
        {"x": torch.zeros(1)}, str(path), metadata={"format": "mmpiqa-prompts/1", "model_config": "{oops"}
    )
    with pytest.raises(CheckpointError, match=r"meta\.safetensors: the checkpoint's metadata is damaged"):
        read_prompts(path)


@pytest.mark.parametrize(
    ("rows", "messages"),
    [
        (
            ["img00.jpg,1,training", "img01.jpg,2,", "img02.jpg,3,test", "img03.jpg,4,"],
            ["filled on 2 of 4 rows", "data.protocol"],
        ),
        (["img00.jpg,1,", "img01.jpg,2,"], ["need at least 3 groups", "data.protocol"]),
        (
            [f"img{k:02d}.jpg,{k}," for k in range(12)],
            ["too few images to score (val 1, test 2;", "data.fractions"],
        ),
    ],
    ids=["half-filled-split-column", "two-images", "one-val-image"],
)
def test_data_that_cannot_be_split_is_one_line_and_leaves_nothing_behind(tmp_path, capsys, rows, messages):
    csv = metacsv(tmp_path, n=12)
    csv.write_text("name,mos,split\n" + "\n".join(rows) + "\n")
    with pytest.warns(UserWarning):  # no mos_range: the observed range is used, and said
        assert train(tmp_path / "runs", csv) == 2
    err = one_error_line(capsys)
    assert all(m in err for m in messages), err
    assert not (tmp_path / "runs").exists()


def test_a_random_protocol_on_shared_references_is_refused_with_the_fix(tmp_path, capsys):
    csv = metacsv(tmp_path, n=30)
    rows = csv.read_text().splitlines()
    csv.write_text(
        "\n".join([rows[0] + ",ref"] + [f"{r},ref{k % 10}" for k, r in enumerate(rows[1:])]) + "\n"
    )
    with pytest.warns(UserWarning):
        assert train(tmp_path / "runs", csv, "--set", "data.protocol=random") == 2
    err = one_error_line(capsys)
    assert err.startswith("error: data.protocol=random: reference group") and "use data.protocol=ref" in err
    assert "splits.json" not in err and not (tmp_path / "runs").exists()


def test_a_saved_splits_file_that_no_longer_fits_is_refused_before_anything_is_written(tmp_path, capsys):
    runs, csv = tmp_path / "runs", metacsv(tmp_path, n=30)
    with pytest.warns(UserWarning):
        assert train(runs, csv) == 0
    (folder,) = runs.iterdir()
    (folder / "metrics.json").unlink()  # incomplete: the run resumes and reads its splits back
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    splits = folder / "splits.json"
    good = splits.read_text()
    splits.write_text("{")
    with pytest.warns(UserWarning):
        assert train(runs, csv) == 2
    assert f"{splits}: not a splits file" in one_error_line(capsys)
    splits.write_text(good)
    csv.write_text(
        "\n".join(csv.read_text().splitlines()[:-1]) + "\n"
    )  # the data changed since the run began
    with pytest.warns(UserWarning):
        assert train(runs, csv) == 2
    err = one_error_line(capsys)
    assert "do not fit the dataset as it reads now" in err and "not in the table" in err
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == {
        **before,
        splits: splits.stat().st_mtime_ns,
    }


# ---------------------------------------------------------------------------------------------- 7, 8, 9: the CLI


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("train.lr=.nan", "lr=nan: a positive number"),
        ("train.lr=-0.1", "lr=-0.1: a positive number"),
        ("train.weight_decay=-1", "weight_decay=-1.0: a number >= 0"),
        ("train.num_workers=-1", "num_workers=-1"),
        ("train.grad_clip=-1", "grad_clip=-1.0"),
        ("model.visual_depth=99", "model.visual_depth=99 exceeds the image tower's"),
        ("model.backbone=ViT-Q-99", "Unknown backbone 'ViT-Q-99'"),
        ("data.crop_size=0", "crop_size=0"),
        ("data.crop_size=100000", "data.crop_size=100000: the backbone micro takes"),
        ("data.n_splits=100000", "n_splits=100000: between 1 and 1000"),
        ("train.lr=fast", "train.lr: expected a number, got 'fast'"),
        ("train.device=cdua", "device='cdua': 'auto', 'cpu', 'cuda' or 'cuda:N'"),
        ("data.reader_options=[a]", "reader_options=['a']: a mapping"),
        ("data.split_seed=-1", "split_seed=-1: a whole number >= 0"),
        ("data.size=huge", "size='huge': the embedded benchmark comes in sizes small, default, full"),
        (
            "data.train_fraction=0.005",
            "training images; training compares images in pairs and needs at least 2",
        ),
        ("data.reader_options={size: full}", "data.reader_options: size cannot be a reader option here"),
        ("data.reader_options={mos_col: dmos}", "embedded: no reader option 'mos_col' (data.reader_options"),
    ],
)
def test_bad_settings_are_one_line_and_leave_nothing_behind(tmp_path, capsys, setting, message):
    out = tmp_path / "runs"
    assert main(["train", "--out", str(out), *TRAIN, "--set", "data.size=small", "--set", setting]) == 2
    assert message in one_error_line(capsys)
    assert not out.exists()


def test_reader_options_of_a_run_config_reach_the_reader(tmp_path, capsys):
    """A meta CSV whose score is a DMOS on a published scale: the run config says so, and the run obeys."""
    csv = metacsv(tmp_path)  # scores 1 (img00) to 5 (img39)
    dmos = {"mos_range": [1, 5], "higher_is_better": False}
    table = load_table(DataConfig(dataset="metacsv", root=str(csv), reader_options=dmos), progress=False)
    assert table.set_index("name")["mos"].idxmax() == "img00.jpg"  # the lowest DMOS is the best image
    assert table.attrs["mos_norm_range"] == (1.0, 5.0) and table.attrs["higher_is_better"] is False
    out = tmp_path / "runs"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a range given: no 'observed range' warning
        assert (
            train(out, csv, "--set", "data.reader_options={mos_range: [1, 5], higher_is_better: false}") == 0
        )
    (folder,) = out.iterdir()
    assert json.loads((folder / "config.json").read_text())["data"]["reader_options"] == dmos
    for bad, message in [
        ("{higher_is_better: maybe}", "metacsv: higher_is_better='maybe'; give true, false or null"),
        ("{mos_range: [5, 1]}", "metacsv: mos_range [5, 1] is not a scale"),
        ("{mos_column: dmos}", "metacsv: no reader option 'mos_column'"),
    ]:
        assert train(out, csv, "--set", f"data.reader_options={bad}") == 2
        assert message in one_error_line(capsys)
    assert list(out.iterdir()) == [folder]  # nothing written for a bad option


@pytest.mark.parametrize(
    "args",
    [
        *(["train", "--splits", v] for v in ("0", "-1", "two")),
        *(["demo", flag, v] for flag in ("--splits", "--epochs") for v in ("0", "1.5")),
    ],
)
def test_splits_and_epochs_must_be_a_positive_count(capsys, args):
    # refused while the arguments are read, before the demo decodes its 2,250 images
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert "expected a whole number >= 1" in capsys.readouterr().err


def test_more_splits_than_the_config_has_is_refused(tmp_path):
    from mmpiqa.runs.experiment import run

    config = RunConfig(model=ModelConfig(backbone="micro")).with_overrides(["data.n_splits=2"])
    with pytest.raises(ConfigError, match="--splits 3: between 1 and data.n_splits=2"):
        run(config, tmp_path, splits=3)
    assert not any(tmp_path.iterdir())


def test_debug_and_the_environment_variable_show_the_traceback(monkeypatch):
    with pytest.raises(ConfigError):
        main(["--debug", "train", "--set", "train.lr=-1"])
    monkeypatch.setenv("MMPIQA_DEBUG", "1")
    with pytest.raises(ConfigError):
        main(["train", "--set", "train.lr=-1"])


@pytest.mark.parametrize("spelling", ["1e-3", "1E-3", "1.0e-3", "0.001", "1_0e-4"])
def test_every_float_spelling_is_accepted(tmp_path, spelling):
    assert RunConfig().with_overrides([f"train.lr={spelling}"]).train.lr == pytest.approx(1e-3)
    path = tmp_path / "run.yaml"
    path.write_text(f"train:\n  lr: {spelling}\n  weight_decay: 1e-5\n")
    config = RunConfig.load(path)
    assert config.train.lr == pytest.approx(1e-3) and config.train.weight_decay == 1e-5


# ---------------------------------------------------------------------------------------------- 10, 11: writing


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_run_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = atomic_write_text(tmp_path / "f.json", "{}")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_full_disk_names_the_path_and_leaves_no_temp_file(tmp_path):
    from mmpiqa.files import atomic_write

    def full(tmp):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    target = tmp_path / "run" / "metrics.json"
    with pytest.raises(WriteError, match=rf"cannot write {target}: No space left on device; the disk is"):
        atomic_write(target, full)
    assert list(target.parent.iterdir()) == []


def test_an_output_folder_that_cannot_be_made_is_one_error_line(tmp_path, capsys):
    (tmp_path / "file").write_text("a file where a folder should go")
    assert main(["train", "--out", str(tmp_path / "file" / "runs"), *TRAIN, "--set", "data.size=small"]) == 2
    line = one_error_line(capsys)
    assert f"cannot write {tmp_path / 'file' / 'runs'}" in line and "a part of that path is a file" in line


# ---------------------------------------------------------------------------------------------- 12: the model


@pytest.fixture(scope="module")
def model():
    return build_model(ModelConfig(backbone="micro", visual_depth=1)).eval()


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (
            lambda s: torch.rand(2, 3, 224, 224),
            ValueError,
            r"\(B, 3, {s}, {s}\) .* got shape \(2, 3, 224, 224\)",
        ),
        (lambda s: torch.rand(2, 1, s, s), ValueError, "got shape"),
        (lambda s: torch.rand(3, s, s), ValueError, "got shape"),
        (
            lambda s: torch.randint(0, 255, (2, 3, s, s), dtype=torch.uint8),
            TypeError,
            "divide 8-bit images by 255",
        ),
        (lambda s: torch.rand(2, 3, s, s) * 255, ValueError, r"values in \[0, 1\]"),
        (lambda s: torch.full((2, 3, s, s), float("nan")), ValueError, r"values in \[0, 1\]"),
    ],
    ids=["size", "channels", "no-batch", "uint8", "0-255", "nan"],
)
def test_forward_says_what_it_expects_and_how_to_get_there(model, make, error, message):
    s = model.image_size
    with pytest.raises(error, match=message.format(s=s)) as info, torch.no_grad():
        model(make(s))
    assert "mmpiqa.data.crops.crop" in str(info.value)


def test_forward_accepts_what_the_crops_make(model):
    from mmpiqa.data.crops import CropPolicy, crop

    images = crop(torch.rand(3, 50, 70), CropPolicy("grid", model.image_size, 3))
    with torch.no_grad():
        assert model(images).score.shape == (3,)

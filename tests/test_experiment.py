"""Runs are data: folders keyed by config hash, skipped when complete, leakage checked, zero-shot through the same path."""

import json

import pytest

import mmpiqa.runs.experiment as experiment
from mmpiqa.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from mmpiqa.errors import InputError
from mmpiqa.runs.experiment import load_table, results_table, run, run_folder

DATA = DataConfig(dataset="embedded", size="small", n_splits=3, train_crops=2, test_crop="center")
TRAIN = TrainConfig(epochs=2, batch_size=16, lr=5e-3)


@pytest.fixture(scope="module")
def table():
    return load_table(DATA, progress=False)


def _config(**model):
    return RunConfig(name="t", model=ModelConfig(backbone="micro", **model), data=DATA, train=TRAIN)


def test_run_writes_a_complete_folder_and_is_skipped_the_second_time(tmp_path, table):
    config = _config(visual_depth=1)
    result = run(config, tmp_path, splits=2, table=table, progress=False, echo=False)
    folder = run_folder(config, tmp_path)
    assert result.folder == folder and folder.name == f"t-{config.key()}"
    assert RunConfig.load(folder / "config.json") == config
    for name in (
        "splits.json",
        "metrics.json",
        "log.txt",
        "split-00/prompts.safetensors",
        "split-00/last.safetensors",
        "split-00/predictions.csv",
        "split-01/metrics.json",
    ):
        assert (folder / name).is_file(), name
    stored = json.loads((folder / "metrics.json").read_text())
    assert len(stored["per_split"]) == 2
    summary = stored["summary"]["test"]["srcc"]
    assert {"median", "mean", "std", "ci_low", "ci_high", "n"} <= set(summary)
    assert "micro" in stored["backbone"] and "random weights" in stored["backbone"]
    again = run(config, tmp_path, splits=2, table=table, progress=False, echo=False)
    assert again.skipped and again.metrics == stored


def test_the_same_run_under_another_name_is_a_copy_not_a_second_run(tmp_path, table, monkeypatch):
    # the name is a label, the key the config: chapter 05's dual-branch xattn arm is chapter 04's all-blocks arm
    first = run(_config(visual_depth=1), tmp_path, splits=1, table=table, progress=False, echo=False)
    monkeypatch.setattr(experiment, "_run_split", lambda *args: pytest.fail("trained again"))
    renamed = _config(visual_depth=1).replace(name="arm")
    second = run(renamed, tmp_path, splits=1, table=table, progress=False, echo=False)
    assert second.skipped and second.folder == run_folder(renamed, tmp_path) != first.folder
    assert RunConfig.load(second.folder / "config.json") == renamed
    same = {**first.metrics, "name": "arm"}
    assert json.dumps(second.metrics, sort_keys=True) == json.dumps(same, sort_keys=True)  # (NaN-safe)
    for name in ("splits.json", "split-00/predictions.csv", "split-00/prompts.safetensors"):
        assert (second.folder / name).read_bytes() == (first.folder / name).read_bytes(), name
    assert f"copied from {first.folder.name}" in (second.folder / "log.txt").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.folder.name, second.folder.name])


def test_finished_splits_are_kept_when_a_run_resumes(tmp_path, table, monkeypatch):
    config = _config(visual_depth=1)
    calls = []
    original = experiment._run_split

    def failing_second(config, table, split, index, *args):
        calls.append(index)
        if index == 1 and len(calls) == 2:
            raise RuntimeError("pre-empted")
        return original(config, table, split, index, *args)

    monkeypatch.setattr(experiment, "_run_split", failing_second)
    with pytest.raises(RuntimeError):
        run(config, tmp_path, splits=2, table=table, progress=False, echo=False)
    monkeypatch.setattr(experiment, "_run_split", original)
    first = (run_folder(config, tmp_path) / "split-00" / "metrics.json").read_text()
    run(config, tmp_path, splits=2, table=table, progress=False, echo=False)
    assert (run_folder(config, tmp_path) / "split-00" / "metrics.json").read_text() == first


def test_leakage_check_is_called_for_every_split_before_the_folder_is_written(tmp_path, table, monkeypatch):
    seen = []
    original = experiment.check_no_leakage

    def check(t, s):
        assert not any(tmp_path.iterdir()), "checked before anything is written"
        seen.append(s.index)
        original(t, s)

    monkeypatch.setattr(experiment, "check_no_leakage", check)
    config = _config(visual_depth=1)
    run(config, tmp_path, splits=2, table=table, progress=False, echo=False)
    assert seen == list(range(config.data.n_splits))  # every split of the run's file, not only those it runs


def test_zero_shot_goes_through_the_same_path(tmp_path, table):
    config = _config(head="antonym", text_depth=0, visual_depth=0)
    result = run(config, tmp_path, splits=1, table=table, progress=False, echo=False)
    folder = result.folder
    assert not (folder / "split-00" / "prompts.safetensors").exists()
    assert (folder / "split-00" / "predictions.csv").is_file()
    frame = results_table([result])
    assert list(frame.columns[:3]) == ["run", "key", "splits"]


def test_a_run_says_when_its_splits_test_the_same_images(tmp_path, table):
    # 'small' has 3 contents: 3 rotating splits test each once, and the fourth starts the rotation again
    config = _config(head="levels", text_depth=0, visual_depth=0)
    config = config.replace(data=config.data.replace(n_splits=4, split_seed=0))
    result = run(config, tmp_path, table=table, progress=False, echo=False)
    log = (result.folder / "log.txt").read_text().splitlines()
    note = [line for line in log if "test the same images" in line]
    assert len(note) == 1 and "distinct test sets in 4 splits" in note[0], note
    tests = [s["test"]["srcc"] for s in result.metrics["per_split"]]
    assert len(set(tests)) < 4  # nothing is trained: the repeated test set scores the same


def test_new_shipped_teaching_weights_give_new_run_keys(tmp_path, monkeypatch):
    import mmpiqa.config as config_module

    teaching = RunConfig(
        name="t", model=ModelConfig(backbone="tiny", pretrained="synthetic"), data=DATA, train=TRAIN
    )
    random_weights = teaching.replace(model=teaching.model.replace(pretrained=None))
    before = teaching.key(), random_weights.key()
    for (_, _), stem in config_module.OFFLINE_TAGS.items():
        record = json.loads((config_module.WEIGHTS_DIR / f"{stem}.json").read_text())
        record["sha256"] = "0" * 64  # another shipped file
        (tmp_path / f"{stem}.json").write_text(json.dumps(record))
    monkeypatch.setattr(config_module, "WEIGHTS_DIR", tmp_path)
    assert teaching.key() != before[0]  # a run on the old file is never read back as this one
    assert random_weights.key() == before[1]  # keys without shipped weights are unchanged
    (tmp_path / "tiny-synthetic.json").write_text("{")
    with pytest.raises(InputError, match="tiny-synthetic.json.*reinstall"):
        teaching.key()


def test_config_hash_ignores_name_and_device():
    a = _config()
    assert a.key() == a.replace(name="other").key()
    assert a.key() == a.replace(train=a.train.replace(device="cpu")).key()
    assert a.key() != a.replace(train=a.train.replace(epochs=3)).key()

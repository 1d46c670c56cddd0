"""One type owns the run-folder layout, and one orchestrator runs any per-split fitter."""

import json

import numpy as np
import pytest

from mmpiqa.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from mmpiqa.errors import InputError, MissingFileError
from mmpiqa.runs.experiment import FittedSplit, PromptTraining, SplitFitter, load_table, run, run_folder
from mmpiqa.runs.folder import RunFolder, SplitFolder

DATA = DataConfig(dataset="embedded", size="small", n_splits=2, train_crops=1, test_crop="center")
CONFIG = RunConfig(name="f", model=ModelConfig(backbone="micro"), data=DATA, train=TrainConfig(batch_size=16))


def test_the_layout_is_the_one_on_disk(tmp_path):
    # these names are what existing run folders hold: changing one strands every finished run
    folder = RunFolder(str(tmp_path / "t-abc"))
    assert folder.path == tmp_path / "t-abc" and RunFolder.named(tmp_path, "t", "abc") == folder
    names = {
        folder.config_file: "config.json",
        folder.splits_file: "splits.json",
        folder.skipped_file: "skipped.json",
        folder.log_file: "log.txt",
        folder.error_file: "error.txt",
        folder.metrics_file: "metrics.json",
        folder.probe_settings_file: "probe.json",
    }
    split = folder.split(3)
    assert split == SplitFolder(tmp_path / "t-abc" / "split-03")
    names |= {
        split.metrics_file: "split-03/metrics.json",
        split.predictions_file: "split-03/predictions.csv",
        split.prompts_file: "split-03/prompts.safetensors",
        split.state_file: "split-03/last.safetensors",
        split.probe_file: "split-03/probe.safetensors",
    }
    for path, name in names.items():
        assert path.relative_to(folder.path).as_posix() == name
    assert run_folder(CONFIG, tmp_path) == tmp_path / f"f-{CONFIG.key()}"


def test_a_folder_is_complete_when_its_metrics_exist(tmp_path):
    folder = RunFolder(tmp_path / "run")
    assert not folder.is_complete() and folder.split_folders() == []
    for index in (10, 2, 0):
        folder.split(index).path.mkdir(parents=True)
    assert [s.path.name for s in folder.split_folders()] == ["split-00", "split-02", "split-10"]
    folder.split(0).metrics_file.write_text('{"split": 0}')
    assert folder.split(0).is_complete() and not folder.split(2).is_complete() and not folder.is_complete()
    assert folder.split(0).read_metrics() == {"split": 0}
    folder.metrics_file.write_text("{not json")
    assert folder.is_complete()
    with pytest.raises(InputError, match=r"metrics.json: not valid JSON"):
        folder.read_metrics()
    with pytest.raises(MissingFileError, match="has no config.json"):
        folder.read_config()
    CONFIG.save(folder.config_file)
    assert folder.read_config() == CONFIG


class MosOracle(SplitFitter):
    """Scores every image by its MOS: whatever runs around the fit, test SRCC must come out as exactly 1."""

    def key(self, config):
        return "oracle"

    def begin(self, folder):
        folder.path.joinpath("oracle.txt").write_text("settings")

    def describe(self, model):
        return "the MOS itself"

    def fit(self, config, model, parts, folder, *, device, log, progress):
        predictions = {}
        for part in ("val", "test"):
            mos = parts[part].mos.numpy().astype(np.float64)
            predictions[part] = {"score": mos, "mos": mos, "index": np.arange(len(mos))}
        return FittedSplit(predictions, {"n_train": len(parts["train"])}, "oracle")


def test_any_fitter_runs_through_the_one_orchestrator(tmp_path):
    table = load_table(DATA, progress=False)
    result = run(CONFIG, tmp_path, fitter=MosOracle(), table=table, progress=False, echo=False)
    folder = RunFolder(result.folder)
    assert folder == RunFolder.named(tmp_path, "f", "oracle") and (folder.path / "oracle.txt").is_file()
    stored = folder.read_metrics()
    assert stored["key"] == "oracle" and stored["backbone"] == "the MOS itself"
    assert stored["summary"]["test"]["srcc"]["median"] == pytest.approx(1.0)
    for index in range(DATA.n_splits):
        split = json.loads(folder.split(index).metrics_file.read_text())
        assert list(split)[:4] == ["split", "seed", "n_train", "backbone"] and split["history"] == []
        assert folder.split(index).predictions_file.is_file()
    assert "(oracle)" in folder.log_file.read_text()
    again = run(CONFIG, tmp_path, fitter=MosOracle(), table=table, progress=False, echo=False)
    assert again.skipped and again.metrics == stored


def test_on_epoch_goes_to_prompt_training_only(tmp_path):
    with pytest.raises(ValueError, match="PromptTraining"):
        run(CONFIG, tmp_path, fitter=MosOracle(), on_epoch=print, progress=False, echo=False)
    assert PromptTraining(print).on_epoch is print and not list(tmp_path.iterdir())

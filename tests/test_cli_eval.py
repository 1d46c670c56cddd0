"""`mmpiqa eval --run DIR --dataset NAME`: a trained run scored on (another) dataset from the command line."""

import io
import json

import pandas as pd
import pytest
import torch

from mmpiqa.cli import main
from mmpiqa.config import RunConfig
from mmpiqa.model.prompted_clip import PromptedCLIP
from mmpiqa.runs.experiment import load_table


def test_train_then_eval_and_predict_from_the_command_line(tmp_path, capsys, monkeypatch):
    settings = [
        "data.size=small",
        "data.n_splits=1",
        "data.train_crops=1",
        "data.test_crop=center",
        "train.epochs=1",
        "train.batch_size=16",
        "model.visual_depth=1",
    ]
    argv = ["train", "--backbone", "micro", "--out", str(tmp_path), "--quiet"]
    for item in settings:
        argv += ["--set", item]
    assert main(argv) == 0
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert (folder / "split-00" / "prompts.safetensors").is_file()
    capsys.readouterr()

    code = main(
        ["eval", "--run", str(folder), "--dataset", "embedded", "--size", "small", "--json", "--quiet"]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert f"{folder} on embedded (225 images, 1 split model(s))" in text
    assert "SRCC" in text and "PLCC" in text
    result = json.loads(text[text.index("{") :])
    assert result["dataset"] == "embedded" and result["n_images"] == 225
    assert len(result["per_split"]) == 1
    srcc = result["summary"]["srcc"]["median"]
    assert -1.0 <= srcc <= 1.0

    # `mmpiqa predict`: text features without a graph, and the scores of the run's own predictions.csv
    grad_modes = []
    text_features = PromptedCLIP.text_features

    def recording(self, *args, **kwargs):
        grad_modes.append(torch.is_grad_enabled())
        return text_features(self, *args, **kwargs)

    monkeypatch.setattr(PromptedCLIP, "text_features", recording)
    saved = pd.read_csv(folder / "split-00" / "predictions.csv").head(3)
    table = load_table(RunConfig.load(folder / "config.json").data, progress=False).set_index("name")
    paths = [table.loc[name, "image"] for name in saved["name"]]
    capsys.readouterr()
    assert main(["predict", "--run", str(folder), *paths]) == 0
    rows = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert grad_modes == [False]
    assert rows["score"].to_numpy() == pytest.approx(saved["score"].to_numpy(), abs=1e-5)

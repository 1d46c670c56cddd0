"""`mmpiqa eval --run DIR --dataset NAME`: a trained run scored on (another) dataset from the command line."""

import json

from mmpiqa.cli import main


def test_train_then_eval_on_another_dataset_from_the_command_line(tmp_path, capsys):
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

"""`mmpiqa train` runs unchanged under torchrun (two CPU processes, gloo): one complete run folder, and a
learning-rate schedule that counts the steps each rank really takes."""

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmpiqa.train.trainer import lr_factor

CONFIG = """\
name: ddp
model: {backbone: micro, visual_depth: 1}
data: {dataset: embedded, size: small, n_splits: 1, train_crops: 2, test_crop: center}
train: {epochs: 2, batch_size: 16, lr: 0.001, warmup: 0.2}
"""


@pytest.mark.slow
def test_train_under_torchrun_writes_one_complete_run(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        torchrun = shutil.which("torchrun")
    (tmp_path / "cfg.yaml").write_text(CONFIG)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            str(torchrun),
            "--nproc_per_node",
            "2",
            "-m",
            "mmpiqa",
            "train",
            "--config",
            "cfg.yaml",
            "--out",
            "runs",
            "--quiet",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (folder,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((folder / "metrics.json").read_text())
    (split,) = metrics["per_split"]
    assert [row["epoch"] for row in split["history"]] == [1, 2]
    assert result.stdout.count("run folder:") == 1  # only rank 0 reports
    # each rank takes ceil(ceil(n / 2) / 16) steps per epoch, and the schedule runs over exactly those
    n_train = int(re.search(r"(\d+) train /", (folder / "log.txt").read_text()).group(1))
    steps = math.ceil(math.ceil(n_train / 2) / 16)
    first, last = split["history"]
    assert first["train_steps"] == last["train_steps"] == steps < math.ceil(n_train / 16)
    total = 2 * steps
    assert first["train_lr_first"] == pytest.approx(1e-3 * lr_factor(0, total, 0.2))
    assert last["train_lr_last"] == pytest.approx(1e-3 * lr_factor(total - 1, total, 0.2))
    assert last["train_lr_last"] < 0.2e-3  # the cosine ends near zero (it stopped near 0.5 when counting 2x)

"""`mmpiqa train` runs unchanged under torchrun (two CPU processes, gloo): one complete run folder."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFIG = """\
name: ddp
model: {backbone: micro, visual_depth: 1}
data: {dataset: embedded, size: small, n_splits: 1, train_crops: 2, test_crop: center}
train: {epochs: 1, batch_size: 16}
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
            "mmpiqa.cli",
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
    assert len(metrics["per_split"]) == 1 and metrics["per_split"][0]["history"][0]["epoch"] == 1
    assert result.stdout.count("run folder:") == 1  # only rank 0 reports

"""benchmarks/run.py runs and writes its report (speed itself is never asserted)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_harness_runs_the_gemm_item(tmp_path):
    out = tmp_path / "RESULTS.md"
    out.write_text(
        "old numbers\n<!-- Everything below this line is written by hand and kept when run.py rewrites "
        "the file. -->\nhand-written analysis\n"
    )
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "run.py"),
        "--quick",
        "--only",
        "gemm",
        "--gemm-sizes",
        "256,512",
        "--patience",
        "0",
        "--out",
        str(out),
        "--note",
        "a line from gpu.sh",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    report = out.read_text()
    assert "| gemm | ceiling (fp32, best size) |" in report and "GFLOP/s" in report
    assert "## Machine" in report and "torch:" in report and "a line from gpu.sh" in report
    assert "old numbers" not in report and report.endswith("hand-written analysis\n")  # notes survive a rerun


def test_stem_screen_runs_every_arm_and_the_laplacian_floor():
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "stem_screen.py"),
        "--backbone",
        "micro",
        "--steps",
        "2",
        "--test",
        "40",
        "--families",
        "gaussian_noise,darken",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert "40 fresh contents" in lines[0]
    for name in ("|mean Laplacian|", "open_clip init", "highpass_stem 4", "highpass_stem 8"):
        row = next(line for line in lines if name in line)
        assert "'gaussian_noise':" in row and "'darken':" in row


def test_stem_screen_reads_out_through_the_quality_captions():
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "stem_screen.py"),
        *("--backbone", "micro", "--steps", "2", "--test", "40", "--families", "gaussian_noise,darken"),
        *("--readout", "captions", "--scale", "50", "--arm", 'hp8:{"highpass_stem": 8}'),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert "quality captions at scale 50" in lines[0]
    row = next(line for line in lines if line.strip().startswith("hp8"))
    assert "'gaussian_noise':" in row and "'darken':" in row

"""Sweeps: a local pool, and one submitit job per grid point (here through submitit's local executor).

Finished points are never submitted again, a failing point is reported with its log without losing the others,
and the summary table is read from the run folders.
"""

import json
import sys

import pytest
import yaml

from mmpiqa.cli import build_parser, main
from mmpiqa.config import ConfigError
from mmpiqa.model.checkpoint import CheckpointError
from mmpiqa.runs import sweep as sweep_module
from mmpiqa.runs.sweep import LocalPool, Point, SubmititBackend, load_sweep, run_sweep

BASE = {
    "name": "t",
    "model": {"backbone": "micro", "visual_depth": 0},
    "data": {"size": "small", "n_splits": 1, "train_crops": 1, "test_crop": "center"},
    "train": {"epochs": 1, "batch_size": 16, "device": "cpu"},
}


def _grid(tmp_path, name, grid, splits=1):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"base": BASE, "splits": splits, "grid": grid}))
    return load_sweep(path)


def _backend(tmp_path):
    return SubmititBackend(log_dir=tmp_path / "out" / "submitit", executor="local", gpus_per_job=0, time=10)


def _job_files(tmp_path):
    return sorted(p.name for p in (tmp_path / "out" / "submitit").glob("*_submitted.pkl"))


def test_submitit_local_runs_points_reports_a_failure_and_skips_finished_points(tmp_path):
    pytest.importorskip("submitit")
    out = tmp_path / "out"
    # Three points: two good ones and koniq10k without a root, which passes grid validation and fails at run time
    # inside its job. (A zipped axis keeps the good points' names and configs equal to the two-point grid below.)
    three = _grid(
        tmp_path,
        "three",
        {"model.visual_depth,data.dataset": [[0, "embedded"], [1, "embedded"], [2, "koniq10k"]]},
    )
    backend = _backend(tmp_path)
    table = run_sweep(three, out, backend=backend).set_index("name")
    assert sorted(backend.submitted) == ["t-visual_depth=0", "t-visual_depth=1", "t-visual_depth=2"]
    assert list(table["status"][:2]) == ["done", "done"], table[["status", "log"]].to_string()
    failed = table.loc["t-visual_depth=2"]
    assert failed["status"].startswith("failed: DatasetFormatError") and "--root" in failed["status"]
    assert "error.txt" in failed["log"] and "_log.err" in failed["log"]  # the traceback and the job's log
    assert "DatasetFormatError" in (out / failed["folder"].split("/")[-1] / "error.txt").read_text()
    assert list(table["model.visual_depth"]) == [0, 1, 2]  # one column per grid axis
    for name in ("t-visual_depth=0", "t-visual_depth=1"):  # the summary is read from the run folders
        stored = json.loads((out / table.loc[name, "folder"].split("/")[-1] / "metrics.json").read_text())
        assert stored["summary"]["test"]["srcc"]["median"] == table.loc[name, "test_srcc"]
    jobs = _job_files(tmp_path)
    assert len(jobs) == 3

    # the two-point grid is complete: resubmitting it submits nothing at all
    two = _grid(tmp_path, "two", {"model.visual_depth": [0, 1]})
    again = run_sweep(two, out, backend=backend)
    assert backend.submitted == [] and _job_files(tmp_path) == jobs
    assert list(again["status"]) == ["skipped", "skipped"]
    assert list(again["test_srcc"]) == list(table["test_srcc"][:2])

    # re-running the three-point sweep hands only the failed point to the backend (any backend: the skip is
    # decided before scheduling; a recording backend stands in for a fourth job here)
    recording = Recording()
    third = run_sweep(three, out, backend=recording).set_index("name")
    assert recording.seen == ["t-visual_depth=2"]
    assert list(third["status"][:2]) == ["skipped", "skipped"]
    assert third.loc["t-visual_depth=2", "status"] == "failed: recorded"

    # `mmpiqa sweep --summary`: the table from the run folders alone (points may have run on other nodes)
    summary = sweep_module.summary_table(three, out).set_index("name")
    assert list(summary["status"][:2]) == ["done", "done"]
    assert "DatasetFormatError" in summary.loc["t-visual_depth=2", "status"]  # the last line of error.txt


class Recording(sweep_module.Backend):
    def __init__(self):
        self.seen = []

    def run(self, points):
        self.seen = [p.config.name for p in points]
        return [sweep_module._failed_row(p.config.name, p.folder, "recorded", "") for p in points]


def test_a_job_that_dies_is_reported_with_its_log(tmp_path):
    submitit = pytest.importorskip("submitit")

    class DeadJob:
        job_id = "4242_3"

        class paths:
            stderr = tmp_path / "4242_3_0_log.err"

        def result(self):
            raise submitit.core.utils.UncompletedJobError("Job 4242_3 was pre-empted (state PREEMPTED)")

    row = sweep_module._job_row("point", DeadJob(), tmp_path)
    assert row["status"].startswith("failed: job 4242_3 did not complete") and "PREEMPTED" in row["status"]
    assert row["log"].endswith("4242_3_0_log.err")


@pytest.mark.parametrize(
    ("text", "problem"),
    [("{cut", "not valid JSON"), ('["4242"]', "not a map"), ('{"p-1": 4242}', "not a map")],
)
def test_a_damaged_job_registry_stops_the_sweep_before_any_submission(tmp_path, text, problem):
    """Without jobs.json a re-run would submit again the points whose jobs are still running: so the error says
    to wait for (or cancel) them before deleting it, not just to delete it."""
    (tmp_path / "jobs.json").write_text(text)
    with pytest.raises(CheckpointError, match=problem) as error:
        sweep_module._read_registry(tmp_path)
    assert "jobs.json" in str(error.value) and "still queued or running (squeue), then delete" in str(
        error.value
    )
    (tmp_path / "jobs.json").write_text('{"p-1": "4242_0"}')
    assert sweep_module._read_registry(tmp_path) == {"p-1": "4242_0"}
    assert sweep_module._read_registry(tmp_path / "none") == {}


def test_local_pool_through_the_command_line(tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"base": BASE, "grid": {"model.visual_depth": [0, 1]}}))
    out = tmp_path / "runs"
    assert main(["sweep", "--grid", str(grid), "--out", str(out), "--workers", "1"]) == 0
    text = capsys.readouterr().out
    assert text.count("done ") >= 2 and "t-visual_depth=1" in text
    assert main(["sweep", "--grid", str(grid), "--out", str(out), "--summary"]) == 0
    assert capsys.readouterr().out.count("done") >= 2  # the table alone, read from the run folders
    assert main(["sweep", "--grid", str(grid), "--out", str(out)]) == 0
    assert "skipped" in capsys.readouterr().out


def test_sweep_command_options_reach_the_submitit_backend(tmp_path, monkeypatch):
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"base": BASE, "grid": {"model.visual_depth": [0]}}))
    seen = {}

    def fake_run_sweep(sweep, out, backend):
        seen["backend"] = backend
        return sweep_module.summary_table(sweep, out)

    monkeypatch.setattr(sweep_module, "run_sweep", fake_run_sweep)
    argv = ["sweep", "--grid", str(grid), "--out", str(tmp_path / "o"), "--backend", "submitit"]
    argv += ["--partition", "gpu", "--gpus-per-job", "2", "--time", "90", "--array-parallelism", "8"]
    argv += ["--slurm", "account=proj", "--slurm", "mem_gb=64"]
    main(argv)
    backend = seen["backend"]
    assert isinstance(backend, SubmititBackend) and backend.executor == "slurm"
    assert (backend.partition, backend.gpus_per_job, backend.time, backend.array_parallelism) == (
        "gpu",
        2,
        90,
        8,
    )
    assert backend.slurm_options == {"account": "proj", "mem_gb": 64}
    assert str(backend.log_dir) == str(tmp_path / "o" / "submitit")
    args = build_parser().parse_args(["sweep", "--grid", "g.yaml"])
    assert args.backend == "local" and args.executor == "slurm" and args.log_dir is None
    assert isinstance(LocalPool(2), sweep_module.Backend)


def test_a_slurm_option_without_a_value_is_one_error_line(tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"base": BASE, "grid": {"model.visual_depth": [0]}}))
    argv = ["sweep", "--grid", str(grid), "--out", str(tmp_path / "o"), "--backend", "submitit"]
    assert main([*argv, "--slurm", "foo"]) == 2
    expected = "error: --slurm 'foo': expected KEY=VALUE, e.g. account=myproject"
    assert capsys.readouterr().err.strip() == expected
    assert not (tmp_path / "o").exists()


def test_missing_submitit_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)
    sweep = _grid(tmp_path, "one", {"model.visual_depth": [0]})
    point = Point(sweep.points()[0], str(tmp_path / "out"))
    with pytest.raises(ImportError, match=r"mmpiqa\[cluster\]"):
        SubmititBackend(log_dir=tmp_path / "logs", executor="local").run([point])


def test_zipped_axes_vary_together_and_are_checked(tmp_path):
    sweep = _grid(
        tmp_path,
        "zip",
        {
            "data.dataset,data.root": [["koniq10k", "/data/koniq"], ["kadid10k", "/data/kadid"]],
            "model.n_vis": [2, 4],
        },
    )
    points = sweep.points()
    assert [p.name for p in points] == [
        "t-dataset=koniq10k-n_vis=2",
        "t-dataset=koniq10k-n_vis=4",
        "t-dataset=kadid10k-n_vis=2",
        "t-dataset=kadid10k-n_vis=4",
    ]
    assert [(p.data.dataset, p.data.root) for p in points[::2]] == [
        ("koniq10k", "/data/koniq"),
        ("kadid10k", "/data/kadid"),
    ]
    with pytest.raises(ConfigError, match="list of 2 items"):
        _grid(tmp_path, "bad", {"data.dataset,data.root": [["koniq10k"]]})


def test_the_reproduction_grid_file_loads():
    from pathlib import Path

    sweep = load_sweep(Path(__file__).parent.parent / "params" / "reproduction_grid.yaml")
    points = sweep.points()
    assert len(points) == 2 * 4 * 3 * 5 and sweep.splits == 10
    assert {(p.data.dataset, p.data.protocol) for p in points} == {
        ("koniq10k", "random"),
        ("kadid10k", "ref"),
    }
    assert all(p.model.backbone == "ViT-B-16" and p.model.pretrained == "openai" for p in points)
    assert all(p.data.n_splits == 10 for p in points)
    assert len({p.key() for p in points}) == len(points)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "the grid file does not exist"),
        (b"\xff\xfe grid", "cannot read the grid file"),
        (b"grid: [a: b", "not valid YAML (line 1"),
        (b"5", "a grid file maps base, grid and splits; it holds a int"),
        (b"grid:\n  1: [a, b]", "grid must map section.field to a non-empty list"),
        (b"grid:\n  modle.visual_depth: [0, 1]", "grid.yaml: --set modle.visual_depth"),
        (b"splits: three\ngrid:\n  model.visual_depth: [0, 1]", "splits='three': how many of each point"),
        (b"splits: 0\ngrid:\n  model.visual_depth: [0, 1]", "splits=0"),
        (b"splits: 1.5\ngrid:\n  model.visual_depth: [0, 1]", "splits=1.5"),
        (b"splits: true\ngrid:\n  model.visual_depth: [0, 1]", "splits=True"),
        (b"splits: 11\ngrid:\n  model.visual_depth: [0, 1]", "splits=11 but run-visual_depth=0 has data.n_splits=10"),
        (b"grid:\n  data.root: [" + b"x" * 300 + b"]", "has 309 characters (at most 200 fit a folder name)"),
    ],
    ids=["missing", "utf16", "bad-yaml", "scalar", "int-key", "typo", "splits-word", "splits-0", "splits-float",
         "splits-bool", "splits-over-n", "long-name"],
)  # fmt: skip
def test_a_bad_grid_file_is_one_config_error_naming_it(tmp_path, capsys, content, message):
    grid = tmp_path / "grid.yaml"
    if content is not None:
        grid.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_sweep(grid)
    assert str(grid) in str(info.value) and message in str(info.value), str(info.value)
    assert main(["sweep", "--grid", str(grid), "--out", str(tmp_path / "runs"), "--summary"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "runs").exists()


def test_out_that_is_a_file_is_refused_before_any_point_runs(tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"base": BASE, "grid": {"model.visual_depth": [0, 1]}}))
    out = tmp_path / "runs"
    out.write_text("not a folder")
    assert main(["sweep", "--grid", str(grid), "--out", str(out)]) == 2
    assert "a file, not a folder" in capsys.readouterr().err
    # a point that fails where even its error file cannot be written still reports why, as data
    (config,) = [c for c in load_sweep(grid).points() if c.name.endswith("=0")]
    row = sweep_module._run_point(config.to_dict(), str(out), 1)
    assert row["status"].startswith("failed: WriteError") and "error file cannot be written" in row["status"]


def test_a_damaged_point_folder_is_a_failed_row_in_the_summary(tmp_path):
    sweep = _grid(tmp_path, "g", {"model.visual_depth": [0, 1, 3, 5]})
    empty, unreadable, null, cut = (Point(c, str(tmp_path / "runs")).folder for c in sweep.points())
    for folder, text in ((empty, "{}"), (null, '{"summary": null}'), (cut, '{"summary": {"te')):
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(text)  # valid JSON without a summary, or cut short
    unreadable.mkdir(parents=True)
    (unreadable / "error.txt").write_bytes(b"Traceback ...\nValueError: caf\xe9 broke")  # not UTF-8
    table = sweep_module.summary_table(sweep, tmp_path / "runs").set_index("name")
    for name in ("t-visual_depth=0", "t-visual_depth=3"):
        assert table.loc[name, "status"].startswith("failed: metrics.json has no test summary (damaged)")
    assert table.loc["t-visual_depth=1", "status"] == "failed: ValueError: caf\ufffd broke"
    assert "metrics.json: not valid JSON" in table.loc["t-visual_depth=5", "status"]

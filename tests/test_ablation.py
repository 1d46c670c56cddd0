"""Ablations read back from run folders: tidy tables, CIs, paired tests on really shared splits, plots, grid files.

Most tests write synthetic run folders (config.json, splits.json, metrics.json) into tmp_path: no training. One
test trains two arms on the micro backbone and the small embedded benchmark (seconds).
"""

import ast
import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pytest
import yaml

from mmpiqa import metrics
from mmpiqa.config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig
from mmpiqa.data.splits import Split, save_splits
from mmpiqa.runs.experiment import run_folder
from mmpiqa.runs.sweep import Sweep, load_sweep
from mmpiqa.workbook import Backbone, ablation

ROOT = Path(__file__).parent.parent
BASE = RunConfig(
    name="abl",
    model=ModelConfig(backbone="micro"),
    data=DataConfig(dataset="embedded", size="small", n_splits=3),
    train=TrainConfig(epochs=1, batch_size=16),
)


def _splits(n, seed=0):
    """n fake reference-disjoint splits whose names depend on `seed` (another seed: other images)."""
    return [
        Split(
            seed=seed + i,
            index=i,
            train=(f"s{seed}-{i}-a",),
            val=(f"s{seed}-{i}-b",),
            test=(f"s{seed}-{i}-c",),
            by="ref",
        )
        for i in range(n)
    ]


def _fake_run(out, config, srcc, *, split_seed=0, plcc=None):
    """A complete run folder of `config` whose split k has test SRCC srcc[k]."""
    folder = run_folder(config, out)
    folder.mkdir(parents=True)
    config.save(folder / "config.json")
    save_splits(_splits(len(srcc), split_seed), folder / "splits.json", dataset="embedded")
    plcc = plcc if plcc is not None else [v + 0.05 for v in srcc]
    per_split = []
    for k, (s, p) in enumerate(zip(srcc, plcc, strict=True)):
        part = {"srcc": s, "plcc": p, "krcc": s / 2, "plcc_logistic": p, "rmse": 0.2, "n": 75}
        per_split.append(
            {"split": k, "seed": k, "best_epoch": 1, "backbone": "micro", "val": part, "test": part}
        )
    doc = {
        "name": config.name,
        "key": config.key(),
        "backbone": "micro (random weights)",
        "per_split": per_split,
        "summary": {"test": {"srcc": metrics.summarise([s for s in srcc if not math.isnan(s)])}},
    }
    (folder / "metrics.json").write_text(json.dumps(doc))
    return folder


DEPTH_SRCC = {0: [0.10, 0.30, 0.20], 1: [0.15, 0.32, 0.26], -1: [0.12, 0.40, 0.21]}


@pytest.fixture
def depth_runs(tmp_path):
    configs = ablation.arms(BASE, {"model.visual_depth": list(DEPTH_SRCC)})
    return [_fake_run(tmp_path, c, DEPTH_SRCC[c.model.visual_depth]) for c in configs]


def test_arms_are_the_sweep_points_and_differ_in_one_field():
    configs = ablation.arms(BASE, {"model.visual_depth": [0, 1, -1]})
    sweep = Sweep(BASE, {"model.visual_depth": [0, 1, -1]}).points()
    assert [(c.name, c.key()) for c in configs] == [(p.name, p.key()) for p in sweep]
    assert ablation.varying_fields(configs) == ["model.visual_depth"]
    with pytest.raises(ConfigError, match="a value is repeated"):
        ablation.arms(BASE, {"model.visual_depth": [1, 1]})
    with pytest.raises(ConfigError, match="two spellings of one value"):
        ablation.arms(BASE, {"model.visual_depth": [-1, "all"]})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (3, "depths=3: a non-empty list"),
        ([], r"depths=\[\]: a non-empty list"),
        ("0, 1", "depths='0, 1': a non-empty list"),
        ([0, 0], "a value is repeated"),
        ([-1, "all"], "a value is repeated"),  # one depth, spelled twice
    ],
)
def test_a_chapters_list_parameter_is_checked_before_anything_uses_it(values, message):
    with pytest.raises(ConfigError, match=message):
        ablation.axis_values("depths", values, aliases={"all": -1})
    assert ablation.axis_values("depths", (0, "all"), aliases={"all": -1}) == [0, -1]


def test_base_config_puts_the_data_knobs_and_splits_into_the_key():
    bb = Backbone("tiny", None, "offline")
    config = ablation.base_config(
        bb, size="small", n_splits=3, train_crops=1, test_crop="center", num_workers=2
    )
    assert (config.data.size, config.data.n_splits, config.data.train_crops) == ("small", 3, 1)
    assert config.data.test_crop == "center" and config.train.num_workers == 2
    assert ablation.base_config(bb, n_splits=5).key() != ablation.base_config(bb, n_splits=3).key()
    assert ablation.base_config(bb, num_workers=8).key() == ablation.base_config(bb).key()
    # size means nothing for a real dataset, so it cannot change the key
    kadid = {"dataset": "kadid10k", "root": "/data/kadid10k"}
    assert ablation.base_config(bb, size="small", **kadid).key() == ablation.base_config(bb, **kadid).key()


def test_read_runs_gives_one_row_per_run_and_split(depth_runs):
    tidy = ablation.read_runs(depth_runs)
    assert len(tidy) == 9 and tidy.attrs["axes"] == ["visual_depth"]
    assert list(dict.fromkeys(tidy["arm"])) == ["visual_depth=0", "visual_depth=1", "visual_depth=-1"]
    for depth, values in DEPTH_SRCC.items():
        assert tidy.loc[tidy["visual_depth"] == depth, "srcc"].tolist() == values
    assert tidy.groupby("split")["split_id"].nunique().eq(1).all()
    assert {"run", "key", "folder", "backbone", "best_epoch", "plcc", "rmse"} <= set(tidy.columns)


def test_tuple_axes_are_labelled_and_two_axes_make_two_columns(tmp_path):
    configs = ablation.arms(
        BASE,
        {
            "model.branches": [["quality"], ["quality", "scene", "distortion"]],
            "model.head": ["levels", "xattn"],
        },
    )
    folders = [_fake_run(tmp_path, c, [0.1 * i, 0.2, 0.3]) for i, c in enumerate(configs)]
    tidy = ablation.read_runs(folders)
    assert tidy.attrs["axes"] == ["branches", "head"]
    assert set(tidy["branches"]) == {"quality", "quality+scene+distortion"}
    assert "quality / levels" in set(tidy["arm"])


def test_an_incomplete_run_is_refused(tmp_path, depth_runs):
    (depth_runs[1] / "metrics.json").unlink()
    with pytest.raises(FileNotFoundError, match="not complete"):
        ablation.read_runs(depth_runs)


def test_summary_table_uses_metrics_summarise(depth_runs):
    table = ablation.summary_table(ablation.read_runs(depth_runs), by="visual_depth")
    assert table["visual_depth"].tolist() == [0, 1, -1] and (table["splits"] == 3).all()
    for row in table.itertuples():
        s = metrics.summarise(DEPTH_SRCC[row.visual_depth])
        assert (row.srcc, row.srcc_low, row.srcc_high, row.srcc_std) == (
            s["median"],
            s["ci_low"],
            s["ci_high"],
            s["std"],
        )
        assert row.srcc_low <= row.srcc_high
    assert {"plcc", "plcc_low", "plcc_high"} <= set(table.columns)


def test_paired_tests_match_metrics_paired_test(depth_runs):
    tests = ablation.paired_tests(ablation.read_runs(depth_runs))
    assert list(zip(tests["a"], tests["b"], strict=True)) == [
        ("visual_depth=0", "visual_depth=1"),
        ("visual_depth=0", "visual_depth=-1"),
        ("visual_depth=1", "visual_depth=-1"),
    ]
    expected = metrics.paired_test(DEPTH_SRCC[0], DEPTH_SRCC[1])
    first = tests.iloc[0]
    assert (
        first["n"] == 3 and first["p_wilcoxon"] == expected["p_wilcoxon"] == 0.25
    )  # the floor with 3 splits
    assert first["mean_diff"] == pytest.approx(expected["mean_diff"])
    table = ablation.pvalue_table(tests)
    assert table.shape == (3, 3) and np.isnan(np.diag(table.to_numpy())).all()
    assert table.equals(table.T)


def test_paired_tests_refuse_splits_that_are_not_the_same_images(tmp_path):
    a, b = ablation.arms(BASE, {"model.visual_depth": [0, 1]})
    folders = [_fake_run(tmp_path, a, [0.1, 0.2, 0.3]), _fake_run(tmp_path, b, [0.2, 0.3, 0.4], split_seed=7)]
    tidy = ablation.read_runs(folders)
    with pytest.raises(ValueError, match="different images"):
        ablation.paired_tests(tidy)


def test_paired_tests_use_only_shared_finite_splits(tmp_path):
    a, b, c = ablation.arms(BASE, {"model.visual_depth": [0, 1, 2]})
    folders = [
        _fake_run(tmp_path, a, [0.1, 0.2, 0.3]),
        _fake_run(tmp_path, b, [0.25, 0.3]),  # fewer splits: paired on the first two
        _fake_run(tmp_path, c, [0.3, math.nan, 0.5]),  # a collapsed split is left out
    ]
    tests = ablation.paired_tests(ablation.read_runs(folders)).set_index(["a", "b"])
    assert tests.loc[("visual_depth=0", "visual_depth=1"), "n"] == 2
    assert tests.loc[("visual_depth=0", "visual_depth=2"), "n"] == 2
    assert tests.loc[("visual_depth=1", "visual_depth=2"), "n"] == 1
    assert np.isnan(tests.loc[("visual_depth=1", "visual_depth=2"), "p_wilcoxon"])
    with pytest.raises(KeyError, match="no arm"):
        ablation.paired_tests(ablation.read_runs(folders), pairs=[("visual_depth=0", "depth=9")])


def test_image_blocks():
    assert ablation.image_blocks("tiny") == 6 and ablation.image_blocks("micro") == 3
    assert ablation.image_blocks("ViT-B-16") == 12


def test_plots_draw_what_they_say(depth_runs):
    tidy = ablation.read_runs(depth_runs)
    table = ablation.summary_table(tidy, by="visual_depth")
    ax = ablation.depth_plot(table, n_blocks=3, tidy=tidy, baseline=0.05)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "all (3)"]
    ax = ablation.pvalue_matrix(ablation.paired_tests(tidy))
    assert any("p=0.25" in t.get_text() for t in ax.texts)
    plt.close("all")


def test_ablation_heatmap_annotates_median_and_ci(tmp_path):
    configs = ablation.arms(
        BASE, {"model.branches": [["quality"], ["quality", "scene"]], "model.head": ["levels", "xattn"]}
    )
    folders = [_fake_run(tmp_path, c, [0.1 + 0.1 * i, 0.2, 0.3 + 0.1 * i]) for i, c in enumerate(configs)]
    table = ablation.summary_table(ablation.read_runs(folders), by=["branches", "head"])
    ax = ablation.ablation_heatmap(table, baseline=0.05)
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 4 and all("\n[" in t for t in texts)
    assert f"{table['srcc'].iloc[0]:.3f}" in texts[0] and "zero-shot 0.050" in ax.get_title()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["quality", "quality+scene"]
    low, high = ax.collections[0].get_clim()
    assert (low + high) / 2 == pytest.approx(0.05)  # the baseline is the colour map's centre
    assert high >= table["srcc"].max()
    plt.close("all")


# ------------------------------------------------------------------------------- grid files vs GPU parameters


def _parameters(notebook):
    """Default values of a chapter's parameters cell, evaluated as papermill would see them."""
    nb = nbformat.read(ROOT / "notebooks" / notebook, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    return {n.target.id: ast.literal_eval(n.value) for n in ast.parse(cell.source).body}


def _chapter_arms(notebook, gpu_file, axes_of):
    params = {**_parameters(notebook), **yaml.safe_load((ROOT / "params" / gpu_file).read_text())}
    bb = Backbone(params["backbone"], params["pretrained"] or None, "test")
    base = ablation.base_config(
        bb,
        dataset=params["dataset"],
        root=params["root"] or None,
        size=params["size"],
        epochs=params["epochs"],
        batch_size=params["batch_size"],
        n_splits=params["n_splits"],
        split_seed=params["split_seed"],
        train_fraction=params["train_fraction"] if params["train_fraction"] < 1 else None,
        train_crops=params["train_crops"],
        test_crop=params["test_crop"],
        device=params["device"],
        num_workers=params["num_workers"],
        **({"visual_depth": params["visual_depth"]} if "visual_depth" in params else {}),
    )
    return params, ablation.arms(base, axes_of(params))


@pytest.mark.parametrize(
    ("notebook", "gpu_file", "grid_file", "axes_of"),
    [
        (
            "04_ablation_prompt_depth.ipynb",
            "04_gpu.yaml",
            "depth_grid.yaml",
            lambda p: {"model.visual_depth": p["depths"]},
        ),
        (
            "05_ablation_text_branches.ipynb",
            "05_gpu.yaml",
            "branches_grid.yaml",
            lambda p: {"model.branches": [s.split("+") for s in p["branch_sets"]], "model.head": p["heads"]},
        ),
    ],
)
def test_grid_file_makes_the_folders_the_gpu_chapter_reads(notebook, gpu_file, grid_file, axes_of):
    if not (ROOT / "notebooks" / notebook).is_file():
        pytest.skip(f"{notebook} not written yet")
    params, arms = _chapter_arms(notebook, gpu_file, axes_of)
    sweep = load_sweep(ROOT / "params" / grid_file)
    assert [(p.name, p.key()) for p in sweep.points()] == [(a.name, a.key()) for a in arms]
    assert params["backbone"] == "ViT-B-16" and params["pretrained"] == "openai" and params["n_splits"] == 10


# -------------------------------------------------------------------------------------------- one real run


@pytest.mark.slow
def test_run_arms_trains_then_reads_back(tmp_path, capsys, monkeypatch):
    base = BASE.replace(
        data=BASE.data.replace(n_splits=2, train_crops=1, test_crop="center", train_fraction=0.5),
    )
    configs = ablation.arms(base, {"model.visual_depth": [0, 1]})
    folders = ablation.run_arms(configs, tmp_path)
    assert "trained in" in capsys.readouterr().out
    tidy = ablation.read_runs(folders)
    assert len(tidy) == 4 and tidy.groupby("split")["split_id"].nunique().eq(1).all()
    tests = ablation.paired_tests(tidy)
    assert tests.loc[0, "n"] == 2 and 0 <= tests.loc[0, "p_wilcoxon"] <= 1

    def no_data(*args, **kwargs):
        raise AssertionError("complete arms are read back without loading the data set")

    monkeypatch.setattr(ablation, "load_table", no_data)
    again = ablation.run_arms(configs, tmp_path)
    assert again == folders and capsys.readouterr().out.count("read back") == 2

"""mmpiqa.workbook.analysis: per-family SRCC, largest errors, the cross-dataset matrix, nearest words, prompt norms and the
classification summaries, on synthetic predictions and the micro backbone (fast, offline)."""

import json

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from mmpiqa.config import ConfigError, DataConfig, ModelConfig, RunConfig
from mmpiqa.model.prompted_clip import build_model
from mmpiqa.workbook import analysis, analysis_plots

matplotlib.use("Agg")


@pytest.fixture
def predictions():
    """Three families: 'good' scores follow MOS, 'inverted' run against it, 'flat' scores are constant."""
    rng = np.random.default_rng(0)
    mos = rng.uniform(0, 1, 90)
    score = np.concatenate([mos[:30] + rng.normal(0, 0.01, 30), -mos[30:60], np.full(30, 0.5)])
    return pd.DataFrame(
        {
            "name": [f"img{i}.png" for i in range(90)],
            "mos": mos,
            "score": score,
            "dist_group": ["good"] * 30 + ["inverted"] * 30 + ["flat"] * 30,
            "dist_type": [f"t{i % 6}" for i in range(90)],
        }
    )


def test_per_family_srcc_is_the_srcc_within_each_family_with_a_ci(predictions):
    table = analysis.per_family_srcc(predictions, n_boot=200)
    assert list(table["family"]) == ["good", "inverted", "flat", "all"]
    by = table.set_index("family")
    assert by.loc["good", "srcc"] > 0.95 and by.loc["inverted", "srcc"] == pytest.approx(-1.0)
    assert np.isnan(by.loc["flat", "srcc"]) and np.isnan(by.loc["flat", "ci_low"])
    assert by.loc["good", "ci_low"] <= by.loc["good", "srcc"] <= by.loc["good", "ci_high"]
    assert by.loc["all", "n"] == 90 and set(by["n"][:-1]) == {30}
    assert len(analysis.per_family_srcc(predictions, by="dist_type", n_boot=50)) == 7
    with pytest.raises(ConfigError, match="by='nope' is not a column of the predictions"):
        analysis.per_family_srcc(predictions, by="nope")


def test_per_family_srcc_refuses_too_few_resamples_before_any_family(predictions):
    for n_boot in (0, 1, 2.5, True):  # one resample: a zero-width "interval"
        message = rf"n_boot={n_boot!r}: bootstrap resamples, a whole number >= 2"
        with pytest.raises(ConfigError, match=message):
            analysis.per_family_srcc(predictions, n_boot=n_boot)
    flat = predictions[predictions["dist_group"] == "flat"]  # no finite SRCC: bootstrap_ci is never called
    with pytest.raises(ConfigError, match="n_boot=1"):
        analysis.per_family_srcc(flat, n_boot=1)


def test_largest_errors_are_measured_after_the_logistic_mapping():
    mos = np.linspace(0, 1, 40)
    score = 10 * mos + 3  # a monotone map: the logistic makes it (almost) exact ...
    score[7] = 10 * 0.95 + 3  # ... except for this image, which the model rates far too high
    frame = pd.DataFrame({"name": [str(i) for i in range(40)], "mos": mos, "score": score})
    worst = analysis.largest_errors(frame, k=3)
    assert len(worst) == 3 and worst.loc[0, "name"] == "7"
    assert worst.loc[0, "error"] > 0.5 and worst["abs_error"].is_monotonic_decreasing
    assert (worst["mapped"] <= 1.05).all()  # on the MOS scale, not the raw score's
    for k in (0, -1, 41, 2.5):  # -1 would be "all but one" to pandas
        with pytest.raises(ConfigError, match=f"k={k!r} images; between 1 and the 40 predicted"):
            analysis.largest_errors(frame, k=k)


def test_extra_test_sets_are_other_datasets_with_their_folders():
    sets = analysis.extra_test_sets({"koniq10k": "/data/koniq", "embedded": ""}, main="kadid10k")
    assert (
        sets["koniq10k"].root == "/data/koniq" and sets["embedded"].root is None
    )  # '' is no folder, not "."
    for bad in (["koniq10k"], {"kadid10k": "/x"}, "koniq10k"):  # a list, the main dataset again, a name
        with pytest.raises(
            ConfigError, match="extra_datasets=.*a mapping of datasets other than the main one"
        ):
            analysis.extra_test_sets(bad, main="kadid10k")


def _fake_run(folder, dataset="embedded", srcc=0.42):
    folder.mkdir(parents=True)
    config = RunConfig(name="fake", data=DataConfig(dataset=dataset, size="small"))
    config.save(folder / "config.json")
    summary = {"median": srcc, "ci_low": srcc - 0.1, "ci_high": srcc + 0.1}
    stored = {
        "per_split": [{"test": {"n": 45}}],
        "summary": {"test": {"srcc": summary}},
    }
    (folder / "metrics.json").write_text(json.dumps(stored))
    return folder


def test_cross_dataset_matrix_uses_the_test_part_on_the_diagonal(tmp_path, monkeypatch):
    import mmpiqa.runs.experiment as experiment

    calls = []

    def fake_evaluate(folder, data, progress=True):
        calls.append((folder.name, data.dataset))
        return {"n_images": 100, "summary": {"srcc": {"median": 0.1, "ci_low": 0.0, "ci_high": 0.2}}}

    monkeypatch.setattr(experiment, "evaluate_run", fake_evaluate)
    runs = {"embedded": _fake_run(tmp_path / "a"), "kadid": _fake_run(tmp_path / "b", "kadid10k", 0.8)}
    tests = {
        "embedded": DataConfig(dataset="embedded", size="small"),
        "kadid": DataConfig(dataset="kadid10k", root="/data/kadid10k"),  # another copy: still the same data
    }
    matrix = analysis.cross_dataset_matrix(runs, tests)
    assert matrix.shape == (2, 2) and list(matrix.index) == ["embedded", "kadid"]
    assert matrix.loc["embedded", "embedded"] == 0.42 and matrix.loc["kadid", "kadid"] == 0.8
    assert matrix.loc["embedded", "kadid"] == 0.1 and matrix.loc["kadid", "embedded"] == 0.1
    assert sorted(calls) == [("a", "kadid10k"), ("b", "embedded")]  # never evaluated on its own training data
    long = matrix.attrs["long"]
    assert set(long["kind"]) == {"within: test part", "cross: all images"}
    assert long.set_index(["train", "test"]).loc[("embedded", "embedded"), "n_images"] == 45
    analysis_plots.plot_matrix(matrix, title="t")


def test_another_embedded_size_is_a_cross_cell(tmp_path, monkeypatch):
    import mmpiqa.runs.experiment as experiment

    monkeypatch.setattr(
        experiment,
        "evaluate_run",
        lambda folder, data, progress=True: {
            "n_images": 1,
            "summary": {"srcc": {"median": 0.3, "ci_low": 0, "ci_high": 1}},
        },
    )
    runs = {"small": _fake_run(tmp_path / "a")}
    matrix = analysis.cross_dataset_matrix(runs, {"default": DataConfig(dataset="embedded", size="default")})
    assert matrix.iloc[0, 0] == 0.3


@pytest.fixture(scope="module")
def micro():
    return build_model(ModelConfig(backbone="micro", text_depth=2, visual_depth=2, n_vis=3))


def test_nearest_words_of_the_initial_context_are_its_own_words(micro):
    words = analysis.nearest_words(micro, k=2)
    assert len(words) == len(micro.text_prompts.branch_names) * micro.text_prompts.n_ctx * 2
    first = words[words["rank"] == 1]
    for (
        branch
    ) in micro.text_prompts.branch_names:  # ctx_init 'a photo of': each slot is exactly its word's embedding
        rows = first[first["branch"] == branch].sort_values("slot")
        assert list(rows["word"]) == ["a", "photo", "of"]
        assert np.allclose(rows["cosine"], 1.0, atol=1e-5)
    assert (words[words["rank"] == 2]["cosine"] < 1 - 1e-4).all()
    assert not set(words["token_id"]) & {49406, 49407}  # no start/end tokens

    moved = build_model(ModelConfig(backbone="micro", text_depth=2, visual_depth=2, n_vis=3))
    with torch.no_grad():
        moved.text_prompts.ctx.add_(torch.randn_like(moved.text_prompts.ctx) * 10)
    table = analysis.words_before_after(words, analysis.nearest_words(moved, k=2), k=1)
    assert list(table.columns) == ["branch", "slot", "before", "after"] and len(table) == 9
    assert table.loc[0, "before"].startswith("a (1.00)")
    drift = analysis.context_drift(micro, moved)
    assert (drift["relative_change"] > 1).all() and (drift["cosine_to_start"] < 0.9).all()
    assert (analysis.context_drift(micro, micro)["cosine_to_start"] > 0.9999).all()


def test_nearest_words_refuses_k_outside_the_vocabulary(micro):
    for k in (0, -1, 49407, 2.0):  # 49,408 tokens less the start and end tokens
        with pytest.raises(
            ConfigError, match=rf"k={k!r}: nearest words per context vector, a whole number from 1 to 49406"
        ):
            analysis.nearest_words(micro, k=k)


def test_prompt_norms_cover_every_learned_layer(micro, micro_images):
    norms = analysis.prompt_norms(micro)
    text, visual = norms[norms["tower"] == "text"], norms[norms["tower"] == "visual"]
    assert sorted(set(text["layer"])) == [0, 1] and sorted(set(visual["layer"])) == [0, 1]
    assert len(text) == 2 * 3 * micro.text_prompts.n_ctx and len(visual) == 2 * 3
    expected = micro.visual_prompts.tokens[1, 2].norm().item()
    assert visual[(visual["layer"] == 1) & (visual["slot"] == 2)]["norm"].item() == pytest.approx(expected)
    reference = analysis.reference_norms(micro, micro_images)
    assert set(reference["tower"]) == {"text", "visual"}
    # visual: the ln_pre input + the inputs of the 2 later blocks
    assert sorted(reference[reference["tower"] == "visual"]["layer"]) == [0, 1, 2]
    assert sorted(reference[reference["tower"] == "text"]["layer"]) == [0, 1, 2]
    assert (reference["q10"] <= reference["median"]).all() and (reference["median"] <= reference["q90"]).all()
    analysis_plots.plot_prompt_norms(norms, reference, start=norms)
    coupled = build_model(ModelConfig(backbone="micro", coupled=True, n_vis=3, text_depth=2, visual_depth=2))
    assert len(analysis.prompt_norms(coupled).query("tower == 'visual'")) == 2 * 3


def test_confusion_accuracy_and_chance():
    classes = ["a", "b", "c"]
    true = [0, 0, 1, {1, 2}]
    pred = [0, 1, 1, 2]
    counts = analysis.confusion(true, pred, classes, normalize=False)
    assert counts.loc["a", "a"] == 1 and counts.loc["a", "b"] == 1 and counts.loc["c", "c"] == 0.5
    rates = analysis.confusion(true, pred, classes)
    assert np.allclose(rates.sum(axis=1), 1.0)
    assert list(analysis.confusion([0, 0], [1, 2], classes).index) == ["a"]  # rows of absent classes dropped
    assert analysis.accuracy(true, pred) == pytest.approx(3 / 4)
    assert analysis.accuracy([set(), 1], [0, 1]) == 1.0  # unknown labels are skipped
    chance = analysis.chance_accuracy(true, 3)
    assert chance["uniform"] == pytest.approx((1 + 1 + 1 + 2) / 4 / 3)
    assert chance["majority"] == pytest.approx(2 / 4)


def test_class_labels_map_table_cells_onto_the_model_classes():
    table = pd.DataFrame(
        {
            "name": ["x", "y", "z"],
            "scenes": ["cityscape|night scene", "", "animal"],
            "dist_group": ["blur", "", "x"],
        }
    )
    preds = pd.DataFrame({"name": ["z", "x", "y"]})
    scenes = analysis.class_labels(preds, table, ("animal", "cityscape", "night scene"), "scene")
    assert scenes == [frozenset({0}), frozenset({1, 2}), frozenset()]
    groups = analysis.class_labels(preds, table, ("blur", "noise"), "distortion")
    assert groups == [frozenset(), frozenset({0}), frozenset()]


def test_family_bars_and_gallery_draw(predictions, tmp_path):
    from PIL import Image

    analysis_plots.plot_family_srcc(analysis.per_family_srcc(predictions, n_boot=50))
    paths = []
    for i in range(3):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(path)
        paths.append(str(path))
    errors = analysis.largest_errors(predictions, k=3).assign(image=paths, dist_level=[1, 2, 3])
    fig = analysis_plots.error_gallery(errors, ncols=2)
    assert len([ax for ax in fig.axes if ax.images]) == 3
    joined = analysis.with_table_columns(
        predictions.head(2),
        pd.DataFrame({"name": ["img0.png", "img1.png"], "image": ["p0", "p1"]}),
        ["image"],
    )
    assert list(joined["image"]) == ["p0", "p1"]

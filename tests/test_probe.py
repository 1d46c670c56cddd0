"""The linear probe baseline: ridge on frozen image features, alpha chosen on val, a run folder like any run."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from mmpiqa.config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig
from mmpiqa.data.splits import load_splits, make_splits
from mmpiqa.model.prompted_clip import build_model
from mmpiqa.runs.experiment import load_table, results_table
from mmpiqa.workbook.probe import (
    check_features,
    crop_features,
    fit_ridge,
    load_probe,
    probe_folder,
    ridge_path,
    run_probe,
)

DATA = DataConfig(dataset="embedded", size="small", n_splits=1, train_crops=2, test_crop="center")
CONFIG = RunConfig(
    name="arm", model=ModelConfig(backbone="micro"), data=DATA, train=TrainConfig(epochs=1, batch_size=16)
)


def test_ridge_path_matches_the_closed_form_in_both_shapes():
    rng = np.random.default_rng(0)
    for n, d in ((40, 6), (6, 40)):  # primal (D x D) and dual (N x N) Gram matrices
        x, y = rng.normal(size=(n, d)), rng.normal(size=n)
        alphas = np.array([0.1, 1.0, 10.0])
        coefs, _ = ridge_path(x, y, alphas)
        for a, coef in zip(alphas, coefs, strict=True):
            direct = np.linalg.solve(x.T @ x + a * np.eye(d), x.T @ y)
            np.testing.assert_allclose(coef, direct, rtol=1e-6, atol=1e-9)


def test_fit_ridge_recovers_a_linear_score_and_picks_alpha_on_val():
    rng = np.random.default_rng(1)
    w = rng.normal(size=8)
    x_train, x_val = rng.normal(size=(200, 8)) * 3 + 1, rng.normal(size=(50, 8)) * 3 + 1
    y_train, y_val = x_train @ w + 0.01 * rng.normal(size=200), x_val @ w
    probe = fit_ridge(x_train, y_train, x_val, y_val)
    best = max(probe.val_srcc, key=lambda a: (probe.val_srcc[a], a))
    assert probe.alpha == pytest.approx(best * 200)
    assert probe.val_srcc[best] > 0.99
    np.testing.assert_allclose(probe.predict(x_val), y_val, atol=0.5)


def test_pooled_probe_features_are_the_frozen_image_embedding(micro_images):
    model = build_model(ModelConfig(backbone="micro", text_depth=0, visual_depth=0, head="levels"))
    with torch.no_grad():
        pooled = crop_features(model, micro_images, "pooled")
        expected = model.image_features(micro_images, normalize=True)
        both = crop_features(model, micro_images, "both")
    torch.testing.assert_close(pooled, expected)
    blocks = len(model.clip.visual.transformer.resblocks)
    width = model.clip.visual.conv1.out_channels
    assert both.shape == (3, expected.shape[1] + blocks * 2 * width)  # per block: token mean and std


def test_an_unknown_feature_name_is_refused_before_anything_runs(tmp_path):
    assert check_features("tokens") == "tokens"
    message = "features: 'pool' is not a probe feature; one of 'pooled', 'tokens', 'both'"
    with pytest.raises(ConfigError, match=message):
        run_probe(CONFIG, tmp_path, features="pool", progress=False, echo=False)
    assert not any(tmp_path.iterdir())  # no table read, no folder made
    # chapter 08 checks each item of its list, naming the parameter
    with pytest.raises(ConfigError, match="probe_features: 'pool' is not a probe feature"):
        check_features("pool", name="probe_features")


def test_run_probe_writes_a_run_shaped_folder_that_results_table_reads(tmp_path):
    table = load_table(DATA, progress=False)
    result = run_probe(CONFIG, tmp_path, features="both", table=table, progress=False, echo=False)
    folder = result.folder
    assert folder == probe_folder(CONFIG, tmp_path, "both") and folder.name.startswith("probe-both-")
    for name in ("config.json", "probe.json", "splits.json", "metrics.json", "log.txt"):
        assert (folder / name).is_file(), name
    for name in ("metrics.json", "predictions.csv", "probe.safetensors"):
        assert (folder / "split-00" / name).is_file(), name
    stored = json.loads((folder / "metrics.json").read_text())
    assert {"name", "key", "backbone", "data", "per_split", "summary"} <= set(stored)
    summary = stored["summary"]["test"]["srcc"]
    assert {"median", "mean", "std", "ci_low", "ci_high", "n"} <= set(summary)
    assert -1 <= summary["median"] <= 1 and summary["ci_low"] <= summary["median"] <= summary["ci_high"]
    assert "linear probe" in stored["backbone"] and "micro" in stored["backbone"]

    # the same splits every other arm with this DataConfig gets
    expected = make_splits(
        table, n_splits=1, seed=DATA.split_seed, fractions=DATA.fractions, by=DATA.protocol
    )
    assert load_splits(folder / "splits.json")[0].test == expected[0].test
    predictions = pd.read_csv(folder / "split-00" / "predictions.csv")
    assert set(predictions["name"]) == set(expected[0].test)

    frame = results_table([result, folder])
    assert list(frame["run"]) == ["probe-both", "probe-both"] and frame["srcc"].notna().all()

    probe = load_probe(folder / "split-00" / "probe.safetensors")
    assert probe.coef.shape == probe.mean.shape and probe.alpha > 0

    # another arm of the same study (other prompt settings) maps to the same probe, which is then skipped
    other = CONFIG.replace(model=CONFIG.model.replace(visual_depth=0, n_ctx=2, ctx_init=None))
    again = run_probe(other, tmp_path, features="both", table=table, progress=False, echo=False)
    assert again.skipped and again.folder == folder and again.metrics == stored

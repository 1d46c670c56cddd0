"""Metrics against scipy, against values worked out by hand, and their failure modes."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import optimize, stats

from mmpiqa import metrics as M
from mmpiqa.metrics import MetricWarning

# ------------------------------------------------------------------------------------------ hand-computed values


def test_correlations_by_hand_small():
    # pred = [1, 2, 3, 4], mos = [1, 3, 2, 4]
    # SRCC: ranks are the values themselves; d = [0, -1, 1, 0], sum d^2 = 2,
    #       rho = 1 - 6 * 2 / (4 * (16 - 1)) = 1 - 12 / 60 = 0.8
    # KRCC: 6 pairs, only (2, 3) is discordant: tau = (5 - 1) / 6 = 2 / 3
    # PLCC: both centred at 2.5: x = [-1.5, -0.5, 0.5, 1.5], y = [-1.5, 0.5, -0.5, 1.5]
    #       sum xy = 2.25 - 0.25 - 0.25 + 2.25 = 4, sum x^2 = sum y^2 = 5, r = 4 / 5 = 0.8
    pred, mos = [1, 2, 3, 4], [1, 3, 2, 4]
    assert M.srcc(pred, mos) == pytest.approx(0.8)
    assert M.krcc(pred, mos) == pytest.approx(2 / 3)
    assert M.plcc(pred, mos) == pytest.approx(0.8)


def test_correlations_by_hand_nonlinear():
    # pred = [1, 2, 3], mos = [1, 4, 9]: perfectly monotone, so SRCC = KRCC = 1.
    # PLCC: x = [-1, 0, 1], y = mos - 14/3 = [-11/3, -2/3, 13/3];
    #       sum xy = 11/3 + 13/3 = 8, sum x^2 = 2, sum y^2 = (121 + 4 + 169) / 9 = 294 / 9,
    #       r = 8 / sqrt(2 * 294 / 9) = 24 / sqrt(588) = 0.98974...
    pred, mos = [1, 2, 3], [1, 4, 9]
    assert M.srcc(pred, mos) == pytest.approx(1.0)
    assert M.krcc(pred, mos) == pytest.approx(1.0)
    assert M.plcc(pred, mos) == pytest.approx(24 / math.sqrt(588))


def test_rmse_raw_by_hand():
    # errors [0, 1, -1, 0] -> sqrt((0 + 1 + 1 + 0) / 4) = sqrt(0.5)
    assert M.rmse([1, 2, 3, 4], [1, 3, 2, 4], logistic=False) == pytest.approx(math.sqrt(0.5))


def test_logistic4_formula_by_hand():
    # at the midpoint the curve is halfway between the asymptotes: (b1 + b2) / 2
    assert M.logistic4(0.5, 5.0, 1.0, 0.5, 0.8) == pytest.approx(3.0)
    # one width above: b2 + (b1 - b2) / (1 + e^-1); the sign of b4 does not matter (|b4|)
    expect = 1.0 + 4.0 / (1.0 + math.exp(-1.0))
    assert M.logistic4(1.3, 5.0, 1.0, 0.5, 0.8) == pytest.approx(expect)
    assert M.logistic4(1.3, 5.0, 1.0, 0.5, -0.8) == pytest.approx(expect)
    # far tails: no overflow, the asymptotes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = M.logistic4(np.array([-1e6, 1e6]), 5.0, 1.0, 0.5, 0.8)
    np.testing.assert_allclose(out, [1.0, 5.0])


# --------------------------------------------------------------------------------------------- against scipy


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correlations_match_scipy(seed):
    rng = np.random.default_rng(seed)
    mos = rng.uniform(0, 1, 200)
    pred = mos + rng.normal(0, 0.3, 200)
    pred[:20] = np.round(pred[:20], 1)  # some ties
    assert M.srcc(pred, mos) == pytest.approx(stats.spearmanr(pred, mos)[0], abs=1e-12)
    assert M.krcc(pred, mos) == pytest.approx(stats.kendalltau(pred, mos)[0], abs=1e-12)
    assert M.plcc(pred, mos) == pytest.approx(stats.pearsonr(pred, mos)[0], abs=1e-12)


def test_accepts_lists_tensors_and_column_vectors():
    pred, mos = [0.1, 0.4, 0.2, 0.9], [1.0, 3.0, 2.0, 4.0]
    ref = M.srcc(pred, mos)
    assert M.srcc(torch.tensor(pred, requires_grad=True), torch.tensor(mos)) == pytest.approx(ref)
    assert M.srcc(np.array(pred)[:, None], mos) == pytest.approx(ref)
    assert M.srcc(torch.tensor(pred, dtype=torch.bfloat16), mos) == pytest.approx(ref)
    assert isinstance(ref, float)


# ----------------------------------------------------------------------------------------- logistic mapping


def _logistic_data(n=400, seed=0, noise=0.05, params=(5.0, 1.0, 0.5, 0.8)):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 4, n)
    return x, M.logistic4(x, *params) + rng.normal(0, noise, n)


def test_fit_recovers_known_parameters():
    x, y = _logistic_data()
    fit = M.fit_logistic4(x, y)
    assert fit.kind == "logistic4"
    np.testing.assert_allclose(fit.params, (5.0, 1.0, 0.5, 0.8), atol=0.05)
    assert all(type(v) is float for v in fit.params)


def test_fit_is_scale_and_direction_invariant():
    x, y = _logistic_data()
    ref = M.plcc_logistic(x, y)
    # predictions on a very different scale (e.g. raw logits) and reversed direction (e.g. DMOS-like)
    assert M.plcc_logistic(1000 * x + 5e4, y) == pytest.approx(ref, abs=1e-6)
    assert M.plcc_logistic(-x, y) == pytest.approx(ref, abs=1e-6)
    b = M.fit_logistic4(1000 * x + 5e4, y).params
    np.testing.assert_allclose(b, (5.0, 1.0, 5e4 + 500, 800.0), rtol=0.02)


def test_plcc_after_logistic_beats_raw_on_monotone_nonlinear():
    x, y = _logistic_data(noise=0.02)
    raw, mapped = M.plcc(x, y), M.plcc_logistic(x, y)
    assert mapped >= raw
    assert mapped > 0.99 > raw
    assert M.rmse(x, y) < M.rmse(x, y, logistic=False)
    assert M.rmse(x, y) == pytest.approx(0.02, rel=0.2)  # ~ the noise level


def test_fit_failure_falls_back_to_linear_with_warning(monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("Optimal parameters not found: maxfev reached")

    monkeypatch.setattr(optimize, "curve_fit", boom)
    x = np.array([1.0, 2.0, 3.0, 4.0])
    y = 2 * x + 1
    with pytest.warns(MetricWarning, match="linear fit"):
        fit = M.fit_logistic4(x, y)
    assert fit.kind == "linear" and "maxfev" in fit.message
    np.testing.assert_allclose(fit(x), y)
    with pytest.warns(MetricWarning):
        assert M.plcc_logistic(x, y) == pytest.approx(1.0)


def test_three_points_are_too_few_for_four_parameters_and_get_a_line():
    """The smallest part a run may score (metrics.MIN_ITEMS) cannot pin a 4-parameter curve: scipy refuses
    with a TypeError, and evaluate() must still answer, as it does for any other failed fit."""
    pred, mos = np.array([0.1, 0.5, 0.7]), np.array([1.0, 3.0, 2.5])
    with pytest.warns(MetricWarning, match="func parameters=4 must not exceed the number of data points=3"):
        result = M.evaluate(pred, mos)
    assert result["n"] == 3 and result["srcc"] == pytest.approx(0.5)
    assert result["plcc_logistic"] == pytest.approx(result["plcc"])  # a line keeps Pearson's r


def test_fit_never_crashes_on_awkward_data():
    rng = np.random.default_rng(3)
    cases = [
        (np.array([0.0, 0.0, 0.0, 1.0]), np.array([1.0, 2.0, 3.0, 4.0])),  # mostly ties
        (rng.normal(size=30), rng.normal(size=30)),  # no relation
        (np.array([1.0, 2.0, 3.0]), np.array([3.0, 3.0, 3.0])),  # constant MOS
    ]
    for x, y in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MetricWarning)
            fit = M.fit_logistic4(x, y)
            out = M.evaluate(x, y)
        assert np.all(np.isfinite(fit(x)))
        assert math.isfinite(out["rmse"])


def test_constant_predictions_give_nan_correlations_and_defined_rmse():
    mos = [1.0, 2.0, 3.0, 4.0]
    with pytest.warns(MetricWarning, match="constant"):
        out = M.evaluate([0.5] * 4, mos)
    for key in ("srcc", "krcc", "plcc", "plcc_logistic"):
        assert math.isnan(out[key])
    assert out["rmse"] == pytest.approx(np.std(mos))  # the mapping is the mean MOS
    assert out["n"] == 4


def test_evaluate_keys_and_consistency():
    x, y = _logistic_data(n=100)
    out = M.evaluate(x, y)
    assert set(out) == {"srcc", "krcc", "plcc", "plcc_logistic", "rmse", "n"}
    assert out["srcc"] == M.srcc(x, y)
    assert out["plcc_logistic"] == pytest.approx(M.plcc_logistic(x, y))
    assert out["rmse"] == pytest.approx(M.rmse(x, y))


# --------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("pred", "mos", "match"),
    [
        ([1, 2, 3], [1, 2], "differ in length: 3 vs 2"),
        ([1, 2], [1, 2], "at least 3"),
        ([1, np.nan, 3], [1, 2, 3], "pred contains 1 non-finite"),
        ([1, 2, 3], [1, np.inf, 3], "mos contains 1 non-finite"),
        (np.ones((3, 2)), np.ones((3, 2)), "must be 1-D"),
        (5.0, 5.0, "must be 1-D"),
    ],
)
def test_bad_input_raises_clearly(pred, mos, match):
    for fn in (M.srcc, M.krcc, M.plcc, M.plcc_logistic, M.rmse, M.evaluate, M.fit_logistic4):
        with pytest.raises(ValueError, match=match):
            fn(pred, mos)


# ---------------------------------------------------------------------------------------------- bootstrap


def _noisy(n, seed=0, noise=0.5):
    rng = np.random.default_rng(seed)
    mos = rng.uniform(0, 1, n)
    return mos + rng.normal(0, noise * mos.std(), n), mos


@pytest.mark.parametrize("metric", ["srcc", "plcc", "krcc"])
def test_bootstrap_ci_contains_estimate_and_shrinks(metric):
    widths = []
    for n in (50, 800):
        pred, mos = _noisy(n)
        low, high = M.bootstrap_ci(pred, mos, metric=metric, n_boot=300)
        assert low < M.METRICS[metric](pred, mos) < high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # ~ 1 / sqrt(n): a factor 4 expected


def test_bootstrap_ci_deterministic_callable_and_checks():
    pred, mos = _noisy(60)
    assert M.bootstrap_ci(pred, mos, seed=1) == M.bootstrap_ci(pred, mos, seed=1)
    # the vectorised SRCC path agrees with the generic path (the same resamples)
    generic = M.bootstrap_ci(pred, mos, metric=lambda p, m: M.srcc(p, m), n_boot=200, seed=2)
    fast = M.bootstrap_ci(pred, mos, metric="srcc", n_boot=200, seed=2)
    np.testing.assert_allclose(generic, fast, atol=1e-12)
    low, high = M.bootstrap_ci(pred, mos, metric="rmse", n_boot=50)
    assert 0 < low < M.rmse(pred, mos) < high
    with pytest.raises(ValueError, match="unknown metric"):
        M.bootstrap_ci(pred, mos, metric="srocc")
    with pytest.raises(ValueError, match="alpha"):
        M.bootstrap_ci(pred, mos, alpha=1.5)
    with pytest.raises(ValueError, match="n_boot must be at least 2"):  # one resample is no interval
        M.bootstrap_ci(pred, mos, n_boot=1)


def test_summarise():
    vals = [0.80, 0.82, 0.79, 0.85, 0.81]
    out = M.summarise(vals)
    assert out["median"] == pytest.approx(0.81)
    assert out["mean"] == pytest.approx(np.mean(vals))
    assert out["std"] == pytest.approx(np.std(vals, ddof=1))
    assert out["ci_low"] <= out["mean"] <= out["ci_high"]
    assert min(vals) <= out["ci_low"] and out["ci_high"] <= max(vals)
    assert out["n"] == 5 and out["n_nan"] == 0


def test_summarise_edge_cases():
    one = M.summarise([0.7])
    assert one["mean"] == 0.7 and one["n"] == 1 and math.isnan(one["std"]) and math.isnan(one["ci_low"])
    with pytest.warns(MetricWarning, match="1 of 3"):
        out = M.summarise([0.7, float("nan"), 0.9])
    assert out["n"] == 2 and out["n_nan"] == 1 and out["mean"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="at least one"):
        M.summarise([])


# ---------------------------------------------------------------------------------------------- paired test


def test_paired_test_detects_consistent_shift():
    rng = np.random.default_rng(0)
    b = rng.uniform(0.7, 0.9, 10)
    a = b + 0.02 + rng.normal(0, 0.005, 10)
    out = M.paired_test(a, b)
    assert out["n"] == 10 and out["n_a_greater"] == 10 and out["n_b_greater"] == 0
    assert out["wilcoxon_method"] == "exact"
    assert out["p_wilcoxon"] == pytest.approx(2 / 2**10)  # every difference positive: the smallest possible p
    assert out["p_ttest"] < 1e-6
    assert out["mean_diff"] == pytest.approx(np.mean(a - b))
    assert M.paired_test(a, b, alternative="greater")["p_wilcoxon"] == pytest.approx(1 / 2**10)
    assert M.paired_test(a, b, alternative="less")["p_wilcoxon"] == pytest.approx(1.0)


def test_paired_test_does_not_detect_noise():
    rng = np.random.default_rng(1)
    b = rng.uniform(0.7, 0.9, 12)
    a = b + rng.normal(0, 0.02, 12)
    out = M.paired_test(a, b)
    assert out["p_wilcoxon"] > 0.05 and out["p_ttest"] > 0.05


@pytest.mark.parametrize("n", [5, 9, 14])
def test_wilcoxon_exact_matches_scipy_without_ties(n):
    rng = np.random.default_rng(n)
    a, b = rng.normal(0.3, 1, n), np.zeros(n)
    for alt in ("two-sided", "greater", "less"):
        ours = M.paired_test(a, b, alternative=alt)["p_wilcoxon"]
        assert ours == pytest.approx(stats.wilcoxon(a, method="exact", alternative=alt).pvalue)


def test_wilcoxon_exact_with_ties_and_zeros_is_a_full_sign_flip_test():
    d = np.array([0.01, 0.02, 0.02, 0.0, 0.03, -0.01, 0.02, -0.03, 0.05])
    # brute force: drop the zero, rank |d| with average ranks, enumerate all 2^8 sign patterns
    nz = d[d != 0]
    ranks = stats.rankdata(np.abs(nz))
    w_obs = ranks[nz > 0].sum()
    signs = np.array(np.meshgrid(*[[0, 1]] * nz.size)).reshape(nz.size, -1).T
    w_all = signs @ ranks
    p_brute = min(1.0, 2 * min(np.mean(w_all <= w_obs + 1e-9), np.mean(w_all >= w_obs - 1e-9)))
    out = M.paired_test(d, np.zeros_like(d))
    assert out["p_wilcoxon"] == pytest.approx(p_brute)
    assert out["n_ties"] == 1 and out["n_a_greater"] == 6 and out["n_b_greater"] == 2


def test_paired_test_large_n_uses_normal_approximation():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.1, 1, 80), np.zeros(80)
    out = M.paired_test(a, b)
    assert out["wilcoxon_method"] == "approx"
    assert out["p_wilcoxon"] == pytest.approx(stats.wilcoxon(a, method="approx").pvalue)


def test_paired_test_degenerate_and_bad_input():
    same = M.paired_test([0.8, 0.7, 0.9], [0.8, 0.7, 0.9])
    assert same["p_wilcoxon"] == 1.0 and same["p_ttest"] == 1.0 and same["n_ties"] == 3
    shift = M.paired_test([1.5, 2.5, 3.5], [1.0, 2.0, 3.0])  # constant non-zero difference
    assert shift["p_ttest"] == 0.0 and shift["p_wilcoxon"] == pytest.approx(2 / 2**3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy would warn of catastrophic cancellation here
        rounded = M.paired_test([0.1, 0.3], [0.3, 0.5])  # differences equal but for round-off
    assert 0.1 - 0.3 != 0.3 - 0.5 and rounded["p_ttest"] == 0.0
    with pytest.raises(ValueError, match="same splits"):
        M.paired_test([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 2 splits"):
        M.paired_test([1], [2])
    with pytest.raises(ValueError, match="non-finite"):
        M.paired_test([1, np.nan], [2, 3])
    with pytest.raises(ValueError, match="alternative"):
        M.paired_test([1, 2], [2, 3], alternative="bigger")


def test_cluster_bootstrap_resamples_contents_not_images():
    # 8 contents x 40 images; predictions share a per-content offset, so images of a content are not independent
    rng = np.random.default_rng(0)
    contents = np.repeat(np.arange(8), 40)
    mos = rng.uniform(0, 1, contents.size)
    pred = mos + rng.normal(0, 0.6, 8)[contents] + rng.normal(0, 0.05, contents.size)
    naive = M.bootstrap_ci(pred, mos, n_boot=400)
    clustered = M.bootstrap_ci(pred, mos, n_boot=400, clusters=contents)
    assert clustered[1] - clustered[0] > 2 * (naive[1] - naive[0])  # honest intervals are much wider here
    assert clustered == M.bootstrap_ci(pred, mos, n_boot=400, clusters=contents)  # deterministic for a seed
    assert np.isnan(M.bootstrap_ci(pred, mos, clusters=np.zeros(contents.size))).all()  # one content: no CI
    with pytest.raises(ValueError, match="one label per item"):
        M.bootstrap_ci(pred, mos, clusters=contents[:-1])

"""Quality-assessment metrics as plain functions of numbers.

Everything here takes two equal-length sequences (numpy arrays, lists, pandas Series, or torch tensors, which are
converted) and returns Python floats. Nothing imports the rest of ``mmpiqa``.

- ``srcc`` / ``krcc`` / ``plcc``: Spearman, Kendall (tau-b) and Pearson correlations, computed by scipy.
- ``fit_logistic4`` / ``plcc_logistic`` / ``rmse``: the VQEG practice of mapping predictions onto the MOS scale with a
  monotone 4-parameter logistic before PLCC and RMSE are measured.
- ``evaluate``: all of the above in one dict.
- ``bootstrap_ci``: a percentile bootstrap over images for one test set.
- ``summarise``: median / mean / std over n splits with a bootstrap CI of the mean.
- ``paired_test``: two ablation arms evaluated on the same splits (Wilcoxon signed-rank + paired t-test).

Policy for bad input (one rule everywhere):

- different lengths, fewer than 3 items (2 splits for ``paired_test``, 1 for ``summarise``), NaN or inf, or a
  non-1-D array -> ``ValueError`` naming the argument and the problem. These are bugs upstream.
- constant input (for example a collapsed model that predicts the same score for every image) -> the correlations
  are undefined: they return ``nan`` and emit a ``MetricWarning`` instead of raising, so that one collapsed split
  does not crash a sweep. ``summarise`` then omits such splits, warns, and counts them in ``n_nan``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, special, stats

__all__ = [
    "METRICS",
    "Logistic4Fit",
    "MetricWarning",
    "bootstrap_ci",
    "evaluate",
    "fit_logistic4",
    "krcc",
    "logistic4",
    "paired_test",
    "plcc",
    "plcc_logistic",
    "rmse",
    "srcc",
    "summarise",
]

MIN_ITEMS = 3


class MetricWarning(UserWarning):
    """A metric could not be computed as asked (constant input, failed logistic fit); see the message."""


# --------------------------------------------------------------------------------------------------- input checks


def _to_array(x: Any, name: str) -> np.ndarray:
    """Any sequence or tensor -> 1-D float64 numpy array (no copy of the caller's data is modified)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
        x = x.detach().cpu().double().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        squeezed = arr.reshape(-1) if arr.size in arr.shape else None  # (N, 1), (1, N) are fine
        if squeezed is None or arr.ndim == 0:
            raise ValueError(f"{name} must be 1-D (one value per image); got shape {arr.shape}")
        arr = squeezed
    return arr


def _check_finite(arr: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        where = np.flatnonzero(bad)
        raise ValueError(
            f"{name} contains {where.size} non-finite value(s) (NaN or inf), first at position(s) "
            f"{where[:5].tolist()}; drop or fix them before computing metrics"
        )


def _pair(pred: Any, mos: Any, min_n: int = MIN_ITEMS) -> tuple[np.ndarray, np.ndarray]:
    p, m = _to_array(pred, "pred"), _to_array(mos, "mos")
    if p.shape != m.shape:
        raise ValueError(f"pred and mos differ in length: {p.size} vs {m.size}")
    if p.size < min_n:
        raise ValueError(f"need at least {min_n} (pred, mos) pairs, got {p.size}")
    _check_finite(p, "pred")
    _check_finite(m, "mos")
    return p, m


def _constant(p: np.ndarray, m: np.ndarray, metric: str) -> bool:
    """True (after warning) when either side is constant, so a correlation is undefined."""
    for arr, name in ((p, "pred"), (m, "mos")):
        if np.ptp(arr) == 0:
            warnings.warn(
                f"{metric}: {name} is constant (all {arr[0]:g}); the correlation is undefined, returning nan",
                MetricWarning,
                stacklevel=3,
            )
            return True
    return False


# ---------------------------------------------------------------------------------------------- correlations


def srcc(pred: Any, mos: Any) -> float:
    """Spearman rank-order correlation (ties get average ranks). nan + MetricWarning on constant input."""
    p, m = _pair(pred, mos)
    if _constant(p, m, "srcc"):
        return math.nan
    return float(stats.spearmanr(p, m)[0])


def krcc(pred: Any, mos: Any) -> float:
    """Kendall rank correlation, tau-b (tie-corrected). nan + MetricWarning on constant input."""
    p, m = _pair(pred, mos)
    if _constant(p, m, "krcc"):
        return math.nan
    return float(stats.kendalltau(p, m)[0])


def plcc(pred: Any, mos: Any) -> float:
    """Pearson linear correlation of the raw predictions (no mapping). nan + MetricWarning on constant input."""
    p, m = _pair(pred, mos)
    if _constant(p, m, "plcc"):
        return math.nan
    return float(stats.pearsonr(p, m)[0])


# ---------------------------------------------------------------------------------------- 4-parameter logistic


def logistic4(x: Any, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """The VQEG 4-parameter logistic ``f(x) = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``.

    ``b1`` is the value approached as x -> +inf, ``b2`` as x -> -inf, ``b3`` the midpoint and ``|b4|`` the width.
    Computed through ``scipy.special.expit`` so large arguments do not overflow; ``|b4|`` is floored at 1e-12.
    """
    x = np.asarray(x, dtype=np.float64)
    width = max(abs(float(b4)), 1e-12)
    return b2 + (b1 - b2) * special.expit((x - b3) / width)


@dataclass(frozen=True)
class Logistic4Fit:
    """A fitted mapping from predictions to the MOS scale; call it on predictions.

    ``kind`` is ``"logistic4"`` when the logistic fit succeeded (``params`` = (b1, b2, b3, |b4|)), ``"linear"`` when
    it failed and a least-squares line was used instead (``params`` = (slope, intercept)), or ``"constant"`` when
    the predictions were constant (``params`` = (mean MOS,)). ``message`` says why a fallback was used.
    """

    kind: str
    params: tuple[float, ...]
    message: str = ""

    def __call__(self, x: Any) -> np.ndarray:
        if hasattr(x, "detach") and hasattr(x, "cpu"):
            x = x.detach().cpu().double().numpy()
        x = np.asarray(x, dtype=np.float64)
        if self.kind == "logistic4":
            return logistic4(x, *self.params)
        if self.kind == "linear":
            slope, intercept = self.params
            return slope * x + intercept
        return np.full(np.shape(x), self.params[0], dtype=np.float64)


def _standard_logistic(z: np.ndarray, c1: float, c2: float, c3: float, c4: float) -> np.ndarray:
    return c2 + (c1 - c2) * special.expit((z - c3) / max(abs(c4), 1e-12))


def fit_logistic4(pred: Any, mos: Any) -> Logistic4Fit:
    """Fit the 4-parameter logistic (``logistic4``) from ``pred`` to ``mos`` by least squares.

    The fit runs on standardised pred and mos (better conditioned; parameters are converted back) with
    ``scipy.optimize.curve_fit`` from a few starts, the first being the usual one: asymptotes at the MOS extremes
    (swapped when pred and MOS are anti-correlated), midpoint at the mean prediction, width one standard deviation.
    The start with the lowest squared error wins. If no start converges to finite parameters that beat the mean,
    a least-squares line is used instead and a ``MetricWarning`` says so; this never raises for valid input.
    """
    p, m = _pair(pred, mos)
    if np.ptp(p) == 0:
        msg = "pred is constant; the mapping is the mean MOS"
        warnings.warn(f"fit_logistic4: {msg}", MetricWarning, stacklevel=2)
        return Logistic4Fit("constant", (float(m.mean()),), msg)

    mu_p, sd_p = p.mean(), p.std()
    mu_m, sd_m = m.mean(), m.std()
    if sd_m == 0:  # constant MOS: any flat curve through it fits exactly
        return Logistic4Fit("logistic4", (float(mu_m), float(mu_m), float(mu_p), float(sd_p)))
    z, y = (p - mu_p) / sd_p, (m - mu_m) / sd_m

    sign = 1.0 if np.corrcoef(z, y)[0, 1] >= 0 else -1.0
    hi, lo = (y.max(), y.min()) if sign > 0 else (y.min(), y.max())
    starts = [(hi, lo, 0.0, 1.0), (hi, lo, 0.0, 0.3), (hi, lo, 0.0, 3.0), (2 * hi, 2 * lo, 0.0, 2.0)]
    best, best_sse = None, float(np.sum(y**2))  # to beat: the mean
    reasons = []
    for start in starts:
        try:
            with warnings.catch_warnings():
                # "covariance could not be estimated" is irrelevant here: only the parameters are used
                warnings.simplefilter("ignore", optimize.OptimizeWarning)
                warnings.simplefilter("ignore", RuntimeWarning)
                c, _ = optimize.curve_fit(_standard_logistic, z, y, p0=start, maxfev=20000)
        except (RuntimeError, ValueError, TypeError, FloatingPointError) as err:  # TypeError: under 4 points
            reasons.append(str(err).splitlines()[0])
            continue
        if not np.all(np.isfinite(c)):
            reasons.append("non-finite parameters")
            continue
        sse = float(np.sum((_standard_logistic(z, *c) - y) ** 2))
        if sse < best_sse:
            best, best_sse = c, sse
    if best is not None:
        c1, c2, c3, c4 = (float(v) for v in best)
        raw = (mu_m + sd_m * c1, mu_m + sd_m * c2, mu_p + sd_p * c3, sd_p * max(abs(c4), 1e-12))
        params = tuple(float(v) for v in raw)
        return Logistic4Fit("logistic4", params)

    slope, intercept = np.polyfit(p, m, 1)
    msg = f"logistic fit failed ({'; '.join(reasons) or 'no start beat the mean'}); used a linear fit instead"
    warnings.warn(f"fit_logistic4: {msg}", MetricWarning, stacklevel=2)
    return Logistic4Fit("linear", (float(slope), float(intercept)), msg)


def plcc_logistic(pred: Any, mos: Any) -> float:
    """PLCC between the logistic-mapped predictions and MOS (the number IQA papers usually call PLCC)."""
    p, m = _pair(pred, mos)
    if _constant(p, m, "plcc_logistic"):
        return math.nan
    return _plcc_mapped(fit_logistic4(p, m)(p), m)


def _plcc_mapped(mapped: np.ndarray, m: np.ndarray) -> float:
    if np.ptp(mapped) == 0:  # a degenerate (flat) fit
        warnings.warn("plcc_logistic: the fitted mapping is flat; returning nan", MetricWarning, stacklevel=3)
        return math.nan
    return float(stats.pearsonr(mapped, m)[0])


def rmse(pred: Any, mos: Any, logistic: bool = True) -> float:
    """Root mean squared error on the MOS scale; after the logistic mapping unless ``logistic=False``.

    Defined for constant predictions too (then it is the MOS standard deviation when ``logistic=True``).
    """
    p, m = _pair(pred, mos)
    mapped = fit_logistic4(p, m)(p) if logistic else p
    return float(np.sqrt(np.mean((mapped - m) ** 2)))


def evaluate(pred: Any, mos: Any) -> dict[str, float]:
    """All metrics at once: ``srcc, krcc, plcc, plcc_logistic, rmse`` (after the logistic) and ``n``.

    The logistic is fitted once and shared by ``plcc_logistic`` and ``rmse``.
    """
    p, m = _pair(pred, mos)
    out = {"srcc": srcc(p, m), "krcc": krcc(p, m), "plcc": plcc(p, m)}
    fit = fit_logistic4(p, m)
    mapped = fit(p)
    out["plcc_logistic"] = math.nan if math.isnan(out["plcc"]) else _plcc_mapped(mapped, m)
    out["rmse"] = float(np.sqrt(np.mean((mapped - m) ** 2)))
    out["n"] = int(p.size)
    return out


METRICS: dict[str, Callable[[Any, Any], float]] = {
    "srcc": srcc,
    "krcc": krcc,
    "plcc": plcc,
    "plcc_logistic": plcc_logistic,
    "rmse": rmse,
}


# -------------------------------------------------------------------------------------------------- bootstrap


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=1) / den
    r[den == 0] = np.nan
    return np.clip(r, -1.0, 1.0)


def bootstrap_ci(
    pred: Any,
    mos: Any,
    metric: str | Callable[[Any, Any], float] = "srcc",
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    clusters: Any = None,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of a metric over images (resampled with replacement).

    ``clusters`` (one label per image, e.g. the reference content): images that share a label are not independent
    (75 distorted versions of one photo), so whole clusters are resampled instead of single images. Resampling
    images there gives intervals that are too narrow. With a single cluster there is nothing to resample and the
    interval is ``(nan, nan)``: one content says nothing about other contents.

    ``metric`` is a name from ``METRICS`` or any ``f(pred, mos) -> float``. SRCC and PLCC are vectorised over the
    resamples; other metrics are computed resample by resample (``plcc_logistic`` and ``rmse`` refit the logistic
    each time, which is slow: prefer a few hundred resamples). Resamples where the metric is undefined (e.g. all
    drawn predictions equal) are dropped. Returns ``(low, high)`` at level ``1 - alpha``; deterministic for a seed.
    """
    p, m = _pair(pred, mos)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if n_boot < 2:
        raise ValueError(f"n_boot must be at least 2 (one resample gives no interval), got {n_boot}")
    if isinstance(metric, str):
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {sorted(METRICS)} or pass a function")
        name, fn = metric, METRICS[metric]
    else:
        name, fn = getattr(metric, "__name__", "metric"), metric

    rng = np.random.default_rng(seed)
    if clusters is not None:
        idx = _cluster_resamples(np.asarray(clusters), p.size, n_boot, rng)
        if idx is None:
            return (math.nan, math.nan)
        fn = {"srcc": srcc, "plcc": plcc}.get(name, fn)
        name = "per-resample"  # resamples differ in size: no vectorised path
    else:
        idx = rng.integers(0, p.size, size=(n_boot, p.size))
    if name in ("srcc", "plcc"):
        values = np.empty(n_boot)
        step = max(1, 2_000_000 // p.size)  # blocks of resamples keep memory bounded for large test sets
        for start in range(0, n_boot, step):
            block = idx[start : start + step]
            x, y = p[block], m[block]
            if name == "srcc":
                x, y = stats.rankdata(x, axis=1), stats.rankdata(y, axis=1)
            values[start : start + step] = _rowwise_pearson(x, y)
    else:
        values = np.empty(n_boot)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MetricWarning)
            for k, row in enumerate(idx):
                values[k] = fn(p[row], m[row])
    values = values[np.isfinite(values)]
    if values.size == 0:
        warnings.warn(f"bootstrap_ci: {name} undefined on every resample", MetricWarning, stacklevel=2)
        return (math.nan, math.nan)
    low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return (float(low), float(high))


def _cluster_resamples(clusters: np.ndarray, n: int, n_boot: int, rng: np.random.Generator):
    """Index arrays of `n_boot` cluster-bootstrap resamples (whole clusters drawn with replacement)."""
    if clusters.shape != (n,):
        raise ValueError(f"clusters must hold one label per item ({n}), got shape {clusters.shape}")
    labels, inverse = np.unique(clusters, return_inverse=True)
    if labels.size < 2:
        return None
    members = [np.flatnonzero(inverse == k) for k in range(labels.size)]
    draws = rng.integers(0, labels.size, size=(n_boot, labels.size))
    return [np.concatenate([members[k] for k in row]) for row in draws]


def summarise(
    values: Sequence[float] | Any, n_boot: int = 10000, alpha: float = 0.05, seed: int = 0
) -> dict[str, float]:
    """Summary of one metric over n splits: ``median, mean, std`` (ddof=1), a percentile bootstrap CI of the
    mean (``ci_low, ci_high``), ``n`` (splits used) and ``n_nan`` (undefined splits omitted, with a warning).

    With a single split, ``std`` and the CI are nan. With few splits the CI is coarse (it can only take the
    values of means of resampled splits): report n alongside it.
    """
    arr = _to_array(values, "values")
    if arr.size == 0:
        raise ValueError("summarise needs at least one value")
    if np.isinf(arr).any():
        raise ValueError("values contain inf; a metric value should be finite or nan")
    n_nan = int(np.isnan(arr).sum())
    if n_nan:
        warnings.warn(
            f"summarise: {n_nan} of {arr.size} value(s) are nan (undefined metric) and are omitted",
            MetricWarning,
            stacklevel=2,
        )
        arr = arr[~np.isnan(arr)]
    out = {"median": math.nan, "mean": math.nan, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    if arr.size:
        out["median"], out["mean"] = float(np.median(arr)), float(arr.mean())
    if arr.size >= 2:
        out["std"] = float(arr.std(ddof=1))
        idx = np.random.default_rng(seed).integers(0, arr.size, size=(n_boot, arr.size))
        means = arr[idx].mean(axis=1)
        out["ci_low"], out["ci_high"] = (
            float(v) for v in np.percentile(means, [50 * alpha, 100 - 50 * alpha])
        )
    out["n"] = int(arr.size)
    out["n_nan"] = n_nan
    return out


# ------------------------------------------------------------------------------------------------ paired test

EXACT_MAX_N = 50  # at most this many non-zero differences: exact Wilcoxon distribution; above: normal approx.


def _wilcoxon_exact_p(d: np.ndarray, alternative: str) -> float:
    """Exact p-value of the Wilcoxon signed-rank statistic conditional on the observed ranks.

    Zero differences are dropped (Wilcoxon's rule); tied |d| get average ranks, so the doubled ranks are
    integers and the null distribution of W+ (every sign +/- with probability 1/2) is counted exactly by a
    convolution over the ranks. Without ties this equals scipy's ``method="exact"``; with ties it equals a
    complete sign-flip permutation test.
    """
    d = d[d != 0]
    if d.size == 0:
        return 1.0
    ranks2 = np.rint(2 * stats.rankdata(np.abs(d))).astype(np.int64)
    total = int(ranks2.sum())
    # counts of sign patterns per value of 2*W+; float64 is exact below 2**53 (n <= 50 gives at most 2**50)
    counts = np.zeros(total + 1, dtype=np.float64)
    counts[0] = 1.0
    for r in ranks2:
        shifted = np.zeros_like(counts)
        shifted[r:] = counts[: total + 1 - r]
        counts = counts + shifted
    prob = counts / counts.sum()
    w = int(ranks2[d > 0].sum())
    p_le, p_ge = float(prob[: w + 1].sum()), float(prob[w:].sum())
    if alternative == "greater":
        return min(1.0, p_ge)
    if alternative == "less":
        return min(1.0, p_le)
    return min(1.0, 2 * min(p_le, p_ge))


def paired_test(a: Any, b: Any, alternative: str = "two-sided") -> dict[str, Any]:
    """Compare two arms evaluated on the same splits (``a[k]``, ``b[k]``: one metric value of split k).

    Returns a dict with
    ``n`` (splits), ``mean_diff`` and ``median_diff`` (of a - b), ``n_a_greater`` / ``n_b_greater`` / ``n_ties``
    (splits where a > b, a < b, a == b; "greater" is "better" for SRCC/PLCC but worse for RMSE),
    ``p_wilcoxon`` with ``wilcoxon_method`` ("exact" for at most 50 non-zero differences, else "approx": scipy's
    normal approximation with tie correction), and ``p_ttest`` (scipy's paired t-test).
    ``alternative`` is "two-sided", "greater" (a > b) or "less".

    Notes for reading the numbers: with n non-zero differences the smallest two-sided Wilcoxon p is 2 / 2**n, so
    fewer than 6 splits can never reach p < 0.05. If all differences are zero both p-values are 1; if they are
    all equal and non-zero the t statistic is infinite and ``p_ttest`` is 0 (the Wilcoxon p stays honest).
    """
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be 'two-sided', 'greater' or 'less', got {alternative!r}")
    x, y = _to_array(a, "a"), _to_array(b, "b")
    if x.shape != y.shape:
        raise ValueError(
            f"a and b must hold one value per split for the same splits; lengths {x.size} vs {y.size}"
        )
    if x.size < 2:
        raise ValueError(f"a paired test needs at least 2 splits, got {x.size}")
    _check_finite(x, "a")
    _check_finite(y, "b")
    d = x - y
    nonzero = int(np.count_nonzero(d))
    out: dict[str, Any] = {
        "n": int(d.size),
        "mean_diff": float(d.mean()),
        "median_diff": float(np.median(d)),
        "n_a_greater": int((d > 0).sum()),
        "n_b_greater": int((d < 0).sum()),
        "n_ties": int((d == 0).sum()),
    }
    if nonzero == 0:
        out.update(p_wilcoxon=1.0, wilcoxon_method="exact", p_ttest=1.0)
        return out
    if nonzero <= EXACT_MAX_N:
        out["p_wilcoxon"], out["wilcoxon_method"] = _wilcoxon_exact_p(d, alternative), "exact"
    else:
        res = stats.wilcoxon(d, zero_method="wilcox", alternative=alternative, method="approx")
        out["p_wilcoxon"], out["wilcoxon_method"] = float(res.pvalue), "approx"
    # constant non-zero difference (up to round-off: 0.1 - 0.3 and 0.3 - 0.5 differ in the 17th digit): t = +-inf,
    # where scipy would warn of catastrophic cancellation and return a p from noise
    if np.ptp(d) <= 1e-12 * np.abs(d).max():
        inf_p = {"two-sided": 0.0, "greater": 0.0 if d[0] > 0 else 1.0, "less": 0.0 if d[0] < 0 else 1.0}
        out["p_ttest"] = inf_p[alternative]
    else:
        out["p_ttest"] = float(stats.ttest_rel(x, y, alternative=alternative).pvalue)
    return out

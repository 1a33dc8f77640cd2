"""Bootstrap draws and intervals; coverage of the true parameters on synthetic Chinchilla data."""
from __future__ import annotations

import numpy as np
import pytest

from curate.laws.bootstrap import (
    bootstrap_draws,
    percentile_intervals,
    prediction_intervals,
    resample_indices,
)
from curate.laws.data_constrained import ChinchillaLaw, chinchilla_loss

TRUE = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
FAR = (np.array([3e10]), np.array([6e11]))  # an extrapolation point beyond the data


def synthetic(seed, n=100, sigma=0.01):
    rng = np.random.default_rng(seed)
    N = np.exp(rng.uniform(np.log(5e7), np.log(5e9), n))
    D = N * np.exp(rng.uniform(np.log(2), np.log(200), n))
    y = chinchilla_loss(N, D, **TRUE) * np.exp(rng.normal(0.0, sigma, n))
    return N, D, y


def warm_refit(N, D, y, start):
    """Bootstrap refit: L-BFGS from the full-data estimate (one start, same objective)."""
    def fit(idx):
        return ChinchillaLaw(**start).fit(N[idx], D[idx], y[idx], method="local").params_
    return fit


def test_resampling_is_deterministic_and_respects_groups():
    rng1, rng2 = np.random.default_rng(5), np.random.default_rng(5)
    assert np.array_equal(resample_indices(rng1, 10), resample_indices(rng2, 10))
    groups = np.array(["a", "a", "a", "b", "b", "c"])
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = resample_indices(rng, 6, groups)
        # Whole groups only: each drawn group contributes all of its rows.
        labels, counts = np.unique(groups[idx], return_counts=True)
        sizes = {"a": 3, "b": 2, "c": 1}
        assert all(c % sizes[l] == 0 for l, c in zip(labels, counts))
    with pytest.raises(ValueError, match="one label per row"):
        resample_indices(rng, 5, groups)


def test_draws_intervals_and_failed_refits():
    values = np.arange(20.0)

    def fit_mean(idx):
        if len(np.unique(idx)) < 3:
            raise ValueError("degenerate resample")
        return {"mean": values[idx].mean()}

    draws = bootstrap_draws(fit_mean, 20, n_boot=200, seed=1)
    assert len(draws) == 200
    assert draws == bootstrap_draws(fit_mean, 20, n_boot=200, seed=1)  # seeded
    lo, hi = percentile_intervals(draws, level=0.9)["mean"]
    assert lo < 9.5 < hi
    # Normal theory: the mean of 20 points with sd 5.9 has se 1.3; a 90 % band is ~ +-2.2.
    assert 3.0 < hi - lo < 5.5
    with pytest.raises(RuntimeError, match="refits failed"):
        bootstrap_draws(lambda idx: (_ for _ in ()).throw(ValueError("no")), 20, 5, seed=0)
    with pytest.raises(ValueError, match="level"):
        percentile_intervals(draws, level=90)


def _coverage(replications, n_boot, level=0.9):
    hits, total, pred_hits = 0, 0, 0
    true_far = float(chinchilla_loss(*FAR, **TRUE)[0])
    for rep in range(replications):
        N, D, y = synthetic(seed=100 + rep)
        point = ChinchillaLaw().fit(N, D, y)
        draws = bootstrap_draws(warm_refit(N, D, y, point.params_), len(y), n_boot, seed=rep)
        intervals = percentile_intervals(draws, level)
        for name, (lo, hi) in intervals.items():
            hits += lo <= TRUE[name] <= hi
            total += 1
        lo, hi = prediction_intervals(draws, lambda p: ChinchillaLaw(**p).predict(*FAR), level)
        pred_hits += lo[0] <= true_far <= hi[0]
    return hits / total, pred_hits / replications


def test_bootstrap_intervals_cover_true_parameters():
    # 6 data sets x 5 parameters = 30 interval checks at 90 %: expect ~27; P(<= 21) < 1 %.
    param_cov, pred_cov = _coverage(replications=6, n_boot=40)
    assert param_cov >= 0.7
    assert pred_cov >= 4 / 6


@pytest.mark.slow
def test_bootstrap_coverage_is_nominal():
    # 60 x 5 = 300 checks: binomial sd at 90 % is 1.7 points (correlated within a data set).
    param_cov, pred_cov = _coverage(replications=60, n_boot=100)
    assert 0.82 <= param_cov <= 0.97
    assert 0.75 <= pred_cov <= 1.0

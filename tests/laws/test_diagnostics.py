"""Goodness of fit, leave-one-out and hold-out-the-largest extrapolation checks."""
from __future__ import annotations

import numpy as np
import pytest

from curate.laws.data_constrained import ChinchillaLaw, chinchilla_loss
from curate.laws.diagnostics import goodness_of_fit, holdout_largest, leave_one_out

TRUE = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def test_goodness_of_fit_values():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    y_hat = np.array([1.5, 2.0, 2.5, 4.0])
    g = goodness_of_fit(y, y_hat)
    np.testing.assert_allclose(g["residuals"], [0.5, 0.0, -0.5, 0.0])
    assert g["r2"] == pytest.approx(1 - 0.5 / 5.0)
    assert g["rmse"] == pytest.approx(np.sqrt(0.125))
    assert g["mae"] == pytest.approx(0.25)
    assert goodness_of_fit(y, np.full(4, y.mean()))["r2"] == pytest.approx(0.0)
    assert goodness_of_fit(y, y[::-1])["r2"] < 0  # worse than the mean
    with pytest.raises(ValueError, match="aligned"):
        goodness_of_fit(y, y[:3])


def _data(n=40, sigma=0.0, seed=0):
    rng = np.random.default_rng(seed)
    N = np.exp(rng.uniform(np.log(5e7), np.log(5e9), n))
    D = N * np.exp(rng.uniform(np.log(2), np.log(200), n))
    y = chinchilla_loss(N, D, **TRUE) * np.exp(rng.normal(0, sigma, n))
    return N, D, y


def _chinchilla_fit_predict(N, D, y, law_cls=ChinchillaLaw, fix=None):
    def fit_predict(train, test):
        law = law_cls(**TRUE).fit(N[train], D[train], y[train], method="local", fix=fix)
        return law.predict(N[test], D[test])
    return fit_predict


def test_leave_one_out_is_exact_on_noise_free_data_and_grows_with_noise():
    N, D, y = _data(n=25)
    clean = leave_one_out(_chinchilla_fit_predict(N, D, y), len(y), y=y)
    assert clean["predictions"].shape == (25,)
    assert clean["mean_abs_rel_error"] < 1e-5
    N, D, noisy_y = _data(n=25, sigma=0.02, seed=1)
    noisy = leave_one_out(_chinchilla_fit_predict(N, D, noisy_y), len(y), y=noisy_y)
    assert noisy["mean_abs_rel_error"] > 0.005


def test_holdout_largest_holds_out_the_largest_and_detects_a_wrong_law():
    N, D, y = _data(n=30, sigma=0.002, seed=2)
    compute = 6 * N * D
    res = holdout_largest(_chinchilla_fit_predict(N, D, y), compute, k=3, y=y)
    assert set(res["test_idx"]) == set(np.argsort(compute)[-3:])
    assert len(res["train_idx"]) == 27 and res["predictions"].shape == (3,)
    assert res["mean_abs_rel_error"] < 0.01
    # A law with a wrong floor fixed extrapolates visibly worse.
    wrong = holdout_largest(_chinchilla_fit_predict(N, D, y, fix={"E": 1.2}), compute, k=3, y=y)
    assert wrong["mean_abs_rel_error"] > 2 * res["mean_abs_rel_error"]


def test_holdout_validation_and_ties():
    fp = lambda train, test: np.zeros(len(test))
    res = holdout_largest(fp, [1, 3, 3, 2], k=1)
    assert list(res["test_idx"]) == [2]  # stable: the later of two equal maxima
    with pytest.raises(ValueError, match="k must be"):
        holdout_largest(fp, [1, 2, 3], k=3)
    with pytest.raises(ValueError, match="at least 2"):
        leave_one_out(fp, 1)


def _recording_fit_predict():
    """A fit_predict that predicts each test row's own index and records every call."""
    calls = []

    def fp(train, test):
        calls.append((np.asarray(train), np.asarray(test)))
        assert not set(train.tolist()) & set(test.tolist())  # never trained on a test row
        return test.astype(float)
    return fp, calls


def test_cross_validation_is_leave_one_out_up_to_the_limit_and_k_fold_above():
    from curate.laws.diagnostics import CV_FOLDS, LOO_MAX_ROWS, cross_validate

    fp, calls = _recording_fit_predict()
    small = cross_validate(fp, LOO_MAX_ROWS)
    assert small["method"] == "leave-one-out" and len(calls) == LOO_MAX_ROWS
    calls.clear()
    n = 100_000  # issue 17: leave-one-out here was 100,000 refits
    big = cross_validate(fp, n)
    assert big["method"] == f"{CV_FOLDS}-fold" and big["folds"] == CV_FOLDS
    assert len(calls) == CV_FOLDS
    np.testing.assert_array_equal(big["predictions"], np.arange(n))  # every row predicted once
    # interleaved folds: rows sorted by pool or size spread over every fold
    assert calls[3][1][:3].tolist() == [3, 3 + CV_FOLDS, 3 + 2 * CV_FOLDS]


def test_k_fold_on_noise_free_data_is_exact():
    from curate.laws.diagnostics import k_fold

    N, D, y = _data(n=30)
    res = k_fold(_chinchilla_fit_predict(N, D, y), len(y), folds=5, y=y)
    assert res["mean_abs_rel_error"] < 1e-5
    with pytest.raises(ValueError, match="folds"):
        k_fold(_chinchilla_fit_predict(N, D, y), 3, folds=5)

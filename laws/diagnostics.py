"""Goodness of fit and extrapolation checks for fitted laws.

The checks take a ``fit_predict(train_idx, test_idx) -> predictions`` function, so they work
for every law and fitting method: refit on the training rows, predict the test rows.

Cross-validation (:func:`cross_validate`) is leave-one-out up to :data:`LOO_MAX_ROWS` rows and
:data:`CV_FOLDS`-fold above: leave-one-out costs one refit per row, which made a default
`curate fit` on 100,000 rows run for hours; k-fold costs k refits whatever the row count.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

#: Leave-one-out up to this many rows (one refit per row); k-fold above.
LOO_MAX_ROWS = 100
#: Folds of the k-fold cross-validation used above LOO_MAX_ROWS rows.
CV_FOLDS = 10


def goodness_of_fit(y, y_hat) -> dict:
    """Residuals (y_hat - y), R^2 (on the metric itself), RMSE, MAE, and the log-space RMSE.

    R^2 = 1 - sum (y - y_hat)^2 / sum (y - mean y)^2, the usual definition (can be negative).
    """
    y = np.asarray(y, dtype=float).ravel()
    y_hat = np.asarray(y_hat, dtype=float).ravel()
    if y.shape != y_hat.shape or y.size == 0:
        raise ValueError(f"y and y_hat must be non-empty and aligned ({y.size} vs {y_hat.size})")
    resid = y_hat - y
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    ss_res = float(np.sum(resid ** 2))
    out = {
        "residuals": resid,
        "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
        "rmse": float(np.sqrt(np.mean(resid ** 2))),
        "mae": float(np.mean(np.abs(resid))),
        "n": int(y.size),
    }
    if np.all(y > 0) and np.all(y_hat > 0):
        out["rmse_log"] = float(np.sqrt(np.mean((np.log(y_hat) - np.log(y)) ** 2)))
    return out


def _errors(y, idx, pred) -> dict:
    if y is None:
        return {}
    y = np.asarray(y, dtype=float).ravel()[idx]
    err = pred - y
    return {"residuals": err, "rmse": float(np.sqrt(np.mean(err ** 2))),
            "mae": float(np.mean(np.abs(err))),
            "mean_abs_rel_error": float(np.mean(np.abs(err) / np.abs(y)))}


def leave_one_out(fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray], n: int,
                  y=None) -> dict:
    """Predict every row from a fit on all the others.

    Returns {"predictions": (n,)} and, when the observed y is given, the residuals, RMSE, MAE
    and mean absolute relative error of those out-of-sample predictions.
    """
    if n < 2:
        raise ValueError("leave-one-out needs at least 2 rows")
    preds = np.empty(n)
    all_idx = np.arange(n)
    for i in range(n):
        train = np.delete(all_idx, i)
        preds[i] = float(np.ravel(fit_predict(train, np.array([i])))[0])
    return {"predictions": preds, **_errors(y, all_idx, preds)}


def k_fold(fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray], n: int,
           folds: int = CV_FOLDS, y=None) -> dict:
    """Predict every row from a fit without its fold; row i is in fold i mod `folds`.

    Interleaved folds, not random ones: deterministic, and rows sorted by pool or size (as
    observations usually are) spread over every fold instead of leaving a pool out whole.
    """
    if not 2 <= folds <= n:
        raise ValueError(f"k-fold needs 2 <= folds <= rows, got {folds} folds for {n} rows")
    preds = np.empty(n)
    all_idx = np.arange(n)
    for k in range(folds):
        test = all_idx[k::folds]
        out = np.asarray(fit_predict(all_idx[all_idx % folds != k], test), dtype=float).ravel()
        if out.shape != test.shape:
            raise ValueError(f"fit_predict returned {out.size} predictions for {test.size} rows")
        preds[test] = out
    return {"predictions": preds, **_errors(y, all_idx, preds)}


def cross_validate(fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray], n: int, y=None,
                   max_loo_rows: int = LOO_MAX_ROWS, folds: int = CV_FOLDS) -> dict:
    """Leave-one-out up to `max_loo_rows` rows, `folds`-fold above; the result says which.

    Returns :func:`leave_one_out`'s or :func:`k_fold`'s dict plus "method" ("leave-one-out" or
    e.g. "10-fold") and "folds" (n for leave-one-out).
    """
    if n <= max_loo_rows:
        return {**leave_one_out(fit_predict, n, y=y), "method": "leave-one-out", "folds": n}
    return {**k_fold(fit_predict, n, folds=folds, y=y), "method": f"{folds}-fold", "folds": folds}


def holdout_largest(fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray], x_order,
                    k: int = 1, y=None) -> dict:
    """Fit on all rows but the k with the largest ``x_order`` (e.g. compute), predict those.

    The honest test of a scaling law: extrapolation to the largest scale. Ties are broken by
    row order (stable sort), so the result is deterministic.
    """
    x = np.asarray(x_order, dtype=float).ravel()
    if not 1 <= k < x.size:
        raise ValueError(f"k must be between 1 and {x.size - 1}, got {k}")
    order = np.argsort(x, kind="stable")
    test = np.sort(order[-k:])
    train = np.sort(order[:-k])
    preds = np.asarray(fit_predict(train, test), dtype=float).ravel()
    if preds.shape != test.shape:
        raise ValueError(f"fit_predict returned {preds.size} predictions for {test.size} rows")
    return {"test_idx": test, "train_idx": train, "predictions": preds, **_errors(y, test, preds)}

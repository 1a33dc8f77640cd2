"""`curate fit` for the language-model laws (data-constrained, Chinchilla).

Glue only: the estimators are laws.data_constrained.DataConstrainedLaw / ChinchillaLaw (their
``fit``), resampling is laws.bootstrap; this module maps observations onto N = params,
D = samples_seen, U_D = unique_samples, y = metric and attaches the law-file sections (fit
diagnostics, bootstrap draws) to the fitted law.
"""
from __future__ import annotations

import time

import numpy as np

from curate.orchestration.errors import CurateError

LOO_MAX_ROWS = 60  # leave-one-out refits beyond this many rows cost more than they tell


def fit_lm_law(obs, kind: str, fix: dict[str, float], *, unit: str = "tokens",
               n_bootstrap: int = 0, level: float = 0.9, seed: int = 0, cv: bool = True,
               huber_delta: float | None = None, bounds: dict[str, tuple] | None = None):
    """Fit the law; returns (law with fit_info / bootstrap / fixed / unit set, plot extras)."""
    from curate.laws import data_constrained as dc
    from curate.laws.observations import require_points
    from curate.laws.bootstrap import bootstrap_draws, percentile_intervals
    from curate.laws.diagnostics import goodness_of_fit, holdout_largest, leave_one_out

    cls = dc.DataConstrainedLaw if kind == "data-constrained" else dc.ChinchillaLaw
    names = list(cls.param_names)
    unknown = sorted(set(fix) - set(names))
    if unknown:
        raise CurateError(f"--fix: unknown {kind} parameter(s) {unknown}; names are {', '.join(names)}")
    if any(m is not None for m in obs.mixtures) or len(set(obs.pool)) > 1:
        raise CurateError(f"the {kind} law has no pools: fit one pool at a time (observations "
                          f"mention {obs.pool_names})")
    free = [n for n in names if n not in fix]
    require_points(len(obs), len(free), kind)
    N, D, U, y = obs.params, obs.samples_seen, obs.unique_samples, obs.metric
    options = {} if huber_delta is None else {"delta": huber_delta}
    unknown = sorted(set(bounds or {}) - set(free))
    if unknown:
        raise CurateError(f"--bound: {unknown} are not free {kind} parameters; free are {', '.join(free)}")
    if bounds:
        options["bounds"] = dict(bounds)

    def fit_rows(rows):
        law = cls(**fix)
        if kind == "data-constrained":
            return law.fit(N[rows], D[rows], U[rows], y[rows], fix=dict(fix), **options)
        return law.fit(N[rows], D[rows], y[rows], fix=dict(fix), **options)

    def predict(law, rows):
        return np.asarray(law.predict(N[rows], D[rows], U[rows]), dtype=float)

    t0 = time.perf_counter()
    all_rows = np.arange(len(obs))
    law = fit_rows(all_rows)
    y_hat = predict(law, all_rows)
    gof = goodness_of_fit(y, y_hat)
    fit_info = {
        "objective": float(law.objective_),
        "huber_delta": huber_delta if huber_delta is not None else 1e-3,
        "r2": float(gof["r2"]),
        "rmse": float(gof["rmse"]),
        "n_obs": len(obs),
        "samples_range": [float(D.min()), float(D.max())],
        "params_range": [float(N.min()), float(N.max())],
        "loo_error": None, "holdout_largest_error": None,
        "method": str(getattr(law, "method_", "")),
    }
    if cv:
        def fit_predict(train, test):
            return predict(fit_rows(train), test)

        if len(obs) <= LOO_MAX_ROWS:
            loo = leave_one_out(fit_predict, len(obs))["predictions"]
            fit_info["loo_error"] = _rel_rmse(loo, y)
        # hold out the largest-compute runs (6 N D), a tenth of the rows (at least one)
        k = max(1, len(obs) // 10)
        if len(obs) - k > len(free):
            held = holdout_largest(fit_predict, 6 * N * D, k=k)
            fit_info["holdout_largest_error"] = _rel_rmse(held["predictions"], y[held["test_idx"]])
    boot = None
    if n_bootstrap:
        def fit_fn(rows):
            return {n: float(v) for n, v in fit_rows(np.asarray(rows, dtype=int)).to_params().items()
                    if n in free}

        draws = bootstrap_draws(fit_fn, len(obs), n_bootstrap, seed, groups=obs.groups())
        boot = {"level": level, "n": len(draws), "seed": seed, "draws": draws,
                "intervals": {k: list(v) for k, v in percentile_intervals(draws, level).items()}}
    fit_info["fit_time_s"] = round(time.perf_counter() - t0, 4)
    law.unit = unit
    law.fixed = sorted(fix)
    law.fit_info = fit_info
    law.bootstrap = boot
    return law, {}


def _rel_rmse(pred, y) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred) / np.asarray(y) - 1) ** 2)))

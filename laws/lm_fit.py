"""Fitting the language-model laws (data-constrained, Chinchilla) to observations.

:class:`LMFit` is the LM-law family's estimator, the counterpart of :class:`laws.qqt_fit.QQTFit`
(scikit-learn style: parameters in ``__init__``, ``fit(observations)`` returns self, fitted
values end in ``_``). It maps observations onto N = params, D = samples_seen, U_D =
unique_samples, y = metric, fits with the law's own ``fit`` (:mod:`laws.fitting`: Huber on
log-loss, VarPro / multi-start L-BFGS), and attaches the law-file sections: fit diagnostics
(R^2, RMSE, cross-validated -- leave-one-out up to 100 rows, 10-fold above -- and
hold-out-the-largest-compute relative errors) and bootstrap
draws (whole runs resampled when observations carry run ids, :mod:`laws.bootstrap`).
"""
from __future__ import annotations

import time

import numpy as np

from curate.laws import data_constrained as dc
from curate.laws.bootstrap import bootstrap_draws, percentile_intervals
from curate.laws.bounds import bound_warnings, flag_at_bounds
from curate.laws.fitting import model_for, search_bounds
from curate.laws.diagnostics import cross_validate, goodness_of_fit, holdout_largest
from curate.laws.observations import Observations, require_points

KINDS = ("data-constrained", "chinchilla")


class LMFit:
    """Estimator for the data-constrained and Chinchilla laws.

    Parameters
    ----------
    kind : "data-constrained" or "chinchilla".
    fix : {name: value} held fixed (names E, A, B, alpha, beta[, R_D_star, R_N_star]).
    unit : what samples are (recorded in the law; "tokens" by default).
    n_bootstrap, level, seed : bootstrap refits for intervals (0 = none).
    diagnostics : cross-validation (leave-one-out up to laws.diagnostics.LOO_MAX_ROWS rows,
        k-fold above) and hold-out-largest refits.
    huber_delta : Huber threshold on log residuals (default 1e-3).
    bounds : {name: (lo, hi)} search ranges for free parameters (None for an open side).

    Fitted attributes: law_ (with unit, fixed, fit_info and bootstrap set, as law files hold
    them), params_, objective_, n_obs_, free_, fit_info_, draws_, intervals_, at_bound_
    (parameters at the search box, e.g. R_D_star at 1e4 or E at 0: :mod:`laws.bounds`),
    max_epochs_ (largest samples_seen / unique_samples of the data), warnings_.
    """

    def __init__(self, kind: str = "data-constrained", fix: dict[str, float] | None = None,
                 unit: str = "tokens", n_bootstrap: int = 0, level: float = 0.9, seed: int = 0,
                 diagnostics: bool = True, huber_delta: float | None = None,
                 bounds: dict[str, tuple] | None = None):
        self.kind = kind
        self.fix = fix
        self.unit = unit
        self.n_bootstrap = n_bootstrap
        self.level = level
        self.seed = seed
        self.diagnostics = diagnostics
        self.huber_delta = huber_delta
        self.bounds = bounds

    def fit(self, obs: Observations) -> "LMFit":
        kind = self.kind
        if kind not in KINDS:
            raise ValueError(f"unknown language-model law {kind!r}; expected one of {KINDS}")
        fix = dict(self.fix or {})
        cls = dc.DataConstrainedLaw if kind == "data-constrained" else dc.ChinchillaLaw
        names = list(cls.param_names)
        unknown = sorted(set(fix) - set(names))
        if unknown:
            raise ValueError(f"--fix: unknown {kind} parameter(s) {unknown}; names are {', '.join(names)}")
        if any(m is not None for m in obs.mixtures) or len(set(obs.pool)) > 1:
            raise ValueError(f"the {kind} law has no pools: fit one pool at a time (observations "
                             f"mention {obs.pool_names})")
        free = [n for n in names if n not in fix]
        require_points(len(obs), len(free), kind)
        N, D, U, y = obs.params, obs.samples_seen, obs.unique_samples, obs.metric
        options = {} if self.huber_delta is None else {"delta": self.huber_delta}
        unknown = sorted(set(self.bounds or {}) - set(free))
        if unknown:
            raise ValueError(f"--bound: {unknown} are not free {kind} parameters; free are {', '.join(free)}")
        if self.bounds:
            options["bounds"] = dict(self.bounds)

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
            "huber_delta": self.huber_delta if self.huber_delta is not None else 1e-3,
            "r2": float(gof["r2"]),
            "rmse": float(gof["rmse"]),
            "n_obs": len(obs),
            "samples_range": [float(D.min()), float(D.max())],
            "params_range": [float(N.min()), float(N.max())],
            "cv_error": None, "cv_method": None, "loo_error": None, "holdout_largest_error": None,
            "method": str(getattr(law, "method_", "")),
        }
        if self.diagnostics:
            def fit_predict(train, test):
                return predict(fit_rows(train), test)

            cv = cross_validate(fit_predict, len(obs))
            fit_info["cv_error"] = _rel_rmse(cv["predictions"], y)
            fit_info["cv_method"] = cv["method"]
            if cv["method"] == "leave-one-out":
                fit_info["loo_error"] = fit_info["cv_error"]
            # hold out the largest-compute runs (6 N D), a tenth of the rows (at least one)
            k = max(1, len(obs) // 10)
            if len(obs) - k > len(free):
                held = holdout_largest(fit_predict, 6 * N * D, k=k)
                fit_info["holdout_largest_error"] = _rel_rmse(held["predictions"],
                                                              y[held["test_idx"]])
        boot = None
        self.draws_, self.intervals_ = [], {}
        if self.n_bootstrap:
            def fit_fn(rows):
                return {n: float(v) for n, v in
                        fit_rows(np.asarray(rows, dtype=int)).to_params().items() if n in free}

            self.draws_ = bootstrap_draws(fit_fn, len(obs), self.n_bootstrap, self.seed,
                                          groups=obs.groups())
            self.intervals_ = percentile_intervals(self.draws_, self.level)
            boot = {"level": self.level, "n": len(self.draws_), "seed": self.seed,
                    "draws": self.draws_,
                    "intervals": {k: list(v) for k, v in self.intervals_.items()}}
        # Parameters at the optimiser's box (laws.bounds). E is searched as log E, so its open
        # lower side is 0: flagged below 0.1 % of the smallest observed loss (no floor measured).
        box = search_bounds(model_for(kind), free, self.bounds)
        if "E" in free:
            lo_e, hi_e = box.get("E", (None, None))
            box["E"] = (0.0 if lo_e is None else lo_e, hi_e)
        # other log-searched parameters given a lower bound <= 0 (--bound R_D_star=0:20) have
        # no lower end in the optimiser (log 0): an open side, not a bound to be at
        box = {k: ((None if k in ("A", "B", "R_D_star", "R_N_star") and v[0] is not None
                    and v[0] <= 0 else v[0]), v[1]) for k, v in box.items() if k in free}
        scale = float(np.min(y))
        at_bound = flag_at_bounds(law.to_params(), box, self.draws_, self.intervals_, scale=scale)
        fit_info["warnings"] = bound_warnings(at_bound)
        # epoch range of the fit data: the largest samples_seen / unique_samples (tokens seen per
        # unique token) of any row, the planner's default epoch cap
        fit_info["max_epochs"] = float(np.max(D / U))
        fit_info["bounds"] = {k: list(v) for k, v in box.items()}
        fit_info["bound_scale"] = scale
        fit_info["at_bound"] = at_bound
        fit_info["fit_time_s"] = round(time.perf_counter() - t0, 4)
        law.unit = self.unit
        law.fixed = sorted(fix)
        law.fit_info = fit_info
        law.bootstrap = boot
        self.law_ = law
        self.params_ = law.to_params()
        self.objective_ = float(law.objective_)
        self.n_obs_ = len(obs)
        self.free_ = free
        self.fit_info_ = fit_info
        self.at_bound_ = at_bound
        self.max_epochs_ = fit_info["max_epochs"]
        self.warnings_ = list(fit_info["warnings"])
        return self


def _rel_rmse(pred, y) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred) / np.asarray(y) - 1) ** 2)))

"""Fitting QQT laws to observations: per-pool b, tau with shared a, d.

Objective: the sum over observations of huber(log E_hat - log y, delta) (delta = 0.01 by
default: log-residuals of ~1 % are treated as squared errors, larger ones linearly, so one bad
run cannot drag the fit). Optimised by bounded trust-region least squares (scipy
``least_squares(method="trf", loss="huber")``, whose cost is exactly that Huber sum) from the
best few points of a start grid over (a, b, tau[, d]): a multi-start local optimiser, not a grid
search. The Jacobian is analytic (a Gauss-Newton-type method then needs only a handful of
iterations on these small problems, which is what makes hundreds of bootstrap refits cheap).
Parameters are optimised as log a, d, b, log tau (a, tau > 0) with bounds b < 0,
0 <= d <= min(y). A half-life is only identified by observations in which its pool repeats;
a free tau without any is reported in `warnings_` (and the law file's fit section). Parameters
that end at a bound of that box (tau at 1e4: no decay measured; d at 0: no floor measured),
or whose bootstrap interval reaches one, are flagged in `at_bound_` and the fit section's
``at_bound`` (:mod:`laws.bounds`), with one warning each. The fit section also records the
epoch range of the data (``max_epochs``, ``max_epochs_by_pool``; :func:`epoch_range`).

Observations
------------
* single-pool row: the pool size for that row is its `unique_samples` (a run that drew
  samples_seen from U unique samples repeated a pool of size U; if U == samples_seen there was
  no repetition and the first-pass formula applies, whatever the pool's full size);
* mixture row (`name=w;name=w`): weights as written, pool sizes from the law (`sizes`, or else
  the largest `unique_samples` of that pool's single-pool rows; a pool seen only in mixtures
  gets its equal share of the row's unique samples, exact for the released top-m mixtures).

Gap exponent gamma
------------------
Each pool's tau is stated at its measured gap (:func:`measured_gaps`: its largest subset that
was repeated alone). When some pool is repeated alone at two or more subset sizes
(:func:`gamma_identified`), gamma (tau'_i = tau_i (P_i / G_i)^gamma) is fitted too: one shared
value in [0, 3], its Jacobian column from the log-tau columns
(:func:`laws.qqt_kernel.gamma_jacobian`); it becomes the law's ``gamma`` attribute and the fit
section's ``gamma`` entry (value, fitted, bootstrap interval). Otherwise it stays at 1, the
released scaling, and the fit section says it was not fitted.

The model is the QQT kernel (:mod:`laws.qqt_kernel`) evaluated for all rows at once: its
segments depend only on the data, not on the parameters, so they are built once per fit and
subset for refits; the tests check values against a direct transcription of the formulas and
the Jacobian against finite differences.
Uncertainty: bootstrap stratified by pool / mixture label (rows, or whole runs when a
label has several run ids), refitting from the full-data optimum; percentile intervals for
parameters and predictions. Diagnostics: R^2 on the
metric, RMSE, cross-validated (leave-one-out up to 100 rows, 10-fold above:
:func:`laws.diagnostics.cross_validate`) and hold-out-the-largest extrapolation errors (relative
RMS error of the refit's predictions; "largest" = the row with the most samples seen of every pool or
mixture that has >= 3 rows, all held out together).
"""
from __future__ import annotations

import itertools
import math
import time

import numpy as np

from curate.laws.bootstrap import percentile_intervals, prediction_band
from curate.laws.bounds import bound_warnings, flag_at_bounds
from curate.laws.diagnostics import cross_validate, goodness_of_fit
from curate.laws.fitting import huber
from curate.laws.observations import MAX_COUNT, MAX_EPOCHS, Observations, require_points
from curate.laws.qqt import QQTLaw, a_name, b_name, tau_name
from curate.laws.qqt_kernel import (LAW_VARIANTS, NORMALIZER, Segments, gamma_jacobian,
                                    gap_log_ratios, multiplier_errors, pass_periods)

DEFAULT_HUBER_DELTA = 1e-2
_BOUNDS = {"log_a": (math.log(1e-9), math.log(1e6)), "b": (-5.0, -1e-6),
           "log_tau": (math.log(1e-2), math.log(1e4)), "gamma": (0.0, 3.0)}
#: Start value of gamma when it is fitted (the released scaling).
_START_GAMMA = 1.0
# Starts for a, as values of a * median(samples seen) / normaliser: scale-free, so the grid
# fits data counted in samples (~1e7) and in tokens (~1e10) alike.
_START_A_SCALED = (0.1, 1.0, 10.0, 100.0, 1000.0)
_START_B = (-0.05, -0.15, -0.4)
_START_TAU = (1.0, 5.0, 25.0)


# ---------------------------------------------------------------------------------------------
# The observations as kernel segments
# ---------------------------------------------------------------------------------------------

def observation_segments(obs: Observations, pools: list[str], sizes: dict[str, float],
                         gaps: dict[str, float] | None = None, gamma: float = 1.0) -> Segments:
    """The QQT kernel's segments of every observation (one row each, pools in `pools` order).

    Single-pool rows repeat a pool of size `unique_samples`; mixture rows use `sizes` (else an
    equal share of the row's unique samples), as the module docstring says. `gaps`: the gap at
    which each pool's tau is expressed (default: each row's own pool size).
    """
    W, N = observation_weights(obs, pools, sizes)
    G = None if gaps is None else np.array([float(gaps[p]) for p in pools])
    return Segments.build(np.asarray(obs.samples_seen, dtype=float), W, N, gaps=G, gamma=gamma)


class MultiplierDesign:
    """The multiplier form's "segments": it needs only the rows' samples, weights, sizes and the
    measured gaps (its sum over passes is closed-form), with the interface the fitter uses."""

    def __init__(self, samples, W, N, gaps, gamma: float = 1.0):
        self.samples, self.W, self.N, self.gaps, self.gamma = samples, W, N, gaps, gamma
        self.first = samples  # typical sample counts, for the start grid of a
        # log(P_i / G_i) per row and pool: the gamma column of the Jacobian needs it
        self.log_ratio = gap_log_ratios(pass_periods(W, N), gaps)

    def subset(self, rows) -> "MultiplierDesign":
        rows = np.asarray(rows, dtype=int)
        return MultiplierDesign(self.samples[rows], self.W[rows], self.N[rows], self.gaps, self.gamma)

    def repeated(self) -> np.ndarray:
        """Per pool: does any row repeat it?"""
        return np.any((self.W * self.samples[:, None] > self.N * (1 + 1e-12)) & (self.W > 0), axis=0)

    def predict_and_jacobian(self, a, d, b, tau, normalizer, jacobian=True, gamma=None):
        return multiplier_errors(self.samples, self.W, a, b, d, tau, self.N, normalizer,
                                 gaps=self.gaps, gamma=self.gamma if gamma is None else gamma,
                                 jacobian=jacobian)


def observation_design(obs: Observations, pools: list[str], sizes: dict[str, float],
                       gaps: dict[str, float], gamma: float, variant: str):
    """Segments (utility / data variants) or a MultiplierDesign, for every observation."""
    if variant != "multiplier":
        return observation_segments(obs, pools, sizes, gaps, gamma)
    W, N = observation_weights(obs, pools, sizes)
    return MultiplierDesign(np.asarray(obs.samples_seen, dtype=float), W, N,
                            np.array([float(gaps[p]) for p in pools]), gamma)


def observation_weights(obs: Observations, pools: list[str], sizes: dict[str, float]):
    """(W, N): every row's mixture weights and pool sizes, (n_rows, len(pools)) each.

    Single-pool rows: weight 1 on the pool, size `unique_samples`; mixture rows: the written
    weights and `sizes` (else an equal share of the row's unique samples). N is 1 where W is 0.
    """
    index = {p: i for i, p in enumerate(pools)}
    W = np.zeros((len(obs), len(pools)))
    N = np.ones((len(obs), len(pools)))
    for j in range(len(obs)):
        mix = obs.mixtures[j]
        if mix is None:
            w = {obs.pool[j]: 1.0}
            n_of = {obs.pool[j]: float(obs.unique_samples[j])}
        else:
            w = {p: x for p, x in mix.items() if x > 0}
            share = float(obs.unique_samples[j]) / len(w)
            n_of = {p: float(sizes.get(p) or share) for p in w}
        for p, x in w.items():
            W[j, index[p]] = x
            N[j, index[p]] = n_of[p]
    return W, N


def epoch_range(obs: Observations, pools: list[str], sizes: dict[str, float],
                known: set[str] | None = None) -> tuple[float, dict[str, float]]:
    """(max_epochs, max_epochs_by_pool) of the observations: how far the fit data repeated.

    max_epochs: the largest samples_seen / unique_samples of any row (a mixture row counts as
    one stream). By pool: a single-pool row repeats its pool samples_seen / unique_samples
    times; a mixture row repeats pool i  w_i * samples_seen / N_i  times (w_i its normalised
    weight, N_i the pool's size), counted only for pools whose size is known (`known`: given
    sizes or pools with single-pool rows; the equal-share guess for a pool seen only in
    mixtures is not a measurement of its size, so those rows do not count for it). A pool
    with no countable row is absent from the dict.
    """
    n = np.asarray(obs.samples_seen, dtype=float)
    u = np.asarray(obs.unique_samples, dtype=float)
    overall = float(np.max(n / u))
    known = set(pools) if known is None else set(known)
    W, N = observation_weights(obs, pools, sizes)
    by_pool: dict[str, float] = {}
    for j, mix in enumerate(obs.mixtures):
        for i, p in enumerate(pools):
            if W[j, i] <= 0 or (mix is not None and p not in known):
                continue
            epochs = float(W[j, i] * n[j] / N[j, i])
            by_pool[p] = max(by_pool.get(p, 0.0), epochs)
    return overall, {p: by_pool[p] for p in pools if p in by_pool}


# ---------------------------------------------------------------------------------------------
# Estimator
# ---------------------------------------------------------------------------------------------

class QQTFit:
    """Estimator for QQT laws (scikit-learn style: fit() returns self, results end in `_`).

    Parameters
    ----------
    variant : "utility", "data" (the released forms: shared a, per-pool b) or "multiplier"
        (one slope b, per-pool a: unit-invariant; the default for language-model probes).
    fix : {name: value} held fixed during the fit, e.g. {"d": 0.1} or {"tau[top10]": 5.0}.
    sizes : {pool: size} pool sizes for the law (default: inferred from the observations).
    normalizer : the fixed sample normaliser (1e5, as released).
    huber_delta : Huber threshold on log-residuals.
    n_starts : how many of the best grid starts are optimised locally.
    n_bootstrap, level, seed : bootstrap refits for intervals (0 = none).
    diagnostics : compute cross-validated (leave-one-out, or k-fold above
        laws.diagnostics.LOO_MAX_ROWS rows) and hold-out-largest errors (refits; costs time).
    unit : what samples are, recorded in the law.
    gamma : how a half-life stretches with the gap between repetitions (tau'_i = tau_i
        (P_i / G_i)^gamma, :mod:`laws.qqt`). "auto" (default): fitted, one value shared by all
        pools in [0, 3], when the observations repeat some pool at two or more subset sizes
        (:func:`gamma_identified`), else fixed at 1 (the released scaling); a number fixes it
        (so does ``fix={"gamma": value}``). gamma is not one of the law's named parameters:
        it is the law's ``gamma`` attribute (the law file's top-level "gamma"), described in the
        fit section's ``gamma`` entry (value, fitted, bootstrap interval).

    Fitted attributes: law_ (QQTLaw), params_, objective_, n_obs_, free_, fixed_, pool_sizes_,
    predictions_, r2_, rmse_, cv_error_, cv_method_ ("leave-one-out" or "10-fold"), loo_error_
    (cv_error_ when it was leave-one-out, else None), holdout_largest_error_, draws_, intervals_,
    fit_time_,
    bounds_ (the optimiser's box per free parameter, natural units), at_bound_ (parameters at
    that box: :func:`laws.bounds.flag_at_bounds`), max_epochs_, max_epochs_by_pool_ (the
    epoch range of the observations: :func:`epoch_range`), gaps_ (the measured gap of every
    pool: :func:`measured_gaps`), gamma_, gamma_fitted_, gamma_draws_, gamma_interval_,
    warnings_.
    """

    def __init__(self, variant: str = "utility", fix: dict[str, float] | None = None,
                 sizes: dict[str, float] | None = None, normalizer: float = NORMALIZER,
                 huber_delta: float = DEFAULT_HUBER_DELTA, n_starts: int = 6,
                 n_bootstrap: int = 0, level: float = 0.9, seed: int = 0,
                 diagnostics: bool = True, unit: str = "samples", gamma: float | str = "auto"):
        self.variant = variant
        self.fix = fix
        self.sizes = sizes
        self.normalizer = normalizer
        self.huber_delta = huber_delta
        self.n_starts = n_starts
        self.n_bootstrap = n_bootstrap
        self.level = level
        self.seed = seed
        self.diagnostics = diagnostics
        self.unit = unit
        self.gamma = gamma

    # -- public ------------------------------------------------------------------------------
    def fit(self, obs: Observations) -> "QQTFit":
        if self.variant not in LAW_VARIANTS:
            raise ValueError(f"unknown QQT variant {self.variant!r}; expected one of {LAW_VARIANTS}")
        t0 = time.perf_counter()
        self.pools_ = obs.pool_names
        self.pool_sizes_ = infer_pool_sizes(obs, self.sizes)
        _check_pass_counts(obs, self.pools_, self.pool_sizes_)
        if self.variant == "multiplier":
            names = [a_name(p) for p in self.pools_] + ["b", "d"] + [tau_name(p) for p in self.pools_]
            spelled = "a[POOL], b, d, tau[POOL]"
        else:
            names = ["a", "d"] + [n for p in self.pools_ for n in (b_name(p), tau_name(p))]
            spelled = "a, d, b[POOL], tau[POOL]"
        fix = dict(self.fix or {})
        gamma_fixed = fix.pop("gamma", None)
        if gamma_fixed is None and self.gamma != "auto":
            gamma_fixed = self.gamma
        if gamma_fixed is not None:
            gamma_fixed = float(gamma_fixed)
            if not (math.isfinite(gamma_fixed) and gamma_fixed >= 0):
                raise ValueError(f"gamma must be a finite number >= 0, got {gamma_fixed!r}")
        unknown = sorted(set(fix) - set(names))
        if unknown:
            raise ValueError(f"cannot fix unknown QQT parameter(s) {unknown}; names are "
                             f"{spelled}, gamma, with pools {self.pools_}")
        _check_fixed_values(fix)
        self.fixed_ = {k: float(v) for k, v in fix.items()}
        # gamma is fitted (one shared value) only where the data can tell it: some pool
        # repeated at two subset sizes; otherwise it stays at 1 (or the value given)
        self.gamma_fitted_ = gamma_fixed is None and gamma_identified(obs)
        self.gamma_ = _START_GAMMA if gamma_fixed is None else gamma_fixed
        self._names = names + (["gamma"] if self.gamma_fitted_ else [])
        self.free_ = [n for n in self._names if n not in fix]
        require_points(len(obs), len(self.free_), "qqt")
        self._y = np.asarray(obs.metric, dtype=float)
        # tau_i is expressed at the gap of the pool's largest repeated single-pool subset (its
        # measured gap); other subset sizes and mixtures stretch it by (gap ratio)^gamma
        self.gaps_ = measured_gaps(obs)
        design = observation_design(obs, self.pools_, self.pool_sizes_, self.gaps_, self.gamma_,
                                    self.variant)
        if isinstance(design, MultiplierDesign):
            repeated = design.repeated()
        else:
            repeated = np.any(design.seg_pass > 0, axis=0) if design.seg_pass.size else \
                np.zeros(len(self.pools_), dtype=bool)
        self.warnings_ = [f"{tau_name(p)} is not identified: no observation repeats pool {p!r} "
                          "(samples_seen > unique_samples); its value is a start value"
                          for p, rep in zip(self.pools_, repeated)
                          if not rep and tau_name(p) in self.free_]
        self.warnings_ += _mixture_size_warnings(obs, self.pool_sizes_)
        self.gap_ratio_max_ = _gap_ratio_max(obs, self.pools_, self.pool_sizes_, self.gaps_)

        x, cost = self._fit_design(design, self._y, starts=None)
        self.params_ = self._params_from_x(x)
        self.gamma_ = float(self.params_.pop("gamma", self.gamma_))
        self.objective_ = cost
        self.n_obs_ = len(obs)
        self.predictions_ = self._predict_design(design, self.params_)
        self._set_goodness(self._y, self.predictions_)
        self.loo_error_ = self.holdout_largest_error_ = self.cv_error_ = self.cv_method_ = None
        if self.diagnostics:
            self._set_extrapolation_errors(obs, design, x)
        self.draws_, self.intervals_ = [], {}
        self.gamma_draws_, self.gamma_interval_ = [], None
        if self.n_bootstrap:
            self._bootstrap(obs, design, x)
        known = set(self.sizes or {}) | {p for p, m in zip(obs.pool, obs.mixtures) if m is None}
        self.max_epochs_, self.max_epochs_by_pool_ = epoch_range(obs, self.pools_,
                                                                 self.pool_sizes_, known)
        self.bounds_ = self._natural_bounds(self._y)
        self.at_bound_ = flag_at_bounds(self.params_, self.bounds_, self.draws_,
                                        self.intervals_, scale=float(np.min(self._y)))
        self.warnings_ += bound_warnings(self.at_bound_)
        self.warnings_ += self._gamma_warnings()
        self.fit_time_ = time.perf_counter() - t0
        self.law_ = self._make_law(obs)
        return self

    def predict(self, samples, pool: str):
        """Predictions of the fitted law for one pool (see QQTLaw.predict)."""
        return self.law_.predict(samples, pool=pool)

    def predict_interval(self, samples, pool: str | None = None, weights=None,
                         level: float | None = None):
        """Percentile interval of the prediction over the bootstrap draws: (lo, hi) arrays."""
        return prediction_interval(self.law_, self.draws_, samples, pool=pool, weights=weights,
                                   level=self.level if level is None else level)

    # -- internals ---------------------------------------------------------------------------
    def _x_layout(self):
        kinds = []
        for n in self.free_:
            kinds.append("log_a" if n == "a" or n.startswith("a[") else "d" if n == "d" else
                         "gamma" if n == "gamma" else
                         "b" if n == "b" or n.startswith("b[") else "log_tau")
        return kinds

    def _params_from_x(self, x) -> dict[str, float]:
        out = dict(self.fixed_)
        for name, kind, v in zip(self.free_, self._x_layout(), x):
            out[name] = float(math.exp(v)) if kind.startswith("log_") else float(v)
        return {n: out[n] for n in self._names}

    def _arrays(self, params):
        tau = np.array([params[tau_name(p)] for p in self.pools_])
        if self.variant == "multiplier":
            return np.array([params[a_name(p)] for p in self.pools_]), params["d"], params["b"], tau
        b = np.array([params[b_name(p)] for p in self.pools_])
        return params["a"], params["d"], b, tau

    def _evaluate(self, design, params, jacobian: bool):
        """(E, J): J has the law's columns (kernel order) and, when gamma is fitted, a last
        column dE/d gamma (:func:`laws.qqt_kernel.gamma_jacobian`)."""
        a, d, b, tau = self._arrays(params)
        gamma = float(params.get("gamma", self.gamma_))
        if isinstance(design, MultiplierDesign):
            E, J = design.predict_and_jacobian(a, d, b, tau, self.normalizer, jacobian=jacobian,
                                               gamma=gamma)
        else:
            E, J = design.predict_and_jacobian(a, d, b, tau, self.variant, self.normalizer,
                                               jacobian=jacobian, gamma=gamma)
        if jacobian and self.gamma_fitted_:
            P = len(self.pools_)  # both layouts end with the P log-tau columns
            J = np.column_stack([J, gamma_jacobian(J[:, -P:], design.log_ratio)])
        return E, J

    def _predict_design(self, design, params):
        return self._evaluate(design, params, jacobian=False)[0]

    def _bounds(self, y):
        lo, hi = [], []
        for kind in self._x_layout():
            if kind == "d":
                lo.append(0.0)
                hi.append(float(np.min(y)) * (1 - 1e-9))
            else:
                lo.append(_BOUNDS[kind][0])
                hi.append(_BOUNDS[kind][1])
        return np.array(lo), np.array(hi)

    def _natural_bounds(self, y) -> dict[str, tuple[float, float]]:
        """The optimiser's box of every free parameter in natural units (a, tau: exp of it)."""
        lo, hi = self._bounds(y)
        out = {}
        for name, kind, l, h in zip(self.free_, self._x_layout(), lo, hi):
            if kind == "gamma":  # not a law parameter: reported in the fit section's gamma
                continue
            if kind.startswith("log_"):  # exp(log(1e4)) is 1e4 + 1 ulp: keep 12 digits
                l, h = float(f"{math.exp(l):.12g}"), float(f"{math.exp(h):.12g}")
            out[name] = (float(l), float(h))
        return out

    def _grid(self, y, typical_samples: float):
        """Start grid: every pool shares the same start values for b and tau."""
        d_starts = (0.0, 0.5 * float(np.min(y)))
        a_starts = [c * self.normalizer / typical_samples for c in _START_A_SCALED]
        points = []
        for a, b, tau, d in itertools.product(a_starts, _START_B, _START_TAU, d_starts):
            x = []
            for name, kind in zip(self.free_, self._x_layout()):
                x.append({"log_a": math.log(a), "d": d, "b": b, "log_tau": math.log(tau),
                          "gamma": _START_GAMMA}[kind])
            points.append(x)
        return np.unique(np.array(points), axis=0)

    def _log_residuals(self, design, x, logy):
        """log E_hat - log y at x, 1e3 where E_hat is not a positive number (as below)."""
        E = self._predict_design(design, self._params_from_x(x))
        ok = np.isfinite(E) & (E > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(ok, np.log(np.where(ok, E, 1.0)) - logy, 1e3)

    def _residual_functions(self, design, y):
        """Log-residuals r(x) = log E_hat - log y and their analytic Jacobian dr/dx."""
        logy = np.log(y)
        cols = self._free_columns()
        cache: dict = {}

        def evaluate(x):
            key = x.tobytes()
            if key not in cache:
                cache.clear()
                E, J = self._evaluate(design, self._params_from_x(x), jacobian=True)
                ok = np.isfinite(E) & (E > 0)
                with np.errstate(invalid="ignore", divide="ignore"):
                    r = np.where(ok, np.log(np.where(ok, E, 1.0)) - logy, 1e3)
                    jac = np.where(ok[:, None], J[:, cols] / np.where(ok, E, 1.0)[:, None], 0.0)
                cache[key] = (r, jac)
            return cache[key]

        return (lambda x: evaluate(x)[0]), (lambda x: evaluate(x)[1])

    def _free_columns(self) -> np.ndarray:
        """Jacobian columns of the free parameters, in order: (log a, d, b_1.., log tau_1..),
        or for the multiplier form (log a_1.., d, b, log tau_1..)."""
        P = len(self.pools_)
        if self.variant == "multiplier":
            col = {"d": P, "b": P + 1, "gamma": 2 + 2 * P}
            for i, p in enumerate(self.pools_):
                col[a_name(p)] = i
                col[tau_name(p)] = P + 2 + i
        else:
            col = {"a": 0, "d": 1, "gamma": 2 + 2 * P}
            for i, p in enumerate(self.pools_):
                col[b_name(p)] = 2 + i
                col[tau_name(p)] = 2 + P + i
        return np.array([col[n] for n in self.free_], dtype=int)

    def _fit_design(self, design, y, starts=None):
        """Best bounded least-squares (TRF, Huber loss) solution over the starts.

        Default starts: the best `n_starts` points of the start grid by objective value.
        """
        from scipy.optimize import least_squares

        residuals, jacobian = self._residual_functions(design, y)
        if not self.free_:
            return np.array([]), _huber_sum(residuals(np.array([])), self.huber_delta)
        lo, hi = self._bounds(y)
        if starts is None:
            grid = np.clip(self._grid(y, float(np.median(design.first))), lo, hi)
            logy = np.log(y)  # grid points need residuals only: no Jacobian (a third of the work)
            costs = np.array([_huber_sum(self._log_residuals(design, x, logy), self.huber_delta)
                              for x in grid])
            starts = grid[np.argsort(costs)[: self.n_starts]]
        inner_lo, inner_hi = lo + 1e-9 * (hi - lo), hi - 1e-9 * (hi - lo)
        best_x, best_cost = None, math.inf
        for x0 in np.atleast_2d(starts):
            res = least_squares(residuals, np.clip(x0, inner_lo, inner_hi), jac=jacobian,
                                bounds=(lo, hi), method="trf", loss="huber",
                                f_scale=self.huber_delta, max_nfev=500)
            cost = _huber_sum(res.fun, self.huber_delta)
            if cost < best_cost:
                best_x, best_cost = res.x, cost
        return best_x, float(best_cost)

    def _set_goodness(self, y, y_hat):
        g = goodness_of_fit(y, y_hat)
        self.r2_, self.rmse_ = float(g["r2"]), float(g["rmse"])
        self.residuals_ = np.asarray(g["residuals"], dtype=float)  # y_hat - y

    def _refit_predict(self, design, y, x_full):
        """fit_predict(train_idx, test_idx) for the diagnostics: refit from the full optimum."""
        def fit_predict(train_idx, test_idx):
            x, _ = self._fit_design(design.subset(train_idx), y[train_idx], starts=x_full)
            return self._predict_design(design.subset(test_idx), self._params_from_x(x))
        return fit_predict

    def _set_extrapolation_errors(self, obs, design, x_full):
        """RMSE of relative errors: cross-validated (leave-one-out, k-fold on many rows) and
        holding out the largest samples_seen."""
        y = np.asarray(obs.metric, dtype=float)
        fit_predict = self._refit_predict(design, y, x_full)
        n = len(obs)
        cv = cross_validate(fit_predict, n)
        self.cv_predictions_, self.cv_method_ = cv["predictions"], cv["method"]
        self.cv_error_ = float(np.sqrt(np.mean((cv["predictions"] / y - 1) ** 2)))
        self.loo_error_ = self.cv_error_ if cv["method"] == "leave-one-out" else None
        # hold out the rows at the largest samples_seen (one per pool/mixture where possible)
        held = _largest_per_pool(obs)
        train = np.setdiff1d(np.arange(n), held)
        if train.size > len(self.free_):
            pred = fit_predict(train, held)
            self.holdout_rows_ = held
            self.holdout_largest_error_ = float(np.sqrt(np.mean((pred / y[held] - 1) ** 2)))

    def _bootstrap(self, obs, design, x_full):
        y = np.asarray(obs.metric, dtype=float)

        def fit_fn(rows):
            rows = np.asarray(rows, dtype=int)
            x, _ = self._fit_design(design.subset(rows), y[rows], starts=x_full)
            return self._params_from_x(x)

        draws = stratified_bootstrap_draws(fit_fn, obs, self.n_bootstrap, self.seed)
        self.draws_ = [{k: v for k, v in d.items() if k in self.free_ and k != "gamma"}
                       for d in draws]
        law_free = [n for n in self.free_ if n != "gamma"]
        self.intervals_ = percentile_intervals(self.draws_, self.level) if law_free else {}
        if self.gamma_fitted_:
            self.gamma_draws_ = [float(d["gamma"]) for d in draws]
            self.gamma_interval_ = tuple(percentile_intervals(
                [{"gamma": g} for g in self.gamma_draws_], self.level)["gamma"])

    def _gamma_record(self) -> dict:
        """The fit section's "gamma": value, whether fitted, interval, what it rests on."""
        if not self.gamma_fitted_:
            given = self.gamma != "auto" or "gamma" in (self.fix or {})
            return {"value": self.gamma_, "fitted": False,
                    "note": ("how a half-life stretches with the gap between repetitions: fixed "
                             f"at {self.gamma_:g} as asked" if given else
                             "how a half-life stretches with the gap between repetitions: not "
                             "fitted (1, the released scaling): no pool was repeated at two "
                             "subset sizes; tau is stated at each pool's measured gap "
                             "(pools[].gap)")}
        lo, hi = _BOUNDS["gamma"]
        out = {"value": self.gamma_, "fitted": True, "bounds": [lo, hi],
               "gap_ratio_max": self.gap_ratio_max_,
               "note": ("fitted, one value shared by all pools, from pools repeated at two or "
                        "more subset sizes; measured over gap ratios up to "
                        f"{self.gap_ratio_max_:.3g}x, so a plan that uses a pool at a much "
                        "larger gap still extrapolates it; bootstrap draws of the law's "
                        "parameters are refits with gamma free, but the law applies its one "
                        "fitted gamma to every draw")}
        if self.gamma_interval_ is not None:
            out["interval"] = [float(v) for v in self.gamma_interval_]
            out["level"] = self.level
        return out

    def _gamma_warnings(self) -> list[str]:
        if not self.gamma_fitted_:
            return []
        lo, hi = _BOUNDS["gamma"]
        span = hi - lo
        if self.gamma_ <= lo + 1e-3 * span or self.gamma_ >= hi - 1e-3 * span:
            return [f"gamma = {self.gamma_:.3g} is at the bound of its box [{lo:g}, {hi:g}]: the "
                    "runs at different subset sizes do not pin how a half-life stretches with "
                    "the gap between repetitions"]
        return []

    def _make_law(self, obs) -> QQTLaw:
        fit_info = {
            "objective": self.objective_, "huber_delta": self.huber_delta,
            "r2": self.r2_, "rmse": self.rmse_, "n_obs": self.n_obs_,
            "samples_range": [float(np.min(obs.samples_seen)), float(np.max(obs.samples_seen))],
            "params_range": None if obs.params is None else
            [float(np.min(obs.params)), float(np.max(obs.params))],
            "cv_error": self.cv_error_, "cv_method": self.cv_method_,
            "loo_error": self.loo_error_, "holdout_largest_error": self.holdout_largest_error_,
            "method": f"multi-start least squares (TRF, analytic Jacobian, Huber on log "
                      f"error), best {self.n_starts} of a start grid",
            "fit_time_s": round(self.fit_time_, 4),
            "warnings": list(self.warnings_),
            # epoch range of the fit data (the planner's default epoch cap; see epoch_range)
            "max_epochs": self.max_epochs_,
            "max_epochs_by_pool": dict(self.max_epochs_by_pool_),
            # the gap scaling of tau is assumed, not measured: the planner warns where a plan
            # uses a pool at a gap beyond the measured one (laws/planning.py)
            "gap_ratio_max": self.gap_ratio_max_,
            "gamma": self._gamma_record(),
            # parameters at the optimiser's box (laws.bounds): box, data scale for bounds of 0
            "bounds": {k: list(v) for k, v in self.bounds_.items()},
            "bound_scale": float(np.min(self._y)),
            "at_bound": self.at_bound_,
        }
        boot = None
        if self.draws_:
            boot = {"level": self.level, "n": len(self.draws_), "seed": self.seed,
                    "draws": self.draws_,
                    "intervals": {k: list(v) for k, v in self.intervals_.items()}}
        p = self.params_
        multiplier = self.variant == "multiplier"
        return QQTLaw([p[a_name(q)] for q in self.pools_] if multiplier else p["a"], p["d"],
                      self.pools_, b=p["b"] if multiplier else [p[b_name(q)] for q in self.pools_],
                      tau=[p[tau_name(q)] for q in self.pools_],
                      sizes=[self.pool_sizes_[q] for q in self.pools_], variant=self.variant,
                      normalizer=self.normalizer, unit=self.unit, fixed=sorted(self.fixed_),
                      fit_info=fit_info, bootstrap=boot,
                      gaps=[self.gaps_[q] for q in self.pools_], gamma=self.gamma_)


def heldout_error(law: QQTLaw, held: Observations) -> float:
    """Relative RMS error of the law on runs it was not fitted on (e.g. a probe's held-out
    mixtures, larger-budget and fresh-data runs). Single-pool rows are self-describing (pool
    size = unique_samples); a mixture row's pools share its unique samples equally (as in the
    fit: each pool drew from a subset of that size)."""
    pred = np.empty(len(held))
    for j in range(len(held)):
        n, u, mix = float(held.samples_seen[j]), float(held.unique_samples[j]), held.mixtures[j]
        if mix is None:
            pred[j] = law.predict(n, pool=held.pool[j], size=u)
        else:
            active = {p: w for p, w in mix.items() if w > 0}
            pred[j] = law.predict_mixture(active, n, sizes={p: u / len(active) for p in active})
    y = np.asarray(held.metric, dtype=float)
    return float(np.sqrt(np.mean((pred / y - 1) ** 2)))


def compare_variants(obs: Observations, chosen: str | None = None,
                     candidates: tuple[str, ...] = ("multiplier", "utility", "data"),
                     heldout: Observations | None = None,
                     **options) -> tuple["QQTFit", list[dict]]:
    """Fit every candidate form and compare them by held-out error; (the fit to use, the table).

    The table has one row per candidate: its held-out errors (`heldout`: runs not fitted on,
    see :func:`heldout_error`; hold-out-the-largest: refit without the runs with the most
    samples, i.e. extrapolation to a larger budget; cross-validated: leave-one-out, or k-fold on
    many rows), objective and parameter count. The fit returned is `chosen`'s, or with
    `chosen=None` the candidate with the smallest held-out error (the held-out runs when given,
    then hold-out-largest, then cross-validated;
    ties keep the candidates' order). Only the returned fit gets the bootstrap (`n_bootstrap`
    in `options`); the others are fitted for the comparison alone, with diagnostics on.
    """
    if chosen is not None and chosen not in candidates:
        candidates = (chosen,) + tuple(candidates)
    boot = options.pop("n_bootstrap", 0)
    options["diagnostics"] = True
    fits = {v: QQTFit(variant=v, **options).fit(obs) for v in candidates}
    held = {v: None if heldout is None or not len(heldout) else heldout_error(fits[v].law_, heldout)
            for v in candidates}

    def key(v):
        f = fits[v]
        return tuple(math.inf if x is None or not math.isfinite(x) else x
                     for x in (held[v], f.holdout_largest_error_, f.cv_error_)) + (candidates.index(v),)

    best = chosen or min(candidates, key=key)
    table = [{"variant": v, "heldout_runs_error": held[v],
              "holdout_largest_error": fits[v].holdout_largest_error_,
              "cv_error": fits[v].cv_error_, "cv_method": fits[v].cv_method_,
              "loo_error": fits[v].loo_error_, "objective": fits[v].objective_,
              "free_parameters": len(fits[v].free_), "chosen": v == best} for v in candidates]
    result = fits[best]
    if boot:  # the same fit again with the bootstrap; its diagnostics are the ones just made
        diag = {k: result.law_.fit_info[k] for k in
                ("cv_error", "cv_method", "loo_error", "holdout_largest_error")}
        result = QQTFit(variant=best, n_bootstrap=boot, **{**options, "diagnostics": False}).fit(obs)
        result.law_.fit_info.update(diag)
        for key, value in diag.items():
            setattr(result, key + "_", value)
    cv = fits[candidates[0]].cv_method_ or "leave-one-out"
    by = (f"held-out runs, then hold-out-largest, then {cv} relative error"
          if heldout is not None else f"hold-out-largest, then {cv} relative error")
    result.law_.fit_info["model_selection"] = {
        "by": by if chosen is None else f"variant {chosen!r} as asked; the others fitted for comparison",
        "heldout_runs": 0 if heldout is None else len(heldout),
        "candidates": table}
    return result, table


def fit_qqt(obs: Observations, **options) -> QQTLaw:
    """Fit and return the law (options as for :class:`QQTFit`)."""
    return QQTFit(**options).fit(obs).law_


def infer_pool_sizes(obs: Observations, given: dict[str, float] | None = None) -> dict[str, float]:
    """Pool sizes: given ones, else the largest unique_samples of the pool's single-pool rows,
    else (a pool seen only in mixtures) the largest equal share of a mixture row's unique samples.
    """
    sizes = {p: float(v) for p, v in (given or {}).items()}
    for p, v in sizes.items():
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"pool size for {p!r} must be positive, got {v!r}")
        if v > MAX_COUNT:
            raise ValueError(f"pool size for {p!r} ({v:g}) is above the maximum {MAX_COUNT:g}")
    single: dict[str, float] = {}
    shared: dict[str, float] = {}
    for name, mix, u in zip(obs.pool, obs.mixtures, obs.unique_samples):
        if mix is None:
            single[name] = max(single.get(name, 0.0), float(u))
        else:
            active = [p for p, w in mix.items() if w > 0]
            for p in active:
                shared[p] = max(shared.get(p, 0.0), float(u) / len(active))
    out = {}
    for p in obs.pool_names:
        out[p] = sizes.get(p, single.get(p, shared.get(p)))
    return out


def _check_pass_counts(obs: Observations, pools: list[str], sizes: dict[str, float]) -> None:
    """No row may pass over a pool more than MAX_EPOCHS times: the exact segments the fitter
    builds grow with the passes (a mixture row over a pool given a tiny --pool-size would
    otherwise ask for billions of them). Single-pool rows are checked by the observations."""
    W, N = observation_weights(obs, pools, sizes)
    passes = W * np.asarray(obs.samples_seen, dtype=float)[:, None] / N
    over = np.argwhere(passes > MAX_EPOCHS)
    if over.size:
        row, col = (int(v) for v in over[0])
        raise ValueError(f"row {row + 1}: {passes[row, col]:.3g} passes over pool {pools[col]!r} "
                         f"(size {N[row, col]:g}); at most {MAX_EPOCHS:g} are accepted "
                         "(is the pool size right?)")


def measured_gaps(obs: Observations) -> dict[str, float]:
    """Where each pool's half-life is measured: the largest `unique_samples` among its
    single-pool rows that repeat it (samples_seen > unique_samples); for a pool never repeated
    alone, its inferred size (:func:`infer_pool_sizes`). A fresh-data control run (never
    repeated) does not move a pool's gap."""
    gaps = infer_pool_sizes(obs)
    repeated: dict[str, float] = {}
    for name, mix, n, u in zip(obs.pool, obs.mixtures, obs.samples_seen, obs.unique_samples):
        if mix is None and float(n) > float(u) * (1 + 1e-12):
            repeated[name] = max(repeated.get(name, 0.0), float(u))
    return {p: repeated.get(p, g) for p, g in gaps.items()}


def gamma_identified(obs: Observations, min_ratio: float = 1.01) -> bool:
    """Do the observations repeat some pool alone at two or more subset sizes (unique_samples
    differing by more than `min_ratio`)? Only then do they say how a half-life stretches with
    the gap between repetitions (gamma); a single subset size per pool leaves it unidentified."""
    sizes: dict[str, list[float]] = {}
    for name, mix, n, u in zip(obs.pool, obs.mixtures, obs.samples_seen, obs.unique_samples):
        if mix is None and float(n) > float(u) * (1 + 1e-12):
            sizes.setdefault(name, []).append(float(u))
    return any(max(v) / min(v) > min_ratio for v in sizes.values())


def stratified_bootstrap_draws(fit_fn, obs: Observations, n_boot: int, seed: int,
                               max_failures: int | None = None) -> list[dict[str, float]]:
    """Bootstrap refits that resample within each pool (or mixture) label.

    Why stratify: every parameter b[P], tau[P] is informed only by rows of pool P; a plain
    row (or run) bootstrap sometimes drops a pool entirely, and its parameters then do not move
    at all in that draw. Within a label, runs are grouped by the subset they repeat (a run's
    largest unique_samples: a probe's U, U/4 and fresh-data runs of a pool are three groups),
    so every draw keeps the design's subset sizes; within a group, whole runs are resampled when
    it has at least two run ids (seeds: checkpoints of one run are not independent), else its
    rows. Failed refits (ValueError / RuntimeError) are replaced, as in
    :func:`laws.bootstrap.bootstrap_draws`.
    """
    if n_boot < 1:
        raise ValueError("n_boot must be at least 1")
    rng = np.random.default_rng(seed)
    labels = np.asarray(obs.pool, dtype=object)
    runs = None if obs.run_id is None else np.asarray(obs.run_id, dtype=object)
    unique = np.asarray(obs.unique_samples, dtype=float)
    units = []  # per stratum: list of row-index arrays, one per resampling unit
    for label in dict.fromkeys(obs.pool):
        rows = np.flatnonzero(labels == label)
        if runs is None:
            units.append([np.array([i]) for i in rows])
            continue
        groups: dict[float, list] = {}
        for r in dict.fromkeys(runs[rows]):
            run_rows = rows[runs[rows] == r]
            groups.setdefault(float(unique[run_rows].max()), []).append(run_rows)
        for members in groups.values():
            if len(members) >= 2:
                units.append(members)
            else:
                units.append([np.array([i]) for i in members[0]])
    draws, failures = [], 0
    limit = n_boot if max_failures is None else max_failures
    while len(draws) < n_boot:
        pick = np.concatenate([np.concatenate([u[j] for j in rng.integers(0, len(u), len(u))])
                               for u in units])
        try:
            draws.append({k: float(v) for k, v in fit_fn(pick).items()})
        except (ValueError, RuntimeError, FloatingPointError) as exc:
            failures += 1
            if failures > limit:
                raise RuntimeError(f"bootstrap: {failures} refits failed (last: {exc})") from exc
    return draws


def prediction_interval(law: QQTLaw, draws, samples, pool=None, weights=None, level=0.9):
    """Percentile band (lo, hi) of the predicted curve across bootstrap parameter draws."""
    if not draws:
        raise ValueError("no bootstrap draws: fit with n_bootstrap > 0 for intervals")
    return prediction_band(law, draws, lambda moved: (
        moved.predict(samples, pool=pool) if weights is None
        else moved.predict_mixture(weights, samples)), level)


def refit_law(law: QQTLaw, observations: Observations, **options) -> QQTLaw:
    """`law` refitted to observations: a new law, with the estimator as its `estimator_`.

    Parameters named in ``law.fixed`` keep their values; pools the observations do not mention
    keep theirs too. Pool sizes, variant, normaliser and unit are the law's. `options` go to
    :class:`QQTFit` (n_bootstrap, seed, huber_delta, diagnostics, ...). For fitting from scratch
    use ``QQTFit(...).fit(observations).law_``.
    """
    unknown = [p for p in observations.pool_names if p not in law.pools]
    if unknown:
        raise ValueError(f"observations mention pool(s) {unknown} the law does not know "
                         f"({law.pools})")
    used = set(observations.pool_names)
    current = law.params
    fix = {n: current[n] for n in law.fixed
           if n in ("a", "b", "d") or n[n.index("[") + 1:-1] in used}
    est = QQTFit(variant=law.variant, fix=fix, sizes=law.pool_sizes, normalizer=law.normalizer,
                 unit=law.unit, **options).fit(observations)
    fitted = law.with_params(est.params_)
    if est.gamma_fitted_:
        fitted.gamma = est.gamma_
    fitted.fit_info, fitted.bootstrap = est.law_.fit_info, est.law_.bootstrap
    fitted.estimator_ = est
    return fitted


# -- small helpers ----------------------------------------------------------------------------

def _gap_ratio_max(obs: Observations, pools, sizes, gaps) -> float:
    """The largest P_i / G_i (gap between repetitions over measured gap) among the rows that
    repeat a pool: how far the fit data itself stretched the half-lives (1 for lone pools)."""
    W, N = observation_weights(obs, pools, sizes)
    n = np.asarray(obs.samples_seen, dtype=float)[:, None]
    G = np.array([float(gaps[p]) for p in pools])[None, :]
    repeats = (W > 0) & (W * n > N * (1 + 1e-12))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(repeats, N / np.where(W > 0, W, 1.0) / G, 0.0)
    return float(max(1.0, ratio.max(initial=0.0)))


def _huber_sum(r, delta) -> float:
    return float(np.sum(huber(r, delta)))


def _mixture_size_warnings(obs: Observations, sizes: dict[str, float], limit: int = 3) -> list[str]:
    """Mixture rows whose unique_samples disagree with the pool sizes used for them.

    With sizes N_i a mixture row of n samples has sum_i min(w_i n, N_i) unique samples; a
    mismatch means the row drew from other subsets than the law's pools (give --pool-size).
    """
    out = []
    for row, (mix, n, u) in enumerate(zip(obs.mixtures, obs.samples_seen, obs.unique_samples)):
        if mix is None or any(p not in sizes for p in mix):
            continue
        expected = sum(min(w * n, sizes[p]) for p, w in mix.items() if w > 0)
        if abs(expected / u - 1) > 0.01:
            out.append(f"row {row + 1}: mixture unique_samples {u:g} differs from {expected:g} "
                       "implied by the pool sizes (set the sizes with --pool-size)")
    if len(out) > limit:
        out = out[:limit] + [f"... and {len(out) - limit} more mixture rows like these"]
    return out


def _largest_per_pool(obs: Observations) -> np.ndarray:
    """Row index of the largest samples_seen for every pool/mixture label that has >= 3 rows."""
    held = []
    labels = np.asarray(obs.pool, dtype=object)
    for label in dict.fromkeys(obs.pool):
        rows = np.flatnonzero(labels == label)
        if rows.size >= 3:
            held.append(int(rows[np.argmax(obs.samples_seen[rows])]))
    if not held:
        held = [int(np.argmax(obs.samples_seen))]
    return np.array(sorted(held), dtype=int)


def _check_fixed_values(fix):
    for name, v in fix.items():
        v = float(v)
        if not math.isfinite(v):
            raise ValueError(f"fixed value for {name} must be finite, got {v!r}")
        if name == "a" or name.startswith("tau["):
            if v <= 0:
                raise ValueError(f"{name} must be positive, got {v!r}")
        if name.startswith("b[") and v >= 0:
            raise ValueError(f"{name} (utility) must be negative, got {v!r}")

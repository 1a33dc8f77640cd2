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
a free tau without any is reported in `warnings_` (and the law file's fit section).

Observations
------------
* single-pool row: the pool size for that row is its `unique_samples` (a run that drew
  samples_seen from U unique samples repeated a pool of size U; if U == samples_seen there was
  no repetition and the first-pass formula applies, whatever the pool's full size);
* mixture row (`name=w;name=w`): weights as written, pool sizes from the law (`sizes`, or else
  the largest `unique_samples` of that pool's single-pool rows; a pool seen only in mixtures
  gets its equal share of the row's unique samples, exact for the released top-m mixtures).

The model is evaluated for all rows at once (vectorised over pass segments, which depend only
on the data, not on the parameters), and checked against :func:`laws.qqt.mixture_error` in the
tests. Uncertainty: bootstrap stratified by pool / mixture label (rows, or whole runs when a
label has several run ids), refitting from the full-data optimum; percentile intervals for
parameters and predictions. Diagnostics: R^2 on the
metric, RMSE, leave-one-out and hold-out-the-largest extrapolation errors (relative RMS error
of the refit's predictions; "largest" = the row with the most samples seen of every pool or
mixture that has >= 3 rows, all held out together).
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import numpy as np

from curate.laws.bootstrap import percentile_intervals, prediction_intervals
from curate.laws.diagnostics import goodness_of_fit, leave_one_out
from curate.laws.fitting import huber
from curate.laws.observations import Observations, require_points
from curate.laws.qqt import NORMALIZER, VARIANTS, QQTLaw, segments_after_first_pass, b_name, tau_name

DEFAULT_HUBER_DELTA = 1e-2
_BOUNDS = {"log_a": (math.log(1e-9), math.log(1e6)), "b": (-5.0, -1e-6),
           "log_tau": (math.log(1e-2), math.log(1e4))}
# Starts for a, as values of a * median(samples seen) / normaliser: scale-free, so the grid
# fits data counted in samples (~1e7) and in tokens (~1e10) alike.
_START_A_SCALED = (0.1, 1.0, 10.0, 100.0, 1000.0)
_START_B = (-0.05, -0.15, -0.4)
_START_TAU = (1.0, 5.0, 25.0)


# ---------------------------------------------------------------------------------------------
# Vectorised model over a fixed set of observations
# ---------------------------------------------------------------------------------------------

@dataclass
class QQTDesign:
    """Everything about the observations the QQT prediction needs except the parameters.

    Segments (stretches of the stream beyond the first pass in which no pool changes its pass
    index) are stored flat, grouped by observation in row order.
    """

    weights: np.ndarray      # (n_obs, P) normalised mixture weights (one-hot for a single pool)
    m_eff: np.ndarray        # (n_obs,) inverse Simpson index of the weights
    first: np.ndarray        # (n_obs,) min(n, t1): samples before any pool repeats
    seg_obs: np.ndarray      # (n_seg,) observation each segment belongs to (non-decreasing)
    seg_lo: np.ndarray       # (n_seg,) segment start (stream samples)
    seg_hi: np.ndarray       # (n_seg,) segment end
    seg_pass: np.ndarray     # (n_seg, P) pass index of each pool inside the segment

    @property
    def n_obs(self) -> int:
        return int(self.first.size)

    @classmethod
    def build(cls, obs: Observations, pools: list[str], sizes: dict[str, float]) -> "QQTDesign":
        P = len(pools)
        index = {p: i for i, p in enumerate(pools)}
        W = np.zeros((len(obs), P))
        m_eff = np.ones(len(obs))
        first = np.empty(len(obs))
        seg_obs, seg_lo, seg_hi, seg_pass = [], [], [], []
        for j in range(len(obs)):
            n = float(obs.samples_seen[j])
            mix = obs.mixtures[j]
            if mix is None:
                w = {obs.pool[j]: 1.0}
                N = {obs.pool[j]: float(obs.unique_samples[j])}
            else:
                w = {p: x for p, x in mix.items() if x > 0}
                share = float(obs.unique_samples[j]) / len(w)
                N = {p: float(sizes.get(p) or share) for p in w}
            ids = np.array([index[p] for p in w])
            wv = np.array([w[p] for p in w])
            Nv = np.array([N[p] for p in w])
            W[j, ids] = wv
            m_eff[j] = 1.0 / float(np.sum(wv * wv))
            per_pass = Nv / wv
            t1 = float(per_pass.min())
            first[j] = min(n, t1)
            for lo, hi in segments_after_first_pass(n, per_pass, t1):
                k = np.zeros(P)
                k[ids] = np.floor(wv * (0.5 * (lo + hi)) / Nv)
                seg_obs.append(j)
                seg_lo.append(lo)
                seg_hi.append(hi)
                seg_pass.append(k)
        return cls(W, m_eff, first, np.array(seg_obs, dtype=int), np.array(seg_lo, dtype=float),
                   np.array(seg_hi, dtype=float), np.array(seg_pass, dtype=float).reshape(-1, P))

    def subset(self, rows) -> "QQTDesign":
        """The design of the given rows (repeats allowed), without recomputing segments."""
        rows = np.asarray(rows, dtype=int)
        counts_all = np.bincount(self.seg_obs, minlength=self.n_obs)
        start_all = np.concatenate([[0], np.cumsum(counts_all)[:-1]])
        counts = counts_all[rows]
        total = int(counts.sum())
        offsets = np.repeat(np.cumsum(counts) - counts, counts)
        idx = np.repeat(start_all[rows], counts) + (np.arange(total) - offsets)
        return QQTDesign(self.weights[rows], self.m_eff[rows], self.first[rows],
                         np.repeat(np.arange(rows.size), counts), self.seg_lo[idx],
                         self.seg_hi[idx], self.seg_pass[idx])

    def predict(self, a: float, d: float, b: np.ndarray, tau: np.ndarray, variant: str,
                normalizer: float = NORMALIZER) -> np.ndarray:
        """Predicted error for every observation (same values as laws.qqt.mixture_error)."""
        return self.predict_and_jacobian(a, d, b, tau, variant, normalizer, jacobian=False)[0]

    def predict_and_jacobian(self, a, d, b, tau, variant, normalizer=NORMALIZER, jacobian=True):
        """Predictions E and dE/d(log a, d, b_1..b_P, log tau_1..log tau_P) (n_obs, 2 + 2P)."""
        n, P = self.n_obs, b.size
        b0 = self.weights @ b
        x1 = a * self.first / normalizer
        log_x1 = np.log(x1)
        X = np.exp(b0 * log_x1)
        so = self.seg_obs
        has_seg = so.size > 0
        if has_seg:
            kappa = math.log(2.0) * self.seg_pass / (self.m_eff[so, None] * tau[None, :])
            delta = np.exp(-kappa)  # 0.5^(pass / (m_eff tau_i))
            wd = self.weights[so] * delta          # w_i delta_i per segment
            wbd = wd @ b                            # sum_i w_i b_i delta_i
        J = np.zeros((n, 2 + 2 * P)) if jacobian else None
        if variant == "utility":
            if has_seg:
                dlog = np.log(self.seg_hi) - np.log(self.seg_lo)
                F = np.bincount(so, wbd * dlog, minlength=n)
            else:
                F = np.zeros(n)
            expF = np.exp(F)
            E = (X + d) * expF
            if jacobian:
                J[:, 0] = b0 * X * expF
                J[:, 1] = expF
                J[:, 2:2 + P] = (expF * log_x1 * X)[:, None] * self.weights
                if has_seg:
                    G = _group_sum(so, wd * dlog[:, None], n)
                    H = _group_sum(so, wd * b[None, :] * kappa * dlog[:, None], n)
                    J[:, 2:2 + P] += E[:, None] * G
                    J[:, 2 + P:] = E[:, None] * H
            return E, J
        # effective-data variant
        C = b0 * log_x1
        if has_seg:
            rate = wd.sum(axis=1)
            beta = wbd / rate
            scale = a / normalizer
            width = self.seg_hi - self.seg_lo
            added = scale * width * rate
            s_after = x1[so] + _group_cumsum(so, added)
            s_before = s_after - added
            dlogS = np.log(s_after) - np.log(s_before)
            C = C + np.bincount(so, beta * dlogS, minlength=n)
        Z = np.exp(C)
        E = Z + d
        if jacobian:
            J[:, 0] = Z * b0  # every S scales with a, so only the first-pass term moves
            J[:, 1] = 1.0
            J[:, 2:2 + P] = (Z * log_x1)[:, None] * self.weights
            if has_seg:
                J[:, 2:2 + P] += Z[:, None] * _group_sum(so, (wd / rate[:, None]) * dlogS[:, None], n)
                rho = wd * kappa                                  # d rate / d log tau_i
                dbeta = rho * (b[None, :] - beta[:, None]) / rate[:, None]
                alpha = scale * width[:, None] * rho              # d added / d log tau_i
                A = _group_cumsum(so, alpha)                      # d S_after / d log tau_i
                dC = dbeta * dlogS[:, None] + beta[:, None] * (
                    A / s_after[:, None] - (A - alpha) / s_before[:, None])
                J[:, 2 + P:] = Z[:, None] * _group_sum(so, dC, n)
        return E, J


def _group_sum(groups: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Sums of the rows of `values` (n_seg, k) per (sorted) group -> (n, k)."""
    out = np.zeros((n, values.shape[1]))
    if groups.size:
        cuts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
        out[groups[cuts]] = np.add.reduceat(values, cuts, axis=0)
    return out


def _group_cumsum(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sum within runs of equal (sorted) group ids, along axis 0."""
    csum = np.cumsum(values, axis=0)
    first = np.searchsorted(groups, groups, side="left")
    before = np.where((first > 0).reshape((-1,) + (1,) * (values.ndim - 1)),
                      csum[np.maximum(first - 1, 0)], 0.0)
    return csum - before


# ---------------------------------------------------------------------------------------------
# Estimator
# ---------------------------------------------------------------------------------------------

class QQTFit:
    """Estimator for QQT laws (scikit-learn style: fit() returns self, results end in `_`).

    Parameters
    ----------
    variant : "utility" or "data".
    fix : {name: value} held fixed during the fit, e.g. {"d": 0.1} or {"tau[top10]": 5.0}.
    sizes : {pool: size} pool sizes for the law (default: inferred from the observations).
    normalizer : the fixed sample normaliser (1e5, as released).
    huber_delta : Huber threshold on log-residuals.
    n_starts : how many of the best grid starts are optimised locally.
    n_bootstrap, level, seed : bootstrap refits for intervals (0 = none).
    diagnostics : compute leave-one-out and hold-out-largest errors (refits; costs time).
    unit : what samples are, recorded in the law.

    Fitted attributes: law_ (QQTLaw), params_, objective_, n_obs_, free_, fixed_, pool_sizes_,
    predictions_, r2_, rmse_, loo_error_, holdout_largest_error_, draws_, intervals_, fit_time_.
    """

    def __init__(self, variant: str = "utility", fix: dict[str, float] | None = None,
                 sizes: dict[str, float] | None = None, normalizer: float = NORMALIZER,
                 huber_delta: float = DEFAULT_HUBER_DELTA, n_starts: int = 6,
                 n_bootstrap: int = 0, level: float = 0.9, seed: int = 0,
                 diagnostics: bool = True, unit: str = "samples"):
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

    # -- public ------------------------------------------------------------------------------
    def fit(self, obs: Observations) -> "QQTFit":
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown QQT variant {self.variant!r}; expected one of {VARIANTS}")
        t0 = time.perf_counter()
        self.pools_ = obs.pool_names
        self.pool_sizes_ = infer_pool_sizes(obs, self.sizes)
        names = ["a", "d"] + [n for p in self.pools_ for n in (b_name(p), tau_name(p))]
        fix = dict(self.fix or {})
        unknown = sorted(set(fix) - set(names))
        if unknown:
            raise ValueError(f"cannot fix unknown QQT parameter(s) {unknown}; names are "
                             f"a, d, b[POOL], tau[POOL] with pools {self.pools_}")
        _check_fixed_values(fix)
        self.fixed_ = {k: float(v) for k, v in fix.items()}
        self.free_ = [n for n in names if n not in fix]
        require_points(len(obs), len(self.free_), "qqt")
        self._names = names
        self._y = np.asarray(obs.metric, dtype=float)
        design = QQTDesign.build(obs, self.pools_, self.pool_sizes_)
        repeated = np.any(design.seg_pass > 0, axis=0) if design.seg_pass.size else \
            np.zeros(len(self.pools_), dtype=bool)
        self.warnings_ = [f"{tau_name(p)} is not identified: no observation repeats pool {p!r} "
                          "(samples_seen > unique_samples); its value is a start value"
                          for p, rep in zip(self.pools_, repeated)
                          if not rep and tau_name(p) in self.free_]
        self.warnings_ += _mixture_size_warnings(obs, self.pool_sizes_)
        x, cost = self._fit_design(design, self._y, starts=None)
        self.params_ = self._params_from_x(x)
        self.objective_ = cost
        self.n_obs_ = len(obs)
        self.predictions_ = self._predict_design(design, self.params_)
        self._set_goodness(self._y, self.predictions_)
        self.loo_error_ = self.holdout_largest_error_ = None
        if self.diagnostics:
            self._set_extrapolation_errors(obs, design, x)
        self.draws_, self.intervals_ = [], {}
        if self.n_bootstrap:
            self._bootstrap(obs, design, x)
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
            kinds.append("log_a" if n == "a" else "d" if n == "d" else
                         "b" if n.startswith("b[") else "log_tau")
        return kinds

    def _params_from_x(self, x) -> dict[str, float]:
        out = dict(self.fixed_)
        for name, kind, v in zip(self.free_, self._x_layout(), x):
            out[name] = float(math.exp(v)) if kind.startswith("log_") else float(v)
        return {n: out[n] for n in self._names}

    def _arrays(self, params):
        b = np.array([params[b_name(p)] for p in self.pools_])
        tau = np.array([params[tau_name(p)] for p in self.pools_])
        return params["a"], params["d"], b, tau

    def _predict_design(self, design, params):
        a, d, b, tau = self._arrays(params)
        return design.predict(a, d, b, tau, self.variant, self.normalizer)

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

    def _grid(self, y, typical_samples: float):
        """Start grid: every pool shares the same start values for b and tau."""
        d_starts = (0.0, 0.5 * float(np.min(y)))
        a_starts = [c * self.normalizer / typical_samples for c in _START_A_SCALED]
        points = []
        for a, b, tau, d in itertools.product(a_starts, _START_B, _START_TAU, d_starts):
            x = []
            for name, kind in zip(self.free_, self._x_layout()):
                x.append({"log_a": math.log(a), "d": d, "b": b, "log_tau": math.log(tau)}[kind])
            points.append(x)
        return np.unique(np.array(points), axis=0)

    def _residual_functions(self, design, y):
        """Log-residuals r(x) = log E_hat - log y and their analytic Jacobian dr/dx."""
        logy = np.log(y)
        cols = self._free_columns()
        cache: dict = {}

        def evaluate(x):
            key = x.tobytes()
            if key not in cache:
                cache.clear()
                a, d, b, tau = self._arrays(self._params_from_x(x))
                E, J = design.predict_and_jacobian(a, d, b, tau, self.variant, self.normalizer)
                ok = np.isfinite(E) & (E > 0)
                with np.errstate(invalid="ignore", divide="ignore"):
                    r = np.where(ok, np.log(np.where(ok, E, 1.0)) - logy, 1e3)
                    jac = np.where(ok[:, None], J[:, cols] / np.where(ok, E, 1.0)[:, None], 0.0)
                cache[key] = (r, jac)
            return cache[key]

        return (lambda x: evaluate(x)[0]), (lambda x: evaluate(x)[1])

    def _free_columns(self) -> np.ndarray:
        """Jacobian columns (log a, d, b_1.., log tau_1..) of the free parameters, in order."""
        P = len(self.pools_)
        col = {"a": 0, "d": 1}
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
            costs = np.array([_huber_sum(residuals(x), self.huber_delta) for x in grid])
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
        """RMSE of relative errors: leave-one-out and holding out the largest samples_seen."""
        y = np.asarray(obs.metric, dtype=float)
        fit_predict = self._refit_predict(design, y, x_full)
        n = len(obs)
        loo = leave_one_out(fit_predict, n)["predictions"]
        self.loo_predictions_ = loo
        self.loo_error_ = float(np.sqrt(np.mean((loo / y - 1) ** 2)))
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
        self.draws_ = [{k: v for k, v in d.items() if k in self.free_} for d in draws]
        self.intervals_ = percentile_intervals(self.draws_, self.level) if self.free_ else {}

    def _make_law(self, obs) -> QQTLaw:
        fit_info = {
            "objective": self.objective_, "huber_delta": self.huber_delta,
            "r2": self.r2_, "rmse": self.rmse_, "n_obs": self.n_obs_,
            "samples_range": [float(np.min(obs.samples_seen)), float(np.max(obs.samples_seen))],
            "params_range": None if obs.params is None else
            [float(np.min(obs.params)), float(np.max(obs.params))],
            "loo_error": self.loo_error_, "holdout_largest_error": self.holdout_largest_error_,
            "method": f"multi-start least squares (TRF, analytic Jacobian, Huber on log "
                      f"error), best {self.n_starts} of a start grid",
            "fit_time_s": round(self.fit_time_, 4),
            "warnings": list(self.warnings_),
        }
        boot = None
        if self.draws_:
            boot = {"level": self.level, "n": len(self.draws_), "seed": self.seed,
                    "draws": self.draws_,
                    "intervals": {k: list(v) for k, v in self.intervals_.items()}}
        p = self.params_
        return QQTLaw(p["a"], p["d"], self.pools_, b=[p[b_name(q)] for q in self.pools_],
                      tau=[p[tau_name(q)] for q in self.pools_],
                      sizes=[self.pool_sizes_[q] for q in self.pools_], variant=self.variant,
                      normalizer=self.normalizer, unit=self.unit, fixed=sorted(self.fixed_),
                      fit_info=fit_info, bootstrap=boot)


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


def stratified_bootstrap_draws(fit_fn, obs: Observations, n_boot: int, seed: int,
                               max_failures: int | None = None) -> list[dict[str, float]]:
    """Bootstrap refits that resample within each pool (or mixture) label.

    Why stratify: every parameter b[P], tau[P] is informed only by rows of pool P; a plain
    row (or run) bootstrap sometimes drops a pool entirely, and its parameters then do not move
    at all in that draw. Within a label, whole runs are resampled when the label has at least
    two run ids (checkpoints of one run are not independent), else rows. Failed refits
    (ValueError / RuntimeError) are replaced, as in :func:`laws.bootstrap.bootstrap_draws`.
    """
    if n_boot < 1:
        raise ValueError("n_boot must be at least 1")
    rng = np.random.default_rng(seed)
    labels = np.asarray(obs.pool, dtype=object)
    runs = None if obs.run_id is None else np.asarray(obs.run_id, dtype=object)
    units = []  # per label: list of row-index arrays, one per resampling unit
    for label in dict.fromkeys(obs.pool):
        rows = np.flatnonzero(labels == label)
        run_ids = None if runs is None else list(dict.fromkeys(runs[rows]))
        if run_ids is not None and len(run_ids) >= 2:
            units.append([rows[runs[rows] == r] for r in run_ids])
        else:
            units.append([np.array([i]) for i in rows])
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

    def predict(draw):
        moved = law.with_params(draw)
        return (moved.predict(samples, pool=pool) if weights is None
                else moved.predict_mixture(weights, samples))

    return prediction_intervals(draws, predict, level)


# -- small helpers ----------------------------------------------------------------------------

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

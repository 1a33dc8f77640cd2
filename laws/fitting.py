"""Fitting Chinchilla-type laws: Huber loss on log-loss residuals, multi-start L-BFGS, VarPro.

Objective (the one every method reports, `FitResult.objective`): the *sum* over observations of
``huber(log L_hat - log y, delta)`` with delta = 1e-3, where log L_hat is computed in the
log-sum-exp form log L = LSE(log A - alpha log N', log B - beta log D', log E) (Hoffmann et al.
2022; Besiroglu et al. 2024; Muennighoff et al. 2023). E, A, B and R*_D, R*_N are optimised as
logarithms (they must stay positive); alpha and beta as they are.

Methods
-------
``"lbfgs-grid"``  The Chinchilla replication procedure: L-BFGS from every point of a start grid
    (default e in {-1,-.5,0,.5,1}, a, b in {0,5,...,25}, alpha, beta in {0,.5,...,2}: 4500
    starts), keep the best. Robust, slow.
``"varpro"``  Variable projection. For fixed nonlinear parameters (alpha, beta, R*s) the law
    L = E + A X + B Y is *linear* in (E, A, B) with X = N'^-alpha, Y = D'^-beta. For every point
    of a grid over the nonlinear parameters we solve for (E, A, B) >= 0 exactly, by
    iteratively-reweighted non-negative least squares: weights 1 / y make the least-squares
    residual the relative (~ log) residual, and IRLS weights min(1, delta / |r|) turn it into
    the Huber-on-log objective. The whole grid is solved at once (batched normal equations over
    every active set of the three coefficients, so the NNLS is exact, not clipped). The best
    few grid points are then *polished* by L-BFGS on the true Huber-log objective over all free
    parameters, so the reported objective is the same function the grid method minimises.
    VarPro only locates the basin cheaply; the polish makes the answer exact.
    Where N' depends on A and B (U_N = min(N_opt(C(U_D)), N) in the data-constrained law) see
    below; with only one of A, B free the projection re-solves with the updated value a few
    times (a fixed-point refresh) and the polish removes any remaining inconsistency.
``"auto"``  VarPro when at least one of E, A, B is free, else the grid.
``"local"``  One L-BFGS run from ``init`` (for the estimators: the constructor's values). Meant
    for bootstrap refits warm-started at the full-data estimate, e.g.
    ``ChinchillaLaw(**point.params_).fit(N[i], D[i], y[i], method="local")``.

Speed details of the projection: the grid is screened with one weighted least-squares solve
per point; the Huber IRLS iterations run only on the best eighth; the best points of distinct
basins (>= 3 grid steps apart) are polished. In the data-constrained law N' depends on A and B
through U_N, but only via the ratio A / B: with both free, log(A / B) joins the grid and the
model is exactly linear in (E, B) at each grid point. Exponents are bounded to [0.01, 3] in the
data-constrained law (G is undefined for alpha, beta <= 0 and a trial step there stalls
L-BFGS), decay constants R* to [0.01, 1e6] (a value at 1e6 means no decay was measured;
:mod:`laws.bounds` flags it); user ``bounds`` override (:func:`search_bounds`). BLAS is limited to one thread while fitting (tiny problems;
threads only contend).
"""
from __future__ import annotations

import contextlib
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
from scipy.optimize import minimize

from curate.laws import lm_formulas as formulas

HUBER_DELTA = 1e-3
LINEAR_NAMES = ("E", "A", "B")
LOG_NAMES = frozenset({"E", "A", "B", "R_D_star", "R_N_star"})

#: L-BFGS settings for every local run (grid starts and polish alike, so timings compare).
LBFGS_OPTIONS = {"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-10, "maxcor": 20}

#: Start grid of the Chinchilla replication (natural units; e = log E etc. on the grid above).
CHINCHILLA_START_GRID = {
    "E": np.exp([-1.0, -0.5, 0.0, 0.5, 1.0]),
    "A": np.exp([0.0, 5.0, 10.0, 15.0, 20.0, 25.0]),
    "B": np.exp([0.0, 5.0, 10.0, 15.0, 20.0, 25.0]),
    "alpha": np.array([0.0, 0.5, 1.0, 1.5, 2.0]),
    "beta": np.array([0.0, 0.5, 1.0, 1.5, 2.0]),
}
#: Start values for the decay constants (natural units).
DECAY_START_GRID = {
    "R_D_star": np.array([1.0, 3.0, 10.0, 30.0, 100.0]),
    "R_N_star": np.array([1.0, 3.0, 10.0, 30.0, 100.0]),
}
#: VarPro grid over the nonlinear parameters (natural units).
VARPRO_GRID = {
    "alpha": np.linspace(0.02, 1.5, 25),
    "beta": np.linspace(0.02, 1.5, 25),
    "R_D_star": np.array([1.0, 3.0, 10.0, 30.0, 100.0]),
    "R_N_star": np.array([1.0, 3.0, 10.0, 30.0, 100.0]),
}
#: Coarser exponent grid used when decay constants are free too (keeps the grid ~3-5k points).
VARPRO_GRID_WITH_DECAY = {"alpha": np.linspace(0.05, 1.2, 13), "beta": np.linspace(0.05, 1.2, 13)}
#: Grid over log(A / B) when both are free in the data-constrained law (see _fit_varpro), and
#: the exponent grid used alongside it.
VARPRO_GRID_WITH_RATIO = {"log(A/B)": np.linspace(-6.0, 10.0, 17),
                          "alpha": np.linspace(0.05, 1.2, 17), "beta": np.linspace(0.05, 1.2, 17)}
#: ... and when the decay constants are free as well (all seven parameters: ~11k points).
VARPRO_GRID_WITH_RATIO_AND_DECAY = {
    "log(A/B)": np.linspace(-6.0, 10.0, 9), "alpha": np.linspace(0.05, 1.2, 9),
    "beta": np.linspace(0.05, 1.2, 9), "R_D_star": np.array([1.0, 5.0, 20.0, 80.0]),
    "R_N_star": np.array([1.0, 5.0, 20.0, 80.0])}


# ---------------------------------------------------------------------------------------------
# Losses and a generic multi-start optimiser
# ---------------------------------------------------------------------------------------------

def huber(r, delta: float = HUBER_DELTA):
    """Elementwise Huber loss: r^2 / 2 for |r| <= delta, delta (|r| - delta / 2) beyond."""
    r = np.asarray(r, dtype=float)
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def huber_derivative(r, delta: float = HUBER_DELTA):
    """d huber / d r = clip(r, -delta, delta)."""
    return np.clip(r, -delta, delta)


def multistart_lbfgs(objective: Callable, starts, bounds=None, jac: bool = False,
                     options: Mapping | None = None):
    """Run L-BFGS(-B) from every start; return (best x, best value, all scipy results).

    ``objective(x)`` returns a float, or (float, gradient) when ``jac`` is True (without a
    gradient scipy uses finite differences). Failed or non-finite runs are kept in the results
    but never chosen.
    """
    opts = dict(LBFGS_OPTIONS if options is None else options)
    results = []
    best_x, best_f = None, math.inf
    for x0 in np.atleast_2d(np.asarray(starts, dtype=float)):
        res = minimize(objective, x0, jac=jac, method="L-BFGS-B", bounds=bounds, options=opts)
        results.append(res)
        if np.isfinite(res.fun) and res.fun < best_f:
            best_x, best_f = np.array(res.x), float(res.fun)
    if best_x is None:
        raise RuntimeError("every L-BFGS start failed (non-finite objective)")
    return best_x, best_f, results


# ---------------------------------------------------------------------------------------------
# Law descriptions the fitters work on
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LawModel:
    """What the fitters need to know about a law of the form L = E + A X(theta) + B Y(theta).

    log_predict(p, data) -> log L for natural-valued params p (values may be arrays of shape
    (G, 1) to evaluate G parameter sets at once); features(p, data) -> (X, Y), the columns that
    multiply A and B (E multiplies ones). grad(p, data) -> d log L / d(optimiser coordinates)
    as {name: (n,) array}, or None for central finite differences.
    """

    kind: str
    names: tuple[str, ...]
    data_keys: tuple[str, ...]
    log_predict: Callable
    features: Callable
    grad: Callable | None = None
    linear_feeds_features: bool = False  # X, Y depend on A, B (U_N in the data-constrained law)
    default_bounds: Mapping[str, tuple] = field(default_factory=dict)  # natural units


def _chinchilla_log_predict(p, data):
    return formulas.lse_log_loss(data["logN"], data["logD"], np.log(p["E"]), np.log(p["A"]),
                           np.log(p["B"]), p["alpha"], p["beta"])


def _chinchilla_features(p, data):
    return np.exp(-p["alpha"] * data["logN"]), np.exp(-p["beta"] * data["logD"])


def _chinchilla_grad(p, data):
    # log L = LSE(u1, u2, u3): d/du_i = softmax_i.
    u1 = np.log(p["A"]) - p["alpha"] * data["logN"]
    u2 = np.log(p["B"]) - p["beta"] * data["logD"]
    u3 = np.full_like(u1, np.log(p["E"]))
    top = np.maximum(np.maximum(u1, u2), u3)
    w1, w2, w3 = np.exp(u1 - top), np.exp(u2 - top), np.exp(u3 - top)
    s = w1 + w2 + w3
    s1, s2, s3 = w1 / s, w2 / s, w3 / s
    return {"E": s3, "A": s1, "B": s2, "alpha": -s1 * data["logN"], "beta": -s2 * data["logD"]}


def _effective(p, data):
    D_eff = formulas.effective_data(data["D"], data["U"], p["R_D_star"])
    N_eff = formulas.effective_params(data["N"], data["U"], p["A"], p["B"], p["alpha"], p["beta"],
                                p["R_N_star"])
    return N_eff, D_eff


def _dc_log_predict(p, data):
    N_eff, D_eff = _effective(p, data)
    return formulas.lse_log_loss(np.log(N_eff), np.log(D_eff), np.log(p["E"]), np.log(p["A"]),
                           np.log(p["B"]), p["alpha"], p["beta"])


def _softmax3(u1, u2, u3):
    top = np.maximum(np.maximum(u1, u2), u3)
    w1, w2, w3 = np.exp(u1 - top), np.exp(u2 - top), np.exp(u3 - top)
    s = w1 + w2 + w3
    return w1 / s, w2 / s, w3 / s


def _dc_grad(p, data):
    """d log L / d(log E, log A, log B, alpha, beta, log R*_D, log R*_N), analytically.

    Chain rule through D' (R*_D) and N' (R*_N, and U_N = G (G U_D)^(beta/alpha), which moves
    with A, B, alpha, beta on the rows where U_N < N). Checked against finite differences in
    the tests.
    """
    N, D, U = data["N"], data["D"], data["U"]
    a, b, e = np.log(p["A"]), np.log(p["B"]), np.log(p["E"])
    al, be, rd, rn = (np.float64(p[k]) for k in ("alpha", "beta", "R_D_star", "R_N_star"))
    # D' and its derivative in log R*_D.
    R_D = np.maximum(D / U - 1.0, 0.0)
    ed = np.exp(-R_D / rd)
    D_eff = U + U * rd * (1.0 - ed)
    dlogD_dlogrd = rd * U * (1.0 - ed - ed * R_D / rd) / D_eff
    # U_N, N' and their derivatives.
    h = np.log(al / be) + a - b  # log(alpha A / (beta B)); finite whenever G is
    log_uopt = h / al + (be / al) * np.log(U)
    active = log_uopt < np.log(N)
    U_N = np.where(active, np.exp(np.minimum(log_uopt, np.log(N))), N)
    R_N = np.maximum(N / U_N - 1.0, 0.0)
    en = np.exp(-R_N / rn)
    N_eff = U_N + U_N * rn * (1.0 - en)
    dlogN_dlogUN = np.where(active, U_N * (1.0 + rn * (1.0 - en) - en * N / U_N) / N_eff, 0.0)
    dlogN_dlogrn = rn * U_N * (1.0 - en - en * R_N / rn) / N_eff
    dlogU = {"A": 1.0 / al, "B": -1.0 / al,
             "alpha": (1.0 - h - be * np.log(U)) / al ** 2,
             "beta": (np.log(U) - 1.0 / be) / al}
    dlogN = {k: dlogN_dlogUN * v for k, v in dlogU.items()}
    logN_eff, logD_eff = np.log(N_eff), np.log(D_eff)
    s1, s2, s3 = _softmax3(a - al * logN_eff, b - be * logD_eff, np.full_like(logN_eff, e))
    return {
        "E": s3,
        "A": s1 * (1.0 - al * dlogN["A"]),
        "B": s2 - s1 * al * dlogN["B"],
        "alpha": -s1 * (logN_eff + al * dlogN["alpha"]),
        "beta": -s2 * logD_eff - s1 * al * dlogN["beta"],
        "R_D_star": -s2 * be * dlogD_dlogrd,
        "R_N_star": -s1 * al * dlogN_dlogrn,
    }


def _dc_features(p, data):
    N_eff, D_eff = _effective(p, data)
    return N_eff ** -p["alpha"], D_eff ** -p["beta"]


CHINCHILLA_MODEL = LawModel("chinchilla", formulas.CHINCHILLA_PARAMS, ("N", "D"),
                            _chinchilla_log_predict, _chinchilla_features, _chinchilla_grad)
# alpha, beta > 0: G = (alpha A / (beta B))^(1/(alpha+beta)) is undefined otherwise, and an
# L-BFGS trial step into that region (non-finite objective) stalls the line search.
# R*_D, R*_N in [1e-2, 1e6] repetitions. Without a box a decay constant the data do not
# resolve runs off (R*_N ~ 2.5e13 on the 182 published runs with all seven parameters free)
# and nothing says so; with one, laws.bounds flags a value at the top (no decay measured).
# 1e6, not the 1e4 of the QQT half-lives: LM data repeat up to ~1e4 epochs (9000 in those
# runs), and at R* = 1e6 the decay factor differs from none by < 0.5 % there. Measured on the
# 182 runs, all free: Huber objective 0.0065712 with the box (R*_N at 1e6, E 1.863) vs
# 0.0065659 without (E 1.831): the valley is flat, the box costs 0.08 %. The published
# (15.39, 5.31) and the wide (95.4, 1.71) refits lie well inside it.
DECAY_BOUNDS = (1e-2, 1e6)
DATA_CONSTRAINED_MODEL = LawModel("data-constrained", formulas.DATA_CONSTRAINED_PARAMS, ("N", "D", "U"),
                                  _dc_log_predict, _dc_features, _dc_grad,
                                  linear_feeds_features=True,
                                  default_bounds={"alpha": (1e-2, 3.0), "beta": (1e-2, 3.0),
                                                  "R_D_star": DECAY_BOUNDS,
                                                  "R_N_star": DECAY_BOUNDS})


def model_for(kind: str) -> LawModel:
    """The LawModel of a law kind ("chinchilla" or "data-constrained")."""
    models = {m.kind: m for m in (CHINCHILLA_MODEL, DATA_CONSTRAINED_MODEL)}
    if kind not in models:
        raise ValueError(f"no fitter for law kind {kind!r}; expected one of {sorted(models)}")
    return models[kind]


# ---------------------------------------------------------------------------------------------
# The objective in optimiser coordinates
# ---------------------------------------------------------------------------------------------

@dataclass
class FitResult:
    """Outcome of :func:`fit_law`. ``objective`` is the Huber sum on log-loss residuals."""

    params: dict[str, float]
    objective: float
    fixed: dict[str, float]
    method: str
    n_starts: int
    seconds: float
    converged: bool
    details: dict = field(default_factory=dict)


class _Objective:
    """Huber-log objective over the free parameters, in optimiser coordinates (logs for E...)."""

    def __init__(self, model: LawModel, data, y, fixed: Mapping[str, float], free, delta,
                 bounds: Mapping[str, tuple] | None = None):
        self.model, self.data, self.delta = model, data, delta
        self.log_y = np.log(y)
        self.fixed = dict(fixed)
        self.free = tuple(free)
        self.is_log = np.array([n in LOG_NAMES for n in self.free])
        self.bounds = None
        if bounds:
            # Natural-unit (lo, hi) per name -> optimiser coordinates; None = unbounded.
            self.bounds = []
            for name in self.free:
                lo, hi = bounds.get(name, (None, None))
                if name in LOG_NAMES:
                    lo = math.log(lo) if lo is not None and lo > 0 else None
                    hi = math.log(hi) if hi is not None else None
                self.bounds.append((lo, hi))

    def clip(self, z) -> np.ndarray:
        """Project optimiser coordinates into the bounds (starts must lie inside them)."""
        z = np.array(z, dtype=float)
        if self.bounds:
            for k, (lo, hi) in enumerate(self.bounds):
                z[..., k] = np.clip(z[..., k], -np.inf if lo is None else lo,
                                    np.inf if hi is None else hi)
        return z

    def to_params(self, z) -> dict[str, float]:
        z = np.asarray(z, dtype=float)
        vals = np.where(self.is_log, np.exp(np.where(self.is_log, z, 0.0)), z)
        p = dict(self.fixed)
        p.update({n: float(v) for n, v in zip(self.free, vals)})
        return p

    def to_z(self, params: Mapping[str, float]) -> np.ndarray:
        return np.array([math.log(params[n]) if n in LOG_NAMES else float(params[n])
                         for n in self.free])

    def residuals(self, z) -> np.ndarray:
        with np.errstate(all="ignore"):
            return self.model.log_predict(self.to_params(z), self.data) - self.log_y

    def value(self, z) -> float:
        r = self.residuals(z)
        f = float(np.sum(huber(r, self.delta)))
        return f if math.isfinite(f) else math.inf

    def value_and_grad(self, z):
        z = np.asarray(z, dtype=float)
        r = self.residuals(z)
        f = float(np.sum(huber(r, self.delta)))
        if not math.isfinite(f):
            return 1e300, np.zeros_like(z)  # L-BFGS-B backs off from an overflowing step
        psi = huber_derivative(r, self.delta)
        # einsum, not a BLAS matmul: OpenBLAS threads woken by tiny matmuls contend with
        # L-BFGS-B's own BLAS calls on a busy machine (threads are also capped while fitting).
        grad = np.einsum("nk,n->k", self.jacobian(z), psi)
        if not np.all(np.isfinite(grad)):
            return 1e300, np.zeros_like(z)  # outside the law's domain: make the search back off
        return f, grad

    def jacobian(self, z) -> np.ndarray:
        """d log L / dz (n x k): analytic where the model has it, else central differences."""
        if self.model.grad is not None:
            # grad is w.r.t. log E, log A, log B and raw exponents: our coordinates exactly.
            with np.errstate(all="ignore"):
                g = self.model.grad(self.to_params(z), self.data)
            return np.column_stack([g[name] for name in self.free])
        h = 1e-6 * np.maximum(1.0, np.abs(z))
        cols = []
        with np.errstate(all="ignore"):
            for k in range(z.size):
                zp, zm = z.copy(), z.copy()
                zp[k] += h[k]
                zm[k] -= h[k]
                cols.append((self.residuals(zp) - self.residuals(zm)) / (2 * h[k]))
        return np.column_stack(cols)

    def local(self, z0, options=None):
        return minimize(self.value_and_grad, self.clip(z0), jac=True, method="L-BFGS-B",
                        bounds=self.bounds, options=dict(options or LBFGS_OPTIONS))


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------

def single_threaded_blas():
    """Context limiting BLAS to one thread while fitting, where threadpoolctl is installed.

    The problems here are tiny (a few hundred rows, <= 7 parameters): multi-threaded OpenBLAS
    only adds wake-up and contention costs, which made each L-BFGS-B iteration ~5x slower on
    a busy 2-core machine. Without threadpoolctl this is a no-op.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: correctness does not depend on it
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


METHODS = ("auto", "varpro", "lbfgs-grid", "local")


def fit_law(model: LawModel, data: Mapping[str, Sequence[float]], y, *, fix=None,
            method: str = "auto", delta: float = HUBER_DELTA, grid: Mapping | None = None,
            init: Mapping[str, float] | None = None, n_polish: int = 4,
            bounds: Mapping[str, tuple] | None = None,
            options: Mapping | None = None) -> FitResult:
    """Fit ``model`` to observations by Huber loss on log-loss residuals.

    data: {"N": .., "D": .., ["U": ..]} arrays aligned with y (the observed losses, > 0).
    fix: {name: value} held fixed. method: "auto" | "varpro" | "lbfgs-grid" | "local".
    grid: start values per free name in natural units (lbfgs-grid: the product is the start
    set; varpro: the grid over nonlinear names); missing names use the defaults above or, for
    a single start, ``init``. n_polish: VarPro grid points polished by L-BFGS.
    bounds: {name: (lo, hi)} in natural units (None for an open side); starts are clipped in.
    """
    if method not in METHODS:
        raise ValueError(f"unknown fit method {method!r}; expected one of {METHODS}")
    with single_threaded_blas():
        return _fit_law(model, data, y, fix, method, delta, grid, init, n_polish, bounds, options)


def _fit_law(model, data, y, fix, method, delta, grid, init, n_polish, bounds, options):
    fixed = dict(fix or {})
    unknown = sorted(set(fixed) - set(model.names))
    if unknown:
        raise ValueError(f"unknown {model.kind} parameter(s): {', '.join(unknown)}")
    arrays, y = _check_data(model, data, y)
    free = [n for n in model.names if n not in fixed]
    for name in fixed:
        if name in LOG_NAMES and not fixed[name] > 0:
            raise ValueError(f"fixed {name} must be positive, got {fixed[name]!r}")
    if y.size < len(free) + 1:
        raise ValueError(f"{y.size} observations are too few to fit {len(free)} free "
                         f"parameter(s) of the {model.kind} law (need at least {len(free) + 1})")
    unknown = sorted(set(bounds or {}) - set(free))
    if unknown:
        raise ValueError(f"bounds given for parameter(s) that are not free: {', '.join(unknown)}")
    bounds = search_bounds(model, free, bounds)
    obj = _Objective(model, arrays, y, fixed, free, delta, bounds)
    t0 = time.perf_counter()
    if not free:
        return FitResult(dict(fixed), obj.value(np.array([])), fixed, "none", 0, 0.0, True)
    if method == "auto":
        method = "varpro" if any(n in LINEAR_NAMES for n in free) else "lbfgs-grid"
    if method == "local":
        missing = [n for n in free if not (init and n in init)]
        if missing:
            raise ValueError(f"method='local' needs start values for {', '.join(missing)}")
        res = obj.local(obj.to_z(init), options)
        return FitResult(obj.to_params(res.x), float(res.fun), fixed, method, 1,
                         time.perf_counter() - t0, bool(res.success), {"nit": int(res.nit)})
    if method == "varpro":
        if not any(n in LINEAR_NAMES for n in free):
            raise ValueError("varpro needs at least one of E, A, B free; use method='lbfgs-grid'")
        z, f, n_starts, converged, details = _fit_varpro(obj, grid, init, n_polish, options)
    else:
        z, f, n_starts, converged, details = _fit_grid(obj, grid, init, options)
    seconds = time.perf_counter() - t0
    return FitResult(obj.to_params(z), f, fixed, method, n_starts, seconds, converged, details)


def search_bounds(model: LawModel, free, bounds: Mapping[str, tuple] | None = None,
                  ) -> dict[str, tuple]:
    """The search box {name: (lo, hi)} (natural units, None = open) of the free parameters:
    the model's defaults (data-constrained: alpha, beta in [0.01, 3], R* in [0.01, 1e6]),
    overridden per name by `bounds`. Parameters without either are searched without a box
    (E, A, B: their log, so they stay positive)."""
    return {**{k: v for k, v in model.default_bounds.items() if k in free},
            **{k: v for k, v in (bounds or {}).items() if k in free}}


def _check_data(model: LawModel, data, y):
    y = np.asarray(y, dtype=float).ravel()
    arrays = {}
    for key in model.data_keys:
        if key not in data or data[key] is None:
            raise ValueError(f"the {model.kind} law needs {key!r} observations")
        arr = np.asarray(data[key], dtype=float).ravel()
        if arr.shape != y.shape:
            raise ValueError(f"{key} has {arr.size} values but there are {y.size} losses")
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            i = int(np.flatnonzero(~(np.isfinite(arr) & (arr > 0)))[0])
            raise ValueError(f"{key} must be positive and finite (row {i}: {arr[i]!r})")
        arrays[key] = arr
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        i = int(np.flatnonzero(~(np.isfinite(y) & (y > 0)))[0])
        raise ValueError(f"losses must be positive and finite (row {i}: {y[i]!r})")
    arrays["logN"] = np.log(arrays["N"])
    arrays["logD"] = np.log(arrays["D"])
    return arrays, y


def _grid_values(name, grid, init, default):
    if grid is not None and name in grid:
        return np.atleast_1d(np.asarray(grid[name], dtype=float))
    if default is not None and name in default:
        return np.asarray(default[name], dtype=float)
    if init is not None and name in init:
        return np.array([float(init[name])])
    raise ValueError(f"no start values for {name}: pass grid={{{name!r}: [...]}}")


def _fit_grid(obj: _Objective, grid, init, options):
    default = {**CHINCHILLA_START_GRID, **DECAY_START_GRID}
    axes = []
    for name in obj.free:
        vals = _grid_values(name, grid, init, default)
        axes.append(np.log(vals) if name in LOG_NAMES else vals)
    starts = np.unique(obj.clip(np.array(list(itertools.product(*axes)))), axis=0)
    x, f, results = multistart_lbfgs(obj.value_and_grad, starts, bounds=obj.bounds, jac=True,
                                     options=options)
    best = min((r for r in results if np.isfinite(r.fun)), key=lambda r: r.fun)
    return x, f, len(starts), bool(best.success), {"n_failed": sum(not r.success for r in results)}


# ---------------------------------------------------------------------------------------------
# Variable projection
# ---------------------------------------------------------------------------------------------

RATIO = "log(A/B)"  # pseudo-parameter of the projection when N' depends on A and B


def _fit_varpro(obj: _Objective, grid, init, n_polish, options):
    model = obj.model
    nonlinear = [n for n in obj.free if n not in LINEAR_NAMES]
    linear_free = [n for n in LINEAR_NAMES if n in obj.free]
    default = dict(VARPRO_GRID)
    if any(n in nonlinear for n in ("R_D_star", "R_N_star")):
        default.update(VARPRO_GRID_WITH_DECAY)
    # In the data-constrained law U_N = G (G U_D)^(beta/alpha) depends on A and B through
    # their ratio only. With both free, the ratio joins the grid and A = ratio * B, so
    # L = E + B (ratio X + Y) is exactly linear in (E, B) at every grid point.
    tie_ratio = model.linear_feeds_features and "A" in linear_free and "B" in linear_free
    axis_names = list(nonlinear)
    if tie_ratio:
        default.update(VARPRO_GRID_WITH_RATIO)
        if any(n in nonlinear for n in ("R_D_star", "R_N_star")):
            default.update(VARPRO_GRID_WITH_RATIO_AND_DECAY)
        axis_names.append(RATIO)
    axes = [_grid_values(n, grid, init, default) for n in axis_names]
    points = np.array(list(itertools.product(*axes))) if axes else np.zeros((1, 0))
    index = (np.array(list(itertools.product(*[range(len(a)) for a in axes])))
             if axes else np.zeros((1, 0), dtype=int))
    if obj.bounds and nonlinear:  # keep the grid inside the bounds (natural units)
        for j, n in enumerate(nonlinear):
            lo, hi = obj.bounds[obj.free.index(n)]
            conv = math.exp if n in LOG_NAMES else float
            points[:, j] = np.clip(points[:, j], -np.inf if lo is None else conv(lo),
                                   np.inf if hi is None else conv(hi))
        points, first = np.unique(points, axis=0, return_index=True)
        index = index[first]
    G = len(points)

    # Parameter sets for the whole grid as (G, 1) columns broadcasting against the data.
    p = {n: np.full((G, 1), float(v)) for n, v in obj.fixed.items()}
    for j, n in enumerate(axis_names):
        p[n] = points[:, j:j + 1]
    y = np.exp(obj.log_y)
    if tie_ratio:
        p["A"], p["B"] = np.exp(p.pop(RATIO)), np.ones((G, 1))
        with np.errstate(all="ignore"):
            X, Y = model.features(p, obj.data)
        solve_for = [n for n in ("E",) if n in linear_free] + ["B"]
        cols = {"E": np.ones_like(X), "B": p["A"] * X + Y}
        coef, values = _project(cols, p, solve_for, y, obj.delta)
        ratio = p["A"]
        for j, n in enumerate(solve_for):
            p[n] = coef[:, j:j + 1]
        p["A"] = ratio * p["B"]
    else:
        # Features may still depend on a free A or B (only one of them free): start from the
        # given values and re-solve a few times (fixed point); the polish finishes the job.
        for n in linear_free:
            p[n] = np.full((G, 1), float(init[n]) if init and n in init else 1.0)
        refreshes = 3 if model.linear_feeds_features and ({"A", "B"} & set(linear_free)) else 1
        for _ in range(refreshes):
            with np.errstate(all="ignore"):
                X, Y = model.features(p, obj.data)
            cols = {"E": np.ones_like(X), "A": X, "B": Y}
            coef, values = _project(cols, p, linear_free, y, obj.delta)
            for j, n in enumerate(linear_free):
                p[n] = coef[:, j:j + 1]

    polished = []
    for g in _diverse_best(values, index, n_polish):
        start = {n: float(np.ravel(p[n][g])[0]) for n in obj.free}
        polished.append(obj.local(obj.to_z(start), options))
    if not polished:
        raise RuntimeError("variable projection found no grid point with a finite objective")
    best = min(polished, key=lambda r: r.fun)
    details = {"grid_points": G, "projected_best": float(np.min(values)),
               "polished": len(polished)}
    return np.array(best.x), float(best.fun), G, bool(best.success), details


def _diverse_best(values, index, k, min_cells: int = 3):
    """Up to k grid points, best first, each >= min_cells grid steps from those already taken.

    The best few points of a fine grid are usually neighbours in one basin; polishing distinct
    basins instead is what makes the projection robust to a rugged objective.
    """
    chosen: list[int] = []
    for g in np.argsort(values):
        if not np.isfinite(values[g]) or len(chosen) >= max(1, k):
            break
        if all(np.max(np.abs(index[g] - index[c]), initial=0) >= min_cells for c in chosen):
            chosen.append(int(g))
    return chosen


def _project(cols, p, linear_free, y, delta, n_irls: int = 6):
    """Solve the free linear coefficients >= 0 at every grid point; return (coef, objective).

    Minimises sum_i w_i ((offset_i + Phi_i c) / y_i - 1)^2 over c >= 0 with IRLS Huber weights
    w_i = min(1, delta / |log-residual_i|), starting from w = 1. The non-negative solve is
    exact: every active set of the (at most 3) coefficients is solved in closed form and the
    best feasible one kept.
    """
    G = next(iter(cols.values())).shape[0]
    n = y.size
    offset = np.zeros((G, n))
    for name in cols:
        if name not in linear_free:
            offset = offset + p[name] * cols[name]
    Phi = np.stack([np.broadcast_to(cols[nm], (G, n)) for nm in linear_free], axis=2)  # G,n,k
    Phi = Phi / y[None, :, None]
    target = 1.0 - offset / y[None, :]
    ok_rows = np.all(np.isfinite(Phi), axis=(1, 2)) & np.all(np.isfinite(target), axis=1)
    # Grid points with non-finite features get a harmless well-posed stand-in (their objective
    # is set to inf below), so one bad point cannot make the batched solve singular.
    stand_in = (np.arange(n)[:, None] % len(linear_free) == np.arange(len(linear_free))[None, :])
    Phi = np.where(ok_rows[:, None, None], Phi, stand_in[None].astype(float))
    target = np.where(ok_rows[:, None], target, 1.0)
    # Screen, then refine: one weighted least-squares solve (w = 1, ~ squared log residuals)
    # at every grid point, then the Huber IRLS iterations only on the best eighth. The others
    # keep their least-squares value, an upper bound on what IRLS would give them.
    coef = _batched_nnls(Phi, target, np.ones((G, n)))
    values = _huber_values(Phi, coef, offset, y, delta)
    values = np.where(ok_rows, values, np.inf)
    keep = np.argsort(values)[:max(64, G // 8)]
    keep = keep[np.isfinite(values[keep])]
    if keep.size:
        P, t, off = Phi[keep], target[keep], offset[keep]
        c = coef[keep]
        for _ in range(n_irls - 1):
            fit = np.matmul(P, c[:, :, None])[:, :, 0] * y[None, :] + off
            with np.errstate(all="ignore"):
                a = np.abs(np.log(fit) - np.log(y)[None, :])
            w = np.where(np.isfinite(a), np.minimum(1.0, delta / np.maximum(a, 1e-300)), 1e-12)
            c = _batched_nnls(P, t, w)
        refined = _huber_values(P, c, off, y, delta)
        better = refined < values[keep]  # IRLS approximates Huber: keep whichever is lower
        coef[keep[better]] = c[better]
        values[keep[better]] = refined[better]
    # Keep coefficients strictly positive so the polish can work in log coordinates.
    scale = np.mean(y) / np.maximum(np.mean(np.abs(Phi * y[None, :, None]), axis=1), 1e-300)
    coef = np.maximum(coef, 1e-8 * scale)
    return coef, values


def _huber_values(Phi, coef, offset, y, delta):
    """Huber-log objective of every grid point's linear solution (inf where not positive)."""
    fit = np.matmul(Phi, coef[:, :, None])[:, :, 0] * y[None, :] + offset
    with np.errstate(all="ignore"):
        values = np.sum(huber(np.log(fit) - np.log(y)[None, :], delta), axis=1)
    return np.where(np.isfinite(values), values, np.inf)


def _batched_nnls(Phi, t, w):
    """argmin_{c >= 0} sum_n w (Phi c - t)^2 for every batch row, exactly (k <= 3)."""
    G, n, k = Phi.shape
    sw = np.sqrt(w)
    Aw = Phi * sw[:, :, None]
    bw = t * sw
    gram = np.matmul(Aw.transpose(0, 2, 1), Aw)
    rhs = np.matmul(Aw.transpose(0, 2, 1), bw[:, :, None])[:, :, 0]
    bb = np.sum(bw * bw, axis=1)
    best_c = np.zeros((G, k))
    best_sse = bb.copy()  # c = 0
    for size in range(1, k + 1):
        for subset in itertools.combinations(range(k), size):
            idx = list(subset)
            sub = gram[:, idx][:, :, idx]
            reg = 1e-14 * np.trace(sub, axis1=1, axis2=2)[:, None, None] * np.eye(size)
            try:
                c_sub = np.linalg.solve(sub + reg, rhs[:, idx][:, :, None])[:, :, 0]
            except np.linalg.LinAlgError:  # some point singular: pseudo-inverse for all
                c_sub = np.matmul(np.linalg.pinv(sub), rhs[:, idx][:, :, None])[:, :, 0]
            c = np.zeros((G, k))
            c[:, idx] = c_sub
            # |A c - b|^2 = b.b - 2 c.rhs + c' gram c, without forming residuals.
            sse = bb - 2 * np.sum(c * rhs, axis=1) + np.einsum("gi,gij,gj->g", c, gram, c)
            better = np.all(c_sub >= 0, axis=1) & np.isfinite(sse) & (sse < best_sse)
            best_c[better] = c[better]
            best_sse[better] = sse[better]
    return best_c

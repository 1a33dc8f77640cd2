"""Quality-quantity trade-off (QQT) law for pools under repetition (Goyal et al., CVPR 2024).

Single pool (the released code, exactly): error after n samples drawn from a pool of size N,

    E(n) = [(a * min(n, N) / s)^b + d] * prod_{k=1..K} (min(n, (k+1) N) / (k N))^(b_k),
    b_k = b * 0.5^(k / tau),  K = floor(n / N),  s = 1e5 (fixed normaliser).

d is added *before* the repetition factors multiply, as the released code does. Written in
log-samples, the repetition part is exp( integral_{N}^{n} b(t) dlog t ) with b(t) = b_{floor(t/N)}:
a piecewise-constant exponent over log-samples. (A consequence worth knowing: the repetition
factors shrink d too, so with a slow decay a repeated pool can be predicted to beat fresh
data of the same quality; the model is reproduced as released, quirks included.)

General mixtures (this project's extension)
-------------------------------------------
A mixture draws a share w_i of the stream from pool i (size N_i, utility b_i, half-life tau_i),
so after t samples pool i has been passed over r_i(t) = w_i t / N_i times, and two
presentations of one of its samples are P_i = N_i / w_i stream samples apart. We use

    E(n) = (a * min(n, t1) / s)^(b_0) * exp(F(t1, n)) + d * exp(F(t_all, n)),
    F(u, n) = integral_{u}^{n} b_eff(t) dlog t   (0 when u >= n),
    b_eff(t) = sum_i w_i * b_i * 0.5^( floor(r_i(t)) / tau'_i ),   tau'_i = tau_i (P_i / G_i)^gamma,
    b_0 = sum_i w_i b_i,   t1 = min_i P_i,   t_all = max_i P_i,

with the sums over pools with w_i > 0, G_i the gap at which tau_i was measured (the law's
`gaps`, by default its pool size: tau fitted on the pool trained alone) and gamma = 1 unless
fitted. Why this rule:
  * it reduces *exactly* to the released formulas: one pool has P = G = N and t1 = t_all = N;
    m equal pools mixed uniformly have every P_i = m N, so tau'_i = m tau_i (the released
    "tau scaled by m"), all pools share pass index k and t1 = t_all = m N, and E is the released
    [(a min(n, mN)/s)^(b_0) + d] prod_k (min(n,(k+1) m N) / (k m N))^(b_eff(k)).
  * it is split-invariant: cutting pool i into k identical sub-pools (sizes N_i / k, weights
    w_i / k, the same b, tau and measured gap) leaves every P_i, pass index, tau'_i, t1 and
    t_all unchanged, so every prediction is the same at every n, repetition included. (The
    earlier rule scaled tau by m_eff = 1 / sum_i w_i^2, which grows when a pool is split:
    splitting the released top10 pool in 4 raised its predicted accuracy at 640M samples from
    31.2 % to 42.5 % for the same data.)
  * decay follows the time between repetitions: a pool given a small share is revisited
    rarely, so each repetition costs less (tau'_i grows with P_i); gamma says how strongly
    (gamma = 1 is the released scaling; fitting it needs runs at two subset sizes per pool).
  * the floor d is multiplied only by repetition factors: only past t_all, where every pool of
    the mixture is being repeated. (The earlier rule multiplied d by every factor past t1,
    including another pool's fresh data, so a small repeated copy of an unlimited pool was
    predicted to lower the floor: a gain from nothing.) Consequence: a mixture that never
    exhausts one of its pools keeps d whole, so the prediction jumps where a pool's weight
    reaches exactly 0 (the planner evaluates those faces of the simplex explicitly).
  * each pool's decay follows its *own* repetition count, so a small pool given a large share
    starts decaying early while a large pool is still fresh (unequal sizes and weights); the
    first-pass term ends when the first pool starts repeating (t1), the only point where the
    whole stream is still unique.
The integral is evaluated exactly: b_eff(t) is constant between consecutive pass boundaries
k N_i / w_i of any pool, so it is a finite sum over those segments. Segments and their sum are
computed in one place, :mod:`laws.qqt_kernel`, for the law, the fitter and the planner alike
(predictions skip pass boundaries beyond 70 half-lives of a pool, whose decay is below double
precision; see that module).

Effective-data variant ("..._data" parameter sets)
---------------------------------------------------
Single pool: the samples seen are discounted per pass, n_eff = sum_k (samples in pass k) *
0.5^(k / tau), and E = (a * n_eff / s)^b + d (d added last here).

Mixture (released `func_effective_data_aggregation`, top-m equal pools): per pass k each pool
has delta_i(k) = 0.5^(k / (m tau_i)); the effective samples grow by (samples in pass k) *
mean_i delta_i(k) and the exponent of pass k is b_eff(k) = sum_i b_i delta_i(k) / sum_i
delta_i(k), so E = S_0^(b_eff(0)) * prod_{k>=1} (S_k / S_{k-1})^(b_eff(k)) + d with
S_k = a/s * cumulative effective samples after pass k. (So delta_i is the per-pool decay factor
of the current pass, not a sample count.) Generalised the same way as the utility rule (the
same tau'_i; d is added last here, so it never erodes):

    S(t) = a/s * integral_0^t sum_i w_i delta_i dt,   delta_i(t) = 0.5^(floor(r_i(t)) / tau'_i),
    b_eff(t) = sum_i w_i b_i delta_i(t) / sum_i w_i delta_i(t),
    E(n) = S(t1)^(b_0) * exp( integral_{t1}^{n} b_eff(t) dlog S(t) ) + d.

b_eff is the utility of the effective samples being added at t: each pool counts in
proportion to the effective samples it contributes (its share w_i times its decay). For equal
pools mixed uniformly the segments are whole passes and this is the released formula; for one
pool it is (a n_eff / s)^b + d. All 102 released golden values are matched to ~1e-15.

Objects: :class:`QQTLaw` names pools and parameters (`a`, `d`, `b[POOL]`, `tau[POOL]`) and
predicts pools and mixtures; the plain functions :func:`single_pool_error`,
:func:`single_pool_error_data` and :func:`mixture_error` take the parameters directly. Fitting
to observations is :class:`laws.qqt_fit.QQTFit`.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from curate.laws.qqt_kernel import LAW_VARIANTS, NORMALIZER, VARIANTS, mixture_errors


def single_pool_error(n: float, a: float, b: float, tau: float, N: float, d: float = 0.1,
                      normalizer: float = NORMALIZER) -> float:
    """Released QQT model for one pool ("effective utility" variant)."""
    _check_positive(n=n, N=N, a=a, tau=tau)
    return float(mixture_errors(n, [1.0], a, [b], [tau], [N], d, normalizer, "utility")[0])


def single_pool_error_data(n: float, a: float, b: float, tau: float, N: float, d: float = 0.1,
                           normalizer: float = NORMALIZER) -> float:
    """Released QQT model for one pool ("effective data" variant)."""
    _check_positive(n=n, N=N, a=a, tau=tau)
    return float(mixture_errors(n, [1.0], a, [b], [tau], [N], d, normalizer, "data")[0])


def mixture_error(n: float, weights: Sequence[float], a: float, b: Sequence[float],
                  tau: Sequence[float], sizes: Sequence[float], d: float = 0.1,
                  normalizer: float = NORMALIZER, variant: str = "utility", gaps=None,
                  gamma: float = 1.0) -> float:
    """Error after n samples of a weighted mixture of pools (see the module docstring)."""
    w, bb, tt, NN = _mixture_arrays(weights, b, tau, sizes)
    GG = None if gaps is None else np.asarray(gaps, dtype=float)[np.asarray(weights, dtype=float) > 0]
    _check_positive(n=n, a=a)
    if variant not in VARIANTS:
        raise ValueError(f"unknown QQT variant {variant!r}; expected one of {VARIANTS}")
    return float(mixture_errors(n, w, a, bb, tt, NN, d, normalizer, variant, gaps=GG, gamma=gamma)[0])


def _mixture_arrays(weights, b, tau, sizes):
    w = np.asarray(weights, dtype=float)
    bb, tt, NN = (np.asarray(x, dtype=float) for x in (b, tau, sizes))
    if not (w.shape == bb.shape == tt.shape == NN.shape) or w.ndim != 1:
        raise ValueError("weights, b, tau and sizes must be 1-D and of equal length")
    if np.any(~np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("mixture weights must be finite, non-negative and not all zero")
    w = w / w.sum()
    keep = w > 0
    if np.any(NN[keep] <= 0) or np.any(tt[keep] <= 0):
        raise ValueError("pool sizes and half-lives must be positive")
    return w[keep], bb[keep], tt[keep], NN[keep]


def _check_positive(**values: float) -> None:
    for name, v in values.items():
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a positive finite number, got {v!r}")


# ---------------------------------------------------------------------------------------------
# The law object: named pools, parameters by name, predictions for pools and mixtures.
# ---------------------------------------------------------------------------------------------

def b_name(pool: str) -> str:
    """Parameter name of a pool's utility, as written in law files and `--fix`."""
    return f"b[{pool}]"


def a_name(pool: str) -> str:
    """Parameter name of a pool's scale in the multiplier variant (what its samples are worth)."""
    return f"a[{pool}]"


def tau_name(pool: str) -> str:
    """Parameter name of a pool's half-life, as written in law files and `--fix`."""
    return f"tau[{pool}]"


class QQTLaw:
    """A QQT law over named pools: shared scale `a` and floor `d`, per-pool `b` (< 0) and `tau`
    (the released "utility" and "data" variants), or -- variant "multiplier" -- one slope `b`
    and a per-pool scale `a[POOL]`: E = d + (sum_i a_i D'_i / s)^b, a pool's quality being what
    one of its samples is worth (:func:`laws.qqt_kernel.multiplier_errors`; unit-invariant:
    a change of unit of E moves every a_i alike and leaves plans and pool rankings alone).

    Parameters
    ----------
    a, d : scale (shared; per pool for "multiplier": a dict or sequence) and floor.
    pools : pool names, in order (pool order is the order of array-valued b / tau / sizes).
    b, tau, sizes : per-pool utility (one shared value for "multiplier"), half-life (in
        repetitions) and size (in `unit`), each a dict {pool: value} or a sequence aligned
        with `pools`.
    gaps, gamma : where each tau was measured (the gap between two presentations of a sample;
        default the pool size) and how the half-life stretches with the gap (module docstring).
    variant : "utility" (the paper's model), "data" (effective-data variant) or "multiplier".
    normalizer : the fixed sample normaliser s (1e5 in the released code).
    unit : what a sample is ("samples", "documents" or "tokens"); recorded in law files.
    fixed : names of parameters that were held fixed when the law was fitted.
    fit_info, bootstrap : optional fit diagnostics and bootstrap draws (law-file sections).

    A law is a value: :meth:`with_params` returns a moved copy. Fitting lives in
    :class:`laws.qqt_fit.QQTFit` (``laws.qqt_fit.refit_law`` refits an existing law); the law-file
    dict is :mod:`laws.lawfile`'s ``law_to_dict`` / ``law_from_dict``.
    """

    kind = "qqt"

    def __init__(self, a: float, d: float = 0.1, pools: Sequence[str] = (), b=None, tau=None,
                 sizes=None, variant: str = "utility", normalizer: float = NORMALIZER,
                 unit: str = "samples", fixed: Sequence[str] = (), fit_info: dict | None = None,
                 bootstrap: dict | None = None, gaps=None, gamma: float = 1.0):
        if variant not in LAW_VARIANTS:
            raise ValueError(f"unknown QQT variant {variant!r}; expected one of {LAW_VARIANTS}")
        self.pools = [str(p) for p in pools]
        if not self.pools:
            raise ValueError("a QQT law needs at least one pool")
        if len(set(self.pools)) != len(self.pools):
            raise ValueError(f"duplicate pool names in {self.pools}")
        self.variant = variant
        self.d = float(d)
        if variant == "multiplier":
            self.a = self._per_pool(a if isinstance(a, (dict, list, tuple, np.ndarray)) else [a] * len(self.pools), "a")
            shared = np.unique(self._per_pool(b if isinstance(b, (dict, list, tuple, np.ndarray)) else [b] * len(self.pools), "b"))
            if shared.size != 1:
                raise ValueError("QQT law (multiplier): b is one slope shared by every pool")
            self.b = np.full(len(self.pools), float(shared[0]))
        else:
            self.a = float(a)
            self.b = self._per_pool(b, "b")
        self.tau = self._per_pool(tau, "tau")
        self.sizes = self._per_pool(sizes, "sizes")
        # where each tau was measured: the gap between two presentations of a sample (default:
        # the pool's size, i.e. tau fitted on the pool trained alone, as the released law was)
        self.gaps = self.sizes.copy() if gaps is None else self._per_pool(gaps, "gaps")
        self.gamma = float(gamma)
        if not (np.all(self.gaps > 0) and math.isfinite(self.gamma) and self.gamma >= 0):
            raise ValueError("QQT law: gaps must be positive and gamma a finite number >= 0")
        self.normalizer = float(normalizer)
        self.unit = unit
        self.fixed = list(fixed)
        self.fit_info = fit_info
        self.bootstrap = bootstrap

    # -- parameters by name ------------------------------------------------------------------
    def _per_pool(self, values, what: str) -> np.ndarray:
        if values is None:
            raise ValueError(f"QQT law: {what} is required for every pool")
        if isinstance(values, dict):
            missing = [p for p in self.pools if p not in values]
            if missing:
                raise ValueError(f"QQT law: {what} missing for pool(s) {missing}")
            arr = np.array([float(values[p]) for p in self.pools])
        else:
            arr = np.asarray(values, dtype=float).reshape(-1)
            if arr.size != len(self.pools):
                raise ValueError(f"QQT law: {what} has {arr.size} values for {len(self.pools)} pools")
        return arr

    @property
    def params(self) -> dict[str, float]:
        """All parameters by name: a, d, b[POOL], tau[POOL] (multiplier: a[POOL], b, d, tau[POOL])."""
        if self.variant == "multiplier":
            out = {a_name(p): float(ai) for p, ai in zip(self.pools, self.a)}
            out.update({"b": float(self.b[0]), "d": self.d})
            out.update({tau_name(p): float(ti) for p, ti in zip(self.pools, self.tau)})
            return out
        out = {"a": self.a, "d": self.d}
        for p, bi, ti in zip(self.pools, self.b, self.tau):
            out[b_name(p)] = float(bi)
            out[tau_name(p)] = float(ti)
        return out

    @property
    def param_names(self) -> list[str]:
        return list(self.params)

    @property
    def pool_sizes(self) -> dict[str, float]:
        return {p: float(n) for p, n in zip(self.pools, self.sizes)}

    def with_params(self, params: dict[str, float]) -> "QQTLaw":
        """A copy with some parameters replaced (names as in :attr:`params`)."""
        merged = self.params
        unknown = set(params) - set(merged)
        if unknown:
            raise ValueError(f"unknown QQT parameter(s) {sorted(unknown)}; known: {list(merged)}")
        merged.update({k: float(v) for k, v in params.items()})
        multiplier = self.variant == "multiplier"
        return QQTLaw([merged[a_name(p)] for p in self.pools] if multiplier else merged["a"],
                      merged["d"], self.pools,
                      b=merged["b"] if multiplier else [merged[b_name(p)] for p in self.pools],
                      tau=[merged[tau_name(p)] for p in self.pools],
                      sizes=self.sizes, variant=self.variant, normalizer=self.normalizer,
                      unit=self.unit, fixed=self.fixed, gaps=self.gaps, gamma=self.gamma)

    # -- predictions -------------------------------------------------------------------------
    def _pool_index(self, pool: str) -> int:
        try:
            return self.pools.index(pool)
        except ValueError:
            raise ValueError(f"unknown pool {pool!r}; the law knows {self.pools}") from None

    def predict(self, samples, pool: str, size: float | None = None):
        """Predicted error after `samples` samples of one pool (scalar or array in, same out).

        `size` overrides the pool size stored in the law (e.g. a subsample of the pool).
        """
        i = self._pool_index(pool)
        N = float(self.sizes[i] if size is None else size)
        a = self.a[i:i + 1] if self.variant == "multiplier" else self.a
        _check_positive(N=N, a=float(np.min(a)), tau=float(self.tau[i]))
        return _map_samples(samples, lambda n: mixture_errors(
            n, [1.0], a, self.b[i:i + 1], self.tau[i:i + 1], [N], self.d, self.normalizer,
            self.variant, gaps=self.gaps[i:i + 1], gamma=self.gamma))

    def mixture_weights(self, weights) -> np.ndarray:
        """Weights as an array aligned with :attr:`pools` (dict input may name a subset)."""
        if isinstance(weights, dict):
            unknown = [p for p in weights if p not in self.pools]
            if unknown:
                raise ValueError(f"unknown pool(s) {unknown} in mixture; the law knows {self.pools}")
            w = np.array([float(weights.get(p, 0.0)) for p in self.pools])
        else:
            w = np.asarray(weights, dtype=float).reshape(-1)
            if w.size != len(self.pools):
                raise ValueError(f"mixture has {w.size} weights for {len(self.pools)} pools")
        return w

    def predict_mixture(self, weights, samples, sizes=None):
        """Predicted error after `samples` samples of a weighted mixture (weights are normalised).

        `weights`: dict {pool: weight} or array aligned with :attr:`pools`; `sizes` (dict or
        array) overrides pool sizes.
        """
        N = self.sizes if sizes is None else self._per_pool(
            {**self.pool_sizes, **sizes} if isinstance(sizes, dict) else sizes, "sizes")
        weights = self.mixture_weights(weights)
        w, b, tau, N = _mixture_arrays(weights, self.b, self.tau, N)
        used = weights > 0
        gaps = self.gaps[used]
        a = self.a[used] if self.variant == "multiplier" else self.a
        _check_positive(a=float(np.min(a)))
        return _map_samples(samples, lambda n: mixture_errors(
            n, w, a, b, tau, N, self.d, self.normalizer, self.variant, gaps=gaps,
            gamma=self.gamma))

    def predict_interval(self, samples, pool: str | None = None, weights=None,
                         level: float | None = None):
        """(lo, hi) percentile band of the prediction over the law's bootstrap draws.

        Give `pool` or mixture `weights`; `level` defaults to the draws' level. This is the
        uncertainty of the fitted curve, not of a new run (which also has run-to-run noise).
        """
        from curate.laws.bootstrap import prediction_band

        draws = (self.bootstrap or {}).get("draws") or []
        if not draws:
            raise ValueError("this law has no bootstrap draws (fit with --bootstrap N)")
        if (pool is None) == (weights is None):
            raise ValueError("give exactly one of pool or weights")
        level = float((self.bootstrap or {}).get("level", 0.9)) if level is None else level
        return prediction_band(self, draws, lambda law: (
            law.predict(samples, pool=pool) if weights is None
            else law.predict_mixture(weights, samples)), level)

    def subset(self, pools: Sequence[str]) -> "QQTLaw":
        """The law restricted to some of its pools (in the given order), provenance kept."""
        idx = [self._pool_index(p) for p in pools]
        a = self.a[idx] if self.variant == "multiplier" else self.a
        return QQTLaw(a, self.d, list(pools), b=self.b[idx], tau=self.tau[idx],
                      sizes=self.sizes[idx], variant=self.variant, normalizer=self.normalizer,
                      unit=self.unit, fixed=self.fixed, fit_info=self.fit_info,
                      bootstrap=self.bootstrap, gaps=self.gaps[idx], gamma=self.gamma)

    def __repr__(self) -> str:
        a = np.round(self.a, 6).tolist() if self.variant == "multiplier" else f"{self.a:g}"
        return f"QQTLaw(variant={self.variant!r}, a={a}, d={self.d:g}, pools={self.pools})"


def _map_samples(samples, fn):
    """Apply a vectorised function of sample counts to a scalar or an array (same shape out)."""
    arr = np.asarray(samples, dtype=float)
    flat = arr.reshape(-1)
    bad = ~(np.isfinite(flat) & (flat > 0))
    if np.any(bad):
        raise ValueError(f"n must be a positive finite number, got {flat[bad][0]!r}")
    out = np.asarray(fn(flat), dtype=float)
    if arr.ndim == 0:
        return float(out[0])
    return out.reshape(arr.shape)

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
so after t samples pool i has been passed over r_i(t) = w_i t / N_i times. We use

    E(n) = [(a * min(n, t1) / s)^(b_0) + d] * exp( integral_{t1}^{n} b_eff(t) dlog t ),
    b_eff(t) = sum_i w_i * b_i * 0.5^( floor(r_i(t)) / (m_eff * tau_i) ),
    b_0 = sum_i w_i b_i,   t1 = min_i N_i / w_i,   m_eff = 1 / sum_i w_i^2,

with the sums over pools with w_i > 0. Why this rule:
  * it reduces *exactly* to the released top-m formula: for m equal pools with w_i = 1/m,
    t1 = m N, every r_i(t) = t / (m N) so all pools share pass index k, b_eff = mean_i(b_i
    0.5^(k / (m tau_i))) and m_eff = m; the integral is then the released product of
    (min(n,(k+1) m N) / (k m N))^(b_eff(k)).
  * each pool's decay follows its *own* repetition count, so a small pool given a large share
    starts decaying early while a large pool is still fresh (unequal sizes and weights);
  * the first-pass term ends when the first pool starts repeating (t1), the only point where
    the whole stream is still unique;
  * m_eff (inverse Simpson index of the weights) is the continuous version of the released
    "tau scaled by m": it equals m for a uniform mix over m pools and does not jump when a
    tiny weight is added, which keeps the planner's objective continuous in the weights.
The integral is evaluated exactly: b_eff(t) is constant between consecutive pass boundaries
k N_i / w_i of any pool, so it is a finite sum over those segments.

Effective-data variant ("..._data" parameter sets)
---------------------------------------------------
Single pool: the samples seen are discounted per pass, n_eff = sum_k (samples in pass k) *
0.5^(k / tau), and E = (a * n_eff / s)^b + d (d added last here).

Mixture (released `func_effective_data_aggregation`, top-m equal pools): per pass k each pool
has delta_i(k) = 0.5^(k / (m tau_i)); the effective samples grow by (samples in pass k) *
mean_i delta_i(k) and the exponent of pass k is b_eff(k) = sum_i b_i delta_i(k) / sum_i
delta_i(k), so E = S_0^(b_eff(0)) * prod_{k>=1} (S_k / S_{k-1})^(b_eff(k)) + d with
S_k = a/s * cumulative effective samples after pass k. (So delta_i is the per-pool decay factor
of the current pass, not a sample count.) Generalised the same way as the utility rule: with
delta_i(t) = 0.5^(floor(r_i(t)) / (m_eff tau_i)),

    S(t) = a/s * integral_0^t sum_i w_i delta_i dt,
    b_eff(t) = sum_i w_i b_i delta_i(t) / sum_i w_i delta_i(t),
    E(n) = S(t1)^(b_0) * exp( integral_{t1}^{n} b_eff(t) dlog S(t) ) + d.

b_eff is the utility of the effective samples being added at t: each pool counts in
proportion to the effective samples it contributes (its share w_i times its decay). For equal
pools mixed uniformly the segments are whole passes and this is the released formula; for one
pool it is (a n_eff / s)^b + d. All 102 released golden values are matched to ~1e-15.

Objects: :class:`QQTLaw` names pools and parameters (`a`, `d`, `b[POOL]`, `tau[POOL]`) and
predicts pools and mixtures; fitting to observations is :class:`laws.qqt_fit.QQTFit`.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

NORMALIZER = 1e5
VARIANTS = ("utility", "data")


def single_pool_error(n: float, a: float, b: float, tau: float, N: float, d: float = 0.1,
                      normalizer: float = NORMALIZER) -> float:
    """Released QQT model for one pool ("effective utility" variant)."""
    _check_positive(n=n, N=N, a=a, tau=tau)
    return _segments_error(n, a, d, normalizer, t1=N, b0=b,
                           b_of_pass=lambda k: b * 0.5 ** (k / tau))


def single_pool_error_data(n: float, a: float, b: float, tau: float, N: float, d: float = 0.1,
                           normalizer: float = NORMALIZER) -> float:
    """Released QQT model for one pool ("effective data" variant)."""
    _check_positive(n=n, N=N, a=a, tau=tau)
    n_eff = _effective_samples(n, N, tau)
    return (a * n_eff / normalizer) ** b + d


def mixture_error(n: float, weights: Sequence[float], a: float, b: Sequence[float],
                  tau: Sequence[float], sizes: Sequence[float], d: float = 0.1,
                  normalizer: float = NORMALIZER, variant: str = "utility") -> float:
    """Error after n samples of a weighted mixture of pools (see the module docstring)."""
    w, bb, tt, NN = _mixture_arrays(weights, b, tau, sizes)
    _check_positive(n=n, a=a)
    if variant not in VARIANTS:
        raise ValueError(f"unknown QQT variant {variant!r}; expected one of {VARIANTS}")
    m_eff = 1.0 / float(np.sum(w * w))
    scaled_tau = m_eff * tt
    per_pass = NN / w  # stream samples per full pass over each pool
    t1 = float(per_pass.min())
    b0 = float(np.sum(w * bb))

    def decay_at(t_mid: float) -> np.ndarray:
        """delta_i = 0.5^(pass index of pool i / (m_eff tau_i)) inside one segment."""
        return 0.5 ** (np.floor(w * t_mid / NN) / scaled_tau)

    segments = segments_after_first_pass(n, per_pass, t1)
    if variant == "data":
        return _mixture_error_data(n, w, a, bb, d, normalizer, t1, b0, segments, decay_at)
    log_factor = 0.0
    for lo, hi in segments:
        b_eff = float(np.sum(w * bb * decay_at(0.5 * (lo + hi))))
        log_factor += b_eff * (math.log(hi) - math.log(lo))
    return ((a * min(n, t1) / normalizer) ** b0 + d) * math.exp(log_factor)


def segments_after_first_pass(n: float, per_pass: np.ndarray, t1: float) -> list[tuple[float, float]]:
    """Intervals (lo, hi] of the stream beyond t1 inside which no pool changes pass index."""
    if n <= t1:
        return []
    pts: set[float] = set()
    for P in per_pass:
        pts.update(_pass_boundaries(P, n))
    edges = [t1] + sorted(p for p in pts if p > t1) + [n]
    return [(lo, hi) for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo]


def _mixture_error_data(n, w, a, bb, d, normalizer, t1, b0, segments, decay_at) -> float:
    """Effective-data variant for a weighted mixture (the released aggregation, generalised).

    Effective samples grow at rate sum_i w_i delta_i(t) per stream sample (a-scaled and
    normalised: S(t) = a/s * integral_0^t sum_i w_i delta_i); inside a segment the exponent is
    the utility of the effective samples being added, b_eff = sum_i w_i b_i delta_i /
    sum_i w_i delta_i, and E = S(t1)^b0 * prod_segments (S(hi) / S(lo))^b_eff + d. For m
    equal pools mixed uniformly, segments are whole passes and this is the released
    `func_effective_data_aggregation` (d added last, unlike the utility variant).
    """
    scale = a / normalizer
    s_eff = scale * min(n, t1)
    log_core = b0 * math.log(s_eff)
    for lo, hi in segments:
        delta = decay_at(0.5 * (lo + hi))
        rate = float(np.sum(w * delta))
        b_eff = float(np.sum(w * bb * delta)) / rate
        s_next = s_eff + scale * (hi - lo) * rate
        log_core += b_eff * (math.log(s_next) - math.log(s_eff))
        s_eff = s_next
    return math.exp(log_core) + d


def _effective_samples(n: float, N: float, tau: float) -> float:
    """sum over passes k of (samples drawn in pass k) * 0.5^(k / tau)."""
    total, k = 0.0, 0
    while k * N < n:
        in_pass = min(n, (k + 1) * N) - k * N
        total += in_pass * 0.5 ** (k / tau)
        k += 1
    return total


def _pass_boundaries(period: float, upto: float) -> list[float]:
    """Multiples k*period (k >= 1) strictly below upto."""
    out, k = [], 1
    while k * period < upto:
        out.append(k * period)
        k += 1
    return out


def _segments_error(n, a, d, normalizer, *, t1, b0, b_of_pass) -> float:
    """[(a min(n,t1)/s)^b0 + d] * prod_{k>=1} (min(n,(k+1) t1) / (k t1))^(b_k): one pool."""
    base = (a * min(n, t1) / normalizer) ** b0 + d
    log_factor, k = 0.0, 1
    while k * t1 < n:
        lo, hi = k * t1, min(n, (k + 1) * t1)
        log_factor += b_of_pass(k) * (math.log(hi) - math.log(lo))
        k += 1
    return base * math.exp(log_factor)


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


def tau_name(pool: str) -> str:
    """Parameter name of a pool's half-life, as written in law files and `--fix`."""
    return f"tau[{pool}]"


class QQTLaw:
    """A QQT law over named pools: shared scale `a` and floor `d`, per-pool `b` (< 0) and `tau`.

    Parameters
    ----------
    a, d : shared scale and floor.
    pools : pool names, in order (pool order is the order of array-valued b / tau / sizes).
    b, tau, sizes : per-pool utility, half-life (in repetitions) and size (in `unit`), each a
        dict {pool: value} or a sequence aligned with `pools`.
    variant : "utility" (the paper's model) or "data" (effective-data variant).
    normalizer : the fixed sample normaliser s (1e5 in the released code).
    unit : what a sample is ("samples", "documents" or "tokens"); recorded in law files.
    fixed : names of parameters that were held fixed when the law was fitted.
    fit_info, bootstrap : optional fit diagnostics and bootstrap draws (law-file sections).

    Fitting lives in :class:`QQTFit`; :meth:`QQTLaw.fit` is a shortcut returning a fitted law.
    """

    kind = "qqt"

    def __init__(self, a: float, d: float = 0.1, pools: Sequence[str] = (), b=None, tau=None,
                 sizes=None, variant: str = "utility", normalizer: float = NORMALIZER,
                 unit: str = "samples", fixed: Sequence[str] = (), fit_info: dict | None = None,
                 bootstrap: dict | None = None):
        if variant not in VARIANTS:
            raise ValueError(f"unknown QQT variant {variant!r}; expected one of {VARIANTS}")
        self.pools = [str(p) for p in pools]
        if not self.pools:
            raise ValueError("a QQT law needs at least one pool")
        if len(set(self.pools)) != len(self.pools):
            raise ValueError(f"duplicate pool names in {self.pools}")
        self.a = float(a)
        self.d = float(d)
        self.b = self._per_pool(b, "b")
        self.tau = self._per_pool(tau, "tau")
        self.sizes = self._per_pool(sizes, "sizes")
        self.variant = variant
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
        """All parameters by name: a, d, b[POOL], tau[POOL]."""
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
        return QQTLaw(merged["a"], merged["d"], self.pools,
                      b=[merged[b_name(p)] for p in self.pools],
                      tau=[merged[tau_name(p)] for p in self.pools],
                      sizes=self.sizes, variant=self.variant, normalizer=self.normalizer,
                      unit=self.unit, fixed=self.fixed)

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
        fn = single_pool_error if self.variant == "utility" else single_pool_error_data
        return _map_samples(samples, lambda n: fn(n, self.a, self.b[i], self.tau[i], N,
                                                  self.d, self.normalizer))

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
        w = self.mixture_weights(weights)
        N = self.sizes if sizes is None else self._per_pool(
            {**self.pool_sizes, **sizes} if isinstance(sizes, dict) else sizes, "sizes")
        return _map_samples(samples, lambda n: mixture_error(
            n, w, self.a, self.b, self.tau, N, self.d, self.normalizer, self.variant))

    def predict_interval(self, samples, pool: str | None = None, weights=None,
                         level: float | None = None):
        """(lo, hi) percentile band of the prediction over the law's bootstrap draws.

        Give `pool` or mixture `weights`; `level` defaults to the draws' level. This is the
        uncertainty of the fitted curve, not of a new run (which also has run-to-run noise).
        """
        from curate.laws.bootstrap import prediction_intervals

        draws = (self.bootstrap or {}).get("draws") or []
        if not draws:
            raise ValueError("this law has no bootstrap draws (fit with --bootstrap N)")
        if (pool is None) == (weights is None):
            raise ValueError("give exactly one of pool or weights")
        level = float((self.bootstrap or {}).get("level", 0.9)) if level is None else level

        def predict(draw):
            law = self.with_params(draw)
            return (law.predict(samples, pool=pool) if weights is None
                    else law.predict_mixture(weights, samples))

        return prediction_intervals(draws, predict, level)

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, observations, **options) -> "QQTLaw":
        """Refit this law's parameters to observations, in place; returns self.

        Parameters named in :attr:`fixed` keep their current values; pools the observations do
        not mention keep theirs too. Pool sizes and the variant are the law's. `options` go to
        :class:`laws.qqt_fit.QQTFit` (n_bootstrap, seed, huber_delta, ...). For fitting from
        scratch use ``QQTFit(...).fit(observations).law_``.
        """
        from curate.laws.qqt_fit import QQTFit

        unknown = [p for p in observations.pool_names if p not in self.pools]
        if unknown:
            raise ValueError(f"observations mention pool(s) {unknown} the law does not know "
                             f"({self.pools})")
        used = set(observations.pool_names)
        current = self.params
        fix = {n: current[n] for n in self.fixed
               if n in ("a", "d") or n[n.index("[") + 1:-1] in used}
        est = QQTFit(variant=self.variant, fix=fix, sizes=self.pool_sizes,
                     normalizer=self.normalizer, unit=self.unit, **options).fit(observations)
        fitted = self.with_params(est.params_)
        self.a, self.d, self.b, self.tau = fitted.a, fitted.d, fitted.b, fitted.tau
        self.fit_info, self.bootstrap = est.law_.fit_info, est.law_.bootstrap
        self.estimator_ = est
        return self

    # -- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        from curate.laws.lawfile import law_to_dict
        return law_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "QQTLaw":
        from curate.laws.lawfile import law_from_dict
        law = law_from_dict(data)
        if not isinstance(law, cls):
            raise ValueError(f"law file kind {data.get('kind')!r} is not a QQT law")
        return law

    def __repr__(self) -> str:
        return (f"QQTLaw(variant={self.variant!r}, a={self.a:g}, d={self.d:g}, "
                f"pools={self.pools})")


def _map_samples(samples, fn):
    """Apply a scalar function of n to a scalar or an array of sample counts."""
    arr = np.asarray(samples, dtype=float)
    if arr.ndim == 0:
        return float(fn(float(arr)))
    return np.array([fn(float(n)) for n in arr.reshape(-1)]).reshape(arr.shape)

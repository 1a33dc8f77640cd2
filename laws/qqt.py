"""Quality-quantity trade-off (QQT) law for pools under repetition (Goyal et al., CVPR 2024).

Single pool (the released code, exactly): error after n samples drawn from a pool of size N,

    E(n) = [(a * min(n, N) / s)^b + d] * prod_{k=1..K} (min(n, (k+1) N) / (k N))^(b_k),
    b_k = b * 0.5^(k / tau),  K = floor(n / N),  s = 1e5 (fixed normaliser).

d is added *before* the repetition factors multiply, as the released code does. Written in
log-samples, the repetition part is exp( integral_{N}^{n} b(t) dlog t ) with b(t) = b_{floor(t/N)}:
a piecewise-constant exponent over log-samples.

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

Effective-data variant ("..._data" parameter sets): the samples seen are discounted per pass,
n_eff = sum_k (samples in pass k) * 0.5^(k / tau), and E = (a * n_eff / s)^b + d.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

NORMALIZER = 1e5
VARIANTS = ("utility", "data")


def single_pool_error(n: float, a: float, b: float, tau: float, N: float, d: float = 0.1,
                      normalizer: float = NORMALIZER) -> float:
    """Released QQT model for one pool ("effective utility" variant)."""
    _check_positive(n=n, N=N, a=a, tau=tau)
    return _segments_error(n, a, d, normalizer, t1=N, b0=b,
                           boundaries=lambda upto: _pass_boundaries(N, 1.0, upto),
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
    m_eff = 1.0 / float(np.sum(w * w))
    if variant == "data":
        return _mixture_error_data(n, w, a, bb, tt, NN, d, normalizer, m_eff)
    if variant != "utility":
        raise ValueError(f"unknown QQT variant {variant!r}; expected one of {VARIANTS}")
    per_pass = NN / w  # stream samples per full pass over each pool
    t1 = float(per_pass.min())
    b0 = float(np.sum(w * bb))
    scaled_tau = m_eff * tt

    def boundaries(upto: float) -> list[float]:
        pts: set[float] = set()
        for P in per_pass:
            pts.update(_pass_boundaries(P, 1.0, upto))
        return sorted(p for p in pts if p > t1)

    def b_at(t_mid: float) -> float:
        passes = np.floor(w * t_mid / NN)
        return float(np.sum(w * bb * 0.5 ** (passes / scaled_tau)))

    return _segments_error(n, a, d, normalizer, t1=t1, b0=b0, boundaries=boundaries,
                           b_at=b_at)


def _mixture_error_data(n, w, a, bb, tt, NN, d, normalizer, m_eff) -> float:
    """Effective-data variant: each pool's samples are discounted by its own pass count.

    delta_i = effective samples contributed by pool i; b_eff = sum(b_i delta_i) / sum(delta_i),
    E = (a * sum(delta_i) / s)^b_eff + d. Half-lives are scaled by m_eff, as in the utility
    variant (the released top-m code scales tau by m).
    """
    deltas = np.array([_effective_samples(wi * n, Ni, ti * m_eff) for wi, Ni, ti in zip(w, NN, tt)])
    n_eff = float(deltas.sum())
    b_eff = float(np.sum(bb * deltas) / n_eff)
    return (a * n_eff / normalizer) ** b_eff + d


def _effective_samples(n: float, N: float, tau: float) -> float:
    """sum over passes k of (samples drawn in pass k) * 0.5^(k / tau)."""
    total, k = 0.0, 0
    while k * N < n:
        in_pass = min(n, (k + 1) * N) - k * N
        total += in_pass * 0.5 ** (k / tau)
        k += 1
    return total


def _pass_boundaries(period: float, _unused: float, upto: float) -> list[float]:
    """Multiples k*period (k >= 1) strictly below upto."""
    out, k = [], 1
    while k * period < upto:
        out.append(k * period)
        k += 1
    return out


def _segments_error(n, a, d, normalizer, *, t1, b0, boundaries, b_of_pass=None, b_at=None) -> float:
    """[(a min(n,t1)/s)^b0 + d] * exp(sum over segments of b * dlog t)."""
    base = (a * min(n, t1) / normalizer) ** b0 + d
    if n <= t1:
        return base
    log_factor = 0.0
    if b_of_pass is not None:  # single pool: segments are passes k = 1..K
        k = 1
        while k * t1 < n:
            lo, hi = k * t1, min(n, (k + 1) * t1)
            log_factor += b_of_pass(k) * (math.log(hi) - math.log(lo))
            k += 1
        return base * math.exp(log_factor)
    edges = [t1] + [p for p in boundaries(n) if p > t1] + [n]
    for lo, hi in zip(edges[:-1], edges[1:]):
        if hi <= lo:
            continue
        log_factor += b_at(0.5 * (lo + hi)) * (math.log(hi) - math.log(lo))
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

"""A direct transcription of the QQT formulas (the loops of laws/qqt.py before the kernel).

Slow and scalar on purpose: the tests check the vectorised kernel (laws.qqt_kernel), which the
law, the fitter and the planner all use, against this independent implementation.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

NORMALIZER = 1e5
VARIANTS = ("utility", "data")


def _check_positive(**values):
    for name, v in values.items():
        assert math.isfinite(v) and v > 0, name


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
                  normalizer: float = NORMALIZER, variant: str = "utility", gaps=None,
                  gamma: float = 1.0) -> float:
    """Error after n samples of a weighted mixture of pools (the rule of laws/qqt.py).

    Pool i's half-life is stretched by (P_i / G_i)^gamma, P_i = N_i / w_i the gap between two
    presentations of one of its samples here and G_i the gap where tau_i was measured (default
    N_i); the floor d is multiplied only by the factors past t_all = max_i P_i.
    """
    gaps = sizes if gaps is None else gaps
    w, bb, tt, NN = _mixture_arrays(weights, b, tau, sizes)
    GG = np.asarray(gaps, dtype=float)[np.asarray(weights, dtype=float) > 0]
    _check_positive(n=n, a=a)
    if variant not in VARIANTS:
        raise ValueError(f"unknown QQT variant {variant!r}; expected one of {VARIANTS}")
    per_pass = NN / w  # stream samples per full pass over each pool
    scaled_tau = tt * (per_pass / GG) ** gamma
    t1 = float(per_pass.min())
    t_all = float(per_pass.max())
    b0 = float(np.sum(w * bb))

    def decay_at(t_mid: float) -> np.ndarray:
        """delta_i = 0.5^(pass index of pool i / scaled tau_i) inside one segment."""
        return 0.5 ** (np.floor(w * t_mid / NN) / scaled_tau)

    segments = segments_after_first_pass(n, per_pass, t1)
    if variant == "data":
        return _mixture_error_data(n, w, a, bb, d, normalizer, t1, b0, segments, decay_at)
    log_factor = log_repeat = 0.0
    for lo, hi in segments:
        b_eff = float(np.sum(w * bb * decay_at(0.5 * (lo + hi))))
        log_factor += b_eff * (math.log(hi) - math.log(lo))
        if lo >= t_all:
            log_repeat += b_eff * (math.log(hi) - math.log(lo))
    return (a * min(n, t1) / normalizer) ** b0 * math.exp(log_factor) + d * math.exp(log_repeat)


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



"""The QQT kernel: pass segments of a mixture stream and the law's value on them.

One implementation serves the law (:class:`laws.qqt.QQTLaw`), the fitter
(:class:`laws.qqt_fit.QQTFit`, with the Jacobian) and the planner
(:class:`laws.planner_objectives.QQTObjective`, thousands of mixtures per call). The model and
its mixture rule are written down in :mod:`laws.qqt`; this module is where they are computed,
and the only place: the mixture rule is the functions in the section "Mixture rule" (pass
periods, first-pass term, decay of a pool in a given pass), which :meth:`Segments.build` and
:func:`evaluate` call. Changing the rule means changing that section (and the Jacobian in
:func:`evaluate`, which the tests check against finite differences).

Two steps, because the segments depend only on the data (samples seen, weights, pool sizes)
and not on the parameters a, d, b, tau:

* :meth:`Segments.build` -- for a batch of rows (n samples of a mixture with weights w over
  pools of sizes N), the stretches of the stream beyond the first pass inside which no pool
  changes its pass index, stored flat and grouped by row, with every pool's pass index.
  Vectorised over rows (no Python loop per row or per pass).
* :func:`evaluate` -- the predicted error of every row for given parameters, and optionally its
  Jacobian in (log a, d, b_1..b_P, log tau_1..log tau_P).

Passes far beyond a pool's half-life change nothing: with ``keep_half_lives`` set, pass
boundaries of pool i after ``ceil(keep_half_lives * scale_i * tau_i)`` passes are not segment
edges (its decay there is below 0.5^70 ~ 1e-21 of the first pass, under double precision), so
a tiny pool under a huge budget does not create millions of segments. The law and the planner
use the cut (their tau is known); the fitter cannot (tau is what it fits) and builds exact
segments once per set of observations (whose rows make at most 1e5 passes:
laws.observations.MAX_EPOCHS).

Bounded work for laws with a slow decay (a tau of 1e4 leaves 700,000 passes before the cut, and
a gap ratio stretches that further): the utility form sums at most PASSES_SUMMED passes of a
pool one by one and the whole passes beyond in closed form (:func:`_log_pass_sums`, exact to
double rounding); the effective-data form is closed-form for a single pool
(:func:`effective_data`) and refuses a mixture row of more than MAX_DATA_SEGMENTS passes with
one line; the multiplier form is closed-form throughout.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NORMALIZER = 1e5
VARIANTS = ("utility", "data")
#: Every form a QQT law can take: the released two (shared a, per-pool b) and the per-pool
#: multiplier form (shared b, per-pool a; see :func:`multiplier_errors`).
LAW_VARIANTS = VARIANTS + ("multiplier",)
#: Pass boundaries beyond this many half-lives of a pool are not segment edges (see above).
HALF_LIVES_KEPT = 70.0
#: The utility variant sums at most this many passes of a pool one by one (and a few around
#: t_all and n); the whole passes beyond are summed in closed form (Euler-Maclaurin).
PASSES_SUMMED = 8192
#: Most passes (segments) the effective-data form evaluates for one mixture row (see _data_errors).
MAX_DATA_SEGMENTS = 1_000_000
# Rows per building chunk, so (segments x pools) arrays stay around a few million floats.
_CHUNK_ELEMENTS = 2_000_000


# ---------------------------------------------------------------------------------------------
# Mixture rule (the one place it lives; see laws.qqt for the formulas and why)
# ---------------------------------------------------------------------------------------------

def pass_periods(weights: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Stream samples per full pass over each pool, P_i = N_i / w_i (inf for pools not used):
    also the gap, in stream samples, between two presentations of one of the pool's samples."""
    pos = weights > 0
    return np.where(pos, sizes / np.where(pos, weights, 1.0), np.inf)


def gap_log_ratios(period: np.ndarray, gaps) -> np.ndarray:
    """log(P_i / G_i): how much longer a sample waits between presentations here than where the
    pool's half-life was measured (G_i, the "fitted gap"); 0 for pools not used."""
    G = np.broadcast_to(np.asarray(gaps, dtype=float), period.shape)
    finite = np.isfinite(period)
    return np.where(finite, np.log(np.where(finite, period, 1.0) / G), 0.0)


def half_life_scale(log_ratio, gamma: float):
    """tau_i is stretched by (P_i / G_i)^gamma: decay follows the time between repetitions."""
    return np.exp(gamma * log_ratio)


def gamma_jacobian(d_log_tau: np.ndarray, log_ratio: np.ndarray) -> np.ndarray:
    """dE/d gamma from dE/d log tau_i (both (n_rows, P)) and log(P_i / G_i) (n_rows, P).

    A pool's decay depends on tau_i and gamma only through tau'_i = tau_i (P_i / G_i)^gamma, and
    log(P_i / G_i) is fixed per row and pool, so d kappa / d gamma = -kappa log(P_i / G_i) =
    log(P_i / G_i) d kappa / d log tau_i, and dE/d gamma = sum_i log(P_i / G_i) dE/d log tau_i:
    one Jacobian column for every form (utility, data, multiplier). Exact for the fitter's
    segments, which keep every pass boundary (no half-life cut that would move with gamma).
    """
    return np.sum(np.asarray(d_log_tau) * np.asarray(log_ratio), axis=1)


def first_pass_exponent(weights: np.ndarray, b: np.ndarray) -> np.ndarray:
    """b_0 = sum_i w_i b_i, the exponent while the whole stream is still unique."""
    return weights @ b


def decay_rates(passes, scale, tau):
    """kappa with delta_i = exp(-kappa_i) = 0.5^(pass_i / (scale_i tau_i)); d kappa/d log tau = -kappa
    and d kappa / d gamma = -kappa log(P_i / G_i).

    Elementwise: the caller broadcasts passes, scale (per row and pool) and tau (per pool).
    """
    return math.log(2.0) * passes / (scale * tau)


def floor_start(period: np.ndarray) -> np.ndarray:
    """t_all = max_i P_i over the pools used: from here on every pool is being repeated, and only
    from here on do the repetition factors multiply the floor d (utility variant)."""
    return np.max(np.where(np.isfinite(period), period, -np.inf), axis=-1)


# ---------------------------------------------------------------------------------------------
# Segments
# ---------------------------------------------------------------------------------------------

@dataclass
class Segments:
    """Everything about a batch of rows the QQT prediction needs except the parameters.

    Segments (stretches of the stream beyond the first pass in which no pool changes its pass
    index) are stored flat, grouped by row in row order, and ordered along the stream.
    """

    weights: np.ndarray      # (n_rows, P) normalised mixture weights (one-hot for a single pool)
    log_ratio: np.ndarray    # (n_rows, P) log(P_i / G_i): gap here vs where tau_i was measured
    first: np.ndarray        # (n_rows,) min(n, t1): samples before any pool repeats
    t_all: np.ndarray        # (n_rows,) max_i P_i: every pool is repeating from here on
    seg_row: np.ndarray      # (n_seg,) row each segment belongs to (non-decreasing)
    seg_lo: np.ndarray       # (n_seg,) segment start (stream samples)
    seg_hi: np.ndarray       # (n_seg,) segment end
    seg_pass: np.ndarray     # (n_seg, P) pass index of each pool inside the segment

    @property
    def n_rows(self) -> int:
        return int(self.first.size)

    @classmethod
    def build(cls, samples, weights, sizes, tau=None, gaps=None, gamma: float = 1.0,
              keep_half_lives: float = HALF_LIVES_KEPT) -> "Segments":
        """Segments of rows: `samples` (n_rows,), `weights` (n_rows, P) normalised per row,
        `sizes` (n_rows, P) or (P,) pool sizes (ignored where the weight is 0), `gaps` the fitted
        gaps G_i ((n_rows, P) or (P,); default: the sizes, i.e. tau measured on the pool alone).

        With `tau` (P,) given, pass boundaries beyond `keep_half_lives` half-lives of a pool (at
        this `gamma`) are dropped (see the module docstring); without it every boundary is kept.
        """
        n = np.asarray(samples, dtype=float).reshape(-1)
        W = np.asarray(weights, dtype=float).reshape(n.size, -1)
        N = np.broadcast_to(np.asarray(sizes, dtype=float), W.shape)
        period = pass_periods(W, N)
        log_ratio = gap_log_ratios(period, N if gaps is None else gaps)
        scale = half_life_scale(log_ratio, gamma)
        k_lo, k_hi = _boundary_pass_range(n, period, scale, tau, keep_half_lives)
        counts = np.maximum(k_hi - k_lo + 1, 0).sum(axis=1)
        per_chunk = max(1, _CHUNK_ELEMENTS // max(1, W.shape[1]))
        parts, start = [], 0
        while start < n.size:  # chunks of rows keep the (segments, pools) array bounded
            taken = int(np.searchsorted(np.cumsum(counts[start:]), per_chunk, side="right"))
            stop = start + max(1, taken)
            parts.append(_build_rows(n[start:stop], W[start:stop], N[start:stop],
                                     period[start:stop], k_lo[start:stop], k_hi[start:stop],
                                     offset=start))
            start = stop
        first = np.minimum(n, period.min(axis=1))
        if not parts:
            parts = [(np.empty(0, dtype=int), np.empty(0), np.empty(0), np.empty((0, W.shape[1])))]
        seg_row, lo, hi, passes = (np.concatenate(x) for x in zip(*parts))
        return cls(W, log_ratio, first, floor_start(period), seg_row, lo, hi,
                   passes.reshape(-1, W.shape[1]))

    def subset(self, rows) -> "Segments":
        """The segments of the given rows (repeats allowed), without recomputing them."""
        rows = np.asarray(rows, dtype=int)
        counts_all = np.bincount(self.seg_row, minlength=self.n_rows)
        start_all = np.concatenate([[0], np.cumsum(counts_all)[:-1]])
        counts = counts_all[rows]
        total = int(counts.sum())
        offsets = np.repeat(np.cumsum(counts) - counts, counts)
        idx = np.repeat(start_all[rows], counts) + (np.arange(total) - offsets)
        return Segments(self.weights[rows], self.log_ratio[rows], self.first[rows], self.t_all[rows],
                        np.repeat(np.arange(rows.size), counts), self.seg_lo[idx],
                        self.seg_hi[idx], self.seg_pass[idx])

    def predict(self, a: float, d: float, b, tau, variant: str = "utility",
                normalizer: float = NORMALIZER, gamma: float = 1.0) -> np.ndarray:
        """Predicted error of every row (see :func:`evaluate`)."""
        return evaluate(self, a, d, b, tau, variant, normalizer, jacobian=False, gamma=gamma)[0]

    def predict_and_jacobian(self, a, d, b, tau, variant="utility", normalizer=NORMALIZER,
                             jacobian=True, gamma: float = 1.0):
        """Predictions E and dE/d(log a, d, b_1..b_P, log tau_1..log tau_P) (n_rows, 2 + 2P)."""
        return evaluate(self, a, d, b, tau, variant, normalizer, jacobian=jacobian, gamma=gamma)


def _boundary_pass_range(n, period, scale, tau, keep_half_lives):
    """Per (row, pool): the first and last k whose boundary k * period may fall in (t1, n)."""
    t1 = period.min(axis=1)
    pos = np.isfinite(period)
    safe = np.where(pos, period, 1.0)
    with np.errstate(over="ignore", invalid="ignore"):
        k_lo = np.maximum(1.0, np.floor(t1[:, None] / safe))
        k_hi = np.ceil(n[:, None] / safe)
        if tau is not None:
            cap = np.ceil(keep_half_lives * scale * np.asarray(tau, dtype=float)[None, :])
            k_hi = np.minimum(k_hi, cap + 1.0)
    live = pos & (n[:, None] > t1[:, None])
    k_lo = np.where(live, k_lo, 1.0).astype(np.int64)
    k_hi = np.where(live, k_hi, 0.0).astype(np.int64)
    return k_lo, k_hi


def _build_rows(n, W, N, period, k_lo, k_hi, offset):
    """Flat segments of a chunk of rows (row ids shifted by `offset`)."""
    R, P = W.shape
    t1 = period.min(axis=1)
    counts = np.maximum(k_hi - k_lo + 1, 0).reshape(-1)
    cell = np.repeat(np.arange(counts.size), counts)
    k = (np.arange(cell.size) - np.repeat(np.cumsum(counts) - counts, counts)
         + k_lo.reshape(-1)[cell])
    row = cell // P
    edge = k * period.reshape(-1)[cell]  # float(k) * N_i / w_i, as the scalar loop computes it
    inside = (edge > t1[row]) & (edge < n[row])
    row, edge = row[inside], edge[inside]
    live = np.flatnonzero(n > t1)
    if live.size == 0:
        return np.empty(0, dtype=int), np.empty(0), np.empty(0), np.empty((0, P))
    # Every row's points t1 < boundaries < n, sorted along the stream, duplicates merged.
    row = np.concatenate([live, row, live])
    pts = np.concatenate([t1[live], edge, n[live]])
    order = np.lexsort((pts, row))
    row, pts = row[order], pts[order]
    keep = np.r_[True, (row[1:] != row[:-1]) | (pts[1:] != pts[:-1])]
    row, pts = row[keep], pts[keep]
    pair = row[1:] == row[:-1]
    seg_row, lo, hi = row[:-1][pair], pts[:-1][pair], pts[1:][pair]
    mid = 0.5 * (lo + hi)
    w = W[seg_row]
    passes = np.where(w > 0, np.floor(w * mid[:, None] / np.where(w > 0, N[seg_row], 1.0)), 0.0)
    return seg_row + offset, lo, hi, passes


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------

def evaluate(seg: Segments, a: float, d: float, b, tau, variant: str = "utility",
             normalizer: float = NORMALIZER, jacobian: bool = False, gamma: float = 1.0):
    """(E, J): predicted error per row and, with `jacobian`, dE/d(log a, d, b, log tau).

    Utility variant: E = (a first / s)^b0 exp(F) + d exp(F_rep), F = sum_segments b_eff
    log(hi / lo), b_eff = sum_i w_i b_i delta_i, and F_rep the same sum over the segments past
    t_all (every pool repeating): the floor is multiplied by repetition factors only, never by
    another pool's fresh data. Effective-data variant: E = S(t1)^b0 * exp(sum_segments b_eff
    log(S_hi / S_lo)) + d with S growing by a/s * sum_i w_i delta_i per stream sample and
    b_eff = sum_i w_i b_i delta_i / sum_i w_i delta_i (see :mod:`laws.qqt`).
    delta_i = 0.5^(pass_i / (tau_i (P_i / G_i)^gamma)).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown QQT variant {variant!r}; expected one of {VARIANTS}")
    b = np.asarray(b, dtype=float)
    tau = np.asarray(tau, dtype=float)
    n, P = seg.n_rows, b.size
    b0 = first_pass_exponent(seg.weights, b)
    x1 = a * seg.first / normalizer
    log_x1 = np.log(x1)
    X = np.exp(b0 * log_x1)
    so = seg.seg_row
    has_seg = so.size > 0
    if has_seg:
        kappa = decay_rates(seg.seg_pass, half_life_scale(seg.log_ratio[so], gamma), tau[None, :])
        delta = np.exp(-kappa)  # 0.5^(pass / (scale tau))
        wd = seg.weights[so] * delta          # w_i delta_i per segment
        wbd = wd @ b                            # sum_i w_i b_i delta_i
    J = np.zeros((n, 2 + 2 * P)) if jacobian else None
    if variant == "utility":
        if has_seg:
            dlog = np.log(seg.seg_hi) - np.log(seg.seg_lo)
            rep = seg.seg_lo >= seg.t_all[so]  # segments in which every pool is repeating
            F = np.bincount(so, wbd * dlog, minlength=n)
            F_rep = np.bincount(so, wbd * dlog * rep, minlength=n)
        else:
            F = F_rep = np.zeros(n)
        expF, expR = np.exp(F), np.exp(F_rep)
        E = X * expF + d * expR
        if jacobian:
            J[:, 0] = b0 * X * expF
            J[:, 1] = expR
            J[:, 2:2 + P] = (expF * log_x1 * X)[:, None] * seg.weights
            if has_seg:
                G = _group_sum(so, wd * dlog[:, None], n)
                H = _group_sum(so, wd * b[None, :] * kappa * dlog[:, None], n)
                G_rep = _group_sum(so, wd * (dlog * rep)[:, None], n)
                H_rep = _group_sum(so, wd * b[None, :] * kappa * (dlog * rep)[:, None], n)
                XF, dR = (X * expF)[:, None], (d * expR)[:, None]
                J[:, 2:2 + P] += XF * G + dR * G_rep
                J[:, 2 + P:] = XF * H + dR * H_rep
        return E, J
    # effective-data variant
    C = b0 * log_x1
    if has_seg:
        rate = wd.sum(axis=1)
        # After ~1000 half-lives delta underflows to 0: nothing is added, so b_eff does not matter.
        with np.errstate(invalid="ignore", divide="ignore"):
            beta = np.where(rate > 0, wbd / np.where(rate > 0, rate, 1.0), 0.0)
        scale = a / normalizer
        width = seg.seg_hi - seg.seg_lo
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
        J[:, 2:2 + P] = (Z * log_x1)[:, None] * seg.weights
        if has_seg:
            # where every pool's decay underflowed (rate 0) nothing is added: no derivative there
            safe = np.where(rate > 0, rate, 1.0)[:, None]
            J[:, 2:2 + P] += Z[:, None] * _group_sum(so, (wd / safe) * dlogS[:, None], n)
            rho = wd * kappa                                  # d rate / d log tau_i
            dbeta = rho * (b[None, :] - beta[:, None]) / safe
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
# Conveniences for callers with parameters in hand (the law, the planner)
# ---------------------------------------------------------------------------------------------

def mixture_errors(samples, weights, a: float, b, tau, sizes, d: float = 0.1,
                   normalizer: float = NORMALIZER, variant: str = "utility", gaps=None,
                   gamma: float = 1.0) -> np.ndarray:
    """Predicted error for rows of (samples, weights): the law's value, passes cut as above.

    `samples` (n_rows,) or a scalar shared by every row; `weights` (n_rows, P) or (P,) shared
    by every row, normalised here; `sizes` (P,); `gaps` (P,) the fitted gaps (default: sizes).

    The utility variant is summed per pool and pass rather than per segment: its b_eff is a
    weighted sum over pools, so F = sum_i w_i b_i sum_k delta_i(k) log(span of pass k beyond
    t1) (and F_rep the same beyond t_all), the same value (to rounding) with P times fewer terms
    than segments x pools, which is what keeps the planner fast with many pools. The
    effective-data variant (a ratio over pools) is evaluated on :class:`Segments`.
    """
    if variant not in LAW_VARIANTS:
        raise ValueError(f"unknown QQT variant {variant!r}; expected one of {LAW_VARIANTS}")
    W = np.atleast_2d(np.asarray(weights, dtype=float))
    n = np.asarray(samples, dtype=float).reshape(-1)
    rows = max(W.shape[0], n.size)
    W = np.broadcast_to(W / W.sum(axis=1, keepdims=True), (rows, W.shape[1]))
    n = np.broadcast_to(n, (rows,))
    b = np.asarray(b, dtype=float)
    tau = np.asarray(tau, dtype=float)
    if variant == "multiplier":  # `a` per pool, one slope (b may come per pool, all equal)
        return multiplier_errors(n, W, a, float(b.reshape(-1)[0]), d, tau, sizes, normalizer,
                                 gaps=gaps, gamma=gamma)[0]
    if variant == "data":
        return _data_errors(n, W, a, d, b, tau, sizes, normalizer, gaps, gamma)
    N = np.broadcast_to(np.asarray(sizes, dtype=float), W.shape)
    period = pass_periods(W, N)
    scale = half_life_scale(gap_log_ratios(period, N if gaps is None else gaps), gamma)
    k_lo, k_hi = _pass_range(n, period, scale, tau)
    counts = (np.clip(k_hi - k_lo + 1.0, 0.0, PASSES_SUMMED) + 5.0).sum(axis=1)
    out, start = [], 0
    while start < rows:  # chunks of rows keep the (row, pool, pass) arrays bounded
        taken = int(np.searchsorted(np.cumsum(counts[start:]), _CHUNK_ELEMENTS, side="right"))
        stop = start + max(1, taken)
        sl = slice(start, stop)
        out.append(_utility_by_pool_pass(n[sl], W[sl], period[sl], scale[sl], k_lo[sl],
                                         k_hi[sl], a, b, tau, d, normalizer))
        start = stop
    return np.concatenate(out) if out else np.empty(0)


def _data_errors(n, W, a, d, b, tau, sizes, normalizer, gaps, gamma):
    """Effective-data variant: segments, except for single-pool rows past PASSES_SUMMED passes.

    A single pool's exponent is constant (b_eff = b), so the sum over segments telescopes to
    E = (a D' / s)^b + d with D' its discounted samples in closed form (:func:`effective_data`):
    bounded work whatever the passes. A mixture's exponent changes from segment to segment; its
    segments are built only up to MAX_DATA_SEGMENTS per row, beyond which it is an error (one
    line) rather than gigabytes.
    """
    N = np.broadcast_to(np.asarray(sizes, dtype=float), W.shape)
    period = pass_periods(W, N)
    scale = half_life_scale(gap_log_ratios(period, N if gaps is None else gaps), gamma)
    k_lo, k_hi = _pass_range(n, period, scale, tau)
    passes = np.maximum(k_hi - k_lo + 1.0, 0.0)
    single = (W > 0).sum(axis=1) == 1
    closed = single & (passes.sum(axis=1) > PASSES_SUMMED)
    too_many = ~single & (passes.sum(axis=1) > MAX_DATA_SEGMENTS)
    if np.any(too_many):
        r = int(np.flatnonzero(too_many)[0])
        raise ValueError(f"the effective-data form would sum {passes[r].sum():.3g} passes for the "
                         f"mixture at {n[r]:g} samples (at most {MAX_DATA_SEGMENTS:g}): use a smaller "
                         "budget, or the utility or multiplier form, which sum passes in closed form")
    out = np.empty(n.size)
    if np.any(closed):
        D = effective_data(n[closed], W[closed], N[closed], tau,
                           gaps=None if gaps is None else np.broadcast_to(gaps, W.shape)[closed],
                           gamma=gamma)
        D_used = np.where(W[closed] > 0, D, 0.0).sum(axis=1)
        b_used = np.where(W[closed] > 0, b[None, :], 0.0).sum(axis=1)
        out[closed] = np.exp(b_used * np.log(a * D_used / normalizer)) + d
    rest = ~closed
    if np.any(rest):
        Gs = None if gaps is None else np.broadcast_to(gaps, W.shape)[rest]
        seg = Segments.build(n[rest], W[rest], N[rest], tau=tau, gaps=Gs, gamma=gamma)
        out[rest] = seg.predict(a, d, b, tau, "data", normalizer, gamma=gamma)
    return out


def _pass_range(n, period, scale, tau):
    """Per (row, pool): the passes k that overlap (t1, n], at most 70 half-lives of them.

    As floats: with a slow decay and a huge budget the pass numbers need not fit an int64."""
    t1 = period.min(axis=1)
    pos = np.isfinite(period)
    safe = np.where(pos, period, 1.0)
    with np.errstate(over="ignore", invalid="ignore"):
        k_lo = np.floor(t1[:, None] / safe)
        k_cap = np.ceil(HALF_LIVES_KEPT * scale * tau[None, :])
        k_hi = np.minimum(np.ceil(n[:, None] / safe) - 1.0, k_cap)
    live = pos & (n[:, None] > t1[:, None])
    return np.where(live, k_lo, 1.0), np.where(live, k_hi, 0.0)


def _explicit_passes(period, t_all, k_lo, k_hi):
    """Per (row, pool): the passes summed one by one and the whole-pass ranges summed in closed
    form (:func:`_log_pass_sums`).

    One by one: the first PASSES_SUMMED passes (the released golden cases never go beyond them,
    so their values are unchanged), the passes around t_all (where the floor starts repeating;
    one either side, so a rounded floor(t_all / P_i) cannot misplace a pass) and the last two
    (the last may be cut at n). In closed form: the whole passes between them, below t_all
    (`below`: they count in F only) and above it (`above`: in F and F_rep).
    Returns (head_hi, extras (R, P, 5) with NaN for none, below (lo, hi), above (lo, hi)).
    """
    live = k_hi >= k_lo
    head_hi = np.where(live, np.minimum(k_hi, k_lo + (PASSES_SUMMED - 1)), k_lo - 1.0)
    safe = np.where(np.isfinite(period), period, 1.0)
    with np.errstate(over="ignore", invalid="ignore"):
        s = np.floor(t_all[:, None] / safe)
    extras = np.stack([s - 1.0, s, s + 1.0, k_hi - 1.0, k_hi], axis=-1)
    valid = live[..., None] & (extras > head_hi[..., None]) & (extras <= k_hi[..., None])
    extras = np.sort(np.where(valid, extras, np.inf), axis=-1)
    repeat = np.concatenate([np.zeros(extras.shape[:-1] + (1,), dtype=bool),
                             extras[..., 1:] == extras[..., :-1]], axis=-1)
    extras = np.where(np.isfinite(extras) & ~repeat, extras, np.nan)
    below = (head_hi + 1.0, np.where(live, np.minimum(s - 2.0, k_hi - 2.0), -np.inf))
    above = (np.maximum(s + 2.0, head_hi + 1.0), np.where(live, k_hi - 2.0, -np.inf))
    return head_hi, extras, below, above


def _utility_by_pool_pass(n, W, period, scale, k_lo, k_hi, a, b, tau, d, normalizer):
    """Utility variant of a chunk of rows: per (row, pool), the passes summed one by one plus
    the whole passes between them in closed form, so the work per pool is bounded whatever
    the number of passes (`curate predict --samples 1e14` summed millions of them)."""
    R, P = W.shape
    t1 = period.min(axis=1)
    t_all = floor_start(period)
    X = np.exp(first_pass_exponent(W, b) * np.log(a * np.minimum(n, t1) / normalizer))
    head_hi, extras, below, above = _explicit_passes(period, t_all, k_lo, k_hi)
    counts = np.maximum(head_hi - k_lo + 1.0, 0.0).astype(np.int64).reshape(-1)
    cell = np.repeat(np.arange(counts.size), counts)
    k = (np.arange(cell.size) - np.repeat(np.cumsum(counts) - counts, counts)
         + k_lo.reshape(-1)[cell]).astype(float)
    has = ~np.isnan(extras.reshape(counts.size, -1))
    cell = np.concatenate([cell, np.nonzero(has)[0]])
    k = np.concatenate([k, extras.reshape(counts.size, -1)[has]])
    F, F_rep = np.zeros(R), np.zeros(R)
    if cell.size:
        row, pool = np.divmod(cell, P)
        Pc = period.reshape(-1)[cell]
        lo = np.maximum(t1[row], k * Pc)
        hi = np.minimum(n[row], (k + 1.0) * Pc)
        span = np.log(np.maximum(hi, lo) / lo)                              # 0 outside (t1, n]
        lo_rep = np.maximum(lo, t_all[row])
        span_rep = np.log(np.maximum(hi, lo_rep) / lo_rep)                  # the part past t_all
        rate = W[row, pool] * b[pool] * np.exp(-decay_rates(k, scale[row, pool], tau[pool]))
        F += np.bincount(row, weights=rate * span, minlength=R)
        F_rep += np.bincount(row, weights=rate * span_rep, minlength=R)
    kappa = decay_rates(1.0, scale, tau[None, :])                          # per pass
    wb = W * b[None, :]
    for (lo_k, hi_k), rep in ((below, False), (above, True)):
        todo = hi_k >= lo_k
        if np.any(todo):
            tail = np.zeros((R, P))
            tail[todo] = _log_pass_sums(lo_k[todo], hi_k[todo], kappa[todo])
            F += (wb * tail).sum(axis=1)
            if rep:
                F_rep += (wb * tail).sum(axis=1)
    return X * np.exp(F) + d * np.exp(F_rep)


def _log_pass_sums(K, M, kappa):
    """sum_{k=K}^{M} e^(-kappa k) log(1 + 1/k), for K >= PASSES_SUMMED (elementwise).

    Euler-Maclaurin: the integral plus end corrections up to the third derivative. The terms
    are smooth there: kappa <= 70 ln 2 / PASSES_SUMMED (a pool whose 70 half-lives end sooner
    has no passes left to sum) and 1/k <= 1 / PASSES_SUMMED, so the next correction is below
    1e-17 and the integral's series in 1/x (four terms) errs by under 1e-17: the sum is exact
    to double rounding, as summing the passes one by one was (which also rounded each
    log((k + 1) P / (k P)) to ~1e-16 / k relative).
    """
    K, M, kappa = (np.asarray(v, dtype=float) for v in (K, M, kappa))

    def f_and_derivatives(x):
        u = 1.0 / x
        e = np.exp(-kappa * x)
        L = np.log1p(u)
        L1 = -u * u / (1.0 + u)                                   # d/dx log(1 + 1/x)
        L2 = u ** 3 * (2.0 + u) / (1.0 + u) ** 2
        L3 = -2.0 * u ** 4 * (3.0 + 3.0 * u + u * u) / (1.0 + u) ** 3
        return (e * L, e * (L1 - kappa * L),
                e * (L3 - 3.0 * kappa * L2 + 3.0 * kappa ** 2 * L1 - kappa ** 3 * L))

    fK, f1K, f3K = f_and_derivatives(K)
    fM, f1M, f3M = f_and_derivatives(M)
    return (_log_pass_integral(K, M, kappa) + 0.5 * (fK + fM) + (f1M - f1K) / 12.0
            - (f3M - f3K) / 720.0)


def _log_pass_integral(K, M, kappa):
    """integral_K^M e^(-kappa x) log(1 + 1/x) dx = I_1 - I_2/2 + I_3/3 - I_4/4 (x >= K large),
    I_j = integral_K^M e^(-kappa x) x^-j dx; I_1 = E1(kappa K) - E1(kappa M), the others by
    parts: I_j = (e^(-kappa K) K^(1-j) - e^(-kappa M) M^(1-j)) / (j - 1) - kappa I_(j-1) / (j - 1)."""
    from scipy.special import exp1

    zK, zM = kappa * K, kappa * M
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        # E1 differences directly where they are small and accurate; else through Ein (entire,
        # no log-singularity as kappa -> 0): E1(zK) - E1(zM) = log(M / K) - (Ein(zM) - Ein(zK))
        I = np.where(zK >= 1.0, exp1(np.maximum(zK, 1.0)) - exp1(np.maximum(zM, 1.0)),
                     np.log(M / K) - (_ein(zM) - _ein(zK)))
    eK, eM = np.exp(-zK), np.exp(-zM)
    total = I
    for j in (2, 3, 4):
        I = (eK / K ** (j - 1) - eM / M ** (j - 1)) / (j - 1) - kappa * I / (j - 1)
        total = total + (-1.0) ** (j + 1) * I / j
    return total


_EULER_GAMMA = 0.5772156649015329


def _ein(z):
    """Ein(z) = integral_0^z (1 - e^-t) / t dt = E1(z) + gamma + log z; by its series below 2."""
    from scipy.special import exp1

    z = np.asarray(z, dtype=float)
    small = z < 2.0
    zs = np.where(small, z, 0.0)
    term, series = zs.copy(), zs.copy()
    for m in range(2, 40):  # z^m / (m m!) alternating; 2^40 / (40 * 40!) < 1e-38
        term = -term * zs / m
        series = series + term / m
    with np.errstate(divide="ignore", invalid="ignore"):
        large = exp1(np.where(small, 2.0, z)) + _EULER_GAMMA + np.log(np.where(small, 2.0, z))
    return np.where(small, series, large)


# ---------------------------------------------------------------------------------------------
# The per-pool-multiplier variant: a shared slope, pools differ by what their data is worth
# ---------------------------------------------------------------------------------------------

def effective_data(samples, weights, sizes, tau, gaps=None, gamma: float = 1.0,
                   derivative: bool = False):
    """D'_i: samples of pool i discounted per pass, sum_k (samples of pass k) 0.5^(k / tau'_i).

    `samples` (R,), `weights` (R, P) normalised, `sizes`/`gaps` (P,) or (R, P), `tau` (P,).
    Closed form (a geometric sum over whole passes plus the part of the current pass), so the
    cost does not grow with the number of passes. With `derivative`, also dD'_i / d log tau_i.
    """
    n = np.asarray(samples, dtype=float).reshape(-1)
    W = np.asarray(weights, dtype=float).reshape(n.size, -1)
    N = np.broadcast_to(np.asarray(sizes, dtype=float), W.shape)
    period = pass_periods(W, N)
    scale = half_life_scale(gap_log_ratios(period, N if gaps is None else gaps), gamma)
    kappa = decay_rates(1.0, scale, np.asarray(tau, dtype=float)[None, :])  # per pass
    drawn = W * n[:, None]                      # samples of each pool so far
    K = np.floor(drawn / N)                     # whole passes
    rest = drawn - K * N                        # samples into the current pass
    # sum_{k<K} e^(-k kappa) = (1 - e^(-K kappa)) / (1 - e^(-kappa)); -> K as kappa -> 0
    with np.errstate(invalid="ignore", divide="ignore"):
        geo = np.where(kappa > 0, np.expm1(-K * kappa) / np.expm1(-kappa), K)
    tail = np.exp(-K * kappa)
    D = N * geo + rest * tail
    if not derivative:
        return D
    # d/d kappa, then d kappa / d log tau = -kappa
    em = -np.expm1(-kappa)                      # 1 - e^-kappa
    with np.errstate(invalid="ignore", divide="ignore"):
        dgeo = np.where(kappa > 0, (K * tail * em - (1.0 - tail) * np.exp(-kappa)) / (em * em), 0.0)
    dD_dkappa = N * dgeo - K * rest * tail
    return D, -kappa * dD_dkappa


def multiplier_errors(samples, weights, a, b: float, d: float, tau, sizes,
                      normalizer: float = NORMALIZER, gaps=None, gamma: float = 1.0,
                      jacobian: bool = False):
    """E = d + (sum_i a_i D'_i / s)^b: one slope b, per-pool worth a_i of a (discounted) sample.

    Returns E (R,), and with `jacobian` also dE/d(log a_1..a_P, d, b, log tau_1..tau_P)
    (R, 2P + 2). Unit-invariant (E -> c E is d -> c d, a_i -> a_i c^(1/b)), split-invariant
    (D' of k identical sub-pools adds up to the pool's), and more data never predicts worse.
    """
    a = np.asarray(a, dtype=float)
    D, dD = effective_data(samples, weights, sizes, tau, gaps, gamma, derivative=True)
    S = (D * a[None, :]).sum(axis=1) / normalizer
    X = np.exp(b * np.log(S))
    E = d + X
    if not jacobian:
        return E, None
    P = a.size
    J = np.empty((E.size, 2 * P + 2))
    common = (b * X / S)[:, None] / normalizer
    J[:, :P] = common * D * a[None, :]
    J[:, P] = 1.0
    J[:, P + 1] = X * np.log(S)
    J[:, P + 2:] = common * dD * a[None, :]
    return E, J

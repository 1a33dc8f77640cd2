"""Global minimisation of a mixture objective over a box-constrained simplex.

The feasible set is {w : sum w = 1, lower <= w <= upper}. Objectives are piecewise smooth:
the QQT loss has kinks wherever a pool starts a new pass (w_i = k N_i / n), and its optimum
often sits exactly on one (stop a pool just before its next repetition). Gradient methods stall
there, so the local method here is a derivative-free *pairwise descent*: move mass from pool j
to pool i, with an exact line search along that edge direction (a grid that includes the known
kink points, then zooms on the best point). Every kink hyperplane w_i = const is crossed
transversally by those moves, so kinks are handled exactly.

Globality comes from many starts, all evaluated in one vectorised call: the vertices, the
top-m candidates, size-proportional and uniform mixtures, random Dirichlet points and, for up to
five pools, every point of a simplex grid. The best few are refined. The tests compare the result
with an exhaustive fine grid on 2-4 pools.
"""
from __future__ import annotations

import itertools
from typing import Callable, Sequence

import numpy as np

BatchLoss = Callable[[np.ndarray], np.ndarray]  # (rows, pools) -> (rows,)

_TINY = 1e-15


class Infeasible(ValueError):
    """The constraints admit no mixture (e.g. minimum shares summing to more than 1)."""


def check_bounds(lower: np.ndarray, upper: np.ndarray, names: Sequence[str] | None = None) -> None:
    """Raise :class:`Infeasible` with a one-line reason when no mixture fits the bounds."""
    names = list(names) if names is not None else [str(i) for i in range(len(lower))]
    bad = [n for n, lo, up in zip(names, lower, upper) if lo > up + 1e-12]
    if bad:
        raise Infeasible(f"pool(s) {', '.join(bad)}: minimum share above the maximum allowed "
                         "(max share, max epochs or exclusion)")
    if np.sum(upper) < 1.0 - 1e-9:
        if not np.any(upper > 0):
            raise Infeasible("every pool is excluded or capped at zero")
        raise Infeasible(f"the pools' maximum shares add up to {np.sum(upper):.4g} < 1: the "
                         "budget needs more data than the caps (max share / max epochs) allow")
    if np.sum(lower) > 1.0 + 1e-9:
        raise Infeasible(f"minimum shares add up to {np.sum(lower):.4g} > 1")


def project(w: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Feasible point(s) clip(w + lam, lower, upper), lam chosen so each row sums to 1.

    Works on one vector or on rows of a matrix (vectorised bisection on lam).
    """
    W = np.atleast_2d(np.asarray(w, dtype=float))
    feasible = (np.all(W >= lower - 1e-15, axis=1) & np.all(W <= upper + 1e-15, axis=1)
                & (np.abs(W.sum(axis=1) - 1.0) < 1e-12))
    out = W.copy()
    todo = ~feasible
    if np.any(todo):
        X = W[todo]
        lo_lam = -1.0 - X.max(axis=1)
        hi_lam = 2.0 - X.min(axis=1)
        for _ in range(80):
            lam = 0.5 * (lo_lam + hi_lam)
            over = np.clip(X + lam[:, None], lower, upper).sum(axis=1) > 1.0
            hi_lam = np.where(over, lam, hi_lam)
            lo_lam = np.where(over, lo_lam, lam)
        Y = np.clip(X + 0.5 * (lo_lam + hi_lam)[:, None], lower, upper)
        # Put the last rounding error on the pool with most room.
        gap = 1.0 - Y.sum(axis=1)
        room = np.where(gap[:, None] > 0, upper - Y, Y - lower)
        idx = np.argmax(room, axis=1)
        Y[np.arange(len(Y)), idx] += gap
        out[todo] = Y
    return out[0] if np.ndim(w) == 1 else out


def simplex_grid(n_pools: int, steps: int) -> np.ndarray:
    """All weight vectors with entries k / steps on the simplex (C(steps+P-1, P-1) rows)."""
    if n_pools == 1:
        return np.ones((1, 1))
    rows = []
    for cuts in itertools.combinations(range(steps + n_pools - 1), n_pools - 1):
        prev, w = -1, []
        for c in cuts:
            w.append(c - prev - 1)
            prev = c
        w.append(steps + n_pools - 2 - prev)
        rows.append(w)
    return np.asarray(rows, dtype=float) / steps


def grid_steps_for(n_pools: int, max_points: int) -> int:
    """Largest grid resolution whose simplex grid has at most max_points points."""
    from math import comb

    if n_pools <= 1:
        return 1
    steps = 1
    while comb(steps + 1 + n_pools - 1, n_pools - 1) <= max_points:
        steps += 1
    return steps


def _line_search(f: BatchLoss, w: np.ndarray, directions: np.ndarray, t_max: np.ndarray,
                 extra_t: list[np.ndarray], rounds: int = 8, points: int = 17
                 ) -> tuple[np.ndarray, np.ndarray]:
    """For each direction d_k minimise f(w + t d_k) over t in [0, t_max_k], all in one batch.

    A 33-point grid plus `extra_t[k]` (known kink points) is refined around its best point
    `rounds` times, the bracket shrinking ~8x per round. Returns (best t, best loss) per direction.
    """
    n_dir = len(directions)

    def evaluate(ts: list[np.ndarray]) -> list[np.ndarray]:
        sizes = [len(t) for t in ts]
        W = np.concatenate([w[None, :] + t[:, None] * directions[k][None, :]
                            for k, t in enumerate(ts)])
        vals = f(np.maximum(W, 0.0))
        return np.split(vals, np.cumsum(sizes)[:-1])

    ts = [np.union1d(np.linspace(0.0, t_max[k], 33), extra_t[k]) for k in range(n_dir)]
    vals = evaluate(ts)
    best_t = np.empty(n_dir)
    best_v = np.empty(n_dir)
    brackets = []
    for k in range(n_dir):
        idx = int(np.argmin(vals[k]))
        best_t[k], best_v[k] = ts[k][idx], vals[k][idx]
        brackets.append((ts[k][max(idx - 1, 0)], ts[k][min(idx + 1, len(ts[k]) - 1)]))
    for _ in range(rounds):
        ts = [np.linspace(a, b, points) for a, b in brackets]
        vals = evaluate(ts)
        for k in range(n_dir):
            idx = int(np.argmin(vals[k]))
            if vals[k][idx] < best_v[k]:
                best_t[k], best_v[k] = ts[k][idx], vals[k][idx]
            span = (brackets[k][1] - brackets[k][0]) / (points - 1)
            brackets[k] = (max(best_t[k] - span, 0.0), min(best_t[k] + span, t_max[k]))
    return best_t, best_v


def _max_step(w: np.ndarray, d: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Largest t >= 0 with lower <= w + t d <= upper."""
    with np.errstate(divide="ignore", invalid="ignore"):
        up = np.where(d > 0, (upper - w) / d, np.inf)
        down = np.where(d < 0, (lower - w) / d, np.inf)
    return float(max(0.0, min(up.min(), down.min())))


def pairwise_descent(f: BatchLoss, w0: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                     kink_weights: Callable[..., np.ndarray] | None = None,
                     max_iter: int = 300, tol: float = 1e-12, top_pairs: int = 2
                     ) -> tuple[np.ndarray, float]:
    """Local minimum of f from w0 by exact line searches along pair directions e_i - e_j
    and, for three or more pools, group directions (pool j against the other used pools in
    proportion to their weights, both ways).

    Each iteration probes every feasible pair at a few step sizes (one batched call), line-
    searches the most promising pairs and takes the best move. Every few iterations a line
    search along the net displacement since the last such step (a Powell-style pattern move)
    cuts the zig-zag of coordinate-wise descent in narrow valleys.

    kink_weights(i, lo, hi, limit, near_hi) -> weights of pool i in [lo, hi] where f has a kink
    (the line searches evaluate those points exactly).
    """
    w = project(w0, lower, upper)
    fw = float(f(w[None, :])[0])
    P = len(w)
    if P == 1:
        return w, fw
    probe_steps = np.array([3e-3, 3e-6])

    def pair_kinks(i: int, j: int, t_max: float) -> np.ndarray:
        if kink_weights is None:
            return np.empty(0)
        up = kink_weights(i, w[i], w[i] + t_max, 32, False) - w[i]      # pool i grows
        down = w[j] - kink_weights(j, w[j] - t_max, w[j], 32, True)      # pool j shrinks
        t = np.concatenate([up, down])
        t = t[(t > 0) & (t < t_max)]
        return np.concatenate([t, np.maximum(t - 1e-12, 0.0)])

    anchor = w.copy()
    last_gain = np.inf
    for it in range(max_iter):
        room_up = upper - w
        room_down = w - lower
        pairs = [(i, j) for i in range(P) for j in range(P)
                 if i != j and room_up[i] > _TINY and room_down[j] > _TINY]
        D = np.zeros((len(pairs), P))
        for r, (i, j) in enumerate(pairs):
            D[r, i], D[r, j] = 1.0, -1.0
        t_list = [min(room_up[i], room_down[j]) for i, j in pairs]
        # Group moves: pool j against all other used pools in proportion to their weights, which
        # keeps their passes in lockstep (a kink along r_i = r_k is not crossed by pair moves).
        if P > 2:
            for j in range(P):
                others = (w > _TINY) & (np.arange(P) != j)
                if others.sum() < 2:
                    continue
                g = np.where(others, w, 0.0) / w[others].sum()
                for d in (g - np.eye(P)[j], np.eye(P)[j] - g):
                    tm_d = _max_step(w, d, lower, upper)
                    if tm_d > _TINY:
                        D = np.vstack([D, d])
                        t_list.append(tm_d)
                        pairs.append((-1, -1))
        if not len(D):
            break
        t_max = np.array(t_list)
        S = len(probe_steps)
        steps = np.minimum(probe_steps[None, :], t_max[:, None])
        W = w[None, None, :] + steps[:, :, None] * D[:, None, :]
        gains = fw - f(np.maximum(W.reshape(-1, P), 0.0)).reshape(len(D), S).min(axis=1)
        chosen = [k for k in np.argsort(-gains)[:top_pairs] if gains[k] > tol]
        if not chosen:
            break
        dirs = D[chosen].copy()
        extra = [pair_kinks(*pairs[k], t_max[k]) if pairs[k][0] >= 0 else np.empty(0)
                 for k in chosen]
        tm = t_max[chosen]
        # Pattern move along the displacement of the last P iterations.
        if it % P == P - 1 and np.max(np.abs(w - anchor)) > 1e-9:
            d = w - anchor
            tp = _max_step(w, d, lower, upper)
            if tp > 0:
                dirs = np.vstack([dirs, d])
                extra.append(np.empty(0))
                tm = np.append(tm, min(tp, 4.0))
            anchor = w.copy()
        # Coarse line searches while far from converged, fine ones near the end.
        rounds = 3 if last_gain > 1e-6 else 8
        best_t, best_v = _line_search(f, w, dirs, tm, extra, rounds=rounds)
        k = int(np.argmin(best_v))
        if not best_v[k] < fw - tol:
            if rounds < 8:
                last_gain = 0.0
                continue
            break
        last_gain = fw - float(best_v[k])
        w = np.clip(w + best_t[k] * dirs[k], lower, upper)
        w = w / w.sum()
        fw = float(best_v[k])
    return w, float(f(w[None, :])[0])


def minimise_on_simplex(f: BatchLoss, lower: np.ndarray, upper: np.ndarray,
                        starts: Sequence[np.ndarray] = (), *, n_random: int = 64,
                        n_local: int = 4, grid_points: int = 3000, seed: int = 0,
                        kink_weights: Callable[..., np.ndarray] | None = None
                        ) -> tuple[np.ndarray, float]:
    """Global minimum of f over {sum w = 1, lower <= w <= upper} by multi-start pairwise descent.

    `starts` are extra start points (e.g. top-m mixtures, a previous optimum). All starts are
    scored in one call; the `n_local` best distinct ones are refined by :func:`pairwise_descent`.
    """
    lower = np.asarray(lower, dtype=float)
    upper = np.asarray(upper, dtype=float)
    check_bounds(lower, upper)
    P = len(lower)
    rng = np.random.default_rng(seed)
    cands = [np.eye(P), np.full((1, P), 1.0 / P)]
    if starts:
        cands.append(np.atleast_2d(np.asarray(starts, dtype=float)))
    if n_random:
        cands.append(rng.dirichlet(np.full(P, 0.5), size=n_random))
    if P <= 5 and grid_points:
        cands.append(simplex_grid(P, grid_steps_for(P, grid_points)))
    C = np.concatenate(cands)
    C = project(C, lower, upper)
    C = np.unique(np.round(C, 12), axis=0)
    vals = f(C)
    order = np.argsort(vals)
    picked: list[np.ndarray] = []
    for k in order:
        if all(np.max(np.abs(C[k] - p)) > 1e-3 for p in picked):
            picked.append(C[k])
        if len(picked) >= n_local:
            break
    best_w, best_v = C[order[0]], float(vals[order[0]])
    for w0 in picked:
        w, v = pairwise_descent(f, w0, lower, upper, kink_weights=kink_weights)
        if v < best_v:
            best_w, best_v = w, v
    return best_w, best_v

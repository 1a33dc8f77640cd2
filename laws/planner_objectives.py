"""Planner objectives: one small adapter per law kind, all with the same interface.

The planner (:mod:`laws.planner`) is law-agnostic. It minimises ``objective.loss_batch(W,
budget)`` over mixture weights ``W`` (rows on the simplex, columns aligned with
``objective.pools``) and asks ``objective.describe(w, budget)`` for the numbers a plan reports
(total draws, model size). Each adapter knows how a budget turns into samples drawn:

* :class:`QQTObjective` -- the QQT law (Goyal et al.); the budget is samples drawn (in the law's
  unit). ``loss_batch`` evaluates the QQT kernel (:mod:`laws.qqt_kernel`, the law's own code)
  on all rows at once, because the optimiser needs thousands of evaluations.
* :class:`DataConstrainedObjective` -- the data-constrained LM law (Muennighoff et al.) with
  per-pool unique tokens; the budget is tokens (model size fixed) or FLOPs (model size fixed, or
  chosen per mixture: compute-optimal allocation, C = 6 N D).

Pooling rule for the data-constrained law (this project's extension): a mixture draws
D_i = w_i D tokens from pool i, which has U_i unique tokens. Every pool repeats on its own, so
its effective tokens follow the published decay with its own repetition count, and the law sees
the sum:

    R_i = max(D_i / U_i - 1, 0),   D'_i = min(D_i, U_i) + U_i R*_D (1 - exp(-R_i / R*_D)),
    D'  = sum_i q_i D'_i,          U_D = sum_i min(D_i, U_i)   (unique tokens actually used),
    N'  from N and U_D as published,   L = E + A / N'^alpha + B / D'^beta.

q_i are per-pool effective-data multipliers (default 1: the law itself has no notion of
quality): a token of pool i is worth q_i tokens of the data the law was fitted on, after the
same repetition rule (R*_D) as every other pool, so a better pool is repeated further before
its repeats are worth less than a worse pool's fresh tokens. ``laws.planning.make_plan`` takes
them from the law file (``quality`` / ``multiplier``) or from ``curate plan --quality NAME=MULT``.
With one pool and D >= U this is exactly the published law (for D < U only the D tokens seen
count, i.e. the published law with U_D = D). Why per pool and not "one source with U = sum U_i":
repeating a small pool 20 times is worth much less than seeing a large one once, and lumping
the pools would hide that (any split would look equally good). With equal quality the per-pool
terms are concave and scale-free, so the optimum repeats every pool equally (w_i ~ U_i) and then
agrees with the lumped law; quality multipliers are what move it away from that.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from curate.laws.qqt_kernel import mixture_errors


# ---------------------------------------------------------------------------------------------
# QQT
# ---------------------------------------------------------------------------------------------

def qqt_error_batch(n: float, W, a: float, b, tau, sizes, d: float = 0.1,
                    normalizer: float = 1e5, variant: str = "utility", gaps=None,
                    gamma: float = 1.0) -> np.ndarray:
    """:func:`laws.qqt.mixture_error` for many weight vectors at once (rows of W).

    The QQT kernel (:mod:`laws.qqt_kernel`), as for the law and the fitter; it skips pass
    boundaries beyond 70 half-lives of a pool (their decay is below double precision), so tiny
    pools under huge budgets stay cheap.
    """
    return mixture_errors(float(n), W, a, b, tau, sizes, d, normalizer, variant, gaps=gaps, gamma=gamma)


class QQTObjective:
    """Predicted QQT error of a mixture after `budget` samples (the law's unit).

    Parameters
    ----------
    law : a :class:`laws.qqt.QQTLaw` (pools, a, d, b, tau, variant, normalizer).
    sizes : pool sizes aligned with ``law.pools`` (default: the law's own sizes).
    """

    kind = "qqt"
    metric = "error"

    def __init__(self, law, sizes: Sequence[float] | None = None):
        self.law = law
        self.pools = list(law.pools)
        self.sizes = np.asarray(law.sizes if sizes is None else sizes, dtype=float)
        if self.sizes.shape != (len(self.pools),) or np.any(~(self.sizes > 0)):
            raise ValueError("pool sizes must be positive, one per pool")

    def with_law(self, law) -> "QQTObjective":
        """The same objective under other parameters (bootstrap draws)."""
        return QQTObjective(law, self.sizes)

    def draws(self, W, budget: float) -> np.ndarray:
        """Total samples drawn for each row of W (the budget itself)."""
        return np.full(np.atleast_2d(W).shape[0], float(budget))

    def weight_caps(self, budget: float, max_epochs: float | None) -> np.ndarray:
        """Largest weight per pool allowed by a cap on epochs (passes over the pool)."""
        if max_epochs is None:
            return np.ones(len(self.pools))
        return np.minimum(1.0, max_epochs * self.sizes / float(budget))

    def loss_batch(self, W, budget: float) -> np.ndarray:
        law = self.law
        # tau stays measured at the law's gaps when the sizes are overridden (e.g. a run's pools)
        return qqt_error_batch(float(budget), W, law.a, law.b, law.tau, self.sizes, law.d,
                               law.normalizer, law.variant, gaps=law.gaps, gamma=law.gamma)

    def describe(self, w, budget: float) -> dict:
        return {"draws": float(budget), "params": None}

    def kink_weights(self, i: int, budget: float, lo: float = 0.0, hi: float = 1.0,
                     limit: int = 32, near_hi: bool = False) -> np.ndarray:
        """Weights in [lo, hi] at which pool i starts a new pass (the loss has kinks there).

        Multiples of size_i / budget; at most `limit` of them, those nearest `lo` (or `hi`).
        """
        step = self.sizes[i] / float(budget)
        k_lo, k_hi = max(1, math.ceil(lo / step)), math.floor(hi / step)
        if k_hi < k_lo:
            return np.empty(0)
        if near_hi:
            k = np.arange(max(k_lo, k_hi - limit + 1), k_hi + 1)
        else:
            k = np.arange(k_lo, min(k_hi, k_lo + limit - 1) + 1)
        return k * step


# ---------------------------------------------------------------------------------------------
# Data-constrained language-model law (and Chinchilla, which ignores repetition)
# ---------------------------------------------------------------------------------------------

class DataConstrainedObjective:
    """Predicted LM loss of a mixture of pools with limited unique tokens (see module docstring).

    Parameters
    ----------
    law : a :class:`laws.data_constrained.DataConstrainedLaw` or ``ChinchillaLaw``.
    pools, unique : pool names and unique tokens per pool.
    unit : "tokens" (budget = tokens trained, needs ``params``) or "flops" (C = 6 N D).
    params : model size N; with FLOPs and ``params=None`` the model size is chosen per mixture
        (the compute-optimal allocation under limited data).
    quality : optional per-pool multipliers on effective tokens (default all 1).
    params_bounds : search range for N when it is chosen (default N_opt(C) / 1e4 .. * 1e4).
    """

    metric = "loss"

    def __init__(self, law, pools: Sequence[str], unique: Sequence[float], unit: str = "flops",
                 params: float | None = None, quality: Sequence[float] | None = None,
                 params_bounds: tuple[float, float] | None = None):
        self.law = law
        self.kind = getattr(law, "kind", "data-constrained")
        self.pools = [str(p) for p in pools]
        self.sizes = np.asarray(unique, dtype=float)
        if self.sizes.shape != (len(self.pools),) or np.any(~(self.sizes > 0)):
            raise ValueError("unique tokens must be positive, one per pool")
        if unit not in ("tokens", "flops"):
            raise ValueError(f"data-constrained budgets are in tokens or flops, not {unit!r}")
        if unit == "tokens" and params is None:
            raise ValueError("a token budget needs the model size (--params): the law's loss "
                             "depends on N, and without a compute limit larger N always wins")
        if params is not None and not params > 0:
            raise ValueError(f"model size must be positive, got {params!r}")
        self.unit = unit
        self.params = None if params is None else float(params)
        self.quality = (np.ones(len(self.pools)) if quality is None
                        else np.asarray(quality, dtype=float).reshape(-1))
        if self.quality.shape != self.sizes.shape or not np.all(np.isfinite(self.quality) &
                                                                 (self.quality > 0)):
            raise ValueError("quality multipliers must be positive and finite, one per pool")
        self.params_bounds = params_bounds
        self._p = law.to_params()
        self._min_params = None  # set by weight_caps() when epoch caps bound N from below
        self._max_epochs = None  # per-pool epoch caps (array) when N is chosen

    def with_law(self, law) -> "DataConstrainedObjective":
        other = DataConstrainedObjective(law, self.pools, self.sizes, self.unit, self.params,
                                         self.quality, self.params_bounds)
        other._min_params = self._min_params  # keep epoch caps set by weight_caps()
        other._max_epochs = self._max_epochs
        return other

    # -- budget -> (N, D) ---------------------------------------------------------------------
    def _fixed_tokens(self, budget: float) -> float | None:
        if self.unit == "tokens":
            return float(budget)
        if self.params is not None:
            return float(budget) / (6.0 * self.params)
        return None

    def weight_caps(self, budget: float, max_epochs) -> np.ndarray:
        """Epoch caps as weight caps when D is fixed; with N free they bound N from below.

        `max_epochs`: None, one cap for every pool, or one per pool (inf: uncapped).
        """
        self._min_params = None
        self._max_epochs = None
        if max_epochs is None:
            return np.ones(len(self.pools))
        caps = np.broadcast_to(np.asarray(max_epochs, dtype=float), self.sizes.shape)
        D = self._fixed_tokens(budget)
        if D is not None:
            return np.minimum(1.0, caps * self.sizes / D)
        # D = C / (6N) <= cap_i * U_i / w_i for every used pool: handled per row.
        self._max_epochs = caps.copy()
        self._min_params = True
        return np.ones(len(self.pools))

    def _loss_nd(self, W, N, D) -> np.ndarray:
        """Loss for rows of W at model size N and tokens D (arrays broadcast over rows)."""
        from curate.laws import data_constrained as dc

        p = self._p
        Di = W * np.asarray(D, dtype=float)[..., None]
        U = self.sizes
        used = np.minimum(Di, U)
        if self.kind == "chinchilla":  # no repetition discount: all tokens count
            return dc.chinchilla_loss(N, np.sum(Di * self.quality, axis=-1), p["E"], p["A"],
                                      p["B"], p["alpha"], p["beta"])
        # Per-pool effective tokens: unique part + decayed repeats (R_i from the pool's own count).
        repeats = np.maximum(Di / U - 1.0, 0.0)
        D_eff_i = used + U * p["R_D_star"] * (-np.expm1(-repeats / p["R_D_star"]))
        D_eff = np.sum(self.quality * D_eff_i, axis=-1)
        U_D = np.sum(used, axis=-1)
        N_eff = dc.effective_params(N, U_D, p["A"], p["B"], p["alpha"], p["beta"], p["R_N_star"])
        return dc.chinchilla_loss(N_eff, D_eff, p["E"], p["A"], p["B"], p["alpha"], p["beta"])

    def _best_params(self, W, budget: float) -> np.ndarray:
        """Model size minimising the loss for each row (log-grid, then golden section)."""
        from curate.laws import data_constrained as dc

        p = self._p
        C = float(budget)
        if self.params_bounds is not None:
            lo, hi = (math.log(x) for x in self.params_bounds)
        else:
            centre = math.log(float(dc.n_opt(C, p["A"], p["B"], p["alpha"], p["beta"])))
            lo, hi = centre - math.log(1e4), centre + math.log(1e4)
        M = W.shape[0]
        lo_row = np.full(M, lo)
        if self._min_params:  # epoch caps: D <= min_i cap_i U_i / w_i  <=>  N >= C / (6 D_max)
            with np.errstate(divide="ignore", invalid="ignore"):
                d_max = np.min(np.where(W > 0, self._max_epochs * self.sizes / W, np.inf), axis=1)
                lo_row = np.maximum(lo_row, np.log(C / (6.0 * d_max)))  # uncapped: -inf
        hi = np.maximum(hi, lo_row)
        grid = np.linspace(0.0, 1.0, 65)
        logN = lo_row[:, None] + grid[None, :] * (hi - lo_row)[:, None]  # (M, G)
        N = np.exp(logN)
        L = self._loss_nd(W[:, None, :], N, C / (6.0 * N))
        j = np.argmin(L, axis=1)
        rows = np.arange(M)
        a = logN[rows, np.maximum(j - 1, 0)]
        c = logN[rows, np.minimum(j + 1, logN.shape[1] - 1)]
        # Golden-section search inside the bracket (vectorised over rows).
        g = (math.sqrt(5.0) - 1.0) / 2.0
        x1, x2 = c - g * (c - a), a + g * (c - a)

        def f(x):
            n_ = np.exp(x)
            return self._loss_nd(W, n_, C / (6.0 * n_))

        f1, f2 = f(x1), f(x2)
        for _ in range(60):
            left = f1 < f2
            c = np.where(left, x2, c)
            a = np.where(left, a, x1)
            x2n = np.where(left, x1, a + g * (c - a))
            x1n = np.where(left, c - g * (c - a), x2)
            x1, x2 = x1n, x2n
            fx = f(np.where(left, x1, x2))
            f1, f2 = np.where(left, fx, f2), np.where(left, f1, fx)
            if np.all(c - a < 1e-12):
                break
        best = np.where(f1 < f2, x1, x2)
        return np.exp(best)

    def params_for(self, W, budget: float) -> np.ndarray:
        W = np.atleast_2d(np.asarray(W, dtype=float))
        if self.params is not None:
            return np.full(W.shape[0], self.params)
        return self._best_params(W, budget)

    def draws(self, W, budget: float) -> np.ndarray:
        """Total tokens drawn for each row of W."""
        W = np.atleast_2d(np.asarray(W, dtype=float))
        D = self._fixed_tokens(budget)
        if D is not None:
            return np.full(W.shape[0], D)
        return float(budget) / (6.0 * self.params_for(W, budget))

    def loss_batch(self, W, budget: float) -> np.ndarray:
        W = np.atleast_2d(np.asarray(W, dtype=float))
        W = W / W.sum(axis=1, keepdims=True)
        N = self.params_for(W, budget)
        D = self._fixed_tokens(budget)
        return self._loss_nd(W, N, float(budget) / (6.0 * N) if D is None else np.full(len(W), D))

    def describe(self, w, budget: float) -> dict:
        W = np.atleast_2d(np.asarray(w, dtype=float))
        N = float(self.params_for(W, budget)[0])
        D = self._fixed_tokens(budget)
        return {"draws": float(budget) / (6.0 * N) if D is None else D, "params": N}

    def kink_weights(self, i: int, budget: float, lo: float = 0.0, hi: float = 1.0,
                     limit: int = 32, near_hi: bool = False) -> np.ndarray:
        """Weight at which pool i starts repeating (a kink of the loss) when D is fixed."""
        D = self._fixed_tokens(budget)
        if D is None:
            return np.empty(0)
        w = self.sizes[i] / D
        return np.array([w]) if lo <= w <= hi else np.empty(0)

"""Choose the pool mixture (and model size) that minimises a law's predicted loss for a budget.

Law-agnostic: the law enters through an objective adapter (:mod:`laws.planner_objectives`)
with ``pools``, ``sizes``, ``loss_batch(W, budget)``, ``describe(w, budget)``,
``weight_caps(budget, max_epochs)``, ``with_law(law)`` and optionally
``kink_weights(i, budget, lo, hi, limit, near_hi)`` (where the loss has kinks).

    plan = plan_mixture(objective, budget, constraints=Constraints(...), top_m_only=False)
    plan.weights, plan.loss, plan.per_pool(), plan.baselines, plan.to_dict()
    sweep = plan_sweep(objective, budgets, ...)          # optimum across budgets + switches
    robust = bootstrap_robustness(objective, plan, draws)  # stability across bootstrap draws

Top-m family (Goyal et al.): the union of the m best pools, sampled uniformly from the union,
i.e. weights proportional to pool size. For equal sizes this is the published equal-weight top-m
mixture. "Best" is decided at the budget: pools are ranked by each pool's predicted loss *alone
at the budget* (one-hot weights through ``objective.loss_batch``; exact ties keep pool order),
never by their position in the law. So permuting the law's pools changes no top-m member, no
baseline and no plan. (For the released QQT parameters this is also the order of b at every
budget above n = s/a, where the published table lives; below s/a the QQT power term exceeds 1
and the order by predicted error reverses, which is why the ranking is computed, not assumed.)

Epoch caps: :class:`Constraints` takes one cap for every pool (``max_epochs``) and/or caps by
pool name (``epoch_caps``; the name's own cap wins). A plan never puts a pool beyond its cap, and
every plan reports per pool its epochs, its cap and whether the cap is binding.

Baselines reported with every plan (on the pools not excluded; they ignore share and epoch caps
and say whether they satisfy them): the best top-m mixture, "all once" (every pool in proportion
to its size: each is seen once when the budget equals the total size), and the best single pool.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from curate.laws.planner_search import Infeasible, check_bounds, minimise_on_simplex, pairwise_descent

ACTIVE = 1e-9  # weights below this count as "pool not used"


@dataclass
class Constraints:
    """Per-pool limits, by pool name. Shares are fractions of the samples drawn (0..1).

    ``max_epochs`` caps the passes over every pool; ``epoch_caps`` {pool: epochs} caps single
    pools (it wins over ``max_epochs`` for the pools it names).
    """

    min_share: dict[str, float] = field(default_factory=dict)
    max_share: dict[str, float] = field(default_factory=dict)
    exclude: Sequence[str] = ()
    max_epochs: float | None = None
    epoch_caps: dict[str, float] = field(default_factory=dict)

    def epoch_cap_array(self, pools: Sequence[str]) -> np.ndarray | None:
        """Epoch cap per pool (inf where none), or None when no pool is capped."""
        default = math.inf if self.max_epochs is None else float(self.max_epochs)
        caps = np.array([float(self.epoch_caps.get(p, default)) for p in pools])
        return None if np.all(np.isinf(caps)) else caps

    def bounds(self, objective, budget: float) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) weight bounds; raises Infeasible when nothing can satisfy them."""
        pools = list(objective.pools)
        for name in list(self.min_share) + list(self.max_share) + list(self.exclude):
            if name not in pools:
                raise ValueError(f"unknown pool {name!r} in constraints; pools are {pools}")
        for what, shares in (("min", self.min_share), ("max", self.max_share)):
            for name, v in shares.items():
                if not (0.0 <= v <= 1.0):
                    raise ValueError(f"--{what}-share {name}={v}: a share must be in [0, 1]")
        if self.max_epochs is not None and not self.max_epochs > 0:
            raise ValueError(f"max epochs must be positive, got {self.max_epochs}")
        for name, v in self.epoch_caps.items():
            if name not in pools:
                raise ValueError(f"unknown pool {name!r} in epoch caps; pools are {pools}")
            if not v > 0:
                raise ValueError(f"epoch cap of pool {name} must be positive, got {v}")
        lower = np.array([float(self.min_share.get(p, 0.0)) for p in pools])
        upper = np.array([float(self.max_share.get(p, 1.0)) for p in pools])
        upper = np.minimum(upper, objective.weight_caps(budget, self.epoch_cap_array(pools)))
        for name in self.exclude:
            i = pools.index(name)
            if lower[i] > 0:
                raise Infeasible(f"pool {name} is excluded but has a minimum share")
            upper[i] = 0.0
        if not np.any(upper > 0):
            raise Infeasible("all pools are excluded")
        check_bounds(lower, upper, pools)
        return lower, upper

    def allowed(self, objective) -> np.ndarray:
        return np.array([p not in set(self.exclude) for p in objective.pools])


@dataclass
class Candidate:
    """One evaluated mixture (a baseline or a top-m member)."""

    name: str
    weights: np.ndarray
    loss: float
    feasible: bool = True
    m: int | None = None

    def to_dict(self, pools: Sequence[str]) -> dict:
        return {"name": self.name, "m": self.m, "loss": self.loss, "feasible": self.feasible,
                "weights": {p: float(w) for p, w in zip(pools, self.weights) if w > ACTIVE}}


@dataclass
class Plan:
    """The chosen mixture for one budget, with per-pool numbers and baselines."""

    budget: float
    pools: list[str]
    sizes: np.ndarray
    weights: np.ndarray
    loss: float
    draws: float               # total samples / tokens drawn
    params: float | None       # model size (data-constrained law), else None
    metric: str
    top_m_only: bool
    m: int | None              # m of the chosen mixture when it is a top-m mixture
    baselines: dict[str, Candidate]
    top_m: list[Candidate]
    order: list[str] = field(default_factory=list)   # pools best first, alone at the budget
    epoch_caps: np.ndarray | None = None              # per pool (inf: none), None: uncapped

    @property
    def samples(self) -> np.ndarray:
        return self.weights * self.draws

    @property
    def unique(self) -> np.ndarray:
        return np.minimum(self.samples, self.sizes)

    @property
    def epochs(self) -> np.ndarray:
        return self.samples / self.sizes

    @property
    def support(self) -> tuple[str, ...]:
        return tuple(p for p, w in zip(self.pools, self.weights) if w > ACTIVE)

    @property
    def cap_binding(self) -> np.ndarray:
        """Per pool: is its epoch cap binding (epochs at the cap, to 1e-6 relative)?"""
        if self.epoch_caps is None:
            return np.zeros(len(self.pools), dtype=bool)
        caps = np.asarray(self.epoch_caps, dtype=float)
        return np.isfinite(caps) & (self.epochs >= caps * (1.0 - 1e-6))

    def label(self) -> str:
        """Short description: 'top2' for a top-m mixture, else the pools used."""
        if self.m is not None:
            return f"top{self.m}"
        return "+".join(self.support)

    def per_pool(self) -> list[dict]:
        caps = (np.full(len(self.pools), math.inf) if self.epoch_caps is None
                else np.asarray(self.epoch_caps, dtype=float))
        return [{"pool": p, "weight": float(w), "samples": float(s), "unique": float(u),
                 "epochs": float(e), "size": float(n),
                 "epoch_cap": float(c) if math.isfinite(c) else None, "cap_binding": bool(bind)}
                for p, w, s, u, e, n, c, bind in zip(self.pools, self.weights, self.samples,
                                                     self.unique, self.epochs, self.sizes, caps,
                                                     self.cap_binding)]

    def to_dict(self) -> dict:
        return {"budget": self.budget, "draws": self.draws, "params": self.params,
                "metric": self.metric, "predicted": self.loss, "top_m_only": self.top_m_only,
                "m": self.m, "mixture": self.label(), "pools": self.per_pool(),
                "cap_binding": [p for p, b in zip(self.pools, self.cap_binding) if b],
                "top_m_order": list(self.order),
                "baselines": {k: c.to_dict(self.pools) for k, c in self.baselines.items()},
                "top_m": [c.to_dict(self.pools) for c in self.top_m]}


# ---------------------------------------------------------------------------------------------
# Candidate families
# ---------------------------------------------------------------------------------------------

def pool_order(objective, budget: float, allowed: np.ndarray) -> list[int]:
    """Allowed pool indices, best first: each pool's predicted loss alone at `budget`.

    One-hot weights through ``objective.loss_batch``; exact ties keep the pools' order.
    """
    idx = np.flatnonzero(np.asarray(allowed, dtype=bool))
    if idx.size == 0:
        return []
    vals = np.asarray(objective.loss_batch(np.eye(len(objective.pools))[idx], budget), float)
    return [int(i) for i in idx[np.lexsort((idx, vals))]]


def top_m_weights(sizes: np.ndarray, allowed: np.ndarray, order: Sequence[int] | None = None
                  ) -> list[tuple[int, np.ndarray]]:
    """(m, weights) for the union of the m best allowed pools, weights proportional to size.

    `order` ranks pool indices best first (:func:`pool_order`); without it, pool index order.
    """
    if order is None:
        order = [i for i in range(len(sizes)) if allowed[i]]
    else:
        order = [int(i) for i in order if allowed[i]]
    sizes = np.asarray(sizes, dtype=float)
    out = []
    for m in range(1, len(order) + 1):
        w = np.zeros(len(sizes))
        idx = order[:m]
        w[idx] = sizes[idx] / sizes[idx].sum()
        out.append((m, w))
    return out


def _within(w: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> bool:
    return bool(np.all(w >= lower - 1e-12) and np.all(w <= upper + 1e-12))


def evaluate_top_m(objective, budget: float, allowed: np.ndarray, lower=None, upper=None,
                   order: Sequence[int] | None = None) -> list[Candidate]:
    """The top-m family at `budget`, pools ranked by :func:`pool_order` unless `order` is given."""
    if order is None:
        order = pool_order(objective, budget, allowed)
    fam = top_m_weights(np.asarray(objective.sizes, dtype=float), allowed, order)
    if not fam:
        return []
    W = np.array([w for _, w in fam])
    vals = objective.loss_batch(W, budget)
    return [Candidate(f"top{m}", w, float(v), m=m,
                      feasible=True if lower is None else _within(w, lower, upper))
            for (m, w), v in zip(fam, vals)]


def baselines(objective, budget: float, allowed: np.ndarray, lower, upper,
              top_m: list[Candidate]) -> dict[str, Candidate]:
    sizes = np.asarray(objective.sizes, dtype=float)
    out: dict[str, Candidate] = {}
    if top_m:
        best = min(top_m, key=lambda c: c.loss)
        out["best_top_m"] = Candidate(f"best top-m (top{best.m})", best.weights, best.loss,
                                      _within(best.weights, lower, upper), best.m)
    all_w = np.where(allowed, sizes, 0.0)
    all_w = all_w / all_w.sum()
    v = float(objective.loss_batch(all_w[None, :], budget)[0])
    out["all_once"] = Candidate("all pools, size-proportional", all_w, v,
                                _within(all_w, lower, upper))
    idx = np.flatnonzero(allowed)
    singles = np.eye(len(sizes))[idx]
    vals = objective.loss_batch(singles, budget)
    k = int(np.argmin(vals))
    out["best_pool_only"] = Candidate(f"best single pool ({objective.pools[idx[k]]})",
                                      singles[k], float(vals[k]), _within(singles[k], lower, upper))
    return out


# ---------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------

def _kinks(objective, budget):
    fn = getattr(objective, "kink_weights", None)
    if fn is None:
        return None
    return lambda i, lo, hi, limit, near_hi: fn(i, budget, lo, hi, limit, near_hi)


def plan_mixture(objective, budget: float, constraints: Constraints | None = None,
                 top_m_only: bool = False, starts: Sequence[np.ndarray] = (), seed: int = 0,
                 n_local: int | None = None, n_random: int = 48, grid_points: int = 1500) -> Plan:
    """The mixture minimising the predicted loss at `budget` (see the module docstring).

    top_m_only restricts the choice to the top-m family (the published method); otherwise any
    weights are allowed and the optimum is global over the constrained simplex (multi-start,
    see :mod:`laws.planner_search`), never worse than the best feasible top-m mixture.
    """
    try:
        budget = float(budget)
    except (TypeError, ValueError):
        raise Infeasible(f"the budget must be a positive number, got {budget!r}") from None
    if not (math.isfinite(budget) and budget > 0):
        raise Infeasible(f"the budget must be a positive number, got {budget!r}")
    constraints = constraints or Constraints()
    lower, upper = constraints.bounds(objective, budget)
    allowed = constraints.allowed(objective) & (upper > 0)
    order = pool_order(objective, budget, allowed)
    top = evaluate_top_m(objective, budget, allowed, lower, upper, order)
    feasible_top = [c for c in top if c.feasible]
    if top_m_only:
        if not feasible_top:
            raise Infeasible("no top-m mixture satisfies the constraints (shares / max epochs); "
                             "drop --top-m to search all mixtures")
        best = min(feasible_top, key=lambda c: c.loss)
        w, v, m = best.weights, best.loss, best.m
    else:
        P = len(objective.pools)
        f = lambda W: objective.loss_batch(W, budget)  # noqa: E731
        extra = [c.weights for c in feasible_top] + [np.asarray(s, float) for s in starts]
        if n_local is None:
            n_local = 3 if P <= 5 else 2
        w, v = minimise_on_simplex(f, lower, upper, extra, n_random=n_random, n_local=n_local,
                                   grid_points=grid_points, seed=seed,
                                   kink_weights=_kinks(objective, budget))
        if feasible_top:  # the multi-start includes them, so this holds; keep it explicit
            best = min(feasible_top, key=lambda c: c.loss)
            if best.loss < v:
                w, v = best.weights, best.loss
        w = np.where(w > ACTIVE, w, 0.0)
        w = w / w.sum()
        v = float(objective.loss_batch(w[None, :], budget)[0])
        m = next((c.m for c in top if np.max(np.abs(c.weights - w)) < 1e-6), None)
    info = objective.describe(w, budget)
    return Plan(budget=float(budget), pools=list(objective.pools),
                sizes=np.asarray(objective.sizes, dtype=float), weights=np.asarray(w, float),
                loss=float(v), draws=float(info["draws"]), params=info.get("params"),
                metric=getattr(objective, "metric", "loss"), top_m_only=top_m_only, m=m,
                baselines=baselines(objective, budget, allowed, lower, upper, top), top_m=top,
                order=[objective.pools[i] for i in order],
                epoch_caps=constraints.epoch_cap_array(objective.pools))


# ---------------------------------------------------------------------------------------------
# Sweep over budgets
# ---------------------------------------------------------------------------------------------

@dataclass
class Switch:
    """Where the chosen mixture changes between two budgets."""

    budget: float
    before: str
    after: str

    def to_dict(self) -> dict:
        return {"budget": self.budget, "from": self.before, "to": self.after}


@dataclass
class Sweep:
    plans: list[Plan]
    switches: list[Switch]
    infeasible: list[tuple[float, str]] = field(default_factory=list)  # (budget, reason) skipped

    def to_dict(self) -> dict:
        return {"budgets": [p.budget for p in self.plans],
                "plans": [{"budget": p.budget, "mixture": p.label(), "predicted": p.loss,
                           "draws": p.draws, "params": p.params,
                           "weights": {n: float(w) for n, w in zip(p.pools, p.weights)},
                           "epochs": {n: float(e) for n, e in zip(p.pools, p.epochs)},
                           "cap_binding": [n for n, b in zip(p.pools, p.cap_binding) if b],
                           "best_top_m": p.baselines["best_top_m"].loss
                           if "best_top_m" in p.baselines else None}
                          for p in self.plans],
                "switches": [s.to_dict() for s in self.switches],
                "infeasible": [{"budget": b, "reason": why} for b, why in self.infeasible]}


def parse_sweep(spec: str, default_points: int = 25) -> np.ndarray:
    """'LO:HI[:POINTS]' -> log-spaced budgets."""
    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"--sweep expects LO:HI[:POINTS], got {spec!r}")
    try:
        lo, hi = float(parts[0]), float(parts[1])
        points = int(float(parts[2])) if len(parts) == 3 else default_points
    except ValueError:
        raise ValueError(f"--sweep expects numbers LO:HI[:POINTS], got {spec!r}") from None
    if not (0 < lo < hi) or points < 2:
        raise ValueError(f"--sweep needs 0 < LO < HI and at least 2 points, got {spec!r}")
    return np.geomspace(lo, hi, points)


def _crossing(objective, lo: float, hi: float, w_a: np.ndarray, w_b: np.ndarray) -> float:
    """Budget in [lo, hi] where mixtures w_a and w_b predict the same loss (bisection in log)."""
    W = np.array([w_a, w_b])

    def diff(logb):
        v = objective.loss_batch(W, math.exp(logb))
        return v[0] - v[1]

    a, b = math.log(lo), math.log(hi)
    da = diff(a)
    for _ in range(60):
        mid = 0.5 * (a + b)
        dm = diff(mid)
        if (dm > 0) == (da > 0):
            a, da = mid, dm
        else:
            b = mid
    return math.exp(0.5 * (a + b))


def plan_sweep(objective, budgets: Sequence[float], constraints: Constraints | None = None,
               top_m_only: bool = False, seed: int = 0, refine: bool = True) -> Sweep:
    """Plans across budgets (warm-started) and the budgets where the chosen mixture switches.

    Budgets the constraints cannot satisfy (e.g. more samples than the epoch caps let the pools
    give) are skipped and listed in ``Sweep.infeasible``; Infeasible only when none is left.
    Top-m mode locates each switch by bisection on the crossing of the two mixtures' predicted
    losses (each top-m mixture with the pools ranked at its own budget); unrestricted mode reports a switch where the set of pools used changes, at the
    geometric mid-point of the two budgets (refine=True bisects it further on the support).
    """
    constraints = constraints or Constraints()
    plans: list[Plan] = []
    infeasible: list[tuple[float, str]] = []
    prev = None
    for B in budgets:
        starts = [] if prev is None else [prev.weights]
        # Warm start from the previous budget's optimum; one local refinement per budget.
        try:
            plans.append(plan_mixture(objective, float(B), constraints, top_m_only,
                                      starts=starts, seed=seed, n_local=1, n_random=16,
                                      grid_points=300))
        except Infeasible as exc:  # e.g. budgets beyond what the epoch caps let the pools give
            infeasible.append((float(B), str(exc)))
            continue
        prev = plans[-1]
    if not plans:
        B, why = infeasible[0]
        raise Infeasible(f"no budget of the sweep can be planned (at {B:.3g}: {why})")
    switches: list[Switch] = []
    for p0, p1 in zip(plans[:-1], plans[1:]):
        if p0.label() == p1.label():
            continue
        if p0.m is not None and p1.m is not None and top_m_only:
            # The two top-m mixtures as ranked at their own budgets.
            at = _crossing(objective, p0.budget, p1.budget, p0.weights, p1.weights)
        else:
            lo, hi, lab0 = p0.budget, p1.budget, p0.label()
            steps = 6 if refine else 0  # each halves the log-budget bracket
            for _ in range(steps):
                mid = math.sqrt(lo * hi)
                pm = plan_mixture(objective, mid, constraints, top_m_only,
                                  starts=[p0.weights, p1.weights], seed=seed, n_local=1,
                                  n_random=8, grid_points=200)
                if pm.label() == lab0:
                    lo = mid
                else:
                    hi = mid
            at = math.sqrt(lo * hi)
        switches.append(Switch(at, p0.label(), p1.label()))
    return Sweep(plans, switches, infeasible)


# ---------------------------------------------------------------------------------------------
# Robustness
# ---------------------------------------------------------------------------------------------

def law_with_params(law, params: dict):
    """A copy of `law` with some parameters replaced (the :class:`laws.law.Law` protocol)."""
    return law.with_params(params)


@dataclass
class Robustness:
    draws: int
    stays_optimal: float        # fraction of draws where the plan is within `tolerance` of optimal
    same_choice: float          # fraction of draws whose own optimum uses the same pools / m
    interval: tuple[float, float]
    level: float
    tolerance: float
    regret_median: float

    def to_dict(self) -> dict:
        return {"draws": self.draws, "stays_optimal": self.stays_optimal,
                "same_choice": self.same_choice, "interval": list(self.interval),
                "level": self.level, "tolerance": self.tolerance,
                "regret_median": self.regret_median}


def bootstrap_robustness(objective, plan: Plan, draws: Sequence[dict], constraints=None,
                         level: float = 0.9, tolerance: float = 1e-3, max_draws: int = 100,
                         seed: int = 0) -> Robustness:
    """How the plan fares under bootstrap draws of the law's parameters.

    For each draw: the plan's predicted loss, and the draw's own optimum (re-planned, warm-
    started from the plan). `stays_optimal` counts draws where the plan's loss is within
    `tolerance` (relative) of that optimum; `same_choice` those choosing the same pools (or m).
    """
    draws = list(draws)[:max_draws]
    if not draws:
        raise ValueError("the law file has no bootstrap draws")
    chosen, regrets, same = [], [], 0
    for d in draws:
        obj = objective.with_law(law_with_params(objective.law, d))
        v_plan = float(obj.loss_batch(plan.weights[None, :], plan.budget)[0])
        best = plan_mixture(obj, plan.budget, constraints, plan.top_m_only, starts=[plan.weights],
                            seed=seed, n_local=1, n_random=8, grid_points=200)
        chosen.append(v_plan)
        regrets.append((v_plan - best.loss) / abs(best.loss))
        same += best.label() == plan.label()
    chosen_arr, reg = np.array(chosen), np.array(regrets)
    q = (1.0 - level) / 2.0
    return Robustness(draws=len(draws), stays_optimal=float(np.mean(reg <= tolerance)),
                      same_choice=same / len(draws),
                      interval=(float(np.quantile(chosen_arr, q)), float(np.quantile(chosen_arr, 1 - q))),
                      level=level, tolerance=tolerance, regret_median=float(np.median(reg)))


def range_warning(value: float, fitted: Sequence[float] | None, what: str = "budget",
                  factor: float = 2.0) -> str | None:
    """A warning when `value` lies more than `factor` x outside the fitted [min, max] range."""
    if not fitted or len(fitted) != 2 or fitted[0] is None or fitted[1] is None:
        return None
    lo, hi = float(fitted[0]), float(fitted[1])
    if value > factor * hi:
        return (f"{what} {value:.3g} is {value / hi:.1f}x the largest value the law was fitted "
                f"on ({hi:.3g}): an extrapolation")
    if value < lo / factor:
        return (f"{what} {value:.3g} is below the smallest value the law was fitted on "
                f"({lo:.3g}) by {lo / value:.1f}x: an extrapolation")
    return None


__all__ = ["Constraints", "Plan", "Candidate", "Sweep", "Switch", "Robustness", "Infeasible",
           "plan_mixture", "plan_sweep", "parse_sweep", "top_m_weights", "evaluate_top_m", "pool_order",
           "bootstrap_robustness", "law_with_params", "range_warning", "pairwise_descent"]

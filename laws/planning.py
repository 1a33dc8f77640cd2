"""Plan setup and the plan-file format ("curate-plan/1"): a law and a budget in, the plan dict out.

What `curate plan` does between reading the law file and writing the plan, as one library call:

    from curate.laws.lawfile import law_from_dict
    from curate.laws.planning import make_plan
    plan = make_plan(law_from_dict(data), 6.4e8, max_epochs=30)   # the dict `curate plan -o` writes

Setup, by law kind:

* QQT: the budget is samples drawn in the law's unit (`samples`, or `tokens` for a law counted
  in tokens); `unit="flops"` with `params=N` converts a FLOPs budget to tokens (C / (6 N)).
  Objective :class:`laws.planner_objectives.QQTObjective`; pools without a size are dropped.
* data-constrained / Chinchilla: the budget is FLOPs (default; the model size is chosen unless
  `params` is given) or tokens (needs `params`). Objective
  :class:`laws.planner_objectives.DataConstrainedObjective` with the pool sizes as unique tokens.

Pool sizes: the law's own, replaced by `run_sizes` when given ({poolK: size} from a `curate run`
output; that run decides which pools exist, and its pools are matched to the law's by order when
named otherwise), then `pool_sizes` overrides ({name: size}). Empty pools are left out, with a
warning. Reading a run directory is file I/O and stays with the caller (the CLI reads
RUN_DIR/stats.parquet, column :func:`size_column`); this module only sees the numbers.

Plan-file format (JSON object): format, law (its name or path as given), kind, unit, metric,
top_m_only, constraints {min_share, max_share, exclude, max_epochs}, plan (the
:class:`laws.planner.Plan` dict with the budget in the caller's unit and the bootstrap
`interval`), sweep (:class:`laws.planner.Sweep` dict, budgets in the caller's unit), robustness
(:class:`laws.planner.Robustness` dict, with bootstrap draws in the law) and warnings.
"""
from __future__ import annotations

from typing import Mapping, Sequence

FORMAT = "curate-plan/1"
UNITS = ("samples", "tokens", "flops")


def size_column(law) -> str:
    """The `curate run` stats column that measures pools in the law's unit (tokens or docs)."""
    return "tokens" if law.kind != "qqt" or law.unit == "tokens" else "docs"


def make_plan(law, budget: float | None = None, *, sweep: str | None = None,
              unit: str | None = None, params: float | None = None,
              pool_sizes: Mapping[str, float] | None = None,
              run_sizes: Mapping[str, float] | None = None, run_name: str = "the run",
              min_share: Mapping[str, float] | None = None,
              max_share: Mapping[str, float] | None = None, exclude: Sequence[str] = (),
              max_epochs: float | None = None, top_m: bool = False, max_draws: int = 100,
              law_name: str | None = None) -> dict:
    """The plan-file dict for `law` at `budget` and/or across a `sweep` ("LO:HI[:POINTS]").

    Raises ValueError (:class:`laws.planner_search.Infeasible` among them) with a one-line
    reason for impossible or inconsistent requests. See the module docstring for units, pool
    sizes and the format.
    """
    if budget is None and sweep is None:
        raise ValueError("give --budget (or --sweep LO:HI[:POINTS])")
    if budget is not None and not budget > 0:
        raise ValueError(f"--budget must be positive, got {budget:g}")
    if max_draws < 0:
        raise ValueError("--max-draws must be >= 0")
    min_share, max_share = dict(min_share or {}), dict(max_share or {})
    setup = _Setup(law, unit, params, pool_sizes or {}, run_sizes, run_name, min_share,
                   max_share, list(exclude), max_epochs)
    return _plan_dict(setup, budget, sweep, top_m, max_draws, law_name)


class _Setup:
    """Objective, constraints, unit conversion and warnings for one law and request."""

    def __init__(self, law, unit, params, overrides, run_sizes, run_name, min_share, max_share,
                 exclude, max_epochs):
        from curate.laws.planner import Constraints
        from curate.laws.planner_objectives import DataConstrainedObjective, QQTObjective

        self.law = law
        self.warnings: list[str] = []
        kind = law.kind
        if params is not None and not params > 0:
            raise ValueError(f"--params must be positive, got {params:g}")
        if unit is not None and unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
        self.to_draws = lambda x: x  # noqa: E731  (QQT with FLOPs: C -> tokens)
        if kind == "qqt":
            law_unit = law.unit
            unit = unit or ("tokens" if law_unit == "tokens" else "samples")
            if unit == "samples" and law_unit == "tokens":
                raise ValueError("this QQT law counts tokens: use --unit tokens (or flops with --params)")
            if unit == "tokens" and law_unit != "tokens":
                raise ValueError(f"this QQT law counts {law_unit}: use --unit samples")
            if unit == "flops":
                if law_unit != "tokens" or params is None:
                    raise ValueError("a FLOPs budget with a QQT law needs a law in tokens and --params N "
                                     "(tokens = FLOPs / (6 N))")
                N = float(params)
                self.to_draws = lambda C: C / (6.0 * N)  # noqa: E731
            elif params is not None:
                self.warnings.append("--params is ignored: a QQT law has no model size (it only "
                                     "converts a FLOPs budget to tokens)")
            sizes = self._pool_sizes(law.pools, law.pool_sizes, overrides, run_sizes, run_name)
            keep = [p for p in law.pools if p in sizes]
            if len(keep) < len(law.pools):
                law = law.subset(keep)
            objective = QQTObjective(law, [sizes[p] for p in keep])
        else:
            unit = unit or "flops"
            if unit == "samples":
                raise ValueError(f"a {kind} law plans in tokens or flops, not samples")
            if unit == "tokens" and params is None:
                raise ValueError("a token budget with a language-model law needs --params N")
            law_sizes = dict(getattr(law, "pool_sizes", None) or {})
            law_pools = list(law_sizes) if run_sizes is None else []
            sizes = self._pool_sizes(law_pools, law_sizes, overrides, run_sizes, run_name)
            objective = DataConstrainedObjective(law, list(sizes), list(sizes.values()),
                                                 unit=unit, params=params)
        self.unit = unit
        self.objective = objective
        pools = objective.pools
        for flag, shares in (("--min-share", min_share), ("--max-share", max_share)):
            for name in shares:
                if name not in pools:
                    raise ValueError(f"{flag}: unknown pool {name!r}; pools are {pools}")
        for name in exclude:
            if name not in pools:
                raise ValueError(f"--exclude: unknown pool {name!r}; pools are {pools}")
        if max_epochs is not None and not max_epochs > 0:
            raise ValueError(f"--max-epochs must be positive, got {max_epochs:g}")
        self.constraints = Constraints(min_share=min_share, max_share=max_share,
                                       exclude=exclude, max_epochs=max_epochs)

    def _pool_sizes(self, law_pools, law_sizes, overrides, run_sizes, run_name):
        sizes = dict(law_sizes)
        if run_sizes is not None:
            run_sizes = dict(run_sizes)
            if not law_pools or all(p in law_pools for p in run_sizes):
                mapped = run_sizes
            elif len(run_sizes) == len(law_pools):  # law pools named otherwise: match by order
                mapped = dict(zip(law_pools, run_sizes.values()))
                self.warnings.append(f"run pools {list(run_sizes)} matched to law pools {law_pools} by order")
            else:
                raise ValueError(f"run {run_name} has pools {list(run_sizes)} but the law knows "
                                 f"{law_pools}; name them with --pool-size instead")
            # The run defines which pools exist: law pools it lacks are left out.
            missing = [p for p in sizes if p not in mapped]
            if missing:
                self.warnings.append(f"pool(s) {', '.join(missing)} are not in {run_name} and are left out")
            sizes = dict(mapped)
        for name, value in overrides.items():
            if law_pools and name not in law_pools:
                raise ValueError(f"--pool-size: unknown pool {name!r}; the law knows {law_pools}")
            sizes[name] = float(value)
        for p in [p for p, v in sizes.items() if not v > 0]:
            self.warnings.append(f"pool {p} is empty (size 0) and is left out")
            del sizes[p]
        if not sizes:
            raise ValueError("no pools with a positive size: give --pool-size NAME=COUNT or --pools-from RUN_DIR")
        return sizes


def _plan_dict(setup: _Setup, budget, sweep, top_m, max_draws, law_name) -> dict:
    from curate.laws.planner import (bootstrap_robustness, parse_sweep, plan_mixture, plan_sweep,
                                     range_warning)

    obj = setup.objective
    c = setup.constraints
    fit = getattr(setup.law, "fit_info", None) or {}
    boot = getattr(setup.law, "bootstrap", None) or {}
    result: dict = {"format": FORMAT, "law": law_name, "kind": setup.law.kind,
                    "unit": setup.unit, "metric": getattr(obj, "metric", "loss"),
                    "top_m_only": bool(top_m),
                    "constraints": {"min_share": dict(c.min_share), "max_share": dict(c.max_share),
                                    "exclude": list(c.exclude), "max_epochs": c.max_epochs},
                    "plan": None, "sweep": None, "robustness": None, "warnings": setup.warnings}
    if budget is not None:
        plan = plan_mixture(obj, setup.to_draws(budget), c, top_m_only=top_m)
        pd = plan.to_dict()
        pd["budget"] = budget
        pd["interval"] = None
        if boot.get("draws") and max_draws > 0:
            rob = bootstrap_robustness(obj, plan, boot["draws"], c,
                                       level=float(boot.get("level", 0.9)), max_draws=max_draws)
            result["robustness"] = rob.to_dict()
            pd["interval"] = list(rob.interval)
        result["plan"] = pd
        for value, rng, what in ((plan.draws, fit.get("samples_range"), "samples drawn"),
                                 (plan.params, fit.get("params_range"), "model size")):
            if value is not None:
                msg = range_warning(value, rng, what)
                if msg:
                    setup.warnings.append(msg)
    if sweep is not None:
        budgets = parse_sweep(sweep)
        result_sweep = plan_sweep(obj, [setup.to_draws(b) for b in budgets], c, top_m_only=top_m)
        sd = result_sweep.to_dict()
        sd["budgets"] = [float(b) for b in budgets]
        scale = float(budgets[0]) / setup.to_draws(float(budgets[0]))  # draws -> budget unit
        for sw in sd["switches"]:
            sw["budget"] *= scale
        for row, b in zip(sd["plans"], budgets):
            row["budget"] = float(b)
        result["sweep"] = sd
        rng = fit.get("samples_range")
        if rng:
            far = [p.draws for p in result_sweep.plans if range_warning(p.draws, rng)]
            if far:
                setup.warnings.append(f"{len(far)} of {len(result_sweep.plans)} sweep budgets lie far outside "
                                      f"the fitted samples range {rng}")
    return result

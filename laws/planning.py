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

Limits of what was measured (a plan never claims more than the law's fit data supports):

* Epoch caps. By default no pool is planned beyond the largest epoch count in the law's fit data
  (fit info ``max_epochs_by_pool[POOL]``, else ``max_epochs``; the fitters record both). A law
  without them (e.g. released parameter sets) is planned without a cap and the plan warns that it
  carries no measured epoch range. ``max_epochs`` replaces the default cap for every pool (a
  warning says when it exceeds the measured maximum; ``inf`` lifts the cap). Every plan reports
  per pool its epochs, its cap and whether the cap binds.
* Saturation. The plan is re-planned at twice the budget; when the predicted gain is below
  ``saturation_eps`` (default 1e-3, i.e. 0.1 %) of the predicted loss the plan says the budget is
  saturated: more data of these pools buys almost nothing under this law.
* QQT reference point. Every pool's first-pass curve (a n / s)^b + d passes through 1 + d at
  n = s / a, and the order of pools by b reverses across it. A budget on the other side of s / a
  than all of the fit data, or (without a fitted range) below s / a, is warned about.
* Model size. A data-constrained / Chinchilla law fitted at a single model size (fit info
  ``params_range`` with min = max, as for probe observations) has no measured model-size term:
  planning at another size (a FLOPs budget picks one) is warned about, as is any FLOPs budget for
  a QQT law (it has no model-size term at all).
* Conservative parameters. With ``tau_quantile`` q (default 0.1; 0 or None: off), a parameter
  whose bootstrap interval reaches its bound is replaced by its conservative bootstrap quantile
  (:func:`laws.bounds.conservative_law`) and the notes join the warnings.

Quality (data-constrained laws): per-pool effective-data multipliers q_i
(:class:`laws.planner_objectives.DataConstrainedObjective`) come from ``quality`` ({pool: q},
e.g. `curate plan --quality NAME=MULT`), else from the law (attribute or fit info ``quality`` /
``multiplier`` / ``multipliers``), else 1 for every pool (size-proportional mixtures).

Pool sizes: the law's own, replaced by `run_sizes` when given ({poolK: size} from a `curate run`
output; that run decides which pools exist, and its pools are matched to the law's by order when
named otherwise), then `pool_sizes` overrides ({name: size}). Empty pools are left out, with a
warning. Reading a run directory is file I/O and stays with the caller (the CLI reads
RUN_DIR/stats.parquet, column :func:`size_column`); this module only sees the numbers.

Plan-file format (JSON object): format, law (its name or path as given), kind, unit, size_unit
(what the pools' `size` counts: docs, bytes, chars or tokens, :func:`size_unit`), metric,
top_m_only, constraints {min_share, max_share, exclude, max_epochs, epoch_caps {pool: cap},
epoch_cap_source ("fit data" | "--max-epochs" | null), measured_max_epochs}, quality ({pool: q}
or null, data-constrained laws), conservative (the parameters replaced, or null), plan (the
:class:`laws.planner.Plan` dict with the budget in the caller's unit, the bootstrap `interval`,
per pool `epochs`, `epoch_cap`, `cap_binding`, and `saturation` {eps, gain_at_double_budget,
relative_gain, saturated}), sweep (:class:`laws.planner.Sweep` dict, budgets in the caller's
unit), robustness (:class:`laws.planner.Robustness` dict, with bootstrap draws in the law) and
warnings.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from curate.laws.prediction import require_finite_plan

FORMAT = "curate-plan/1"
UNITS = ("samples", "tokens", "flops")


def size_column(law) -> str:
    """The `curate run` stats column that measures pools in the law's unit: `chars` for a law
    fitted on `curate probe` output (its tokens are UTF-8 bytes; characters ~ bytes, exact for
    ASCII, fewer for accented text), else tokens (whitespace words x 1.3) or docs."""
    if ((getattr(law, "fit_info", None) or {}).get("token_unit")) == "bytes":
        return "chars"
    return "tokens" if law.kind != "qqt" or law.unit == "tokens" else "docs"


def size_unit(law, run_column: str | None = None) -> str:
    """What a plan's pool sizes count (plan-file `size_unit`, read by `curate materialize`): the
    run stats column they were read from (`run_column`), else the law's own sizes: bytes for a
    law fitted on `curate probe` output, else tokens or docs as the law's unit says."""
    if run_column is not None:
        return run_column
    if ((getattr(law, "fit_info", None) or {}).get("token_unit")) == "bytes":
        return "bytes"
    return "tokens" if law.kind != "qqt" or law.unit == "tokens" else "docs"


def make_plan(law, budget: float | None = None, *, sweep: str | None = None,
              unit: str | None = None, params: float | None = None,
              pool_sizes: Mapping[str, float] | None = None,
              run_sizes: Mapping[str, float] | None = None, run_name: str = "the run",
              min_share: Mapping[str, float] | None = None,
              max_share: Mapping[str, float] | None = None, exclude: Sequence[str] = (),
              max_epochs: float | None = None, top_m: bool = False, max_draws: int = 100,
              law_name: str | None = None, quality: Mapping[str, float] | None = None,
              law_quality: Mapping[str, float] | None = None, tau_quantile: float | None = 0.1,
              saturation_eps: float = 1e-3, replay: dict | None = None,
              observations=None, run_column: str | None = None) -> dict:
    """The plan-file dict for `law` at `budget` and/or across a `sweep` ("LO:HI[:POINTS]").

    Raises ValueError (:class:`laws.planner_search.Infeasible` among them) with a one-line
    reason for impossible or inconsistent requests. See the module docstring for units, pool
    sizes, epoch caps, quality multipliers and the format.

    quality: {pool: multiplier} (--quality; wins); law_quality: the law file's own multipliers
    when the caller read them from the file (else the law object's are used); tau_quantile:
    conservative quantile for at-bound parameters (0 / None: off); saturation_eps: relative gain
    from doubling the budget below which the plan is called saturated; replay: a `curate
    validate` result whose `difference_error` is the error bar of the plan's claim
    (:func:`plan_claim`); observations: the probe observations the law was fitted on, to refit
    each probe seed alone and report how often their plans agree (:func:`seed_agreement`);
    run_column: the run stats column `run_sizes` were read from (default :func:`size_column`),
    recorded as the plan's `size_unit`.
    """
    if budget is None and sweep is None:
        raise ValueError("give --budget (or --sweep LO:HI[:POINTS])")
    if budget is not None and not budget > 0:
        raise ValueError(f"--budget must be positive, got {budget:g}")
    if max_draws < 0:
        raise ValueError("--max-draws must be >= 0")
    if not (saturation_eps >= 0 and math.isfinite(saturation_eps)):
        raise ValueError(f"--saturation-eps must be a number >= 0, got {saturation_eps!r}")
    if tau_quantile is not None and not 0 <= tau_quantile < 0.5:
        raise ValueError(f"--tau-quantile must be in [0, 0.5) (0 or none: off), got {tau_quantile!r}")
    min_share, max_share = dict(min_share or {}), dict(max_share or {})
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # non-finite: an error below
        setup = _Setup(law, unit, params, pool_sizes or {}, run_sizes, run_name, min_share,
                       max_share, list(exclude), max_epochs, dict(quality or {}), tau_quantile,
                       law_quality)
        result = _plan_dict(setup, budget, sweep, top_m, max_draws, law_name, saturation_eps, replay)
    require_finite_plan(result)
    result["size_unit"] = size_unit(law, (run_column or size_column(law)) if run_sizes is not None else None)
    if observations is not None and result["plan"] is not None:
        agreement = seed_agreement(
            result["plan"], law, observations, budget, unit=unit, params=params,
            pool_sizes=pool_sizes, run_sizes=run_sizes, run_name=run_name, min_share=min_share,
            max_share=max_share, exclude=exclude, max_epochs=max_epochs, top_m=top_m,
            max_draws=0, quality=quality, law_quality=law_quality, tau_quantile=tau_quantile)
        result["seed_agreement"] = agreement
        if agreement is not None and agreement["agree"] * 2 <= agreement["of"]:
            result["warnings"].append(f"the plan is not stable across probe seeds: {agreement['why']}")
    return result


class _Setup:
    """Objective, constraints, unit conversion and warnings for one law and request."""

    def __init__(self, law, unit, params, overrides, run_sizes, run_name, min_share, max_share,
                 exclude, max_epochs, quality, tau_quantile, law_quality=None):
        from curate.laws.planner import Constraints
        from curate.laws.planner_objectives import DataConstrainedObjective, QQTObjective

        self.law = law  # as given: fit info and bootstrap draws are read from it
        self.warnings: list[str] = []
        self.quality: dict[str, float] | None = None
        self.params = params
        kind = law.kind
        if quality and kind == "qqt":
            raise ValueError("--quality applies to data-constrained / Chinchilla laws; a QQT law's "
                             "pools carry their own utility b and half-life tau")
        for name, q in quality.items():
            if not (math.isfinite(q) and q > 0):
                raise ValueError(f"--quality {name}={q:g}: a multiplier must be positive")
        law, self.conservative = self._conservative(law, tau_quantile)
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
                self.warnings.append(
                    f"a QQT law has no model-size term: the FLOPs budget becomes tokens at N = "
                    f"{N:.3g} ({_fitted_at(law)}), assuming the law's error-vs-data curve holds "
                    f"for that model size")
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
            q = self._quality(law, list(sizes), quality, law_quality)
            objective = DataConstrainedObjective(law, list(sizes), list(sizes.values()),
                                                 unit=unit, params=params, quality=q)
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
        caps = self._epoch_caps(pools, max_epochs)
        if max_epochs is not None and math.isinf(max_epochs):
            max_epochs = None  # `--max-epochs inf`: no cap at all
        self.constraints = Constraints(min_share=min_share, max_share=max_share,
                                       exclude=exclude, max_epochs=max_epochs, epoch_caps=caps)

    def cap_hint(self) -> str:
        """Appended to an Infeasible message when the epoch caps come from the fit data."""
        if self.cap_source != "fit data":
            return ""
        return (f" (epoch caps from the law's fit data, at most {self.measured_max_epochs:.3g} "
                f"epochs: give --max-epochs to plan beyond what was measured)")

    # -- limits of what was measured --------------------------------------------------------
    def _conservative(self, law, quantile):
        """The law with at-bound parameters at a conservative bootstrap quantile (laws.bounds)."""
        if not quantile:
            return law, None
        try:
            from curate.laws.bounds import conservative_law
        except ModuleNotFoundError as exc:  # pragma: no cover - laws.bounds ships with laws/
            if exc.name != "curate.laws.bounds":
                raise
            return law, None
        moved, notes = conservative_law(law, quantile=float(quantile))
        self.warnings.extend(notes)
        record = ((getattr(moved, "fit_info", None) or {}).get("conservative")
                  if moved is not law else None)
        return moved, record or None

    def _epoch_caps(self, pools, max_epochs) -> dict[str, float]:
        """{pool: cap} from the fit data; None entries when --max-epochs replaces them."""
        fit = getattr(self.law, "fit_info", None) or {}
        overall = fit.get("max_epochs")
        by_pool = {p: float(v) for p, v in (fit.get("max_epochs_by_pool") or {}).items()
                   if v is not None}
        measured = [float(overall)] if overall is not None else []
        measured += list(by_pool.values())
        self.measured_max_epochs = max(measured) if measured else None
        if max_epochs is not None:
            self.cap_source = "--max-epochs"
            if self.measured_max_epochs is None:
                self.warnings.append(
                    f"the law carries no measured epoch range (its fit info has no max_epochs): "
                    f"--max-epochs {max_epochs:g} cannot be checked against what was measured")
            elif max_epochs > self.measured_max_epochs * (1 + 1e-9):
                self.warnings.append(
                    f"--max-epochs {max_epochs:g} exceeds the largest epoch count in the law's fit "
                    f"data ({self.measured_max_epochs:.3g}): pools may be repeated beyond what was "
                    f"measured, where the law extrapolates (repetition is predicted never to hurt)")
            return {}
        if not measured:
            self.cap_source = None
            self.warnings.append(
                "the law carries no measured epoch range (its fit info has no max_epochs): "
                "planning without an epoch cap; the law predicts that repetition never hurts, "
                "so give --max-epochs to stay within what was measured")
            return {}
        self.cap_source = "fit data"
        caps = {}
        for p in pools:
            cap = by_pool.get(p, None if overall is None else float(overall))
            if cap is not None:
                caps[p] = cap
        return caps

    def _quality(self, law, pools, given, law_quality=None):
        """Per-pool effective-data multipliers: --quality, else the law's, else None (all 1)."""
        unknown = [p for p in given if p not in pools]
        if unknown:
            raise ValueError(f"--quality: unknown pool {unknown[0]!r}; pools are {pools}")
        source = "--quality"
        mult = dict(given)
        if not mult:
            mult, source = _law_quality(law, law_quality), "the law file"
            if mult:
                extra = [p for p in mult if p not in pools]
                if extra:
                    self.warnings.append(f"quality multipliers for pool(s) {', '.join(extra)} "
                                         f"are not used: the plan has pools {pools}")
        if not mult:
            return None
        missing = [p for p in pools if p not in mult]
        if missing:
            self.warnings.append(f"no quality multiplier for pool(s) {', '.join(missing)} "
                                 f"(from {source}): using 1")
        self.quality = {p: float(mult.get(p, 1.0)) for p in pools}
        return [self.quality[p] for p in pools]

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


def _plan_dict(setup: _Setup, budget, sweep, top_m, max_draws, law_name,
               saturation_eps: float = 1e-3, replay: dict | None = None) -> dict:
    from curate.laws.planner import (bootstrap_robustness, parse_sweep, plan_mixture, plan_sweep,
                                     range_warning)
    from curate.laws.planner_search import Infeasible

    obj = setup.objective
    c = setup.constraints
    fit = getattr(setup.law, "fit_info", None) or {}
    boot = getattr(setup.law, "bootstrap", None) or {}
    result: dict = {"format": FORMAT, "law": law_name, "kind": setup.law.kind,
                    "unit": setup.unit, "metric": getattr(obj, "metric", "loss"),
                    "top_m_only": bool(top_m),
                    "constraints": {"min_share": dict(c.min_share), "max_share": dict(c.max_share),
                                    "exclude": list(c.exclude), "max_epochs": c.max_epochs,
                                    "epoch_caps": dict(c.epoch_caps),
                                    "epoch_cap_source": setup.cap_source,
                                    "measured_max_epochs": setup.measured_max_epochs},
                    "quality": setup.quality, "conservative": setup.conservative,
                    "plan": None, "sweep": None, "robustness": None, "warnings": setup.warnings}
    if budget is not None:
        try:
            plan = plan_mixture(obj, setup.to_draws(budget), c, top_m_only=top_m)
        except Infeasible as exc:
            raise Infeasible(f"{exc}{setup.cap_hint()}") from None
        pd = plan.to_dict()
        pd["budget"] = budget
        pd["interval"] = None
        pd["saturation"] = _saturation(obj, plan, c, top_m, saturation_eps)
        if boot.get("draws") and max_draws > 0:
            rob = bootstrap_robustness(obj, plan, _draws_as_planned(boot["draws"], setup.conservative), c,
                                       level=float(boot.get("level", 0.9)), max_draws=max_draws)
            result["robustness"] = rob.to_dict()
            pd["interval"] = list(rob.interval)
        pd["claim"] = plan_claim(pd, fit, replay)
        result["plan"] = pd
        single_size = _single_model_size(fit)
        for value, rng, what in ((plan.draws, fit.get("samples_range"), "samples drawn"),
                                 (plan.params, None if single_size else fit.get("params_range"),
                                  "model size")):
            if value is not None:
                msg = range_warning(value, rng, what)
                if msg:
                    setup.warnings.append(msg)
        setup.warnings.extend(_model_size_warnings(setup, plan))
        binding = pd["cap_binding"]
        if binding:
            src = ("the fit data's epoch range" if setup.cap_source == "fit data"
                   else "--max-epochs")
            setup.warnings.append(f"epoch cap from {src} binds for {', '.join(binding)}: the "
                                  f"unconstrained optimum would repeat them more")
        sat = pd["saturation"]
        if sat and sat["saturated"]:
            setup.warnings.append(
                f"saturated: doubling the budget is predicted to gain only "
                f"{sat['gain_at_double_budget']:.3g} ({sat['relative_gain']:.3%} of the predicted "
                f"{result['metric']}; threshold {saturation_eps:.3%}): more data from these pools "
                f"buys almost nothing under this law")
        if obj.kind == "qqt":
            setup.warnings.extend(_reference_point_warnings(setup.objective.law, [plan.draws],
                                                            fit.get("samples_range")))
            setup.warnings.extend(_gap_warnings(setup.objective, plan.weights, fit))
    if sweep is not None:
        budgets = parse_sweep(sweep)
        try:
            result_sweep = plan_sweep(obj, [setup.to_draws(b) for b in budgets], c,
                                      top_m_only=top_m)
        except Infeasible as exc:
            raise Infeasible(f"{exc}{setup.cap_hint()}") from None
        sd = result_sweep.to_dict()
        sd["budgets"] = [float(b) for b in budgets]
        scale = float(budgets[0]) / setup.to_draws(float(budgets[0]))  # draws -> budget unit
        for sw in sd["switches"]:
            sw["budget"] *= scale
        exact = {setup.to_draws(float(b)): float(b) for b in budgets}
        for row in sd["plans"] + sd["infeasible"]:
            row["budget"] = exact.get(row["budget"], row["budget"] * scale)
        result["sweep"] = sd
        if sd["infeasible"]:
            setup.warnings.append(
                f"{len(sd['infeasible'])} of {len(budgets)} sweep budgets (from "
                f"{sd['infeasible'][0]['budget']:.3g} {setup.unit}) cannot be planned and are left "
                f"out: {sd['infeasible'][0]['reason']}")
        rng = fit.get("samples_range")
        if rng:
            far = [p.draws for p in result_sweep.plans if range_warning(p.draws, rng)]
            if far:
                setup.warnings.append(f"{len(far)} of {len(result_sweep.plans)} sweep budgets lie far outside "
                                      f"the fitted samples range {rng}")
        capped = [p for p in result_sweep.plans if p.cap_binding.any()]
        if capped:
            setup.warnings.append(f"the epoch cap binds in {len(capped)} of "
                                  f"{len(result_sweep.plans)} sweep budgets (from "
                                  f"{capped[0].budget * scale:.3g} {setup.unit})")
        if obj.kind == "qqt":
            for msg in _reference_point_warnings(setup.objective.law,
                                                 [p.draws for p in result_sweep.plans], rng,
                                                 what="sweep budgets"):
                if msg not in setup.warnings:
                    setup.warnings.append(msg)
    return result


# ---------------------------------------------------------------------------------------------
# Warnings about what the law has not measured
# ---------------------------------------------------------------------------------------------

def _saturation(obj, plan, constraints, top_m, eps) -> dict:
    """Predicted gain from doubling the budget (re-planned; the same mixture when that is
    infeasible under the caps), absolute and relative to the plan's predicted loss."""
    from curate.laws.planner import plan_mixture
    from curate.laws.planner_search import Infeasible

    import numpy as np

    B2 = 2.0 * plan.budget
    same = float(obj.loss_batch(plan.weights[None, :], B2)[0])
    best = same
    replanned = True
    try:
        best = min(best, plan_mixture(obj, B2, constraints, top_m_only=top_m,
                                      starts=[plan.weights], n_local=1, n_random=8,
                                      grid_points=300).loss)
    except Infeasible:
        replanned = False
    gain = float(plan.loss - best)
    rel = gain / abs(plan.loss) if plan.loss else float("inf")
    return {"eps": float(eps), "gain_at_double_budget": gain, "relative_gain": float(rel),
            "saturated": bool(np.isfinite(rel) and rel < eps), "replanned": replanned}


def _single_model_size(fit) -> float | None:
    """The one model size the law was fitted at (params_range with min = max), else None."""
    rng = fit.get("params_range")
    if not rng or len(rng) != 2 or rng[0] is None or rng[1] is None:
        return None
    lo, hi = float(rng[0]), float(rng[1])
    return lo if lo > 0 and hi <= lo * (1 + 1e-6) else None


def _fitted_at(law) -> str:
    fit = getattr(law, "fit_info", None) or {}
    n = _single_model_size(fit)
    if n is not None:
        return f"the law was fitted at N = {n:.3g} only"
    rng = fit.get("params_range")
    if rng and rng[0] is not None:
        return f"the law was fitted at N = {float(rng[0]):.3g} .. {float(rng[1]):.3g}"
    return "the law records no model size"


def _model_size_warnings(setup, plan) -> list[str]:
    """Planning an LM law fitted at one model size at another size: no model-size term."""
    if setup.law.kind == "qqt" or plan.params is None:
        return []
    fit = getattr(setup.law, "fit_info", None) or {}
    n_fit = _single_model_size(fit)
    if n_fit is None or abs(plan.params / n_fit - 1.0) <= 0.01:
        return []
    how = ("the planner chose it from the law's model-size term A / N^alpha, which that fit did "
           "not measure" if setup.params is None
           else "the law's A / N^alpha term was not measured")
    return [f"the law was fitted at a single model size (N = {n_fit:.3g}): it has no measured "
            f"model-size term, and the plan's model size N = {plan.params:.3g} is an "
            f"extrapolation ({how}); plan with --unit tokens --params {n_fit:.3g}, or fit "
            f"observations at several model sizes"]


def _scale_vector(law):
    import numpy as np

    a = np.asarray(getattr(law, "a"), dtype=float).reshape(-1)
    return np.broadcast_to(a, (len(law.pools),)) if a.size in (1, len(law.pools)) else None


def _reference_point_warnings(law, draws, samples_range, what: str = "budget") -> list[str]:
    """QQT: a budget on the other side of n = s / a than the fit data (see the module docs)."""
    import numpy as np

    a = _scale_vector(law)
    if a is None or not np.all(a > 0):
        return []
    refs = float(law.normalizer) / a  # per pool; equal when the law has one shared scale
    draws = np.asarray(draws, dtype=float)
    lo = hi = None
    if samples_range and samples_range[0] is not None and samples_range[1] is not None:
        lo, hi = float(samples_range[0]), float(samples_range[1])
    flagged = []
    for p, ref in zip(law.pools, refs):
        if lo is not None:
            if hi <= ref:
                bad = draws > ref  # fitted only below the reference point
            elif lo >= ref:
                bad = draws < ref  # fitted only above it
            else:
                continue  # the fit data straddles n = s / a
        else:
            bad = draws < ref  # released laws live above it (errors below 1 + d)
        if np.any(bad):
            flagged.append((p, ref, int(np.sum(bad))))
    if not flagged:
        return []
    ref = flagged[0][1]
    names = [p for p, _, _ in flagged]
    one = len({r for _, r, _ in flagged}) == 1
    where = (f"n = s/a = {ref:.3g} samples" if one
             else "n = s/a_i (" + ", ".join(f"{p}: {r:.3g}" for p, r, _ in flagged) + ")")
    side = (f"the law was fitted only on the other side (samples {lo:.3g} .. {hi:.3g})"
            if lo is not None else "the law records no fitted sample range")
    count = "" if len(draws) == 1 else f"{flagged[0][2]} of {len(draws)} "
    pools = "every pool" if len(names) == len(law.pools) else ", ".join(names)
    return [f"{count}{what} on the far side of {where}, where the first-pass curve of "
            f"{pools} passes through E = 1 + d and the order of pools by b reverses; {side}: "
            f"the pool ranking there is an extrapolation"]


def _law_quality(law, given=None) -> dict[str, float]:
    """Per-pool quality multipliers: `given` (the file's), else the law's (attribute or fit
    info ``quality`` / ``multiplier`` / ``multipliers``), else {}."""
    fit = getattr(law, "fit_info", None) or {}
    for src in ({"quality": given}, law, fit):
        for key in ("quality", "multiplier", "multipliers"):
            value = getattr(src, key, None) if src is law else src.get(key)
            if isinstance(value, Mapping) and value:
                out = {}
                for p, q in value.items():
                    try:
                        q = float(q)
                    except (TypeError, ValueError):
                        raise ValueError(f"law file: quality multiplier of pool {p!r} must be a "
                                         f"number, got {q!r}") from None
                    if not (math.isfinite(q) and q > 0):
                        raise ValueError(f"law file: quality multiplier of pool {p!r} must be "
                                         f"positive, got {q!r}")
                    out[str(p)] = q
                return out
    return {}


def _gap_warnings(objective, weights, fit: dict, factor: float = 10.0) -> list[str]:
    """Pools a plan uses at a gap between repetitions more than `factor` times beyond the
    largest gap ratio of the fit data (fit.gap_ratio_max; 1 when it is not recorded), when the
    law's gamma (how tau stretches with the gap) was assumed rather than fitted."""
    law = objective.law
    gamma = fit.get("gamma") if isinstance(fit.get("gamma"), dict) else {}
    if not fit or law.gamma == 0:
        return []
    w = np.asarray(weights, dtype=float)
    used = w > 0
    ratio = np.where(used, objective.sizes / np.where(used, w, 1.0) / law.gaps, 0.0)
    measured = float(gamma.get("gap_ratio_max") or fit.get("gap_ratio_max") or 1.0)
    far = [f"{p} {r:.3g}x" for p, r in zip(law.pools, ratio) if r > factor * measured]
    if not far:
        return []
    how = (f"fitted (gamma = {law.gamma:.3g}) only over gap ratios up to {measured:.3g}"
           if gamma.get("fitted") else f"assumed (gamma = {law.gamma:g}), not fitted")
    return [f"the plan uses pools at gaps between repetitions beyond where their half-lives were "
            f"measured ({', '.join(far)}); how tau stretches with the gap is {how}, so their "
            f"decay per pass is extrapolated: check with a replay"]


# ---------------------------------------------------------------------------------------------
# How sure the plan is: a win is claimed only beyond the error of what predicted it
# ---------------------------------------------------------------------------------------------

def plan_claim(plan: dict, fit: dict, replay: dict | None = None) -> dict:
    """Whether the plan's predicted advantage over its feasible baselines is larger than the
    error of the predictions behind it, and what to use otherwise.

    The error bar is, in order of preference: the replay's validated error of predicted
    *differences* (`replay["difference_error"]`, from `curate validate`: trained, not fitted);
    else the law's own held-out error on runs it was not fitted on (fit.model_selection's
    held-out runs, else hold-out-largest, relative) times the predicted loss: an error of
    levels, a conservative bar for a difference. Without either, the gain is the law's claim
    only and is marked unvalidated. When the gain is within the bar, the recommendation is the
    simplest feasible baseline (fewest pools) predicted within the bar of the plan.
    """
    feasible = {k: b for k, b in (plan.get("baselines") or {}).items() if b.get("feasible")}
    predicted = float(plan["predicted"])
    if not feasible:
        return {"recommended": "plan", "predicted_gain": None, "error_bar": None,
                "error_source": None, "why": "no baseline satisfies the constraints to compare with"}
    best_key = min(feasible, key=lambda k: feasible[k]["loss"])
    gain = float(feasible[best_key]["loss"]) - predicted
    mixture = {r["pool"]: float(r["weight"]) for r in plan.get("pools") or [] if r["weight"] > 0}
    same = [k for k, b in feasible.items() if mixture and set(b.get("weights") or {}) == set(mixture)
            and all(abs(float(b["weights"][p]) - w) <= 1e-9 for p, w in mixture.items())]
    if same:
        name = feasible[min(same, key=lambda k: len(feasible[k].get("weights") or {}))]["name"]
        return {"recommended": "plan", "predicted_gain": gain, "best_baseline": best_key,
                "error_bar": None, "error_source": None, "validated": None,
                "why": f"the plan is a baseline itself ({name}): nothing to claim over it"}
    measured = _measured_fallback(plan, replay, feasible)
    if measured is not None:
        return measured
    bar, source = None, None
    if replay and replay.get("difference_error") is not None:
        bar, source = float(replay["difference_error"]), "replay (trained at reduced scale)"
    else:
        rel = _heldout_relative_error(fit)
        if rel is not None:
            bar, source = rel[0] * predicted, f"law's {rel[1]} relative error x predicted loss"
    out = {"predicted_gain": gain, "best_baseline": best_key, "error_bar": bar,
           "error_source": source}
    if bar is None:
        return {**out, "recommended": "plan", "validated": False,
                "why": f"predicted gain {gain:.4g} over {feasible[best_key]['name']} is unvalidated: "
                       "no held-out error or replay to compare it with (run `curate validate`)"}
    if gain > bar:
        return {**out, "recommended": "plan", "validated": source.startswith("replay"),
                "why": f"predicted gain {gain:.4g} over {feasible[best_key]['name']} exceeds the "
                       f"error bar {bar:.4g} ({source})"}
    close = [k for k, b in feasible.items() if float(b["loss"]) <= predicted + bar]
    simplest = min(close, key=lambda k: (len(feasible[k].get("weights") or {}), feasible[k]["loss"]))
    return {**out, "recommended": simplest, "validated": source.startswith("replay"),
            "why": f"predicted gain {gain:.4g} is within the error bar {bar:.4g} ({source}): the "
                   f"law cannot tell the plan from {feasible[simplest]['name']}, the simpler choice"}


def replays_this_plan(plan: dict, replay: dict) -> bool:
    """Whether `replay` (a `curate validate` result) trained this plan: same budget (to rounding)
    and, where the replay names it, the same mixture. `plan` is the plan file's "plan" section."""
    rp = replay.get("plan") if isinstance(replay.get("plan"), dict) else {}
    try:
        same_budget = math.isclose(float(rp.get("budget")), float(plan.get("budget")), rel_tol=1e-9)
    except (TypeError, ValueError):
        same_budget = rp.get("budget") == plan.get("budget")
    return same_budget and rp.get("mixture") in (None, plan.get("mixture"))


def _measured_fallback(plan: dict, replay: dict | None, feasible: dict) -> dict | None:
    """A replay that trained this plan and measured it losing to a feasible baseline (mean
    beyond one seed s.d.) decides: what was trained outranks what was predicted. The
    recommendation is that baseline, with the measured numbers as the reason."""
    if not replay or replay.get("verdict") != "loses" or not replays_this_plan(plan, replay):
        return None
    rows = {r.get("key"): r for r in replay.get("candidates") or [] if r.get("mean") is not None}
    plan_row = rows.get("plan")
    trained = [k for k in feasible if k in rows and rows[k].get("feasible", True)]
    if plan_row is None or not trained:
        return None
    best = min(trained, key=lambda k: (rows[k]["mean"], k))
    diff = float(plan_row["mean"]) - float(rows[best]["mean"])
    spread = max(float(plan_row.get("sd") or 0.0), float(rows[best].get("sd") or 0.0))
    if diff <= spread:
        return None
    gain = float(feasible[best]["loss"]) - float(plan["predicted"])
    k = replay.get("scale_k")
    scale = f"1/{float(k):g} scale" if k else "reduced scale"
    return {"recommended": best, "predicted_gain": gain, "best_baseline": best,
            "error_bar": replay.get("difference_error"), "error_source": "replay (trained at reduced scale)",
            "validated": True, "measured_difference": diff,
            "why": f"the replay trained the plan and its baselines at {scale}: the plan measured "
                   f"{float(plan_row['mean']):.4f}, {feasible[best]['name']} {float(rows[best]['mean']):.4f} "
                   f"(plan worse by {diff:.4f}, seed s.d. {spread:.4f}) although the law predicted the "
                   f"plan {abs(gain):.4g} {'better' if gain > 0 else 'worse'}: use {feasible[best]['name']}"}


def _heldout_relative_error(fit: dict) -> tuple[float, str] | None:
    selection = (fit or {}).get("model_selection") or {}
    for row in selection.get("candidates") or []:
        if row.get("chosen") and row.get("heldout_runs_error") is not None:
            return float(row["heldout_runs_error"]), "held-out-runs"
    cv_label = (fit or {}).get("cv_method") or "leave-one-out"
    for key, label in (("holdout_largest_error", "hold-out-largest"), ("cv_error", cv_label),
                       ("loo_error", "leave-one-out")):  # loo_error: law files before cv_error
        if (fit or {}).get(key) is not None:
            return float(fit[key]), label
    return None


def _draws_as_planned(draws, conservative: dict | None):
    """Bootstrap draws with the parameters the plan replaced by a conservative value held at
    that value: the band is then the other parameters' uncertainty around what was planned with
    (else a prediction made with the conservative value can fall outside its own band)."""
    if not conservative:
        return draws
    fixed = {name: float(r["to"]) for name, r in conservative.items()}
    return [{**d, **{n: v for n, v in fixed.items() if n in d}} for d in draws]


# ---------------------------------------------------------------------------------------------
# Agreement across probe seeds: would another seed's probe have given the same plan?
# ---------------------------------------------------------------------------------------------

def seed_of(run_id: str) -> str | None:
    """The seed part of a probe run id ("s2-pool0-small" -> "s2"), None for other ids."""
    head = str(run_id).split("-", 1)[0]
    return head if len(head) > 1 and head[0] == "s" and head[1:].isdigit() else None


def seed_agreement(plan: dict, law, observations, budget: float, tolerance: float = 0.1,
                   **plan_options) -> dict | None:
    """Refit the law on each probe seed's runs alone, plan each at `budget` with the same
    options, and count the seeds whose plan matches `plan` (the same pools used and every
    weight within `tolerance`). None when the observations have fewer than two seeds."""
    from curate.laws.qqt_fit import QQTFit

    if observations.run_id is None or getattr(law, "kind", None) != "qqt":
        return None
    seeds = sorted({s for s in map(seed_of, observations.run_id) if s is not None},
                   key=lambda s: int(s[1:]))
    if len(seeds) < 2:
        return None
    main = {r["pool"]: float(r["weight"]) for r in plan["pools"] if r["weight"] > 0}
    rows = []
    for seed in seeds:
        idx = [i for i, r in enumerate(observations.run_id) if seed_of(r) == seed]
        try:
            fitted = QQTFit(variant=law.variant, sizes=law.pool_sizes, unit=law.unit,
                            diagnostics=False).fit(observations.subset(idx)).law_
            other = make_plan(fitted, budget, **plan_options)["plan"]
        except (ValueError, RuntimeError) as exc:
            rows.append({"seed": seed, "weights": None, "agrees": False, "error": str(exc)})
            continue
        weights = {r["pool"]: float(r["weight"]) for r in other["pools"] if r["weight"] > 0}
        same = set(weights) == set(main) and all(abs(weights[p] - main[p]) <= tolerance for p in main)
        rows.append({"seed": seed, "weights": weights, "agrees": bool(same),
                     "predicted": other["predicted"]})
    agree = sum(r["agrees"] for r in rows)
    return {"tolerance": tolerance, "seeds": rows, "agree": agree, "of": len(rows),
            "why": f"{agree} of {len(rows)} probe seeds, each fitted alone, give the same plan "
                   f"(same pools, weights within {tolerance:g})"}


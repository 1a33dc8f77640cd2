"""Choose the pool mixture and epoch counts that minimise a fitted law's loss for a budget.

Examples:
  curate plan --law law.json --budget 6.4e8                      # QQT law, budget in samples
  curate plan --law law.json --budget 6.4e8 --top-m              # only the top-m family
  curate plan --law law.json --pools-from run/ --budget 1e6      # pool sizes from a curate run
  curate plan --law dc.json --budget 1e22 --unit flops --pool-size web=25e9   # also picks N
  curate plan --law law.json --sweep 1e7:1e10:50 --plot sweep.png  # optimum across budgets

Pool sizes come from the law file, then --pools-from RUN_DIR (RUN_DIR/stats.parquet: pool K is
named poolK; the run decides which pools exist; column `tokens` for token laws, `docs`
otherwise, or --size-column), then --pool-size NAME=COUNT. For the data-constrained law the
sizes are unique tokens per pool. A law fitted on `curate probe` observations counts bytes:
use --size-column chars (characters ~ bytes) or --pool-size with the probe's pool_bytes. A table by default, --json for
machines, -o PLAN.json for the plan file, --plot PNG for a picture.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from curate.orchestration.catalog_hooks import add_workspace_argument, register_written_file

HELP = __doc__

UNITS = ("samples", "tokens", "flops")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workspace_argument(parser)
    parser.add_argument("--law", required=True, type=Path, help="law file (JSON) from `curate fit`")
    parser.add_argument("--budget", type=float, help="budget: samples, tokens or FLOPs (see --unit)")
    parser.add_argument("--unit", choices=UNITS, default=None,
                        help="budget unit (default: the law's unit; flops for language-model laws)")
    parser.add_argument("--params", type=float, default=None,
                        help="model size N (fixes it; with FLOPs and a data-constrained law it is "
                             "otherwise chosen)")
    parser.add_argument("--pools-from", type=Path, default=None, metavar="RUN_DIR",
                        help="take pool sizes from a `curate run` output (RUN_DIR/stats.parquet)")
    parser.add_argument("--size-column", default=None, metavar="COLUMN",
                        help="stats.parquet column giving pool sizes with --pools-from (default: "
                             "tokens for token laws, docs otherwise; chars ~ bytes for byte-level "
                             "probe laws)")
    parser.add_argument("--pool-size", action="append", default=[], metavar="NAME=COUNT",
                        help="pool size (unique samples / tokens); repeatable")
    parser.add_argument("--max-epochs", type=float, default=None, help="at most this many passes over any pool")
    parser.add_argument("--min-share", action="append", default=[], metavar="NAME=F",
                        help="minimum share of the budget for a pool (0..1); repeatable")
    parser.add_argument("--max-share", action="append", default=[], metavar="NAME=F",
                        help="maximum share of the budget for a pool (0..1); repeatable")
    parser.add_argument("--exclude", action="append", default=[], metavar="NAME", help="do not use this pool; repeatable")
    parser.add_argument("--top-m", action="store_true",
                        help="only consider top-m mixtures (the published method)")
    parser.add_argument("--sweep", default=None, metavar="LO:HI[:POINTS]",
                        help="also plan across log-spaced budgets and report where the choice switches")
    parser.add_argument("--max-draws", type=int, default=100,
                        help="bootstrap draws used for the robustness report (default 100)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument("--plot", type=Path, default=None, metavar="PLAN.png", help="write a PNG plot")
    parser.add_argument("-o", "--output", type=Path, default=None, metavar="PLAN.json", help="write the plan file")


def run(args: argparse.Namespace) -> int:
    from curate.orchestration.commands import _plan_output as out
    from curate.orchestration.errors import CurateError

    if args.budget is None and args.sweep is None:
        raise CurateError("give --budget (or --sweep LO:HI[:POINTS])")
    if args.budget is not None and not args.budget > 0:
        raise CurateError(f"--budget must be positive, got {args.budget:g}")
    if args.max_draws < 0:
        raise CurateError("--max-draws must be >= 0")
    setup = build_setup(args)
    result = execute(setup, args)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")
        register_written_file("plan", args.output, args.workspace, "plan")
    if args.plot is not None:
        out.plot(result, args.plot)
    for w in result["warnings"]:
        print(f"curate plan: warning: {w}", file=sys.stderr)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        print(out.render_text(result))
        if args.output is not None:
            print(f"plan written to {args.output}")
        if args.plot is not None:
            print(f"plot written to {args.plot}")
    return 0


# ---------------------------------------------------------------------------------------------
# Inputs: law, pools, objective, constraints
# ---------------------------------------------------------------------------------------------

def _pairs(items: list[str], flag: str) -> dict[str, float]:
    from curate.orchestration.errors import CurateError

    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        if not sep or not name:
            raise CurateError(f"{flag} expects NAME=VALUE, got {item!r}")
        try:
            out[name] = float(value)
        except ValueError:
            raise CurateError(f"{flag} {item!r}: {value!r} is not a number") from None
    return out


def load_law(path: Path):
    from curate.laws.lawfile import law_from_dict
    from curate.orchestration.errors import CurateError

    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CurateError(f"law file {path} not found") from None
    except json.JSONDecodeError as exc:
        raise CurateError(f"law file {path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return data, law_from_dict(data)


def read_run_pools(run_dir: Path, column: str) -> dict[str, float]:
    """{poolK: count} from RUN_DIR/stats.parquet (column `docs` or `tokens`)."""
    from curate.orchestration.errors import CurateError

    path = run_dir / "stats.parquet"
    if not path.is_file():
        raise CurateError(f"{path} not found: is {run_dir} a finished `curate run` output?")
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    names = table.column_names
    for col in ("pool", column):
        if col not in names:
            raise CurateError(f"{path} has no {col!r} column (columns: {', '.join(names)})")
    pools = table.column("pool").to_pylist()
    counts = table.column(column).to_pylist()
    return {f"pool{int(k)}": float(c or 0) for k, c in sorted(zip(pools, counts))}


class Setup:
    """Everything needed to plan: law, objective, constraints, unit conversion, warnings."""

    def __init__(self, law, law_dict, objective, unit, budget_to_draws, constraints, warnings):
        self.law = law
        self.law_dict = law_dict
        self.objective = objective
        self.unit = unit
        self.budget_to_draws = budget_to_draws  # QQT with FLOPs: C -> tokens; else identity
        self.constraints = constraints
        self.warnings = warnings


def _pool_sizes(args, law_pools: list[str], law_sizes: dict[str, float], column: str,
                warnings: list[str]) -> dict[str, float]:
    from curate.orchestration.errors import CurateError

    sizes = dict(law_sizes)
    if args.pools_from is not None:
        run_sizes = read_run_pools(args.pools_from, args.size_column or column)
        if not law_pools or all(p in law_pools for p in run_sizes):
            mapped = run_sizes
        elif len(run_sizes) == len(law_pools):  # law pools named otherwise: match by order
            mapped = dict(zip(law_pools, run_sizes.values()))
            warnings.append(f"run pools {list(run_sizes)} matched to law pools {law_pools} by order")
        else:
            raise CurateError(f"run {args.pools_from} has pools {list(run_sizes)} but the law knows "
                              f"{law_pools}; name them with --pool-size instead")
        # The run defines which pools exist: law pools it lacks are left out.
        missing = [p for p in sizes if p not in mapped]
        if missing:
            warnings.append(f"pool(s) {', '.join(missing)} are not in {args.pools_from} and are left out")
        sizes = dict(mapped)
    for name, value in _pairs(args.pool_size, "--pool-size").items():
        if law_pools and name not in law_pools:
            raise CurateError(f"--pool-size: unknown pool {name!r}; the law knows {law_pools}")
        sizes[name] = value
    empty = [p for p, v in sizes.items() if not v > 0]
    for p in empty:
        warnings.append(f"pool {p} is empty (size 0) and is left out")
        del sizes[p]
    if not sizes:
        raise CurateError("no pools with a positive size: give --pool-size NAME=COUNT or --pools-from RUN_DIR")
    return sizes


def build_setup(args) -> Setup:
    from curate.laws.planner import Constraints
    from curate.laws.planner_objectives import DataConstrainedObjective, QQTObjective
    from curate.orchestration.errors import CurateError

    law_dict, law = load_law(args.law)
    warnings: list[str] = []
    kind = law_dict["kind"]
    if args.params is not None and not args.params > 0:
        raise CurateError(f"--params must be positive, got {args.params:g}")
    if kind == "qqt":
        law_unit = law.unit
        unit = args.unit or ("tokens" if law_unit == "tokens" else "samples")
        if unit == "samples" and law_unit == "tokens":
            raise CurateError("this QQT law counts tokens: use --unit tokens (or flops with --params)")
        if unit == "tokens" and law_unit != "tokens":
            raise CurateError(f"this QQT law counts {law_unit}: use --unit samples")
        if unit == "flops":
            if law_unit != "tokens" or args.params is None:
                raise CurateError("a FLOPs budget with a QQT law needs a law in tokens and --params N "
                                  "(tokens = FLOPs / (6 N))")
            N = float(args.params)
            to_draws = lambda C: C / (6.0 * N)  # noqa: E731
        else:
            to_draws = lambda x: x  # noqa: E731
            if args.params is not None:
                warnings.append("--params is ignored: a QQT law has no model size (it only "
                                "converts a FLOPs budget to tokens)")
        column = "tokens" if law_unit == "tokens" else "docs"
        sizes = _pool_sizes(args, law.pools, law.pool_sizes, column, warnings)
        keep = [p for p in law.pools if p in sizes]
        dropped = [p for p in law.pools if p not in sizes]
        if dropped:
            law = _qqt_subset(law, keep)
        objective = QQTObjective(law, [sizes[p] for p in keep])
    else:
        unit = args.unit or "flops"
        if unit == "samples":
            raise CurateError(f"a {kind} law plans in tokens or flops, not samples")
        if unit == "tokens" and args.params is None:
            raise CurateError("a token budget with a language-model law needs --params N")
        law_pools = [p["name"] for p in law_dict.get("pools", []) or [] if isinstance(p, dict) and "name" in p]
        law_sizes = {p["name"]: float(p["size"]) for p in law_dict.get("pools", []) or []
                     if isinstance(p, dict) and "name" in p and "size" in p}
        sizes = _pool_sizes(args, law_pools if (law_pools and not args.pools_from) else [],
                            law_sizes, "tokens", warnings)
        objective = DataConstrainedObjective(law, list(sizes), list(sizes.values()), unit=unit,
                                             params=args.params)
        to_draws = lambda x: x  # noqa: E731
    pools = objective.pools
    for flag, items in (("--min-share", args.min_share), ("--max-share", args.max_share)):
        for name in _pairs(items, flag):
            if name not in pools:
                raise CurateError(f"{flag}: unknown pool {name!r}; pools are {pools}")
    for name in args.exclude:
        if name not in pools:
            raise CurateError(f"--exclude: unknown pool {name!r}; pools are {pools}")
    if args.max_epochs is not None and not args.max_epochs > 0:
        raise CurateError(f"--max-epochs must be positive, got {args.max_epochs:g}")
    constraints = Constraints(min_share=_pairs(args.min_share, "--min-share"),
                              max_share=_pairs(args.max_share, "--max-share"),
                              exclude=list(args.exclude), max_epochs=args.max_epochs)
    return Setup(law, law_dict, objective, unit, to_draws, constraints, warnings)


def _qqt_subset(law, keep: list[str]):
    """The QQT law restricted to the pools that have a size (empty pools are dropped)."""
    from curate.laws.qqt import QQTLaw

    idx = [law.pools.index(p) for p in keep]
    return QQTLaw(law.a, law.d, keep, b=law.b[idx], tau=law.tau[idx], sizes=law.sizes[idx],
                  variant=law.variant, normalizer=law.normalizer, unit=law.unit, fixed=law.fixed,
                  fit_info=law.fit_info, bootstrap=law.bootstrap)


# ---------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------

def execute(setup: Setup, args) -> dict:
    from curate.laws.planner import bootstrap_robustness, parse_sweep, plan_mixture, plan_sweep, range_warning

    obj = setup.objective
    fit = getattr(setup.law, "fit_info", None) or {}
    boot = getattr(setup.law, "bootstrap", None) or {}
    result: dict = {"format": "curate-plan/1", "law": str(args.law), "kind": setup.law_dict["kind"],
                    "unit": setup.unit, "metric": getattr(obj, "metric", "loss"),
                    "top_m_only": bool(args.top_m),
                    "constraints": {"min_share": _pairs(args.min_share, "--min-share"),
                                    "max_share": _pairs(args.max_share, "--max-share"),
                                    "exclude": list(args.exclude), "max_epochs": args.max_epochs},
                    "plan": None, "sweep": None, "robustness": None, "warnings": setup.warnings}
    if args.budget is not None:
        draws_budget = setup.budget_to_draws(args.budget)
        plan = plan_mixture(obj, draws_budget, setup.constraints, top_m_only=args.top_m)
        pd = plan.to_dict()
        pd["budget"] = args.budget
        pd["interval"] = None
        if boot.get("draws") and args.max_draws > 0:
            rob = bootstrap_robustness(obj, plan, boot["draws"], setup.constraints,
                                       level=float(boot.get("level", 0.9)), max_draws=args.max_draws)
            result["robustness"] = rob.to_dict()
            pd["interval"] = list(rob.interval)
        result["plan"] = pd
        for value, rng, what in ((plan.draws, fit.get("samples_range"), "samples drawn"),
                                 (plan.params, fit.get("params_range"), "model size")):
            if value is not None:
                msg = range_warning(value, rng, what)
                if msg:
                    setup.warnings.append(msg)
    if args.sweep is not None:
        budgets = parse_sweep(args.sweep)
        sweep = plan_sweep(obj, [setup.budget_to_draws(b) for b in budgets], setup.constraints,
                           top_m_only=args.top_m)
        sd = sweep.to_dict()
        sd["budgets"] = [float(b) for b in budgets]
        scale = float(budgets[0]) / setup.budget_to_draws(float(budgets[0]))  # draws -> budget unit
        for sw in sd["switches"]:
            sw["budget"] *= scale
        for row, b in zip(sd["plans"], budgets):
            row["budget"] = float(b)
        result["sweep"] = sd
        rng = fit.get("samples_range")
        if rng:
            far = [p.draws for p in sweep.plans if range_warning(p.draws, rng)]
            if far:
                setup.warnings.append(f"{len(far)} of {len(sweep.plans)} sweep budgets lie far outside "
                                      f"the fitted samples range {rng}")
    return result

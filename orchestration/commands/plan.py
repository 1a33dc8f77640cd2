"""Choose the pool mixture and epoch counts that minimise a fitted law's loss for a budget.

Examples:
  curate plan --law law.json --budget 6.4e8                      # QQT law, budget in samples
  curate plan --law law.json --budget 6.4e8 --top-m              # only the top-m family
  curate plan --law law.json --pools-from run/ --budget 1e6      # pool sizes from a curate run
  curate plan --law dc.json --budget 1e22 --unit flops --pool-size web=25e9   # also picks N
  curate plan --law dc.json --budget 1e22 --pool-size web=2e10 --pool-size books=5e9 --quality books=1.4
  curate plan --law law.json --sweep 1e7:1e10:50 --plot sweep.png  # optimum across budgets

Pool sizes come from the law file, then --pools-from RUN_DIR (RUN_DIR/stats.parquet: pool K is
named poolK; the run decides which pools exist; column `tokens` for token laws, `docs`
otherwise, or --size-column), then --pool-size NAME=COUNT. For the data-constrained law the
sizes are unique tokens per pool. A law fitted on `curate probe` observations counts bytes:
use --size-column chars (characters ~ bytes) or --pool-size with the probe's pool_bytes.

The plan stays within what the law measured, and says so where it cannot:
  * epochs: no pool is planned beyond the largest epoch count in the law's fit data (per pool
    where the fit recorded it); --max-epochs E replaces that cap (a warning says when E exceeds
    the measured maximum; --max-epochs inf lifts it). A law without a measured epoch range
    (e.g. released parameters) is planned uncapped, with a warning. Every plan shows per pool
    its epochs and cap; a `*` marks a binding cap.
  * baselines: top-m ranks pools by each pool's own predicted loss at the budget.
  * saturation: a warning when doubling the budget gains less than --saturation-eps (0.1 %)
    of the predicted loss; for QQT laws also when the budget is on the far side of n = s/a
    (where all first-pass curves cross) from the fit data.
  * parameters at a bound: with bootstrap draws, a parameter whose interval reaches its bound
    is planned at its conservative quantile (--tau-quantile, default 0.1; none: off).
  * model size: a warning when an LM law fitted at one model size plans another size (a FLOPs
    budget picks one), and for any FLOPs budget with a QQT law (no model-size term).

A table by default, --json for machines, -o PLAN.json for the plan file (curate-plan/1), --plot
PNG for a picture. Warnings go to stderr.
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
    parser.add_argument("--max-epochs", type=_max_epochs, default=None, metavar="E",
                        help="at most E passes over any pool (default: the largest epoch count in "
                             "the law's fit data, per pool where recorded; 'inf': no cap)")
    parser.add_argument("--quality", action="append", default=[], metavar="NAME=MULT",
                        help="data-constrained laws: a token of pool NAME counts as MULT tokens "
                             "of effective data (default: the law file's multipliers, else 1); "
                             "repeatable")
    parser.add_argument("--observations", default=None, metavar="OBS",
                        help="the probe observations the law was fitted on: each probe seed is "
                             "refitted alone and planned, and the plan says how many seeds agree")
    parser.add_argument("--replay", type=Path, default=None, metavar="REPLAY.json",
                        help="a `curate validate` result: its measured error of predicted "
                             "differences is the bar the plan's predicted gain must clear (else "
                             "the law's held-out error is used, and without either the claim is "
                             "marked unvalidated)")
    parser.add_argument("--tau-quantile", type=_quantile, default=0.1, metavar="Q",
                        help="plan parameters whose bootstrap interval reaches their bound at "
                             "this conservative quantile (default 0.1; 0 or 'none': off)")
    parser.add_argument("--saturation-eps", type=float, default=1e-3, metavar="EPS",
                        help="warn 'saturated' when doubling the budget gains less than EPS of "
                             "the predicted loss (default 1e-3 = 0.1%%)")
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
    from curate.laws.planning import make_plan, size_column
    from curate.orchestration.commands import _plan_output as out

    law, law_quality = load_law(args.law, with_quality=True)
    run_sizes = None
    if args.pools_from is not None:
        run_sizes = read_run_pools(args.pools_from, args.size_column or size_column(law))
    result = make_plan(law, args.budget, sweep=args.sweep, unit=args.unit, params=args.params,
                       pool_sizes=_pairs(args.pool_size, "--pool-size"), run_sizes=run_sizes,
                       run_name=str(args.pools_from), min_share=_pairs(args.min_share, "--min-share"),
                       max_share=_pairs(args.max_share, "--max-share"), exclude=args.exclude,
                       max_epochs=args.max_epochs, top_m=args.top_m, max_draws=args.max_draws,
                       law_name=str(args.law), quality=_pairs(args.quality, "--quality"),
                       law_quality=law_quality, tau_quantile=args.tau_quantile,
                       saturation_eps=args.saturation_eps, replay=_read_replay(args.replay),
                       observations=_read_observations(args.observations),
                       run_column=args.size_column or (size_column(law) if run_sizes is not None else None))
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
# Inputs: arguments and files (planning itself is curate.laws.planning.make_plan)
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


def _max_epochs(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of epochs or 'inf', got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def _quantile(text: str) -> float | None:
    if text.strip().lower() in ("none", "off", "0"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a quantile in [0, 0.5) or 'none', got {text!r}") from None
    if not 0 <= value < 0.5:
        raise argparse.ArgumentTypeError(f"a quantile in [0, 0.5) or 'none', got {text!r}")
    return value or None


def load_law(path: Path, with_quality: bool = False):
    """The law object of a law file (one-line errors for missing or malformed files).

    with_quality=True: (law, the file's top-level `quality` / `multiplier` dict or None).
    """
    from curate.laws.lawfile import law_from_dict

    data = _read_json(path, "law file")
    law = law_from_dict(data)
    if not with_quality:
        return law
    quality = next((data[k] for k in ("quality", "multiplier", "multipliers")
                    if isinstance(data.get(k), dict)), None)
    return law, quality


def read_run_pools(run_dir: Path, column: str) -> dict[str, float]:
    """{poolK: count} from a finished run's stats.parquet (column `docs` or `tokens`)."""
    from curate.orchestration.errors import CurateError
    from curate.pools.rundir import STATS, RunDir

    rows = RunDir(run_dir).stats()
    names = list(rows[0]) if rows else []
    if column not in names:
        raise CurateError(f"{run_dir / STATS} has no {column!r} column (columns: {', '.join(names)})")
    return {f"pool{int(r['pool'])}": float(r[column] or 0) for r in rows}


def _read_replay(path: Path | None) -> dict | None:
    from curate.orchestration.errors import CurateError

    if path is None:
        return None
    data = _read_json(path, "replay file")
    if not isinstance(data, dict) or not isinstance(data.get("difference_error"), (int, float)):
        raise CurateError(f"replay file {path} has no number 'difference_error' (write it with "
                          "`curate validate PLAN -o REPLAY.json`)")
    return data


def _read_observations(spec: str | None):
    if spec is None:
        return None
    from curate.probe.observations_io import load_observations

    return load_observations(spec, {}, law="qqt")


def _read_json(path: Path, what: str):
    """A JSON file's contents, or one line saying why it cannot be read."""
    from curate.orchestration.errors import CurateError

    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CurateError(f"{what} {path} not found") from None
    except json.JSONDecodeError as exc:
        raise CurateError(f"{what} {path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None


"""curate report: write a self-contained HTML report of a run, and of the loop built on it.

The run: the funnel of where every input record went (dead-letter, exact/near/semantic
duplicates, each filter rule, kept), pool sizes and token counts, score distributions per pool,
the largest duplicate clusters with examples, and a per-source breakdown.

The loop, one section per file given (each from that file alone; none is looked up):
  --observations OBS   what the probe measured per pool (`curate probe -o OBS.parquet`)
  --law LAW.json       the law's form, parameters with bootstrap intervals and at-bound flags,
                       the forms compared by held-out error, the epoch range of the fit data,
                       and per-pool fitted curves with bootstrap bands (over OBS when given)
  --plan PLAN.json     the plan's why: pools with weight / epochs / cap, baselines, the
                       recommendation with its error bar, bootstrap agreement, warnings, and
                       the budget sweep when the plan has one (`curate plan -o`)
  --replay R.json      the plan and its baselines trained (`curate validate`): predicted vs
                       measured loss, seed spread, verdict; repeat for several budgets
Files that disagree (a replay of another plan, a claim made without the replay given) are
noted in the report, not reconciled.

Example:
  curate report out/run --observations obs.parquet --law law.json --plan plan.json \\
      --replay replay-5e7.json --replay replay-2e8.json -o loop.html

Opens offline in any browser: inline CSS and images; the PNGs are also written beside it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a `curate run` output directory")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="HTML file to write (default RUN_DIR/report.html); PNGs go to <name>-figures/ beside it")
    parser.add_argument("--observations", metavar="OBS", default=None,
                        help="observations (FILE.csv, FILE.parquet or FILE.duckdb:TABLE), e.g. `curate probe` output")
    parser.add_argument("--law", metavar="LAW.json", type=Path, default=None, help="a law file (`curate fit -o`)")
    parser.add_argument("--plan", metavar="PLAN.json", type=Path, default=None, help="a plan file (`curate plan -o`)")
    parser.add_argument("--replay", metavar="REPLAY.json", type=Path, action="append", default=[],
                        help="a replay result (`curate validate -o`); repeatable")
    parser.add_argument("--json", action="store_true",
                        help="print the written paths, funnel and loop summary as JSON")


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from curate.orchestration.output_paths import check_output_file
    from curate.orchestration.report import write_report

    if args.output is not None:
        check_output_file(args.output, "-o")
    result = write_report(args.run_dir, args.output, observations=args.observations, law=args.law,
                          plan=args.plan, replays=args.replay)
    loop = result.loop.summary() if result.loop is not None else None
    if args.json:
        json.dump({"html": str(result.html_path), "figures": {k: str(v) for k, v in result.figures.items()},
                   "funnel": result.data.funnel, "reconciles": result.data.funnel_reconciles,
                   "warnings": result.data.warnings, "loop": loop}, sys.stdout, default=str)
        print()
    else:
        print(f"wrote {result.html_path} ({len(result.figures)} figures in {result.html_path.parent / (result.html_path.stem + '-figures')})")
        if loop is not None:
            print(f"loop sections: {', '.join(loop['sections'])}")
        for warning in result.data.warnings + (loop["notes"] if loop else []):
            print(f"note: {warning}")
    return 0

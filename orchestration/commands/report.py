"""curate report: write a self-contained HTML report of a run (plus PNG figures).

Shows the funnel of where every input record went (dead-letter, exact/near/semantic duplicates,
each filter rule, kept), pool sizes and token counts, score distributions per pool, the largest
duplicate clusters with examples, and a per-source breakdown. Opens offline in any browser.
"""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a `curate run` output directory")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="HTML file to write (default RUN_DIR/report.html); PNGs go to <name>-figures/ beside it")
    parser.add_argument("--json", action="store_true", help="print the written paths and funnel as JSON")


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from curate.orchestration.report import write_report

    result = write_report(args.run_dir, args.output)
    if args.json:
        json.dump({"html": str(result.html_path), "figures": {k: str(v) for k, v in result.figures.items()},
                   "funnel": result.data.funnel, "reconciles": result.data.funnel_reconciles,
                   "warnings": result.data.warnings}, sys.stdout)
        print()
    else:
        print(f"wrote {result.html_path} ({len(result.figures)} figures in {result.html_path.parent / (result.html_path.stem + '-figures')})")
        for warning in result.data.warnings:
            print(f"note: {warning}")
    return 0

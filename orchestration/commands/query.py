"""curate query: ask the workspace catalog a question in SQL (read-only).

Views (every row has run_id): runs, docs, pools, pool_stats, duplicates, dead_letter, filtered,
embeddings;
tables: observations, laws, plans. Only one SELECT is allowed: statements that write, attach,
copy out, change settings, install/load extensions or read files are refused.

Example:
  curate query "SELECT pool, docs, tokens, score_mean FROM pool_stats ORDER BY pool" --run myrun
"""
from __future__ import annotations

import argparse

HELP = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sql", help="one SELECT statement")
    parser.add_argument("--run", default=None, metavar="ID",
                        help="restrict the views to this run (id, unique id prefix or run directory)")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format")
    parser.add_argument("--max-rows", type=int, default=None, metavar="N", help="print at most N rows")
    parser.add_argument("--workspace", default=None, metavar="DIR",
                        help="workspace holding catalog.duckdb (default: $CURATE_WORKSPACE or ./curate-workspace)")


def run(args: argparse.Namespace) -> int:
    import sys

    from curate.orchestration.tabular import write_rows
    from curate.pools.catalog import Catalog

    if args.max_rows is not None and args.max_rows < 0:
        raise ValueError("--max-rows must be >= 0")
    result = Catalog(args.workspace).query(args.sql, run=args.run, max_rows=args.max_rows)
    for warning in result.warnings:  # runs left out (quarantined): said, never silent
        print(f"curate query: warning: {warning}", file=sys.stderr)
    write_rows(sys.stdout, result.columns, result.rows, args.format)
    return 0

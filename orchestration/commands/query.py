"""curate query: ask the workspace catalog a question in SQL (read-only).

Views (every row has run_id): runs, docs, pools, pool_stats, duplicates, dead_letter, filtered,
embeddings;
tables: observations, laws, plans. Only one SELECT is allowed: statements that write, attach,
copy out, change settings, install/load extensions or read files are refused. A query runs
at most --timeout seconds (default 120; 0: no limit) in at most --memory-limit of memory
(default 2GB, also the most it may spill to disk), and prints at most 1,000,000 rows unless
--max-rows says how many: past any limit it stops with one line saying which.

Example:
  curate query "SELECT pool, docs, tokens, score_mean FROM pool_stats ORDER BY pool" --run myrun
"""
from __future__ import annotations

import argparse

HELP = __doc__
#: Without --max-rows, a result larger than this is refused instead of printed: fetched into
#: Python it would take gigabytes (a cross join of two ranges) before anything is printed.
ROW_LIMIT = 1_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sql", help="one SELECT statement")
    parser.add_argument("--run", default=None, metavar="ID",
                        help="restrict the views to this run (id, unique id prefix or run directory)")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format")
    parser.add_argument("--max-rows", type=int, default=None, metavar="N",
                        help=f"print at most N rows (default: all, refusing more than {ROW_LIMIT:,})")
    parser.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                        help="stop the query after this many seconds (default 120; 0: no limit)")
    parser.add_argument("--memory-limit", default="2GB", metavar="SIZE",
                        help="DuckDB memory limit, also the most it may spill to disk (default 2GB)")
    parser.add_argument("--workspace", default=None, metavar="DIR",
                        help="workspace holding catalog.duckdb (default: $CURATE_WORKSPACE or ./curate-workspace)")


def run(args: argparse.Namespace) -> int:
    import sys

    from curate.orchestration.tabular import write_rows
    from curate.pools.catalog import Catalog
    from curate.pools.sql_guard import QueryLimitHit, QueryLimits

    if args.max_rows is not None and args.max_rows < 0:
        raise ValueError("--max-rows must be >= 0")
    limits = QueryLimits(timeout_s=args.timeout, memory_limit=args.memory_limit)
    fetch = ROW_LIMIT + 1 if args.max_rows is None else args.max_rows
    result = Catalog(args.workspace).query(args.sql, run=args.run, max_rows=fetch, limits=limits)
    if args.max_rows is None and len(result.rows) > ROW_LIMIT:
        raise QueryLimitHit(f"the result has more than {ROW_LIMIT:,} rows; aggregate or add LIMIT, "
                            "or pass --max-rows N to print the first N")
    for warning in result.warnings:  # runs left out (quarantined): said, never silent
        print(f"curate query: warning: {warning}", file=sys.stderr)
    write_rows(sys.stdout, result.columns, result.rows, args.format)
    return 0

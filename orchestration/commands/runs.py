"""curate runs: list the runs registered in the workspace catalog.

One line per run: id, time, status, input records, kept documents, output directory.
"""
from __future__ import annotations

import argparse

HELP = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the runs (with config, counts) as JSON")
    parser.add_argument("--workspace", default=None, metavar="DIR",
                        help="workspace holding catalog.duckdb (default: $CURATE_WORKSPACE or ./curate-workspace)")


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from curate.orchestration.tabular import jsonable, write_rows
    from curate.pools.catalog import Catalog

    catalog = Catalog(args.workspace)
    runs = catalog.runs()
    if args.json:
        json.dump(jsonable(runs), sys.stdout)
        print()
        return 0
    if not runs:
        print(f"no runs registered in {catalog.path}")
        return 0
    rows = []
    for r in runs:
        counts = r.get("counts") or {}
        rows.append((r["id"], r["time"].isoformat(sep=" ") if r["time"] else None, r["status"],
                     _count(counts, INPUT_KEYS), _count(counts, KEPT_KEYS), r["output_dir"]))
    write_rows(sys.stdout, ["id", "time", "status", "input", "kept", "output_dir"], rows, "table")
    return 0


INPUT_KEYS = ("input_records", "input", "records_in")
KEPT_KEYS = ("kept", "docs_kept", "output_records", "documents_kept")


def _count(counts: dict, keys):
    for key in keys:
        if isinstance(counts.get(key), int) and not isinstance(counts.get(key), bool):
            return counts[key]
    return None

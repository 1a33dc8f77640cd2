"""curate diff: how pool sizes and pool memberships changed between two runs.

RUN_A and RUN_B are run ids from the catalog (or unique prefixes) or run directories; either must
be a published, whole run (a directory being replaced or killed while publishing is refused, as
is a registered run that `curate runs` shows as not whole). Prints the
pool sizes side by side and a transition matrix of document ids: rows are the pool in RUN_A,
columns the pool in RUN_B, "absent" counts documents added or removed.
"""
from __future__ import annotations

import argparse

HELP = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", metavar="RUN_A", help="run id or run directory (before)")
    parser.add_argument("run_b", metavar="RUN_B", help="run id or run directory (after)")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    parser.add_argument("--workspace", default=None, metavar="DIR",
                        help="workspace holding catalog.duckdb (default: $CURATE_WORKSPACE or ./curate-workspace)")


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from curate.pools.run_diff import diff_runs

    dirs = [_run_dir(ref, args.workspace) for ref in (args.run_a, args.run_b)]
    result = diff_runs(*dirs)
    result["ref_a"], result["ref_b"] = args.run_a, args.run_b
    if args.json:
        json.dump(result, sys.stdout)
        print()
    else:
        print_diff(result, sys.stdout)
    return 0


def _run_dir(ref: str, workspace) -> str:
    """A catalog run (id/prefix) or, failing that, a run directory given directly."""
    import os

    from curate.pools.catalog import Catalog, CatalogError, run_health

    catalog = Catalog(workspace)
    if catalog.path.is_file():
        try:
            found = catalog.resolve_run(ref)
        except CatalogError:
            if not os.path.isdir(ref):
                raise
        else:
            _, problem, files = run_health(found)
            if files is None:  # the same runs `curate query` leaves out
                raise CatalogError(f"run {found['id']} cannot be compared: {problem}")
            return found["output_dir"]
    if os.path.isdir(ref):
        return ref  # RunDir says why when it is not a finished run
    raise ValueError(f"{ref!r} is neither a registered run nor a run directory")


def print_diff(result: dict, out) -> None:
    from curate.orchestration.tabular import write_rows

    a, b = result["ref_a"], result["ref_b"]
    out.write(f"pool sizes ({a} -> {b})\n")
    write_rows(out, ["pool", a, b, "change"],
               [(p["pool"], p["docs_a"], p["docs_b"], f"{p['change']:+d}") for p in result["pool_sizes"]], "table")
    labels = ["absent" if label is None else str(label) for label in result["transitions"]["labels"]]
    out.write(f"\nmembership by document id (rows: pool in {a}, columns: pool in {b})\n")
    rows = [(f"{labels[i]}",) + tuple(row) for i, row in enumerate(result["transitions"]["matrix"])]
    write_rows(out, [f"{a} \\ {b}"] + labels, rows, "table")
    s = result["summary"]
    out.write(f"\nunchanged {s['unchanged']:,}  moved {s['moved']:,}  added {s['added']:,}  removed {s['removed']:,}\n")
    if result.get("removed_in_b_as"):
        parts = ", ".join(f"{k} {v:,}" for k, v in result["removed_in_b_as"].items())
        out.write(f"removed documents in {b}: {parts}\n")

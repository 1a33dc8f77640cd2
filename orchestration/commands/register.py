"""curate register: add an existing run directory to the workspace catalog.

`curate run` registers its output itself; use this for runs written elsewhere, copied in, or
re-registered after moving. Registering the same directory again refreshes it (same id).
A `curate materialize` output is registered as a training set (the `materialized` view).
"""
from __future__ import annotations

import argparse

HELP = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a `curate run` output directory (with manifest.json)")
    parser.add_argument("--id", dest="run_id", default=None, help="run id to use (default: from the manifest or directory name)")
    parser.add_argument("--json", action="store_true", help="print the registered run as JSON")
    parser.add_argument("--workspace", default=None, metavar="DIR",
                        help="workspace holding catalog.duckdb (default: $CURATE_WORKSPACE or ./curate-workspace)")


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from curate.orchestration.tabular import jsonable
    from curate.pools.catalog import Catalog, is_materialized_dir

    catalog = Catalog(args.workspace)
    if is_materialized_dir(args.run_dir):  # a `curate materialize` output: the materialized view
        set_id = catalog.register_materialized(args.run_dir, set_id=args.run_id)
        if args.json:
            json.dump(jsonable(next(s for s in catalog.materialized_sets() if s["id"] == set_id)), sys.stdout)
            print()
        else:
            print(f"registered training set {set_id} ({args.run_dir}) in {catalog.path}")
        return 0
    run_id = catalog.register_run(args.run_dir, run_id=args.run_id)
    if args.json:
        json.dump(jsonable(catalog.resolve_run(run_id)), sys.stdout)
        print()
    else:
        print(f"registered run {run_id} ({args.run_dir}) in {catalog.path}")
    return 0

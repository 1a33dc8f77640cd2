"""curate unregister: remove a run from the workspace catalog; its files are never touched.

RUN is a run id, a unique id prefix or the run's output directory (or a registered training
set's id or directory). Works whatever state the directory is in (missing, corrupt, being
replaced): use it to drop a run that `curate runs` shows as not whole. `curate register DIR`
adds it back.
"""
from __future__ import annotations

import argparse

HELP = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run id, unique id prefix or output directory")
    parser.add_argument("--workspace", default=None, metavar="DIR",
                        help="workspace holding catalog.duckdb (default: $CURATE_WORKSPACE or ./curate-workspace)")


def run(args: argparse.Namespace) -> int:
    import os

    from curate.pools.catalog import Catalog, CatalogError

    catalog = Catalog(args.workspace)
    if not catalog.path.is_file():
        raise CatalogError(f"no catalog at {catalog.path}: nothing is registered")
    try:
        found = catalog.resolve_run(args.run)
    except CatalogError:
        sets = [s for s in catalog.materialized_sets()
                if s["id"] == args.run or s["output_dir"] == os.path.realpath(args.run)]
        if not sets:
            raise
        set_id = catalog.remove_materialized(sets[0]["id"])
        print(f"unregistered training set {set_id} from {catalog.path}; its files in {sets[0]['output_dir']} "
              "are untouched")
        return 0
    run_id = catalog.remove_run(found["id"])
    print(f"unregistered run {run_id} from {catalog.path}; its files in {found['output_dir']} are untouched")
    return 0

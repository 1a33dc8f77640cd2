"""curate runs: list the runs registered in the workspace catalog, and whether each is whole.

One line per run: id, time, status, input records, kept documents, output directory. The status
is the live one: the registered status (complete) while the directory holds the run that was
registered, published and readable; otherwise `missing`, `unpublished` (being replaced, or
killed while publishing), `stale` (another run was published there: `curate register DIR`) or
`corrupt` (a malformed manifest or an unreadable file, named in a warning). Such a run is left
out of `curate query` until it is whole again or unregistered (`curate unregister RUN`).

--check also decodes every data file and compares row counts with the manifest, prints one
line per run and exits 1 when any registered run is not whole.

Training sets registered by `curate materialize --workspace` follow, one line each: id, status
(the same live statuses; --check compares every file's SHA-256), format, unit, units written
against the plan, whether they reconcile, output directory. --json prints the runs only
(`curate query "select * from materialized"` has the sets).
"""
from __future__ import annotations

import argparse

HELP = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the runs (with config, counts, problem) as JSON")
    parser.add_argument("--check", action="store_true",
                        help="verify every run's markers and files (decoding them); exit 1 if any is not whole")
    parser.add_argument("--workspace", default=None, metavar="DIR",
                        help="workspace holding catalog.duckdb (default: $CURATE_WORKSPACE or ./curate-workspace)")


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from curate.orchestration.tabular import jsonable, write_rows
    from curate.pools.catalog import QUARANTINED, Catalog

    catalog = Catalog(args.workspace)
    runs = catalog.runs(check=args.check)
    bad = [r for r in runs if r["status"] in QUARANTINED]
    code = 1 if args.check and bad else 0
    if args.json:
        json.dump(jsonable(runs), sys.stdout)
        print()
        return code
    sets = catalog.materialized_sets(check=args.check)
    bad_sets = [m for m in sets if m["problem"]]
    if not runs and not sets:
        print(f"no runs registered in {catalog.path}")
        return 0
    if args.check:  # one line per run, the problem in full (it names the file)
        for r in runs:
            print(f"{r['id']}: {r['status']}" + (f": {r['problem']}" if r["problem"] else ""))
        print(f"{len(runs) - len(bad)} of {len(runs)} runs whole")
        if sets:
            for m in sets:
                print(f"training set {m['id']}: {m['status']}" + (f": {m['problem']}" if m["problem"] else ""))
            print(f"{len(sets) - len(bad_sets)} of {len(sets)} training sets whole")
        return 1 if bad or bad_sets else 0
    rows = []
    for r in runs:
        counts = r.get("counts") if isinstance(r.get("counts"), dict) else {}
        rows.append((r["id"], r["time"].isoformat(sep=" ") if r["time"] else None, r["status"],
                     _count(counts, INPUT_KEYS), _count(counts, KEPT_KEYS), r["output_dir"]))
    if runs:
        write_rows(sys.stdout, ["id", "time", "status", "input", "kept", "output_dir"], rows, "table")
    for r in bad:
        print(f"curate runs: warning: run {r['id']} is {r['status']} and left out of queries: {r['problem']}",
              file=sys.stderr)
    if sets:
        print("\ntraining sets (curate materialize):")
        write_rows(sys.stdout, ["id", "status", "format", "unit", "written", "plan", "reconciled", "output_dir"],
                   [(m["id"], m["status"], m["format"], m["unit"], m["units_written"], round(m["plan_units"]),
                     m["reconciled"], m["output_dir"]) for m in sets], "table")
    for m in bad_sets:
        print(f"curate runs: warning: training set {m['id']} is {m['status']} and left out of the materialized "
              f"view: {m['problem']}", file=sys.stderr)
    return 0


INPUT_KEYS = ("input_records", "input", "records_in")
KEPT_KEYS = ("kept", "docs_kept", "output_records", "documents_kept")


def _count(counts: dict, keys):
    for key in keys:
        if isinstance(counts.get(key), int) and not isinstance(counts.get(key), bool):
            return counts[key]
    return None

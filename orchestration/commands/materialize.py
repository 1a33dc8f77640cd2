"""Turn a plan into the training set: each pool's planned unique subset, repeated as planned,
shuffled globally and written in equal shards.

Example:
  curate materialize plan.json --run run/ --output train/                  # Parquet shards
  curate materialize plan.json --run run/ --output train/ --format tokens --tokenizer tok.json

Per pool, the plan's `unique` units (documents, or bytes/characters/tokens: the plan's
recorded size_unit; for older plan files the unit its sizes match in the run; or --unit) are taken in seeded hash order (--order score: best
scored first); full epochs repeat them, a partial last epoch takes a fresh seeded permutation
of them up to the planned total. Every copy gets a seeded shuffle key; shards hold equal
counts of documents (within one), sorted by that key, and two copies of a document are at
least --window rows apart within a shard (fewer where a shard is too small for it; the
manifest counts any that could not be spaced).

Formats: parquet (columns text, id, pool, epoch, source, score; readable by
datasets.load_dataset("parquet"), pandas, DuckDB), jsonl, jsonl.gz, tokens (flat uint16/uint32
token ids per shard in train-*.bin, document start offsets as uint64 in train-*.idx; see
docs/materialize.md for a loader).

OUT/manifest.json reconciles with the plan: per pool unique units, epochs, units written and
the difference (within 0.5 % or one document), the total against the budget, the plan's and
the run's fingerprints, and every file with its SHA-256. Publishing is atomic (OUT/_SUCCESS);
the same plan, run and options reuse the published set (--force rewrites it); another set in
OUT needs --overwrite (the old set stays whole until the new one replaces it in one rename);
a folder curate did not write is refused. Beam options pass through as for `curate run`
(--direct_num_workers=2 --direct_running_mode=multi_processing, --runner=...).

With --workspace (or $CURATE_WORKSPACE) the set is registered in that workspace's catalog:
`curate runs` lists it and `curate query "select * from materialized"` shows which plan, which
run and which files.
"""
from __future__ import annotations

import argparse

from curate.orchestration.commands.run import BEAM_ARGS, _collect_unknown_as_beam_args

HELP = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", metavar="PLAN.json", help="plan file from `curate plan --budget ... -o`")
    parser.add_argument("--run", required=True, metavar="RUN_DIR", help="the `curate run` output the plan is for")
    parser.add_argument("--output", required=True, metavar="OUT", help="folder for the training set")
    parser.add_argument("--format", default="parquet", choices=("parquet", "jsonl", "jsonl.gz", "tokens"),
                        help="output format (default parquet)")
    parser.add_argument("--tokenizer", metavar="PATH",
                        help="Hugging Face tokenizer.json (or a folder holding one) for --format tokens")
    shards = parser.add_mutually_exclusive_group()
    shards.add_argument("--shards", type=int, metavar="N", help="number of shards")
    shards.add_argument("--shard-size", type=int, metavar="DOCS",
                        help="documents per shard (default 100000); a shard is held in memory while written")
    parser.add_argument("--seed", type=int, default=0, help="seed of every selection and shuffle (default 0)")
    parser.add_argument("--order", choices=("hash", "score"), default="hash",
                        help="which documents form a pool's unique subset: seeded hash order (default) "
                             "or best score first")
    parser.add_argument("--window", type=int, metavar="ROWS",
                        help="copies of a document at least this many rows apart in a shard (default 1000)")
    parser.add_argument("--unit", choices=("docs", "bytes", "chars", "tokens"),
                        help="the unit of the plan's pool sizes (default: the plan's size_unit, else inferred by "
                             "matching them to the run)")
    parser.add_argument("--size-tolerance", type=float, metavar="F",
                        help="largest relative difference allowed between the plan's pool sizes and the "
                             "run's (default 0.02)")
    parser.add_argument("--overwrite", action="store_true", help="replace a training set made from another plan or options")
    parser.add_argument("--force", action="store_true", help="rewrite even when OUT holds this very set")
    parser.add_argument("--workspace", metavar="DIR",
                        help="register the training set in DIR/catalog.duckdb (default $CURATE_WORKSPACE; "
                             "without either it is not registered)")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--json", action="store_true", help="progress as JSON lines on stderr, summary JSON on stdout")
    _collect_unknown_as_beam_args(parser)


def _summary(manifest: dict, output: str) -> str:
    unit = manifest["unit"]
    pools = "; ".join(f"{p['pool']} {p['unique_docs']} docs x {p['plan_epochs']:.2f} epochs -> "
                      f"{p['docs_written']} rows, {p['units_written']:,} {unit} ({p['relative_difference']:+.2%})"
                      for p in manifest["pools"] if p["plan_samples"] > 0)
    t, s, sp = manifest["total"], manifest["shards"], manifest["spacing"]
    ok = "yes" if manifest["reconciliation"]["holds"] else "NO"
    return (f"{pools}\n{manifest['reconciliation']['rows_written']:,} rows, {t['units_written']:,} {unit} "
            f"(plan {t['plan_units']:,.0f}, {t['relative_difference']:+.3%}); {s['count']} "
            f"{manifest['settings']['format']} shards of {s['rows_min']:,}..{s['rows_max']:,} rows; copies "
            f">= {sp['min_copy_gap'] if sp['min_copy_gap'] is not None else '-'} rows apart "
            f"({sp['violations']} not spaced); reconciled: {ok}\ntraining set: {output}/data "
            f"(manifest {output}/manifest.json)")


def _register(workspace: str | None, output: str) -> tuple[str | None, str | None]:
    """(catalog id, None) or (None, warning): a catalog problem never fails a published set."""
    import os

    workspace = workspace or os.environ.get("CURATE_WORKSPACE")
    if not workspace or "://" in output:
        return None, None
    try:
        from curate.pools.catalog import Catalog

        return Catalog(workspace).register_materialized(output), None
    except Exception as exc:  # noqa: BLE001 - the training set is valid; register it later
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return None, (f"the training set is published in {output} but could not be registered in the "
                      f"catalog ({first}); register it later with `curate register {output}`")


def run(args: argparse.Namespace) -> int:
    import json
    import logging
    import os
    import sys

    from curate.orchestration.materialize_job import MaterializeSettings, materialize
    from curate.orchestration.progress import ProgressMonitor, choose_mode

    if os.environ.get("CURATE_DEBUG") != "1":
        logging.getLogger().setLevel(logging.ERROR)  # Beam is chatty at WARNING
    settings = MaterializeSettings(
        fmt=args.format, tokenizer=args.tokenizer, shards=args.shards, shard_size=args.shard_size,
        seed=args.seed, order=args.order, window=args.window, unit=args.unit,
        size_tolerance=args.size_tolerance, beam_args=tuple(getattr(args, BEAM_ARGS, []) or []))
    mode = choose_mode(args.quiet, args.json)
    progress = None if mode == "quiet" else (
        lambda total, rows: ProgressMonitor(mode, total, total_rows=rows).watch)
    result = materialize(args.plan, args.run, args.output, settings, overwrite=args.overwrite,
                         force=args.force, progress=progress)
    manifest = result.manifest
    set_id, warning = _register(args.workspace, args.output)
    if warning:
        print(f"curate materialize: warning: {warning}", file=sys.stderr)
    if result.reused and not args.json:
        print(f"reusing the training set in {args.output}: same plan, run, options and code "
              f"(fingerprint {result.fingerprint[:12]}); pass --force to rewrite it")
    if not manifest["reconciliation"]["holds"]:
        print("curate materialize: warning: the written units do not reconcile with the plan within "
              "tolerance (see manifest.json 'pools' and 'total')", file=sys.stderr)
    if args.json:
        print(json.dumps({"event": "summary", "output": args.output, "reused": result.reused,
                          "fingerprint": result.fingerprint, "data": os.path.join(args.output, "data"),
                          "catalog_id": set_id, "catalog_warning": warning,
                          **{k: manifest[k] for k in ("unit", "pools", "total", "reconciliation",
                                                       "shards", "spacing", "files")}}, indent=2))
    else:
        print(_summary(manifest, args.output))
        if set_id:
            print(f"registered as training set {set_id!r} in the catalog (curate query \"select * from materialized\")")
    return 0 if manifest["reconciliation"]["holds"] else 1

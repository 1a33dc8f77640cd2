"""Run the curation pipeline: raw corpus -> dedup -> quality scores -> quality pools.

Reads JSONL / JSONL.gz, Parquet and HF `datasets` save_to_disk directories, dead-letters bad
records, removes exact and near duplicates (MinHash-LSH), scores documents with the Gopher,
C4 and FineWeb heuristics and buckets them into K pools by score quantile (pool 0 = best).

Writes into DIR: pools/pool=K/*.parquet, stats.parquet, dedup/, filtered/, dead_letter/,
manifest.json (config, versions, input fingerprints, counts that reconcile).

Optional embedding stages (off by default; MiniLM on CPU embeds ~30-40 docs/s per core):
  --semantic-dedup        embed documents and remove semantic duplicates (SemDeDup: spherical
                          k-means, FAISS on a GPU, then cosine > 1 - eps within a cluster;
                          dedup rows with method "semantic", the kept id and the cosine)
  --embedding-scores      fold embedding scores into the pool score: a reference classifier
                          (shipped default reference: House of Commons speeches + news) and
                          prototypicality (distance to the nearest k-means centroid), weighted
                          with the heuristic score (embedding_scores.weights)
  --quality-reference F   the same with your own reference: JSONL(.gz), one {"text": ...} per
                          line, texts that look like the data you want (up to 5000 are used)
  --embed-backend B       torch (default) or openvino-int8: CPU int8, ~3x faster (~100 docs/s on
                          2 cores), cosine >= 0.99 to fp32; pip install 'curate[fast-cpu]'
Either writes DIR/embeddings/*.parquet (id, embedding), joinable by id with the pools, and
adds heuristic_score, reference_score, prototypicality columns to the pools (embedding scores).

Config file (YAML or JSON), any subset of these sections: input (id_field, text_field,
max_text_bytes, ...), exact_dedup, near_dedup (threshold 0.8, num_perm, shingle_size,
bands/rows, verify), score (heuristics), filter (drop_failed, min_score), pools (num_pools,
cut_points, exact_max_docs), embed (model, device, precision, backend, mode, cache_dir, write, dtype),
embedding_scores (reference, negatives, C, weights {heuristic, reference, prototypicality}),
semantic_dedup (eps 0.1, n_clusters, ranking quality|far|close, max_cluster_size, seed).
Defaults, what each key means and its checks: pipelines/stage_configs.py (one class per stage).

Runs are atomic and idempotent: outputs are staged in DIR/_staging-* and published only when
the whole run succeeded (DIR/_SUCCESS is written last). A second run with the same config,
inputs and code reuses the published result (--force recomputes it); a killed run leaves no
visible partial output and the next run into DIR cleans up and completes. One run at a time
per DIR (a lock). MinHash signatures and embeddings are cached by content in WORKSPACE/cache
(--cache-dir), and the published run is registered in WORKSPACE/catalog.duckdb (--no-catalog
to skip).
Progress goes to stderr (--quiet: none; --json: JSON lines, summary JSON on stdout).

Paths: relative paths are made absolute here, since workers open them from folders of their
own. An input file the workers cannot read fails the run and nothing is published
(--allow-unreadable publishes the rest, the file dead-lettered as unreadable_file). On a runner
whose workers are not on this machine, the default workspace cache is switched off (a warning
says so) and a local --cache-dir is an error; Dataflow needs URLs (gs://) for every path.
See docs/runners.md.

Standard Apache Beam options pass through, e.g. --runner=FlinkRunner,
--direct_num_workers=2 --direct_running_mode=multi_processing. The default runner is the
local FnApiRunner with one worker process per CPU (at most 4; measured faster than one
in-process worker on 2 CPUs, at ~1.85x the memory: benchmarks/results/scale.md);
CURATE_LOCAL_WORKERS=1 runs in-process, the least memory.
"""
from __future__ import annotations

import argparse

HELP = __doc__

BEAM_ARGS = "_beam_args"


def _collect_unknown_as_beam_args(parser: argparse.ArgumentParser) -> None:
    """Route options this parser does not know into `args._beam_args` instead of failing.

    The dispatcher calls parse_args(); Beam's own options are validated later in run() (only
    flags some Beam PipelineOptions class defines are accepted), so typos still fail there.
    """
    original = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):
        namespace, extras = original(args, namespace)
        setattr(namespace, BEAM_ARGS, list(getattr(namespace, BEAM_ARGS, None) or []) + list(extras))
        return namespace, []

    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", action="append", required=True, metavar="PATH_OR_GLOB",
                        help="input file, glob or save_to_disk directory (repeatable)")
    parser.add_argument("--output", required=True, metavar="DIR", help="run directory to write")
    parser.add_argument("--config", metavar="FILE", help="YAML or JSON config (sections and defaults: pipelines/stage_configs.py)")
    parser.add_argument("--pools", type=int, metavar="K", help="number of quality pools (default 4)")
    parser.add_argument("--id-field", metavar="F", help="record field holding the id (default id)")
    parser.add_argument("--text-field", metavar="F", help="record field holding the text (default text)")
    parser.add_argument("--max-text-bytes", type=int, metavar="N",
                        help="dead-letter texts larger than N UTF-8 bytes (default 1000000)")
    parser.add_argument("--semantic-dedup", action="store_true",
                        help="embed documents and remove semantic duplicates (config semantic_dedup)")
    parser.add_argument("--embedding-scores", action="store_true",
                        help="combine embedding quality scores into the pool score (config embedding_scores)")
    parser.add_argument("--quality-reference", metavar="FILE.jsonl",
                        help="high-quality reference texts (JSONL with a 'text' field) for the embedding "
                             "quality classifier; implies --embedding-scores")
    # literal, not scorers.embedding_backends.BACKENDS: building the parser must not import numpy
    parser.add_argument("--embed-backend", choices=("torch", "openvino-int8"),
                        help="embedding backend: torch (default; fp32 on CPU, fp16 on a GPU) or openvino-int8 "
                             "(CPU int8, ~3x faster, cosine >= 0.99 to fp32; needs pip install 'curate[fast-cpu]'); "
                             "default: config embed.backend, else $CURATE_EMBED_BACKEND, else torch")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing run in DIR (made with another config or inputs)")
    parser.add_argument("--force", action="store_true",
                        help="recompute even if DIR holds a run with the same config, inputs and code")
    parser.add_argument("--workspace", metavar="DIR",
                        help="workspace holding catalog.duckdb and cache/ (default $CURATE_WORKSPACE "
                             "or ./curate-workspace)")
    parser.add_argument("--no-catalog", action="store_true", help="do not register the run in the catalog")
    parser.add_argument("--cache-dir", metavar="DIR",
                        help="stage cache folder (default WORKSPACE/cache); 'none' disables caching")
    parser.add_argument("--allow-unreadable", action="store_true",
                        help="publish even if some input files cannot be read (each is dead-lettered as "
                             "unreadable_file); by default one such file fails the run and nothing is published")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--json", action="store_true",
                        help="progress as JSON lines on stderr, summary as JSON on stdout")
    _collect_unknown_as_beam_args(parser)


def _summary(manifest: dict, output: str) -> str:
    c = manifest["counts"]
    per_pool = manifest["written_rows"]["per_pool"]
    pools = ", ".join(f"{k}:{v}" for k, v in sorted(per_pool.items(), key=lambda kv: int(kv[0])))

    def fmt(group):
        return ", ".join(f"{k} {v}" for k, v in c[group].items()) or "none"

    ok = "yes" if manifest["reconciliation"]["holds"] else "NO"
    extra = ""
    if "semantic_dedup" in manifest:
        extra += f"; semantic dedup at cosine > {manifest['semantic_dedup']['similarity_threshold']:g}"
    if "embedding_scores" in manifest:
        w = manifest["embedding_scores"].get("weights", {})
        extra += "; pool score = " + " + ".join(f"{v:g} {k}" for k, v in w.items() if v)
    return (f"{c['input_records']} records -> {c['kept']} kept in {len(per_pool)} pools [{pools}]; "
            f"removed: {fmt('removed')}; filtered: {fmt('filtered')}; dead-lettered: {fmt('dead_letter')}; "
            f"reconciled: {ok}{extra}; output: {output}")


def _workspace(args) -> str:
    import os

    return _absolute(args.workspace or os.environ.get("CURATE_WORKSPACE") or "curate-workspace")


def _absolute(path: str) -> str:
    import os

    return path if "://" in path else os.path.abspath(os.path.expanduser(path))


def _cache_dir(args) -> str | None:
    import os

    if args.cache_dir:
        return None if args.cache_dir.lower() == "none" else _absolute(args.cache_dir)
    return os.path.join(_workspace(args), "cache")


def _usable_cache_dir(cache_dir: str | None, config: dict, warn, *, default: bool = False,
                      workers_here: bool = True) -> str | None:
    """The stage cache folder to use: a workspace cache that cannot be written is skipped with
    one warning (a cache only saves time: the run goes on and gives the same result); an
    explicit `embed.cache_dir` that cannot be written is an error before any work.

    default: `cache_dir` is the workspace's (no --cache-dir given). workers_here: the runner's
    workers run on this machine. Otherwise a local default cache is switched off with one
    warning (workers elsewhere cannot share it); an explicit local one is refused by the runner.
    """
    from curate.orchestration.output_paths import unwritable_dir

    if default and not workers_here and cache_dir is not None and "://" not in cache_dir:
        warn(f"the workspace cache {cache_dir} is on this machine, where the runner's workers are not; "
             "running without a cache (pass --cache-dir gs://BUCKET/cache to share one)")
        cache_dir = None
    if not workers_here:
        return cache_dir  # a local one is refused by the runner before anything is written
    explicit = config["embed"]["enabled"] and config["embed"]["cache_dir"]
    if explicit:
        why = unwritable_dir(explicit)
        if why:
            from curate.orchestration.errors import CurateError

            raise CurateError(f"config embed.cache_dir {explicit} cannot be written ({why})")
    if cache_dir is None:
        return None
    why = unwritable_dir(cache_dir)
    if why is None:
        return cache_dir
    warn(f"cache directory {cache_dir} cannot be written ({why}); running without a cache "
         "(MinHash signatures and embeddings are recomputed; pass --cache-dir to choose another)")
    return None


def _register(args, output: str) -> tuple[str | None, str | None]:
    """(run id, None) or (None, warning): a catalog problem never fails a finished run."""
    if args.no_catalog or "://" in output:
        return None, None
    try:
        from curate.pools.catalog import register_run

        return register_run(output, _workspace(args), status="complete"), None
    except Exception as exc:  # noqa: BLE001 - the run directory is valid; register it later
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return None, (f"run is published in {output} but could not be registered in the catalog "
                      f"({first}); register it later with `curate register {output}`")


def run(args: argparse.Namespace) -> int:
    import json
    import logging
    import os

    from curate.orchestration.config import resolve_config

    if os.environ.get("CURATE_DEBUG") != "1":
        logging.getLogger().setLevel(logging.ERROR)  # Beam is chatty at WARNING on import
    config = resolve_config(args.config, pools=args.pools, id_field=args.id_field,
                            text_field=args.text_field, max_text_bytes=args.max_text_bytes,
                            semantic_dedup=args.semantic_dedup, embedding_scores=args.embedding_scores,
                            quality_reference=args.quality_reference, embed_backend=args.embed_backend)
    from curate.orchestration.dry_run import dry_run_report, dry_run_requested

    if dry_run_requested(getattr(args, BEAM_ARGS, []) or []):  # before inputs are listed or the output touched
        print(dry_run_report(args.input, args.output, config, getattr(args, BEAM_ARGS, []) or [], as_json=args.json))
        return 0
    from curate.orchestration.progress import ProgressMonitor, choose_mode
    from curate.orchestration.runner import execute_job, pool_warnings, warn, workers_on_launcher
    from curate.orchestration.worker_logs import hold_beam_errors

    args.output = _absolute(args.output)  # the workers' folder is not this one
    workers_here = workers_on_launcher(getattr(args, BEAM_ARGS, []) or [])
    mode = choose_mode(args.quiet, args.json)
    monitor = None
    if mode != "quiet":
        from curate.pipelines.inputs import expand_inputs

        try:
            total = sum(os.path.getsize(f.path) for f in expand_inputs(args.input) if "://" not in f.path)
        except (OSError, ValueError):
            total = 0  # the job reports input problems itself
        monitor = ProgressMonitor(mode, total)
    cache_dir = _usable_cache_dir(_cache_dir(args), config, warn, default=not args.cache_dir,
                                  workers_here=workers_here)
    try:
        with hold_beam_errors():  # Beam logs a failing step's traceback before raising it
            result = execute_job(args.input, args.output, config, getattr(args, BEAM_ARGS, []) or [],
                                 overwrite=args.overwrite, force=args.force, cache_dir=cache_dir,
                                 progress=monitor.watch if monitor else None,
                                 allow_unreadable=args.allow_unreadable)
    except Exception as exc:
        from curate.orchestration.errors import CurateError, pipeline_failure_message

        # disk full, read-only folder, ... inside a stage: Beam raises it wrapped with the
        # worker's traceback; the user needs the file and the reason, not 130 lines
        message = None if isinstance(exc, CurateError) else pipeline_failure_message(exc, args.output, cache_dir)
        if message is None:
            raise
        raise CurateError(message) from exc
    manifest = result.manifest
    run_id, warning = _register(args, args.output)
    if warning:
        warn(warning)
    for note in pool_warnings(manifest):  # e.g. empty pools; also said when a run is reused
        warn(note)
    if result.reused and not args.json:
        print(f"reusing the published run in {args.output}: same config, inputs and code "
              f"(fingerprint {result.fingerprint['run'][:12]}); pass --force to recompute it")
    if args.json:
        cache = manifest.get("near_dedup", {}).get("signature_cache", {})
        print(json.dumps({"event": "summary", "output": args.output, "reused": result.reused,
                          "fingerprint": result.fingerprint["run"], "catalog_run_id": run_id,
                          "catalog_warning": warning, "counts": manifest["counts"],
                          "reconciliation": manifest["reconciliation"],
                          "per_pool": manifest["written_rows"]["per_pool"],
                          "signature_cache": cache, "warnings": manifest.get("warnings", []),
                          **{k: manifest[k] for k in ("embeddings", "semantic_dedup", "embedding_scores")
                             if k in manifest}}, indent=2))
    else:
        print(_summary(manifest, args.output))
    return 0 if manifest["reconciliation"]["holds"] else 1

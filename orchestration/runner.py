"""Runner selection and the end-to-end `curate run` job: options -> pipeline -> checks -> publish.

Standard Beam options given on the command line pass through untouched (--runner,
--direct_num_workers, --direct_running_mode, Dataflow/Flink/Spark options...); anything Beam
does not know is an error. Without --runner we pin the FnApiRunner: the DirectRunner would
first try to download the Prism runner binary, which fails offline.
"""
from __future__ import annotations

import json
import os
import uuid

from orchestration.errors import CurateError
from orchestration.manifest import build_manifest, check_written, reconcile, summarise_counts

DEFAULT_RUNNER = "FnApiRunner"
PUBLISHED = ["pools", "dedup", "filtered", "dead_letter", "stats.parquet", "manifest.json"]


def unknown_beam_args(beam_args: list[str]) -> list[str]:
    """The flags in `beam_args` that no Beam PipelineOptions class defines."""
    from pipelines.options import unknown_beam_args as unknown

    return unknown(beam_args)


def pipeline_options(beam_args: list[str]):
    """PipelineOptions from pass-through args (default runner pinned); CurateError on unknown ones."""
    from pipelines.options import build_options

    try:
        return build_options(beam_args, DEFAULT_RUNNER)
    except ValueError as exc:
        raise CurateError(str(exc)) from None


def _output_in_use(output: str) -> bool:
    return any(os.path.exists(os.path.join(output, name)) for name in PUBLISHED) if "://" not in output else False


def run_job(inputs: list[str], output: str, config: dict, beam_args: list[str],
            overwrite: bool = False) -> dict:
    """Run the curation pipeline into `output`; return the manifest (also written there)."""
    from pipelines import fsutil
    from pipelines.curation import run_curation
    from pipelines.inputs import expand_inputs, fingerprint
    from pipelines.writing import CUTS_FILE
    from scorers.minhash import lsh_params

    options = pipeline_options(beam_args)
    files = expand_inputs(inputs)
    if "://" not in output and os.path.exists(output) and not os.path.isdir(output):
        raise CurateError(f"--output {output} exists and is not a directory")
    if _output_in_use(output) and not overwrite:
        raise CurateError(f"{output} already holds a run; pass --overwrite to replace it")
    fsutil.mkdirs(output)
    staging = os.path.join(output, f"_staging-{uuid.uuid4().hex[:12]}") if "://" not in output \
        else output.rstrip("/") + f"/_staging-{uuid.uuid4().hex[:12]}"
    try:
        outcome = run_curation(files, staging, config, options)
    except Exception:
        if fsutil.exists(staging):
            fsutil.delete(staging)
        raise
    counts = summarise_counts(outcome.counters)
    balance = reconcile(counts)
    written = check_written(counts, outcome.written)
    if not balance["holds"] or not written["matches"]:
        raise CurateError(
            f"run outputs do not reconcile (left in {staging}): {balance['equation']}; "
            f"rows written {written['found']} vs counted {written['expected']}")
    cuts_path = staging.rstrip("/") + "/" + CUTS_FILE
    pool_cuts = json.loads(fsutil.read_bytes(cuts_path))
    fsutil.delete(cuts_path)
    nd = config["near_dedup"]
    bands, rows = (nd["bands"], nd["rows"]) if nd["bands"] else lsh_params(nd["threshold"], nd["num_perm"], nd["min_lsh_recall"])
    manifest = build_manifest(
        config=config,
        inputs=[{"source": f.source, "kind": f.kind, **fingerprint(f.path)} for f in files],
        counters=outcome.counters,
        written=outcome.written,
        pool_cuts=pool_cuts,
        pipeline_options=options.get_all_options(drop_default=True),
        lsh={"bands": bands, "rows": rows},
    )
    fsutil.write_bytes(staging.rstrip("/") + "/manifest.json",
                       json.dumps(manifest, indent=2, sort_keys=True, default=str).encode("utf-8"))
    fsutil.publish(staging, output, PUBLISHED)
    return manifest

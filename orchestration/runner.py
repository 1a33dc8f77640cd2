"""Runner selection and the end-to-end `curate run` job: options -> pipeline -> checks -> publish.

Standard Beam options given on the command line pass through untouched (--runner,
--direct_num_workers, --direct_running_mode, Dataflow/Flink/Spark options...); anything Beam
does not know is an error. Without --runner we pin the FnApiRunner: the DirectRunner would
first try to download the Prism runner binary, which fails offline.

A job is atomic, idempotent and resumable (see pipelines/publish.py for the publish protocols):
it takes an exclusive lock on the output directory, finishes or removes what a killed run left
behind (the swap folder of an interrupted replacing publish, staging folders, a partially
published run of curate's own without a valid _SUCCESS marker), reuses a published run whose
fingerprint (config + inputs + code) matches unless forced, and otherwise runs into
DIR/_staging-<id> and publishes only after every check passed. With --force/--overwrite the
old run stays published and whole until the new one replaces it in one swap.

Paths are remote-safe by construction: the output, the cache and the config's files are made
absolute here, the inputs by `expand_inputs`, so a worker in another folder opens the same
files; a runner whose workers cannot read this machine at all (Dataflow) refuses local paths,
and any runner not on this machine refuses a local cache. An input file the workers could not
read (`unreadable_file`) fails the run before anything is published, unless allowed.
"""
from __future__ import annotations

import json
import os
import sys
import uuid
from dataclasses import dataclass

from curate.orchestration.errors import CurateError
from curate.orchestration.fingerprint import input_fingerprints, run_fingerprint
from curate.orchestration.manifest import build_manifest, check_written, reconcile, summarise_counts
from curate.orchestration.run_lock import RunLock
from curate.orchestration.worker_logs import quiet_worker_stderr

DEFAULT_RUNNER = "FnApiRunner"
PROGRESS_DIR = "_progress"
# worker subprocesses (multi_processing) log every bundle at INFO on stderr otherwise
QUIET_WORKERS = ["--default_sdk_harness_log_level=ERROR"]


def unknown_beam_args(beam_args: list[str]) -> list[str]:
    """The flags in `beam_args` that no Beam PipelineOptions class defines."""
    from curate.pipelines.options import unknown_beam_args as unknown

    return unknown(beam_args)


def pipeline_options(beam_args: list[str]):
    """PipelineOptions from pass-through args (default runner pinned); CurateError on unknown ones."""
    from curate.pipelines.options import build_options, with_local_workers

    try:
        return build_options(with_local_workers(beam_args), DEFAULT_RUNNER)
    except ValueError as exc:
        raise CurateError(str(exc)) from None


@dataclass
class JobResult:
    manifest: dict
    output: str
    reused: bool  # True: a published run with the same fingerprint was found and kept
    fingerprint: dict


def _join(root: str, name: str) -> str:
    return root.rstrip("/") + "/" + name if "://" in root else os.path.join(root, name)


def _quiet_worker_args(beam_args: list[str]) -> list[str]:
    if any(a.startswith("--default_sdk_harness_log_level") for a in beam_args):
        return beam_args
    return beam_args + QUIET_WORKERS


def workers_on_launcher(beam_args: list[str]) -> bool:
    """True when the runner's workers run on this machine, in this folder (the local runners,
    a LOOPBACK portable harness); CurateError on unknown flags."""
    from curate.pipelines.options import workers_on_launcher as on_launcher

    return on_launcher(pipeline_options(list(beam_args)))


def check_worker_paths(inputs: list[str], output: str, cache_dir: str | None, config: dict, options) -> None:
    """Refuse paths the runner's workers cannot share with the launcher (one line each).

    Workers on this machine: anything goes (paths are absolute by now). Workers elsewhere: a
    local cache is refused (each machine would keep a cache of its own, and the signature cache
    is listed here but read there). Dataflow's workers never see this machine's files: every
    local input, output and cache path is refused. Other runners (Flink, Spark, a
    portable job service) may mount a shared filesystem at the same path; a file they cannot
    read fails the run afterwards (`unreadable_file`). The quality reference is read on the
    launcher and a local model folder staged under the run's staging folder, so neither is
    read by a worker at its local path.
    """
    from curate.pipelines.fsutil import is_url
    from curate.pipelines.options import runner_name, workers_never_local
    from curate.pipelines.options import workers_on_launcher as on_launcher

    if on_launcher(options):
        return
    runner = runner_name(options)
    embed = config["embed"]
    caches = [("--cache-dir", cache_dir)] if cache_dir else []
    if embed["enabled"] and embed["cache_dir"]:
        caches.append(("embed.cache_dir", embed["cache_dir"]))
    for flag, path in caches:
        if not is_url(path):
            raise CurateError(f"{flag} {path} is a local folder, but the {runner} runner's workers do not "
                              "run on this machine and cannot share it: pass --cache-dir none (and no "
                              "embed.cache_dir), or a URL every worker can write (gs://BUCKET/cache)")
    if workers_never_local(options):
        named = [("--input", p) for p in inputs] + [("--output", output)]
        for flag, path in named:
            if not is_url(path):
                raise CurateError(f"{flag} {path} is a local path, but {runner} workers cannot read this "
                                  "machine's files; use a URL they can read (gs://BUCKET/...)")


def check_quality_reference(config: dict) -> None:
    """Fail early on an unusable reference file; record its sha256 (part of the fingerprint)."""
    es = config["embedding_scores"]
    if not (es["enabled"] and es["reference"]):
        return
    import hashlib

    from curate.pipelines.embedding_scores import reference_file_bytes, reference_texts

    try:
        raw = reference_file_bytes(es["reference"])
        reference_texts(raw, es["reference"], es["reference_field"], es["reference_limit"])
        es["reference_sha256"] = hashlib.sha256(raw).hexdigest()
    except (ValueError, OSError) as exc:
        raise CurateError(str(exc).splitlines()[0]) from None


def execute_job(inputs: list[str], output: str, config: dict, beam_args: list[str], *,
                overwrite: bool = False, force: bool = False, cache_dir: str | None = None,
                progress=None, allow_unreadable: bool = False) -> JobResult:
    """Run (or reuse) the curation of `inputs` into `output`.

    overwrite: replace a published run made with another fingerprint (else: CurateError).
    force: recompute even when the published run has the same fingerprint.
    cache_dir: stage cache folder (MinHash signatures); None disables caching.
    progress: a callable(progress_dir, stream) -> context manager reporting while the pipeline runs.
    allow_unreadable: publish even when some input files could not be read (they stay
    dead-lettered as `unreadable_file`); by default one such file fails the run unpublished.
    Relative paths are taken against the current folder and made absolute here.
    """
    from curate.orchestration.config import absolute_paths
    from curate.pipelines import fsutil, publish
    from curate.pipelines.inputs import expand_inputs, reading_plan

    options = pipeline_options(_quiet_worker_args(list(beam_args)))
    output = fsutil.absolute(output)
    cache_dir = fsutil.absolute(cache_dir) if cache_dir else None
    absolute_paths(config)
    check_worker_paths(list(inputs), output, cache_dir, config, options)
    files = expand_inputs(inputs)
    reading = reading_plan(files)  # big files in pieces; a warning for each one read whole
    for line in reading.warnings:
        warn(line)
    if "://" not in output and os.path.exists(output) and not os.path.isdir(output):
        raise CurateError(f"--output {output} exists and is not a directory")
    input_fps = input_fingerprints(files, cache_dir)  # whole-content hashes (size+mtime: a hint)
    check_quality_reference(config)
    fp = run_fingerprint(config, input_fps)

    fsutil.mkdirs(output)
    with RunLock(output):
        # safe: we hold the lock, nobody else writes here
        for path in publish.recover(output):
            warn(f"{path} was left beside {output} by an interrupted publish and could not be put back "
                 "(the run directory has that name again); nothing was deleted, move it yourself")
        publish.remove_stale_staging(output)
        marker = publish.read_marker(output)
        if marker is not None:
            same = marker.get("fingerprint") == fp["run"]
            if same and not (force or overwrite):
                manifest = json.loads(fsutil.read_bytes(_join(output, publish.MANIFEST)))
                return JobResult(manifest, output, True, fp)
            if not same and not (force or overwrite):
                raise CurateError(f"{output} already holds a run with another config or inputs; "
                                  "pass --overwrite to replace it")
        elif publish.leftovers(output):
            if not publish.is_own_leftover(output):
                # names curate publishes, but no marker says curate wrote them: never delete
                raise CurateError(f"{output} holds {', '.join(publish.leftovers(output))} that curate did "
                                  "not write (no _SUCCESS or _PUBLISHING marker); move them away or "
                                  "choose another --output")
            publish.unpublish(output)  # a killed run's partial publish: never valid, remove it
        manifest = _run_into_staging(files, input_fps, output, config, options, fp, cache_dir, progress,
                                     allow_unreadable, reading=reading)
    return JobResult(manifest, output, False, fp)


# dead-letter reasons that stand for a whole input file, not a record in it
UNREADABLE = "unreadable_file"
FILE_FAILURES = (UNREADABLE, "truncated_file")


def unread_inputs_problem(counts: dict, staging: str, n_files: int, allow_unreadable: bool) -> str | None:
    """Why a finished pipeline must not be published because of its inputs, or None.

    - any `unreadable_file` dead letter, unless allowed: a worker could not open an input (a path
      that does not exist where the worker runs, permissions, not the format its name says);
      publishing would look like a smaller corpus;
    - no record at all came out of the inputs while some file failed as a whole (every file
      unreadable or truncated before its first record): a reconciled empty run, allowed or not.
    """
    dead = counts["dead_letter"]
    unreadable = dead.get(UNREADABLE, 0)
    file_failures = sum(dead.get(r, 0) for r in FILE_FAILURES)
    read_records = counts["input_records"] - sum(dead.values())
    nothing_read = read_records == 0 and file_failures > 0
    if not unreadable and not nothing_read:
        return None
    if unreadable and allow_unreadable and not nothing_read:
        return None
    examples = _file_failures(staging, 3)
    named = "; ".join(f"{source} ({detail})" for source, detail in examples) or "see the dead letters"
    if nothing_read:
        return (f"no document could be read from the inputs: {file_failures} of {n_files} input file(s) failed as a "
                f"whole: {named}; nothing was published. Every worker must reach the inputs at these "
                "paths (use URLs such as gs://... for runners on other machines)")
    return (f"{unreadable} of {n_files} input file(s) could not be read by the workers: {named}; nothing "
            "was published. Every worker must reach the inputs at these paths (use URLs such as gs://... "
            "for runners on other machines); --allow-unreadable publishes the rest with these files "
            "dead-lettered")


def _file_failures(staging: str, limit: int) -> list[tuple[str, str]]:
    """(source, first line of the detail) of up to `limit` whole-file dead letters in staging."""
    from curate.pipelines import fsutil
    from curate.pipelines.writing import DEAD_LETTER_DIR

    found = []
    folder = _join(staging, DEAD_LETTER_DIR)
    for path in fsutil.list_files(folder) if fsutil.exists(folder) else []:
        for line in fsutil.read_bytes(path).splitlines():
            if not any(f'"{r}"'.encode() in line for r in FILE_FAILURES):
                continue  # cheap filter: most dead letters are records
            row = json.loads(line)
            if row.get("reason") in FILE_FAILURES:
                detail = (str(row.get("detail") or row["reason"]).splitlines() or [row["reason"]])[0]
                found.append((row.get("source"), detail[:200]))
                if len(found) >= limit:
                    return found
    return found


def _run_into_staging(files, input_fps, output, config, options, fp, cache_dir, progress,
                      allow_unreadable=False, reading=None) -> dict:
    from contextlib import nullcontext

    from curate.pipelines import fsutil, publish
    from curate.pipelines.curation import run_curation
    from curate.pipelines.runtime import set_runtime
    from curate.pipelines.writing import CUTS_FILE, STAGE_INFO_FILE
    from curate.pipelines.run_config import RunConfig

    staging = _join(output, f"{publish.STAGING_PREFIX}{uuid.uuid4().hex[:12]}")
    progress_dir = _join(staging, PROGRESS_DIR)
    set_runtime(options, cache_dir, progress_dir if progress else None)
    # issue 16: a local model folder is staged here for the workers (pipelines/job_files.py)
    from curate.pipelines.job_files import JOB_FILES_DIR, set_job_files_dir
    set_job_files_dir(options, _join(staging, JOB_FILES_DIR))
    try:
        with quiet_worker_stderr(_multi_processing(options)) as stream:
            with (progress(progress_dir, stream) if progress else nullcontext()):
                outcome = run_curation(list(reading.pieces) if reading else files, staging, config, options)
    except BaseException:
        if fsutil.exists(staging):
            fsutil.delete(staging)
        raise
    counts = summarise_counts(outcome.counters)
    problem = unread_inputs_problem(counts, staging, len(files), allow_unreadable)
    if problem:
        fsutil.delete(staging)  # nothing of it may be published
        raise CurateError(problem)
    balance = reconcile(counts)
    written = check_written(counts, outcome.written, RunConfig.of(config).writes_embeddings)
    if not balance["holds"] or not written["matches"]:
        raise CurateError(
            f"run outputs do not reconcile (left in {staging}): {balance['equation']}; "
            f"rows written {written['found']} vs counted {written['expected']}")
    cuts_path = _join(staging, CUTS_FILE)
    pool_cuts = json.loads(fsutil.read_bytes(cuts_path))
    fsutil.delete(cuts_path)
    info_path = _join(staging, STAGE_INFO_FILE)
    stage_info = {}
    if fsutil.exists(info_path):
        stage_info = json.loads(fsutil.read_bytes(info_path))
        fsutil.delete(info_path)
    if fsutil.exists(progress_dir):
        fsutil.delete(progress_dir)
    bands, rows = RunConfig.of(config).near_dedup.lsh_bands_rows()
    all_options = options.get_all_options(drop_default=True)
    all_options = {k: v for k, v in all_options.items() if not k.startswith("curate_")}
    manifest = build_manifest(
        config=config,
        inputs=input_fps,
        counters=outcome.counters,
        written=outcome.written,
        pool_cuts=pool_cuts,
        pipeline_options=all_options,
        lsh={"bands": bands, "rows": rows},
        fingerprint=fp,
        cache_dir=cache_dir,
        stage_info=stage_info,
        warnings=list(reading.warnings) if reading else [],
    )
    manifest["warnings"] += pool_warnings(manifest)
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode("utf-8")
    publish.publish(staging, output, manifest_bytes, fp["run"])
    return manifest


def pool_warnings(manifest: dict) -> list[str]:
    """Lines about the pools of a valid run that its user should still hear (empty pools)."""
    from curate.pools.bucketing import empty_pools_warning

    empty = empty_pools_warning(manifest["written_rows"]["per_pool"], manifest["pools"])
    return [empty] if empty else []


def _multi_processing(options) -> bool:
    from curate.pipelines.runtime import running_mode

    return running_mode(options) == "multi_processing"


def run_job(inputs: list[str], output: str, config: dict, beam_args: list[str],
            overwrite: bool = False, **kwargs) -> dict:
    """Run the curation pipeline into `output`; return the manifest (also written there)."""
    return execute_job(inputs, output, config, beam_args, overwrite=overwrite, **kwargs).manifest


def warn(message: str) -> None:
    print(f"curate run: warning: {message}", file=sys.stderr)

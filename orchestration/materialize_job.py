"""The `curate materialize` job: checks -> lock -> reuse or pipeline -> manifest -> publish.

Same runners and guarantees as `curate run` (orchestration/runner.py): Beam options pass
through (FnApiRunner by default), OUT is locked, written into OUT/_staging-*, and published
atomically (pipelines/materialize_publish.py). The fingerprint is the plan file's SHA-256, the
run's fingerprint and manifest hash, the options that shape the output, the tokenizer's
SHA-256 and the code version: the same fingerprint reuses the published set (--force
rewrites it, byte-identically). OUT holding anything curate materialize did not write is
refused and nothing in it is deleted. Replacing a published set (--overwrite, --force)
completes the new one beside it and swaps the two (pipelines/materialize_publish.py): the old
set stays whole until then; a swap that was killed is finished by the next run into OUT.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import uuid
from dataclasses import dataclass, field

from curate.orchestration.errors import CurateError
from curate.orchestration.fingerprint import code_version
from curate.orchestration.run_lock import RunLock
from curate.orchestration.runner import _quiet_worker_args, pipeline_options
from curate.orchestration.worker_logs import quiet_worker_stderr
from curate.pools.catalog import MATERIALIZED_FORMAT

FORMAT = MATERIALIZED_FORMAT  # the catalog reads these manifests (pools/catalog.py)
PROGRESS_DIR = "_progress"
# documents are discrete: a pool may miss its planned units by 0.5 % or one document
POOL_TOLERANCE = 0.005
TOTAL_TOLERANCE = 0.005


@dataclass(frozen=True)
class MaterializeSettings:
    fmt: str = "parquet"
    tokenizer: str | None = None
    shards: int | None = None
    shard_size: int | None = None
    seed: int = 0
    order: str = "hash"
    window: int | None = None
    unit: str | None = None
    size_tolerance: float | None = None
    beam_args: tuple[str, ...] = field(default_factory=tuple)


@dataclass
class MaterializeResult:
    manifest: dict
    output: str
    reused: bool
    fingerprint: str


def _check_settings(s: MaterializeSettings) -> None:
    from curate.pipelines.materialize_core import FORMATS, ORDERS

    if s.fmt not in FORMATS:
        raise CurateError(f"--format must be one of {', '.join(FORMATS)}, got {s.fmt!r}")
    if s.order not in ORDERS:
        raise CurateError(f"--order must be one of {', '.join(ORDERS)}, got {s.order!r}")
    if s.shards is not None and s.shard_size is not None:
        raise CurateError("give --shards or --shard-size, not both")
    for flag, value in (("--shards", s.shards), ("--shard-size", s.shard_size), ("--window", s.window)):
        if value is not None and value < 1:
            raise CurateError(f"{flag} must be a positive integer, got {value}")
    if s.fmt == "tokens" and not s.tokenizer:
        raise CurateError("--format tokens needs --tokenizer PATH (a Hugging Face tokenizer.json)")
    if s.tokenizer and s.fmt != "tokens":
        raise CurateError("--tokenizer is only used with --format tokens")


def read_tokenizer(path: str) -> tuple[str, dict]:
    """(tokenizer.json text, {path, sha256, vocab_size, dtype}) or CurateError."""
    p = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
    try:
        raw = open(p, "rb").read()
    except OSError as exc:
        raise CurateError(f"tokenizer {path}: {exc.strerror or exc} (give the path of a tokenizer.json)") from None
    try:
        from tokenizers import Tokenizer

        text = raw.decode("utf-8")
        tok = Tokenizer.from_str(text)
    except ImportError:
        raise CurateError("--format tokens needs the `tokenizers` package (pip install tokenizers)") from None
    except Exception as exc:  # noqa: BLE001 - the library raises its own exception types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CurateError(f"tokenizer {p} cannot be loaded: {first}") from None
    from curate.pipelines.materialize_core import token_dtype

    vocab = tok.get_vocab_size(with_added_tokens=True)
    import numpy as np

    return text, {"path": os.path.abspath(p), "sha256": hashlib.sha256(raw).hexdigest(),
                  "vocab_size": vocab, "dtype": np.dtype(token_dtype(vocab)).name,
                  "byteorder": "little"}


def _sha(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def materialize(plan: str, run_dir: str, output: str, settings: MaterializeSettings, *,
                overwrite: bool = False, force: bool = False, progress=None) -> MaterializeResult:
    """Turn `plan` on the pools of `run_dir` into the training set in `output`.

    progress: None, or a callable(total bytes of the pool files, rows expected to be written)
    returning a callable(progress dir, stream) -> context manager that reports while the
    pipeline runs.
    """
    from curate.pipelines import fsutil
    from curate.pipelines import materialize_publish as pub
    from curate.pipelines import publish
    from curate.pipelines.materialize_plan import DEFAULT_TOLERANCE, match_plan, pool_file_sizes
    from curate.pools.rundir import RunDir

    _check_settings(settings)
    tokenizer_json, tokenizer_info = (read_tokenizer(settings.tokenizer) if settings.fmt == "tokens"
                                      else (None, None))
    tolerance = DEFAULT_TOLERANCE if settings.size_tolerance is None else settings.size_tolerance
    matched = match_plan(plan, run_dir, unit=settings.unit, tolerance=tolerance)
    run = RunDir(run_dir)
    options = pipeline_options(_quiet_worker_args(list(settings.beam_args)))
    if os.path.exists(output) and not os.path.isdir(output):
        raise CurateError(f"--output {output} exists and is not a directory")
    foreign = pub.foreign_entries(output)
    if foreign:
        raise CurateError(f"--output {output} exists and holds {', '.join(foreign[:3])} that curate "
                          "materialize did not write; choose another --output")
    from curate.pipelines.materialize import DEFAULT_WINDOW

    window = settings.window or DEFAULT_WINDOW
    shaping = {"format": settings.fmt, "seed": settings.seed, "order": settings.order,
               "shards": settings.shards, "shard_size": settings.shard_size, "window": window,
               "unit": matched.unit}
    fp = _sha({"plan": matched.plan_sha256, "run": run.marker.get("fingerprint"),
               "run_manifest": run.marker.get("manifest_sha256"), "settings": shaping,
               "tokenizer": tokenizer_info and tokenizer_info["sha256"], "code": code_version()})
    created = not os.path.exists(output)
    fsutil.mkdirs(output)
    try:
        with RunLock(output):
            for path in pub.recover(output):  # a killed --overwrite's swap: finish it
                print(f"curate materialize: warning: {path} was left beside {output} by an interrupted "
                      "publish and could not be put back; nothing was deleted, move it yourself",
                      file=sys.stderr)
            publish.remove_stale_staging(output)
            marker = publish.read_marker(output)
            if marker is not None:
                manifest = json.loads(fsutil.read_bytes(os.path.join(output, publish.MANIFEST)))
                if manifest.get("format") != FORMAT:
                    raise CurateError(f"--output {output} holds a published `curate run`, not a training "
                                      "set; choose another --output")
                same = marker.get("fingerprint") == fp
                if same and not force:
                    return MaterializeResult(manifest, output, True, fp)
                if not same and not overwrite:
                    raise CurateError(f"--output {output} already holds a training set made from another "
                                      "plan, run or options; pass --overwrite to replace it")
            elif pub.leftovers(output):
                if not publish.is_own_leftover(output):
                    raise CurateError(f"--output {output} holds {', '.join(pub.leftovers(output))} that "
                                      "curate did not publish; choose another --output")
                pub.unpublish(output)  # a killed publish of ours: never valid
            watch = progress(pool_file_sizes(matched.files), expected_rows(matched, run)) if progress else None
            manifest = _run(matched, run, output, settings, shaping, tokenizer_json, tokenizer_info,
                            options, fp, watch)
    except BaseException:
        if created:
            _remove_if_only_lock(output)
        raise
    return MaterializeResult(manifest, output, False, fp)


def expected_rows(matched, run) -> int:
    """About how many rows the set will have (for progress): each pool's planned units over its
    mean units per document (exact for a plan in documents, up to rounding)."""
    docs = {f"pool{int(r['pool'])}": float(r["docs"] or 0) for r in run.stats()}
    total = 0.0
    for t in matched.targets:
        units = matched.run_units.get(t.name, 0.0)
        total += t.samples * docs.get(t.name, 0.0) / units if units > 0 else 0.0
    return int(round(total))


def _remove_if_only_lock(output: str) -> None:
    from curate.pipelines.materialize_publish import LOCK_NAME

    try:
        if os.path.isdir(output) and set(os.listdir(output)) <= {LOCK_NAME}:
            for name in os.listdir(output):
                os.remove(os.path.join(output, name))
            os.rmdir(output)
    except OSError:
        pass  # best effort: the error being raised is what matters


def _run(matched, run, output, settings, shaping, tokenizer_json, tokenizer_info, options, fp,
         progress) -> dict:
    from contextlib import nullcontext

    from curate.pipelines import fsutil
    from curate.pipelines import materialize_publish as pub
    from curate.pipelines.materialize import MaterializeSpec, run_materialize
    from curate.pipelines.runtime import running_mode

    spec = MaterializeSpec(
        targets=matched.targets,
        files=tuple((pool, f) for pool, fs in sorted(matched.files.items()) for f in fs),
        unit=matched.unit, seed=settings.seed, order=settings.order, fmt=settings.fmt,
        shards=settings.shards, shard_size=settings.shard_size, window=shaping["window"],
        tokenizer_json=tokenizer_json)
    staging = os.path.join(output, f"_staging-{uuid.uuid4().hex[:12]}")
    progress_dir = os.path.join(staging, PROGRESS_DIR)
    try:
        with quiet_worker_stderr(running_mode(options) == "multi_processing") as stream:
            with (progress(progress_dir, stream) if progress else nullcontext()):
                info = run_materialize(spec, staging, options, progress_dir if progress else None)
        if fsutil.exists(progress_dir):
            fsutil.delete(progress_dir)
        manifest = build_manifest(matched, run, info, shaping, tokenizer_info, fp, options)
        if not manifest["reconciliation"]["rows_match"]:
            raise CurateError(f"rows written {manifest['reconciliation']['rows_written']} differ from the "
                              f"copies selected {manifest['reconciliation']['rows_selected']}; not publishing")
        manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8")
        pub.publish(staging, output, manifest_bytes, fp)
    except BaseException:
        if fsutil.exists(staging):
            fsutil.delete(staging)
        raise
    return manifest


def build_manifest(matched, run, info: dict, shaping: dict, tokenizer_info, fp: str, options) -> dict:
    files = info["files"]
    written: dict[str, dict] = {}
    for f in files:
        for pool, c in f["per_pool"].items():
            w = written.setdefault(pool, {"docs": 0, "units": 0})
            w["docs"] += c["docs"]
            w["units"] += c["units"]
    pools, expected_rows = [], 0
    for t in matched.targets:
        sel = info["selections"].get(t.name, {})
        got = written.get(t.name, {"docs": 0, "units": 0})
        expected_rows += sel.get("full_epochs", 0) * sel.get("unique_docs", 0) + sel.get("partial_docs", 0)
        diff = got["units"] - t.samples
        allowed = max(POOL_TOLERANCE * t.samples, float(sel.get("max_doc_units", 0)))
        pools.append({
            "pool": t.name, "plan_unique": t.unique, "plan_epochs": t.epochs, "plan_samples": t.samples,
            "unique_docs": sel.get("unique_docs", 0), "unique_units": sel.get("unique_units", 0),
            "full_epochs": sel.get("full_epochs", 0), "partial_docs": sel.get("partial_docs", 0),
            "partial_units": sel.get("partial_units", 0),
            "max_copies": sel.get("full_epochs", 0) + (1 if sel.get("partial_docs") else 0),
            "docs_written": got["docs"], "units_written": got["units"], "difference": diff,
            "relative_difference": diff / t.samples if t.samples else 0.0,
            "allowed_difference": allowed, "within_tolerance": abs(diff) <= allowed,
            "pool_docs": sel.get("pool_docs", 0), "pool_units": sel.get("pool_units", 0)})
    total_written = sum(p["units_written"] for p in pools)
    total_diff = total_written - matched.budget
    total_ok = abs(total_diff) <= TOTAL_TOLERANCE * matched.budget
    rows = [f["rows"] for f in files]
    rows_written = sum(rows)
    plan = matched.plan
    all_options = {k: v for k, v in options.get_all_options(drop_default=True).items()
                   if not k.startswith("curate_")}
    return {
        "format": FORMAT,
        "fingerprint": fp,
        "code": code_version(),
        "plan": {"path": os.path.abspath(matched.plan_path), "sha256": matched.plan_sha256,
                 "law": plan.get("law"), "unit": plan.get("unit"), "budget": plan["plan"].get("budget"),
                 "draws": matched.budget, "mixture": plan["plan"].get("mixture")},
        "run": {"path": str(run.root), "fingerprint": run.marker.get("fingerprint"),
                "manifest_sha256": run.marker.get("manifest_sha256")},
        "unit": matched.unit, "unit_source": matched.unit_source,
        "size_deviation": matched.size_deviation,
        "settings": shaping,
        "tokenizer": tokenizer_info,
        "pools": pools,
        "total": {"plan_units": matched.budget, "units_written": total_written, "difference": total_diff,
                  "relative_difference": total_diff / matched.budget if matched.budget else 0.0,
                  "within_tolerance": total_ok, "tolerance": TOTAL_TOLERANCE},
        "reconciliation": {"holds": total_ok and all(p["within_tolerance"] for p in pools)
                           and rows_written == expected_rows,
                           "rows_written": rows_written, "rows_selected": expected_rows,
                           "rows_match": rows_written == expected_rows == info["layout"]["total"],
                           "pool_tolerance": f"{POOL_TOLERANCE:.1%} of the planned units or one document"},
        "shards": {"count": len(files), "rows_min": min(rows) if rows else 0,
                   "rows_max": max(rows) if rows else 0},
        "spacing": {"window": shaping["window"],
                    "smallest_window_used": min((f["window"] for f in files), default=None),
                    "violations": sum(f["spacing_violations"] for f in files),
                    "min_copy_gap": min((f["min_copy_gap"] for f in files if f["min_copy_gap"] is not None),
                                        default=None)},
        "files": [{k: f[k] for k in ("file", "rows", "bytes", "sha256", "tokens", "index_file", "index_sha256")
                   if k in f} for f in files],
        "pipeline_options": all_options,
    }

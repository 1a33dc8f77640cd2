"""manifest.json: config, versions, input fingerprints, counts, and the reconciliation proof.

Every input record ends in exactly one terminal bucket, so
    input_records = kept + sum(removed.*) + sum(filtered.*) + sum(dead_letter.*)
must hold; the manifest states the equation with its numbers and whether it holds. It also
states whether the rows found on disk match the Beam counters (the check that catches sinks
that silently drop files).
"""
from __future__ import annotations

import datetime as _dt
import platform

DEAD_LETTER = "dead_letter."
REMOVED = "removed."
FILTERED = "filtered."


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("curate", "apache-beam", "pyarrow", "numpy", "duckdb"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def _with_prefix(counters: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in sorted(counters.items()) if k.startswith(prefix)}


def summarise_counts(counters: dict) -> dict:
    """Counter dict (flat names) -> structured counts."""
    return {
        "input_records": counters.get("input_records", 0),
        "kept": counters.get("kept", 0),
        "removed": _with_prefix(counters, REMOVED),
        "filtered": _with_prefix(counters, FILTERED),
        "dead_letter": _with_prefix(counters, DEAD_LETTER),
        "renamed_duplicate_ids": counters.get("renamed_duplicate_ids", 0),
        "embedded": counters.get("embedded", 0),  # informational: not a terminal bucket
    }


def reconcile(counts: dict) -> dict:
    """The accounting equation with numbers, and whether it holds."""
    terms = [("kept", counts["kept"])]
    for group in ("removed", "filtered", "dead_letter"):
        terms += [(f"{group}.{k}", v) for k, v in counts[group].items()]
    total = sum(v for _, v in terms)
    rhs = " + ".join(f"{name} ({v})" for name, v in terms)
    return {
        "equation": f"input_records ({counts['input_records']}) = {rhs}",
        "accounted": total,
        "holds": total == counts["input_records"],
    }


def check_written(counts: dict, written: dict, embeddings_written: bool = False) -> dict:
    """Rows on disk vs counters, per output (embeddings: one row per embedded document)."""
    expected = {
        "pools": counts["kept"],
        "dedup": sum(counts["removed"].values()),
        "filtered": sum(counts["filtered"].values()),
        "dead_letter": sum(counts["dead_letter"].values()),
    }
    found = {
        "pools": sum(written["pools"].values()),
        "dedup": written["dedup"],
        "filtered": written["filtered"],
        "dead_letter": written["dead_letter"],
    }
    if embeddings_written:
        expected["embeddings"] = counts.get("embedded", 0)
        found["embeddings"] = written.get("embeddings", 0)
    return {"expected": expected, "found": found, "matches": expected == found}


def embedding_sections(config: dict, counts: dict, written: dict, stage_info: dict,
                       cache_dir: str | None = None) -> dict:
    """Manifest sections of the optional embedding stages (absent when they are off)."""
    out: dict = {}
    embed = config["embed"]
    if not embed["enabled"]:
        return out
    from curate.scorers.embedding import DEFAULT_MODEL
    from curate.scorers.embedding_backends import default_backend

    out["embeddings"] = {
        "model": embed["model"] or DEFAULT_MODEL, "mode": embed["mode"], "dtype": embed["dtype"],
        "backend": embed.get("backend") or default_backend(),
        "documents": counts.get("embedded", 0),
        "dir": "embeddings/" if embed["write"] else None,
        "rows_written": written.get("embeddings", 0) if embed["write"] else 0,
        "cache_dir": embed["cache_dir"] or (cache_dir.rstrip("/") + "/embeddings" if cache_dir else None),
    }
    sem, es = config["semantic_dedup"], config["embedding_scores"]
    clusters = stage_info.get("clusters")
    if sem["enabled"]:
        out["semantic_dedup"] = {"eps": sem["eps"], "similarity_threshold": round(1.0 - sem["eps"], 12),
                                 "ranking": sem["ranking"], "removed": counts["removed"].get("semantic", 0),
                                 "clusters": clusters}
    if es["enabled"]:
        out["embedding_scores"] = {**stage_info.get("embedding_scores", {}), "clusters": clusters,
                                   "reference_sha256": es["reference_sha256"],
                                   "score": "combined: sum_i w_i * s_i / sum_i |w_i|; heuristic_score keeps the rule-based score"}
    return out


def build_manifest(*, config: dict, inputs: list[dict], counters: dict, written: dict,
                   pool_cuts: dict, pipeline_options: dict, lsh: dict,
                   fingerprint: dict | None = None, cache_dir: str | None = None,
                   stage_info: dict | None = None, warnings: list[str] | None = None) -> dict:
    counts = summarise_counts(counters)
    from curate.pipelines.run_config import RunConfig

    emb_written = RunConfig.of(config).writes_embeddings
    return {
        "format": "curate-run/1",
        # config + inputs + code hashes; a re-run with the same `fingerprint.run` reuses this run
        "fingerprint": fingerprint,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "config": config,
        "pipeline_options": pipeline_options,
        "inputs": inputs,
        # launch warnings about the inputs (e.g. a big gzip file that one worker reads whole)
        "warnings": list(warnings or []),
        "counts": counts,
        "reconciliation": reconcile(counts),
        "written_rows": {**check_written(counts, written, emb_written),
                         "per_pool": {str(k): v for k, v in written["pools"].items()}},
        **embedding_sections(config, counts, written, stage_info or {}, cache_dir),
        "pools": pool_cuts,
        "near_dedup": {
            **lsh,
            "candidate_pairs": counters.get("near_dedup.candidate_pairs", 0),
            "verified_pairs": counters.get("near_dedup.verified_pairs", 0),
            "cc_residual_edges": counters.get("near_dedup.cc_residual_edges", 0),
            "cc_converged_without_fallback": counters.get("near_dedup.cc_residual_edges", 0) == 0,
            "signature_cache": {
                "dir": cache_dir,
                "hits": counters.get("near_dedup.signature_cache_hits", 0),
                "misses": counters.get("near_dedup.signature_cache_misses", 0),
            },
        },
    }

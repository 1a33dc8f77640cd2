"""Write small synthetic run directories that follow the run-directory contract (DESIGN.md).

Used by the catalog, query and report tests so they do not depend on the Beam pipeline; the
end-to-end tests use a real `curate run` output instead. Deterministic for a given seed.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from curate.pools import rundir

WORDS = ("data quality pool score token model corpus web page text news health tweet "
         "science sport market city river music film game school water").split()


def make_docs(n: int, seed: int, id_prefix: str = "doc", sources=("news.jsonl", "web.jsonl", "wiki.jsonl")):
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n):
        words = [WORDS[j] for j in rng.integers(0, len(WORDS), size=int(rng.integers(5, 60)))]
        text = " ".join(words)
        docs.append({
            "id": f"{id_prefix}-{i:05d}",
            "text": text,
            "source": sources[int(rng.integers(0, len(sources)))],
            "chars": len(text),
            "tokens": int(round(len(words) * 1.3)),
            "score": float(np.round(rng.random(), 6)),
        })
    return docs


def assign_pools(docs, k: int):
    """Pool by score quantile, pool 0 = best; ties by id (same rule as the pipeline)."""
    ordered = sorted(docs, key=lambda d: (-d["score"], d["id"]))
    for rank, doc in enumerate(ordered):
        doc["pool"] = min(k - 1, rank * k // len(ordered))
    return docs


def write_run(run_dir: Path, docs, *, k: int = 3, run_id: str | None = None, duplicates=None,
              dead_letter=None, filtered=None, dedup_format: str = "parquet") -> dict:
    """Write pools/, stats.parquet, dedup/, dead_letter/, manifest.json; returns the manifest."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    run_dir = Path(run_dir)
    duplicates = duplicates or []
    dead_letter = dead_letter or []
    filtered = filtered or []
    stats_rows = []
    for pool in range(k):
        members = [d for d in docs if d["pool"] == pool]
        out = run_dir / "pools" / f"pool={pool}"
        out.mkdir(parents=True, exist_ok=True)
        if members:
            pq.write_table(pa.Table.from_pylist(members), out / "part-00000-of-00001.parquet")
        share = {}
        for d in members:
            share[d["source"]] = share.get(d["source"], 0) + 1
        scores = [d["score"] for d in members]
        stats_rows.append({
            "pool": pool, "docs": len(members), "chars": sum(d["chars"] for d in members),
            "tokens": sum(d["tokens"] for d in members),
            "score_min": min(scores) if scores else None,
            "score_mean": float(np.mean(scores)) if scores else None,
            "score_max": max(scores) if scores else None,
            "source_share": json.dumps({s: c / len(members) for s, c in sorted(share.items())}),
        })
    pq.write_table(pa.Table.from_pylist(stats_rows), run_dir / "stats.parquet")
    (run_dir / "dedup").mkdir(parents=True, exist_ok=True)
    if duplicates:
        if dedup_format == "parquet":
            pq.write_table(pa.Table.from_pylist(duplicates), run_dir / "dedup" / "part-00000.parquet")
        else:
            with open(run_dir / "dedup" / "part-00000.jsonl", "w") as fh:
                for row in duplicates:
                    fh.write(json.dumps(row) + "\n")
    (run_dir / "dead_letter").mkdir(parents=True, exist_ok=True)
    if dead_letter:
        with gzip.open(run_dir / "dead_letter" / "part-00000.jsonl.gz", "wt") as fh:
            for row in dead_letter:
                fh.write(json.dumps(row) + "\n")
    if filtered:
        (run_dir / "filtered").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(filtered), run_dir / "filtered" / "part-00000.parquet")
    methods, reasons, dead_reasons = {}, {}, {}
    for row in duplicates:
        methods[row["method"]] = methods.get(row["method"], 0) + 1
    for row in filtered:
        reasons[row["reason"]] = reasons.get(row["reason"], 0) + 1
    for row in dead_letter:
        dead_reasons[row["reason"]] = dead_reasons.get(row["reason"], 0) + 1
    total = len(docs) + len(duplicates) + len(dead_letter) + len(filtered)
    # Same layout as the pipeline's manifest ("curate-run/1").
    manifest = {
        "format": "curate-run/1",
        "run_id": run_id,
        "created_utc": "2026-01-02T03:04:05+00:00",
        "config": {"pools": {"num_pools": k}, "near_dedup": {"threshold": 0.8}},
        "versions": {"curate": "0.1.0"},
        "inputs": [{"path": "/data/news.jsonl", "size": 123, "sha256_first_mb": "ab" * 32}],
        "counts": {
            "input_records": total,
            "dead_letter": dead_reasons,
            "removed": methods,
            "filtered": reasons,
            "kept": len(docs),
        },
        "reconciliation": {"accounted": total, "holds": True},
    }
    if run_id is None:
        del manifest["run_id"]
    publish_manifest(run_dir, manifest)
    return manifest


def publish_manifest(run_dir: Path, manifest: dict) -> None:
    """Write manifest.json as `curate run` publishes it: with a _SUCCESS marker naming its hash."""
    manifest_bytes = json.dumps(manifest, indent=2).encode("utf-8")
    (run_dir / "_SUCCESS").write_bytes(rundir.marker_bytes(manifest_bytes, fingerprint="fixture"))
    (run_dir / "manifest.json").write_bytes(manifest_bytes)


def make_run(run_dir: Path, *, n: int = 120, k: int = 3, seed: int = 0, run_id: str | None = None,
             id_prefix: str = "doc", n_dups: int = 12, n_dead: int = 4, n_filtered: int = 5,
             dedup_format: str = "parquet"):
    """A complete synthetic run; returns (manifest, kept docs, duplicate rows)."""
    docs = make_docs(n + n_filtered, seed, id_prefix)
    filtered_docs, docs = docs[:n_filtered], docs[n_filtered:]
    assign_pools(docs, k)
    rng = np.random.default_rng(seed + 1)
    duplicates = []
    for i in range(n_dups):
        kept = docs[int(rng.integers(0, min(len(docs), 6)))]["id"]  # a few large clusters
        method = "exact" if i % 3 == 0 else "near"
        duplicates.append({"removed_id": f"{id_prefix}-dup-{i:04d}", "kept_id": kept, "method": method,
                           "similarity": 1.0 if method == "exact" else float(np.round(0.8 + 0.2 * rng.random(), 4))})
    dead = [{"source": "/data/news.jsonl", "line": 7 + i, "reason": ["bad_json", "missing_text"][i % 2],
             "raw": "{not json" if i % 2 == 0 else '{"id": "x"}'} for i in range(n_dead)]
    filtered = [{"id": d["id"], "source": d["source"], "reason": "gopher_quality", "score": d["score"]}
                for d in filtered_docs]
    manifest = write_run(run_dir, docs, k=k, run_id=run_id, duplicates=duplicates, dead_letter=dead,
                         filtered=filtered, dedup_format=dedup_format)
    return manifest, docs, duplicates

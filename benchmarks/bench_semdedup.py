"""Semantic dedup time and peak memory on synthetic 384-d embeddings with planted duplicates.

Compares against exact all-pairs nearest-neighbour search (faiss.IndexFlatIP) on 100k.
Usage: python benchmarks/bench_semdedup.py [--sizes 100000 1000000] [--out benchmarks/results/semdedup.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scorers.semdedup import SemDedupConfig, semantic_dedup  # noqa: E402

DIM = 384


def synthetic(n: int, dup_fraction: float = 0.01, seed: int = 0):
    """Mixture of 2000 topics (within-topic cosine ~0.3-0.5) plus noisy copies (cosine ~0.98)."""
    rng = np.random.default_rng(seed)
    n_dups = int(n * dup_fraction)
    n_base = n - n_dups
    centers = rng.standard_normal((2000, DIM), dtype=np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    x = np.empty((n, DIM), dtype=np.float32)
    step = 200_000
    for s in range(0, n_base, step):
        e = min(s + step, n_base)
        x[s:e] = centers[rng.integers(0, 2000, e - s)] + rng.standard_normal((e - s, DIM), dtype=np.float32) / np.sqrt(DIM) * 1.2
    src = rng.integers(0, n_base, n_dups)
    x[n_base:] = x[src] + rng.standard_normal((n_dups, DIM), dtype=np.float32) / np.sqrt(DIM) * 0.15
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, src, n_base


def exact_pairs(x: np.ndarray, threshold: float) -> tuple[set, float]:
    import faiss

    t = time.perf_counter()
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    sims, nn = index.search(x, 2)
    dt = time.perf_counter() - t
    pairs = set()
    for i in range(len(x)):
        for sim, j in zip(sims[i], nn[i]):
            if j != i and sim > threshold:
                pairs.add((min(i, j), max(i, j)))
    return pairs, dt


def run(n: int, with_exact: bool) -> dict:
    x, src, n_base = synthetic(n)
    ids = [f"doc{i:08d}" for i in range(n)]
    cfg = SemDedupConfig()
    tracemalloc.start()
    t = time.perf_counter()
    result = semantic_dedup(ids, x, config=cfg)
    seconds = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    planted = {(int(s), n_base + k) for k, s in enumerate(src)}
    flagged = set(np.flatnonzero(result.is_duplicate).tolist())
    found = sum(1 for a, b in planted if a in flagged or b in flagged)
    row = {
        "n_docs": n, "dim": DIM, "eps": cfg.eps, "n_clusters": result.model.n_clusters,
        "n_leaves": result.model.n_leaves, "seconds": round(seconds, 2),
        "docs_per_s": round(n / seconds), "numpy_peak_mb": round(peak / 2**20, 1),
        "input_mb": round(x.nbytes / 2**20, 1), "n_by_n_matrix_gb": round(n * n * 4 / 2**30, 1),
        "removed": result.n_removed, "planted": len(planted), "planted_found": found,
        "max_tile_elements": result.max_tile_elements,
    }
    print(json.dumps(row), flush=True)
    if with_exact:
        pairs, exact_s = exact_pairs(x, 1 - cfg.eps)
        hit = sum(1 for a, b in pairs if a in flagged or b in flagged)
        row.update({"exact_flatip_seconds": round(exact_s, 2), "exact_pairs_above_threshold": len(pairs),
                    "exact_pairs_caught_by_semdedup": hit})
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--out", default="benchmarks/results/semdedup_cpu.json")
    ap.add_argument("--no-exact", action="store_true", help="skip the all-pairs IndexFlatIP reference")
    args = ap.parse_args()
    rows = []
    for n in args.sizes:
        row = run(n, with_exact=n <= 100_000 and not args.no_exact)
        print(json.dumps(row), flush=True)
        rows.append(row)
        Path(args.out).write_text(json.dumps({"runs": rows}, indent=1) + "\n")  # partial results survive
    meta = {"machine": platform.machine(), "processor": platform.processor(),
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "note": "shared 2-core machine; other jobs were running"}
    Path(args.out).write_text(json.dumps({"meta": meta, "runs": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

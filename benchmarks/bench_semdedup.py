"""Semantic dedup time and peak memory on synthetic 384-d embeddings with planted duplicates.

Compares against exact all-pairs nearest-neighbour search (faiss.IndexFlatIP) on 100k.
``--baseline REV`` also runs the semantic dedup of git revision REV (e.g. the commit before
a speed-up) on the same data in the same process, so the speed-up is a ratio measured under
the same machine load.  Each row carries a per-stage breakdown of the wall time.
``--sample-memory-mb MB`` adds a row of the current code with the k-means sample capped at
MB (so the cap binds at 1M), and ``--sample-only`` measures the bounded bottom-k sample alone
(every document streamed through 100 partial samples merged one at a time, as Beam's combine
does): time and traced peak against the number of documents.
Usage: python benchmarks/bench_semdedup.py [--sizes 100000 1000000] [--baseline REV]
       [--sample-memory-mb 32] [--sample-only] [--out benchmarks/results/semdedup.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import curate.scorers.semdedup as current_semdedup  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

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


def load_baseline(rev: str):
    """``scorers.semdedup`` (with its ``scorers.clustering``) as of git revision ``rev``."""
    folder = Path(tempfile.mkdtemp(prefix="semdedup_baseline_"))
    for name in ("clustering", "semdedup"):
        text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:scorers/{name}.py"],
                              capture_output=True, text=True, check=True).stdout
        for old in ("from scorers.clustering import", "from curate.scorers.clustering import"):
            text = text.replace(old, "from baseline_clustering import")
        (folder / f"baseline_{name}.py").write_text(text)
    sys.path.insert(0, str(folder))
    import baseline_semdedup

    return baseline_semdedup


class StageTimer:
    """Wall time of the pipeline stages, by wrapping the module functions that run them.

    Works on the current and the baseline module alike (same function names).  The
    dedup phase (grouping by leaf, per-cluster dedup, assembly) is what is left.
    """

    STAGES = {"sample_mask": "sample selection (id hash)", "training_sample_rows": "sample selection (id hash)",
              "fit_on_sample": "k-means fit"}

    def __init__(self, module):
        self.module, self.seconds, self._undo = module, {}, []

    def _wrap(self, owner, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - t

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def __enter__(self):
        for name, label in self.STAGES.items():
            if hasattr(self.module, name):  # the baseline and the current code name stages differently
                self._wrap(self.module, name, label)
        self._wrap(self.module.ClusterModel, "assign", "assign (nearest centroid, all docs)")
        return self

    def __exit__(self, *exc):
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)

    def breakdown(self, total: float) -> dict:
        out = {k: round(v, 2) for k, v in self.seconds.items()}
        out["dedup phase + rest (normalise, group, per-cluster, assemble)"] = round(total - sum(self.seconds.values()), 2)
        return out


def traced_peak_mb(module, ids, x, cfg) -> float:
    """Peak numpy/Python memory of one more run under tracemalloc (kept out of the timing:
    tracing every allocation slowed the timed run by up to 2x, most in the per-id hashing
    and the threaded per-cluster loop)."""
    tracemalloc.start()
    module.semantic_dedup(ids, x, config=cfg)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return round(peak / 2**20, 1)


def run(n: int, with_exact: bool, module=current_semdedup, label: str = "current", data=None,
        trace: bool = True, config_kwargs: dict | None = None) -> dict:
    x, src, n_base = synthetic(n) if data is None else data
    ids = [f"doc{i:08d}" for i in range(n)]
    cfg = module.SemDedupConfig(**(config_kwargs or {}))
    load_before = os.getloadavg()
    with StageTimer(module) as timer:
        t = time.perf_counter()
        result = module.semantic_dedup(ids, x, config=cfg)
        seconds = time.perf_counter() - t
    load_after = os.getloadavg()
    planted = {(int(s), n_base + k) for k, s in enumerate(src)}
    involved = {i for pair in planted for i in pair}
    flagged = set(np.flatnonzero(result.is_duplicate).tolist())
    found = sum(1 for a, b in planted if a in flagged or b in flagged)
    row = {
        "code": label, "n_docs": n, "dim": DIM, "eps": cfg.eps, "n_clusters": result.model.n_clusters,
        "training_rows": (len(module.training_sample_rows(ids, DIM, cfg))
                          if hasattr(module, "training_sample_rows") else None),
        "sample_memory_mb": getattr(cfg, "sample_memory_mb", None),
        "n_leaves": result.model.n_leaves, "seconds": round(seconds, 2),
        "docs_per_s": round(n / seconds), "numpy_peak_mb": traced_peak_mb(module, ids, x, cfg) if trace else None,
        "input_mb": round(x.nbytes / 2**20, 1), "n_by_n_matrix_gb": round(n * n * 4 / 2**30, 1),
        "removed": result.n_removed, "planted": len(planted), "planted_found": found,
        "false_removals": len(flagged - involved),
        "max_tile_elements": result.max_tile_elements,
        "load_avg_1_5_15_before": [round(v, 2) for v in load_before],
        "load_avg_1_5_15_after": [round(v, 2) for v in load_after],
        "stages_s": timer.breakdown(seconds),
    }
    print(json.dumps(row), flush=True)
    if with_exact:
        pairs, exact_s = exact_pairs(x, 1 - cfg.eps)
        hit = sum(1 for a, b in pairs if a in flagged or b in flagged)
        row.update({"exact_flatip_seconds": round(exact_s, 2), "exact_pairs_above_threshold": len(pairs),
                    "exact_pairs_caught_by_semdedup": hit})
    return row


def sample_only(n: int, partials: int = 100) -> dict:
    """The Beam k-means sample (``pipelines.semdedup.BottomKSample``) fed all n documents.

    No hash pre-filter (it would pass only ~the sample), so this is the accumulator's worst
    case: every row offered to a partial sample, partials merged one at a time.
    """
    from curate.pipelines.semdedup import BottomKSample
    from curate.scorers.clustering import DEFAULT_SAMPLE_MEMORY_MB, DEFAULT_SAMPLE_SIZE, id_hashes64

    rng = np.random.default_rng(0)
    block = rng.standard_normal((1000, DIM), dtype=np.float32)
    payloads = [v.tobytes() for v in block]
    ids = [f"doc{i:08d}" for i in range(n)]
    hashes = id_hashes64(ids).tolist()
    fn = BottomKSample(DEFAULT_SAMPLE_SIZE, DEFAULT_SAMPLE_MEMORY_MB)
    per = -(-n // partials)

    def partial(p):
        acc = fn.create_accumulator()
        for i in range(p * per, min(n, (p + 1) * per)):
            # a distinct object per row, as rows arriving from a shuffle are
            fn.add_input(acc, (hashes[i], ids[i], bytearray(payloads[i % 1000])))
        return acc

    t = time.perf_counter()
    tracemalloc.start()
    merged = fn.merge_accumulators(partial(p) for p in range(partials))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    sample = fn.extract_output(merged)
    row = {"what": "bottom-k sample alone", "n_docs": n, "dim": DIM, "partials": partials,
           "sample_rows": len(sample), "cap_mb": DEFAULT_SAMPLE_MEMORY_MB, "sample_size": DEFAULT_SAMPLE_SIZE,
           "vector_mb_in_sample": round(len(sample) * DIM * 4 / 2**20, 1),
           "traced_peak_mb": round(peak / 2**20, 1), "seconds_traced": round(time.perf_counter() - t, 2),
           "all_vectors_mb": round(n * DIM * 4 / 2**20, 1)}
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--out", default="benchmarks/results/semdedup_cpu.json")
    ap.add_argument("--no-exact", action="store_true", help="skip the all-pairs IndexFlatIP reference")
    ap.add_argument("--baseline", metavar="REV", help="also run scorers/semdedup.py of this git revision")
    ap.add_argument("--no-baseline-memory", action="store_true",
                    help="skip the (slow) traced-memory pass of the baseline")
    ap.add_argument("--sample-memory-mb", type=float, help="also run the current code with this k-means sample cap")
    ap.add_argument("--sample-only", action="store_true", help="measure the bounded k-means sample alone")
    args = ap.parse_args()
    if args.sample_only:
        rows = [sample_only(n) for n in args.sizes]
        Path(args.out).write_text(json.dumps({"runs": rows}, indent=1) + "\n")
        return 0
    baseline = load_baseline(args.baseline) if args.baseline else None
    rows = []

    def save(meta=None):  # after every row, so partial results survive
        Path(args.out).write_text(json.dumps({**({"meta": meta} if meta else {}), "runs": rows}, indent=1) + "\n")

    for n in args.sizes:
        data = synthetic(n)
        row = run(n, with_exact=n <= 100_000 and not args.no_exact, data=data)
        rows.append(row)
        save()
        if args.sample_memory_mb:
            capped = run(n, with_exact=False, label=f"current, sample capped at {args.sample_memory_mb:g} MB",
                         data=data, config_kwargs={"sample_memory_mb": args.sample_memory_mb}, trace=False)
            rows.append(capped)
            save()
        if baseline is not None:
            old = run(n, with_exact=False, module=baseline, label=f"baseline {args.baseline}", data=data,
                      trace=not args.no_baseline_memory)
            old["speedup_current_vs_baseline"] = round(old["seconds"] / row["seconds"], 2)
            rows.append(old)
            save()
        del data
    meta = {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "note": "shared 2-core machine; other jobs were running (see load_avg_* per row)"}
    save(meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

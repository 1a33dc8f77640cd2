"""Nearest-centroid assignment of 1M x 384 embeddings: the batch-independent ``nearest_exact``
(current ``ClusterModel.assign``) against the plain float32 BLAS ``nearest`` (the assignment
before issue 16 item 2), interleaved trials on the same data in one process, wall and CPU time.
Usage: python benchmarks/bench_assign.py [--n 1000000] [--trials 3] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_semdedup import synthetic  # noqa: E402
from curate.scorers.clustering import nearest, nearest_exact  # noqa: E402
from curate.scorers.semdedup import SemDedupConfig, fit_cluster_model  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/semdedup_assign_1m.json")
    args = ap.parse_args()
    x, _, _ = synthetic(args.n)
    ids = [f"doc{i:08d}" for i in range(args.n)]
    model = fit_cluster_model(ids, x, SemDedupConfig())
    c = model.centroids
    rows = []
    for trial in range(args.trials):
        for name, fn in (("nearest (float32 BLAS, before)", nearest), ("nearest_exact (now)", nearest_exact)):
            load = os.getloadavg()[0]
            w, p = time.perf_counter(), time.process_time()
            idx, sim = fn(x, c)
            row = {"trial": trial, "search": name, "n": args.n, "k": len(c), "wall_s": round(time.perf_counter() - w, 2),
                   "cpu_s": round(time.process_time() - p, 2), "load_1min": round(load, 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    a, b = nearest(x, c), nearest_exact(x, c)
    summary = {"same_nearest_centroid_share": float((a[0] == b[0]).mean()),
               "max_cosine_difference": float(np.abs(a[1] - b[1]).max())}
    for key in ("wall_s", "cpu_s"):
        old = [r[key] for r in rows if r["search"].startswith("nearest (")]
        new = [r[key] for r in rows if r["search"].startswith("nearest_exact")]
        summary[f"median_{key}_ratio_exact_over_blas"] = round(float(np.median(np.divide(new, old))), 2)
    print(json.dumps(summary), flush=True)
    Path(args.out).write_text(json.dumps({"runs": rows, "summary": summary}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

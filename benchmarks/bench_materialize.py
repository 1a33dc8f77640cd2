"""Documents/s and peak memory of `curate materialize` against a plain pyarrow script doing the
same sampling in one process, in the same run.

A synthetic published run (4 pools, N documents of ~300 bytes of text each, real Parquet and a
valid _SUCCESS marker) and a plan in documents (each pool: 80 % of it unique, epochs 1.0 /
1.5 / 2.0 / 2.7) are written once into --workdir. Then, each in its own process (peak RSS of
that process, ru_maxrss, and of the process tree, sampled):

- curate:  `curate materialize PLAN --run RUN --output OUT --quiet` (FnApiRunner; --workers 2
           adds --direct_num_workers=2 --direct_running_mode=multi_processing);
- pyarrow: this file with --baseline: reads the pools, the same seeded keys and selection
           (materialize_core.select_pool), expands the copies, sorts all of them by shuffle key
           in memory, cuts equal shards and writes Parquet. No spacing, no manifest, no Beam.

docs/s = documents written / wall seconds. --curate-cmd measures another version's curate
(e.g. a copy of an older tree on PYTHONPATH) against the same inputs and baseline. Results:
benchmarks/results/materialize.md.

    .venv/bin/python benchmarks/bench_materialize.py --docs 200000
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = (1.0, 1.5, 2.0, 2.7)


def make_inputs(workdir: Path, docs: int) -> tuple[Path, Path]:
    import random

    sys.path.insert(0, str(ROOT))
    from tests.pipelines.materialize_fixtures import write_plan

    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate.pools.rundir import MANIFEST, STATS, SUCCESS, marker_bytes

    run = workdir / f"run-{docs}"
    plan = workdir / f"plan-{docs}.json"
    if (run / MANIFEST).exists() and plan.exists():
        return run, plan
    rng = random.Random(0)
    words = [f"w{i}" for i in range(5000)]
    per_pool = docs // len(EPOCHS)
    stats, pools = [], {}
    for k in range(len(EPOCHS)):
        folder = run / "pools" / f"pool={k}"
        folder.mkdir(parents=True, exist_ok=True)
        writer = None
        for start in range(0, per_pool, 50_000):
            n = min(50_000, per_pool - start)
            texts = [" ".join(rng.choices(words, k=60)) for _ in range(n)]
            table = pa.table({"id": [f"p{k}-{start + i}" for i in range(n)], "text": texts,
                              "source": ["synthetic"] * n, "score": [rng.random() for _ in range(n)],
                              "chars": [len(t) for t in texts], "tokens": [78] * n,
                              "pool": [k] * n})
            writer = writer or pq.ParquetWriter(folder / "part-00000-of-00001.parquet", table.schema)
            writer.write_table(table)
        writer.close()
        stats.append({"pool": k, "docs": per_pool, "chars": 0, "tokens": 0})
        pools[f"pool{k}"] = (per_pool, int(0.8 * per_pool), EPOCHS[k])
    pq.write_table(pa.Table.from_pylist(stats), run / STATS)
    manifest = b'{"format": "bench-run", "counts": {}}'
    (run / SUCCESS).write_bytes(marker_bytes(manifest, f"bench-{docs}"))
    (run / MANIFEST).write_bytes(manifest)
    write_plan(plan, "samples", pools)
    return run, plan


def baseline(run: Path, plan_path: Path, out: Path, shard_size: int) -> int:
    """The same sampling as curate materialize, in one process with pyarrow + numpy."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate.pipelines.materialize_core import (PoolTarget, copies_of, order_key, parquet_bytes,
                                                   seeded_key, select_pool)

    plan = json.loads(plan_path.read_text())
    out.mkdir(parents=True, exist_ok=True)
    copies = []
    for p in plan["plan"]["pools"]:
        k = int(p["pool"][4:])
        table = pq.read_table(next((run / "pools" / f"pool={k}").glob("*.parquet")),
                              columns=["id", "text", "source", "score"])
        ids, texts = table.column("id").to_pylist(), table.column("text").to_pylist()
        sources, scores = table.column("source").to_pylist(), table.column("score").to_pylist()
        keys = [order_key("hash", 0, p["pool"], i, s) for i, s in zip(ids, scores)]
        pkeys = [seeded_key(0, "partial", p["pool"], i) for i in ids]
        target = PoolTarget(p["pool"], k, p["unique"], p["samples"], p["samples"] / p["unique"])
        sel = select_pool(target, np.array([c[0] for c in keys]), np.array([c[1] for c in keys], dtype=np.uint64),
                          np.array(pkeys, dtype=np.uint64), np.ones(len(ids), dtype=np.int64))
        for j in range(len(ids)):
            for e in range(copies_of(sel, keys[j], pkeys[j])):
                copies.append((seeded_key(0, "shuffle", p["pool"], ids[j], e),
                               {"text": texts[j], "id": ids[j], "pool": p["pool"], "epoch": e,
                                "source": sources[j], "score": scores[j]}))
    copies.sort(key=lambda c: c[0])
    shards = max(1, -(-len(copies) // shard_size))
    for s in range(shards):
        rows = [c[1] for c in copies[s * len(copies) // shards:(s + 1) * len(copies) // shards]]
        (out / f"train-{s:05d}.parquet").write_bytes(parquet_bytes(rows))
    return len(copies)


_TREE_RSS = r"""
import os, subprocess, sys, threading, time

def tree_kb(root):
    children = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(pid))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total

p = subprocess.Popen(sys.argv[1:])
peak, done = [0], threading.Event()

def sample():  # never p.poll(): it would reap the child before wait4 reads its rusage
    while not done.is_set():
        peak[0] = max(peak[0], tree_kb(p.pid))
        time.sleep(0.2)

sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
_, st, ru = os.wait4(p.pid, 0)
done.set()
sampler.join()
sys.stderr.write("PEAK_KB %d\nTREE_PEAK_KB %d\n" % (ru.ru_maxrss, peak[0]))
sys.exit(os.waitstatus_to_exitcode(st))
"""


def _peak_wrapper(cmd: list[str]) -> list[str]:
    """Run `cmd` under a tiny Python parent that prints, to stderr last, the child's own peak
    RSS (ru_maxrss) and the peak of the summed RSS of the child and all its descendants
    (sampled every 0.2 s from /proc: Beam worker subprocesses included)."""
    return [sys.executable, "-c", _TREE_RSS, *cmd]


def measure_peak(cmd: list[str]) -> dict:
    start = time.perf_counter()
    done = subprocess.run(_peak_wrapper(cmd), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"{cmd[:3]} failed: {done.stderr[-2000:]}")
    lines = done.stderr.splitlines()
    peak = [line for line in lines if line.startswith("PEAK_KB ")][-1]
    tree = [line for line in lines if line.startswith("TREE_PEAK_KB ")][-1]
    return {"wall_s": round(wall, 1), "peak_rss_mb": round(int(peak.split()[1]) / 1024),
            "tree_peak_rss_mb": round(int(tree.split()[1]) / 1024), "stdout": done.stdout}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=200_000)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench-materialize"))
    ap.add_argument("--shard-size", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--curate-cmd", default=str(ROOT / ".venv/bin/curate"),
                    help="the curate command to measure (another checkout's, to compare versions)")
    ap.add_argument("--baseline", nargs=3, metavar=("RUN", "PLAN", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline:
        n = baseline(Path(args.baseline[0]), Path(args.baseline[1]), Path(args.baseline[2]), args.shard_size)
        print(json.dumps({"rows": n}))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    run, plan = make_inputs(args.workdir, args.docs)
    out_c, out_b = args.workdir / f"out-curate-{args.docs}", args.workdir / f"out-pyarrow-{args.docs}"
    subprocess.run(["rm", "-rf", str(out_c), str(out_b)], check=True)
    beam = (["--direct_num_workers=2", "--direct_running_mode=multi_processing"] if args.workers > 1 else [])
    curate = measure_peak([*shlex.split(args.curate_cmd), "materialize", str(plan), "--run", str(run),
                      "--output", str(out_c), "--shard-size", str(args.shard_size), "--quiet", "--json", *beam])
    rows = json.loads(curate.pop("stdout"))["reconciliation"]["rows_written"]
    base = measure_peak([sys.executable, __file__, "--shard-size", str(args.shard_size),
                    "--baseline", str(run), str(plan), str(out_b)])
    base_rows = json.loads(base.pop("stdout"))["rows"]
    assert base_rows == rows, (base_rows, rows)
    result = {"docs_in": args.docs, "rows_written": rows, "workers": args.workers, "cpus": os.cpu_count(),
              "curate": {**curate, "docs_per_s": round(rows / curate["wall_s"])},
              "pyarrow": {**base, "docs_per_s": round(rows / base["wall_s"])}}
    result["wall_ratio_curate_over_pyarrow"] = round(curate["wall_s"] / base["wall_s"], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

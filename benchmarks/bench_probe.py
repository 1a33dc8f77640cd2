"""Benchmark `curate probe`: wall time, proxy size and held-out prediction error.

    python benchmarks/bench_probe.py [--run RUN_DIR] [--time-budget 10m] [--device auto]
                                     [--workers N] [--out benchmarks/results/probe.md]

Without --run, pools are built from ../shared/corpora the way tests do (pool0: Wikipedia +
news, pool1: C4 samples a and c, pool2: C4 sample b (contains SEO spam), pool3: raw Common
Crawl + health tweets) and written as RUN/pools/pool=K/part-0.parquet. The probe runs through
the CLI (`curate probe --validate --json`); the summary is printed and, with --out, appended
to a markdown results file.
"""
from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

POOLS = (
    ("wikipedia_30", "news_articles"),
    ("c4_sample_a", "c4_sample_c"),
    ("c4_sample_b",),
    ("common_crawl_raw", "health_tweets"),
)


def build_pools(corpora: Path, out: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    for k, names in enumerate(POOLS):
        ids, texts = [], []
        for name in names:
            with gzip.open(corpora / f"{name}.jsonl.gz", "rt", encoding="utf-8") as fh:
                for n, line in enumerate(fh):
                    text = json.loads(line).get("text") or ""
                    if text:
                        ids.append(f"{name}-{n}")
                        texts.append(text)
        d = out / "pools" / f"pool={k}"
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"id": ids, "text": texts, "pool": [k] * len(ids)}), d / "part-0.parquet")
    return out


def markdown(summary: dict, wall: float, args) -> str:
    d = summary["design"]
    cfg = d["config"]
    v = summary.get("validation", {})

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f} %"

    lines = [
        f"## probe benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, device `{summary['device']}`, workers {args.workers}",
        f"- budget {args.time_budget}; wall time {wall:.0f} s (probe itself {summary['elapsed_s']:.0f} s)",
        f"- proxy: d_model {cfg['d_model']}, {cfg['n_layers']} layers, context {cfg['context']}, batch {cfg['batch_size']}, lr {cfg['lr']}",
        f"- U = {d['unique_tokens']:,} tokens per pool; multiples {d['multiples']}; target: {summary['target']} ({summary['target_tokens']:,} tokens)",
        f"- observations: {summary['rows']} fit rows, {summary['holdout_rows']} held-out rows",
        "",
        "| pool | b (utility) | tau (half-life) |",
        "|---|---|---|",
    ]
    for p in v.get("b", {}):
        lines.append(f"| {p} | {v['b'][p]:.4f} | {v['tau'][p]:.3f} |")
    lines += [
        "",
        f"QQT fit: a = {v.get('a', float('nan')):.4g}, d = {v.get('d', float('nan')):.4f}. "
        f"Mean absolute relative error of the reducible loss: fit {pct(v.get('mare_fit'))}, "
        f"held-out mixtures {pct(v.get('mare_holdout_mixture'))}, larger budget "
        f"{pct(v.get('mare_holdout_large'))}, all held-out {pct(v.get('mare_holdout'))} "
        f"(points at/below the floor: {v.get('below_floor', 0)}).",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=None)
    ap.add_argument("--corpora", type=Path, default=ROOT.parent / "shared" / "corpora")
    ap.add_argument("--time-budget", default="10m")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--proxy", default=None)
    ap.add_argument("--unique-tokens", default=None)
    ap.add_argument("--out", type=Path, default=None, help="append the markdown summary here")
    ap.add_argument("--json-out", type=Path, default=None, help="write the full JSON summary here")
    args = ap.parse_args()

    from curate.orchestration.cli import main as curate

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run or build_pools(args.corpora, Path(tmp) / "run")
        cmd = ["probe", str(run_dir), "-o", str(Path(tmp) / "obs.parquet"), "--validate", "--json",
               "--time-budget", args.time_budget, "--device", args.device,
               "--workers", str(args.workers), "--target", "pools"]
        if args.proxy:
            cmd += ["--proxy", args.proxy]
        if args.unique_tokens:
            cmd += ["--unique-tokens", str(args.unique_tokens)]
        buf = io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(buf):
            rc = curate(cmd)
        wall = time.perf_counter() - t0
        if rc != 0:
            return rc
    summary = json.loads(buf.getvalue())
    summary["bench_wall_s"] = round(wall, 1)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(summary, indent=1))
    text = markdown(summary, wall, args)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of the closed loop, from a finished `make demo` (or any DEMO directory laid out alike):
replay verdicts at both budgets, agreement of the plan across probe seeds, probe throughput and
the share of the machine's matrix-multiply rate the proxy training reaches (measured in this run).

    .venv/bin/python benchmarks/bench_loop.py demo-output --out benchmarks/results/loop.md

The reference rate is torch float32 GEMM (1024 x 1024) with one thread per probe worker, timed
here, so the share is a ratio of two numbers from the same machine and window.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def gemm_flops(threads: int, n: int = 1024, repeats: int = 20) -> float:
    """Best-of float32 matmul FLOP/s with `threads` torch threads."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t0))
    return best


def main() -> None:
    import pyarrow.parquet as pq

    from curate.probe.replay import design_from_meta

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("demo", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    d = args.demo
    meta = json.loads(pq.read_table(d / "observations.parquet").schema.metadata[b"curate.probe"])
    design = design_from_meta(meta)
    summary = meta.get("design_summary") or {}
    tokens = float(summary.get("train_tokens") or summary.get("tokens") or 0) or None
    cfg = design.config
    flops_per_token = cfg.train_flops_per_step() / cfg.tokens_per_step
    elapsed = float(meta["elapsed_s"])
    workers = 2
    rate = tokens / elapsed if tokens else None
    peak = gemm_flops(1) * workers
    plan = json.loads((d / "plan.json").read_text())
    agreement = plan.get("seed_agreement") or {}
    lines = ["# The closed loop on `make demo` (2 CPU cores)", "",
             "Numbers from one demo run; the machine was shared (another test run in the same window), "
             "and the GEMM reference was timed in the same window, so the share is a same-window ratio.", "",
             f"Command: `.venv/bin/python benchmarks/bench_loop.py {d}` after `make demo`.", "",
             "## Probe throughput", "",
             f"- proxy {cfg.n_params():,} parameters (d{cfg.d_model} x {cfg.n_layers} layers, "
             f"context {cfg.context}, batch {cfg.batch_size}); design: {summary.get('runs', '?')} runs",
             f"- training tokens {tokens:,.0f} in {elapsed:.0f} s of probe wall time (training, "
             f"evaluation and start-up): {rate:,.0f} tokens/s" if rate else "- tokens not recorded",
             f"- training FLOP/s reached: {rate * flops_per_token:.3g} ({flops_per_token:,.0f} FLOP a "
             f"token); machine reference, float32 GEMM 1 thread x {workers} workers, same run: "
             f"{peak:.3g} FLOP/s -> share {rate * flops_per_token / peak:.1%}" if rate else "", "",
             "## Plan agreement across probe seeds", "",
             f"- {agreement.get('why', 'not computed (curate plan --observations)')}", "",
             "## Replays (`curate validate`, reduced scale)", ""]
    for name in ("replay-small.json", "replay.json"):
        path = d / name
        if not path.is_file():
            continue
        rep = json.loads(path.read_text())
        budget = (rep.get("plan") or {}).get("budget", "?")
        lines.append(f"### {name}: plan budget {budget}, replayed at 1/{rep.get('scale_k', '?')} "
                     f"({rep.get('replay_budget_tokens', 0):,.0f} tokens), seeds {rep.get('seeds')}")
        lines.append("")
        lines.append("| candidate | predicted | law at 1/k | measured | seed sd |")
        lines.append("|---|---:|---:|---:|---:|")
        for c in rep.get("candidates", []):
            fmt = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
            lines.append(f"| {c.get('name')} | {fmt(c.get('predicted'))} | {fmt(c.get('predicted_at_scale'))} "
                         f"| {fmt(c.get('mean'))} | {fmt(c.get('sd'))} |")
        lines.append("")
        lines.append(f"verdict: **{rep.get('verdict')}**; plan - best baseline measured "
                     f"{rep.get('measured_difference')}, predicted {rep.get('predicted_difference')}; "
                     f"difference_error {rep.get('difference_error')}")
        lines.append("")
    claim = (plan.get("plan") or {}).get("claim") or {}
    lines += ["## The plan's claim", "", f"- recommended: {claim.get('recommended')} -- {claim.get('why')}", ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

"""curate probe: measure each pool's utility and repetition half-life with small proxy LM runs.

For every pool of RUN_DIR (RUN/pools/pool=K/*.parquet) one small byte-level transformer is
trained on a fixed subset of U unique tokens, repeated up to 8 epochs under a constant learning
rate, and its loss on an evaluation target is recorded at 0.25x .. 8x U. These rows are written
to OBS (the observations `curate fit` reads: pool, samples_seen, unique_samples, metric, params,
run_id, step; unit: tokens = bytes). Held-out runs (top-2 and all-pool uniform mixtures, and the
best pool with 2U unique tokens for 16U tokens) go to OBS's sibling <stem>.holdout.parquet;
--validate fits the QQT law on OBS and prints how well it predicts them (mean absolute relative
error of the reducible loss).

The evaluation target defaults to a held-out sample across all pools (never trained on);
--target takes a JSONL file of texts instead. --time-budget sizes the proxy model and U so the
probe finishes in time (the throughput is measured first). Same seed, same design, same
observations (CPU).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

HELP = __doc__


def parse_duration(text: str) -> float:
    """'10m' -> 600.0; accepts s, m, h suffixes or plain seconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", str(text))
    if not m:
        raise ValueError(f"--time-budget: cannot read {text!r} (use e.g. 90s, 10m, 1.5h)")
    value = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
    if value <= 0:
        raise ValueError("--time-budget must be positive")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="output directory of `curate run`")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="OBS.parquet",
                        help="observations to write (held-out runs go to <stem>.holdout.parquet)")
    parser.add_argument("--target", type=Path, default=None, metavar="PATH",
                        help="evaluation target: JSONL (.gz ok) with a 'text' field "
                             "(default: a held-out sample across all pools)")
    parser.add_argument("--time-budget", default="10m", help="wall-clock budget (default 10m)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--seed", type=int, default=0, help="seed of data order, subsets and init")
    parser.add_argument("--workers", type=int, default=None,
                        help="runs trained at once on CPU, one process each (default: min(2, cores))")
    parser.add_argument("--proxy", default=None, metavar="NAME",
                        help="fix the proxy size instead of sizing it to the budget: "
                             "xs, s, m, l, xl, xxl")
    parser.add_argument("--unique-tokens", type=int, default=None, metavar="U",
                        help="fix U (tokens per pool subset) instead of sizing it to the budget")
    parser.add_argument("--cooldown-steps", type=int, default=0,
                        help="evaluate each point on a branch cooled down over this many steps (default 0: off)")
    parser.add_argument("--no-holdout", action="store_true", help="skip the held-out mixture and large runs")
    parser.add_argument("--validate", action="store_true",
                        help="fit QQT on the observations and print the held-out prediction error")
    parser.add_argument("--workspace", default=None, metavar="DIR",
                        help="also register the observations in DIR/catalog.duckdb "
                             "(default: only when $CURATE_WORKSPACE is set)")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from curate.orchestration import probe as P
    from curate.orchestration.errors import CurateError
    from curate.scorers.proxy_lm import resolve_device

    budget = parse_duration(args.time_budget)
    t_start = time.perf_counter()
    device = resolve_device(args.device)
    workers = args.workers if args.workers is not None else min(2, os.cpu_count() or 1)
    if workers < 1:
        raise CurateError("--workers must be >= 1")
    if args.cooldown_steps < 0:
        raise CurateError("--cooldown-steps must be >= 0")
    pools = P.load_pools(args.run_dir)
    names = list(pools)
    target_texts = P.read_target_file(args.target) if args.target else None

    def say(msg: str) -> None:
        if not args.quiet:
            print(f"probe: {msg}", file=sys.stderr, flush=True)

    say(f"{len(names)} pools ({', '.join(f'{n}: {len(d):,} docs' for n, d in pools.items())}); device {device}")
    max_pool = min(sum(len(t.encode('utf-8')) for _, t in docs) for docs in pools.values())
    if args.proxy is not None:
        cfg = P.proxy_by_name(args.proxy)
        U = args.unique_tokens or 64 * cfg.tokens_per_step
        design = P.ProbeDesign(config=cfg, unique_tokens=U, mixtures=P.default_mixtures(names),
                               large_pool=names[0], target_tokens=P.default_target_tokens(U),
                               seed=args.seed)
    else:
        # Keep ~12 % of the budget for loading, calibration, evaluation slack and fitting.
        with P.ThroughputMeter(workers if device == "cpu" else 1, device) as meter:
            design = P.design_for_budget(names, budget * 0.88 - (time.perf_counter() - t_start),
                                         meter, seed=args.seed, max_pool_tokens=int(max_pool * 0.8),
                                         cooldown_steps=args.cooldown_steps,
                                         startup_s=_startup_estimate(workers, device, len(names)))
        say("measured throughput (tokens/s, all workers): "
            + ", ".join(f"{k} {v:,.0f}" for k, v in meter.measured.items()))
        if args.unique_tokens:
            design = replace(design, unique_tokens=args.unique_tokens,
                             target_tokens=P.default_target_tokens(args.unique_tokens))
    design = replace(design, config=replace(design.config, cooldown_steps=args.cooldown_steps))
    if args.no_holdout:
        design = replace(design, mixtures=[], large_pool=None)
    cfg = design.config
    steps_per_unit = design.unique_tokens // cfg.tokens_per_step
    if steps_per_unit < P.min_steps_per_unit(cfg):
        say(f"warning: U is only {steps_per_unit} optimiser steps (fewer than "
            f"{P.min_steps_per_unit(cfg)}): points before step {design.min_eval_step} (twice the "
            "warm-up) are dropped and early ones are noisy; a larger --time-budget or "
            "--unique-tokens gives better measurements")
    say(f"proxy {cfg.n_params() / 1e6:.2f}M params (d{cfg.d_model} x {cfg.n_layers} layers, "
        f"context {cfg.context}, batch {cfg.batch_size}); U = {design.unique_tokens:,} tokens per pool; "
        f"{len(design.runs(names))} runs, {design.total_train_tokens(names):,} training tokens")

    rows, data = P.run_probe(pools, design, target_texts, device=device, workers=workers,
                             quiet=args.quiet)
    fit_rows = [r for r in rows if r["role"] == "fit"]
    holdout_rows = [r for r in rows if r["role"] != "fit"]
    meta = {"unit": "tokens", "tokenizer": "utf-8 bytes", "metric": "target loss, nats per byte",
            "design": design.to_dict(), "device": device, "target": data.target_source,
            "target_tokens": int(data.target.shape[0] * cfg.context), "pool_bytes": data.pool_bytes,
            "elapsed_s": round(time.perf_counter() - t_start, 1)}
    import pyarrow.parquet as pq

    args.output.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(P.observations_table(fit_rows, meta), args.output)
    holdout_path = P.holdout_path(args.output)
    if holdout_rows:
        pq.write_table(P.observations_table(holdout_rows, meta), holdout_path)
    workspace = args.workspace or os.environ.get("CURATE_WORKSPACE")
    if workspace:
        from curate.pools.catalog import Catalog

        catalog = Catalog(workspace)
        catalog.register_observations(fit_rows, source=str(args.output.resolve()))
        if holdout_rows:
            catalog.register_observations(holdout_rows, source=str(holdout_path.resolve()))
        say(f"registered {len(rows)} observations in {catalog.path}")
    summary = {"observations": str(args.output), "rows": len(fit_rows),
               "holdout": str(holdout_path) if holdout_rows else None,
               "holdout_rows": len(holdout_rows), **meta}

    if args.validate:
        from curate.orchestration.probe_validation import validate

        if not holdout_rows:
            raise CurateError("--validate needs the held-out runs (drop --no-holdout)")
        result = validate(fit_rows, holdout_rows, unit="tokens")
        law = result.pop("law")
        summary["validation"] = {
            "d": law.d, "a": law.a,
            "b": dict(zip(law.pools, map(float, law.b))),
            "tau": dict(zip(law.pools, map(float, law.tau))),
            **{k: v for k, v in result.items() if k.startswith(("mare", "naive", "mae"))},
            "below_floor": result["below_floor"],
            "details": [{k: (None if isinstance(v, float) and v != v else v) for k, v in x.items()}
                        for x in result["details"]],  # nan (no reducible loss) -> null in JSON
        }
        if not args.json:
            _print_validation(summary["validation"])
    summary["elapsed_s"] = round(time.perf_counter() - t_start, 1)
    if args.json:
        json.dump(summary, sys.stdout, indent=2, default=float)
        print()
    else:
        print(f"wrote {len(fit_rows)} observations to {args.output}"
              + (f" and {len(holdout_rows)} held-out ones to {holdout_path}" if holdout_rows else "")
              + f" in {summary['elapsed_s']:.0f}s (budget {budget:.0f}s)")
        print(f"next: curate fit {args.output} --law qqt -o law.json"
              "   (unit tokens = bytes and the full pools' byte sizes come from the file's metadata)")
    return 0


def _startup_estimate(workers: int, device: str, n_pools: int) -> float:
    """Seconds outside training: spawning workers (each imports torch, ~5 s on a busy 2-core
    machine), packing data, and the QQT fit of --validate (a few seconds per pool)."""
    spawn = 5.0 * min(workers, 2) if device == "cpu" and workers > 1 else 0.0
    return spawn + 5.0 + 3.0 * n_pools


def _print_validation(v: dict) -> None:
    print(f"QQT fit on single-pool runs: d = {v['d']:.4f}, a = {v['a']:.4g}")
    print(f"  {'pool':<10}{'b (utility)':>14}{'tau (half-life)':>18}")
    for pool in v["b"]:
        print(f"  {pool:<10}{v['b'][pool]:>14.4f}{v['tau'][pool]:>18.3f}")
    print("held-out predictions (error = |pred - obs| / (obs - d), reducible loss):")
    print(f"  {'run':<22}{'pool':<34}{'tokens':>10}{'observed':>10}{'predicted':>11}{'error':>9}")
    for x in v["details"]:
        if x["role"] == "fit":
            continue
        err = x["rel_err_reducible"]
        err_text = "   below d" if err is None else f"{100 * err:>8.1f}%"
        print(f"  {x['run_id']:<22}{x['pool']:<34}{x['samples_seen']:>10,}{x['observed']:>10.4f}"
              f"{x['predicted']:>11.4f}{err_text}")

    def pct(key):
        return "n/a" if v.get(key) is None else f"{100 * v[key]:.1f}%"

    print(f"mean absolute relative error of the reducible loss: mixtures {pct('mare_holdout_mixture')}, "
          f"larger budget {pct('mare_holdout_large')}, all held-out {pct('mare_holdout')} "
          f"(fit residual {pct('mare_fit')}; target <= 5%)")
    print(f"  law-free reference (pools' own curves averaged at the same tokens): mixtures "
          f"{pct('naive_mare_holdout_mixture')}, larger budget {pct('naive_mare_holdout_large')}")
    if v["d"] < 1e-6:
        print("  note: the fitted floor d is ~0, so the reducible loss is the whole loss and these "
              "percentages are of the total loss")

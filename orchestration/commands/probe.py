"""curate probe: measure each pool's utility and repetition half-life with small proxy LM runs.

For every pool of RUN_DIR (RUN/pools/pool=K/*.parquet) small byte-level transformers are
trained under a constant learning rate and their loss on an evaluation target is recorded
along the way. The default design identifies the law: per pool
  * a U-token subset repeated up to 8 epochs (points at 0.25x .. 8x U),
  * its first U/4 tokens repeated up to 32 epochs (two subset sizes: how a half-life stretches
    with the gap between repetitions, gamma, is fitted from them; loss can turn up),
  * a fresh-data control run (8U unique tokens, never repeated: loss beyond U without
    repetition, which pins the pool's utility),
each with --seeds replicates (default 3, distinct run ids: the fit's bootstrap resamples runs,
not checkpoints of one curve). --no-controls trains only the U subset. The design (runs,
seeds, subset sizes, epochs, tokens) is printed and stored in the files' metadata.
These rows are written to OBS (the observations `curate fit` reads: pool, samples_seen,
unique_samples, metric, params, run_id, step; unit: tokens = bytes). Held-out runs (top-2 and all-pool uniform mixtures, and the
best pool with 2U unique tokens for 16U tokens) go to OBS's sibling <stem>.holdout.parquet;
--validate fits the QQT law on OBS and prints how well it predicts them (mean absolute relative
error of the reducible loss).

The evaluation target is what the model should be good at, and must be chosen: --target FILE
(a JSONL file of texts, e.g. the sample corpus's corpus/target/news100.jsonl.gz, held out from
every pool), or --target pools (a held-out sample across the pools themselves: it measures
transfer to this very corpus, not quality). --time-budget sizes the proxy model and U so the
probe finishes in time (the throughput is measured first); every extra run is paid for out of
the same budget, so more seeds mean a smaller U. Same seed, same design, same observations
(CPU); --proxy with --unique-tokens fixes the design for exact reproduction.

examples:
  curate probe RUN -o obs.parquet --time-budget 10m
  curate probe RUN -o obs.parquet --proxy s --unique-tokens 65536 --seeds 5 --validate
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
    parser.add_argument("--target", default=None, metavar="PATH|pools",
                        help="evaluation target (required): JSONL (.gz ok) with a 'text' field, "
                             "or 'pools' for a held-out sample across the pools (transfer to this "
                             "corpus, not quality)")
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
    parser.add_argument("--seeds", type=int, default=3, metavar="N",
                        help="replicate runs per fit run, seeds SEED .. SEED+N-1 (default 3; "
                             ">= 2 for a bootstrap over runs)")
    parser.add_argument("--no-controls", action="store_true",
                        help="skip the U/4-subset and fresh-data runs: one subset size per pool "
                             "(gamma then stays 1, unfitted; b rests on the first-pass points)")
    parser.add_argument("--no-holdout", action="store_true", help="skip the held-out mixture and large runs")
    parser.add_argument("--validate", action="store_true",
                        help="fit QQT on the observations and print the held-out prediction error")
    parser.add_argument("--workspace", default=None, metavar="DIR",
                        help="also register the observations in DIR/catalog.duckdb "
                             "(default: only when $CURATE_WORKSPACE is set)")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")


def run(args: argparse.Namespace) -> int:
    from curate.orchestration.errors import CurateError
    from curate.probe.workflow import ProbeSettings, probe_to_files

    budget = parse_duration(args.time_budget)
    t_start = time.perf_counter()
    if args.workers is not None and args.workers < 1:
        raise CurateError("--workers must be >= 1")
    if args.cooldown_steps < 0:
        raise CurateError("--cooldown-steps must be >= 0")
    if args.seeds < 1:
        raise CurateError("--seeds must be >= 1")
    if args.target is None:
        raise CurateError("give --target FILE (texts that stand for what the model should be good "
                          "at, held out from every pool) or --target pools (a held-out sample of "
                          "the pools themselves: measures transfer to this corpus, not quality)")
    target = None if args.target == "pools" else Path(args.target)
    from curate.orchestration.output_paths import check_output_file

    check_output_file(args.output, "-o")  # the probe trains for minutes: fail before, not after

    def say(msg: str) -> None:
        if not args.quiet:
            print(f"probe: {msg}", file=sys.stderr, flush=True)

    outcome = probe_to_files(
        ProbeSettings(run_dir=args.run_dir, output=args.output, target=target,
                      time_budget_s=budget, device=args.device, seed=args.seed,
                      workers=args.workers, proxy=args.proxy, unique_tokens=args.unique_tokens,
                      cooldown_steps=args.cooldown_steps, holdout=not args.no_holdout,
                      seeds=args.seeds, controls=not args.no_controls, quiet=args.quiet),
        log=say)
    fit_rows, holdout_rows = outcome.fit_rows, outcome.holdout_rows
    holdout_path = outcome.holdout_output
    workspace = args.workspace or os.environ.get("CURATE_WORKSPACE")
    if workspace:
        from curate.pools.catalog import Catalog

        catalog = Catalog(workspace)
        catalog.register_observations(fit_rows, source=str(args.output.resolve()))
        if holdout_rows:
            catalog.register_observations(holdout_rows, source=str(holdout_path.resolve()))
        say(f"registered {len(fit_rows) + len(holdout_rows)} observations in {catalog.path}")
    summary = {"observations": str(args.output), "rows": len(fit_rows),
               "holdout": str(holdout_path) if holdout_rows else None,
               "holdout_rows": len(holdout_rows), **outcome.metadata}

    if args.validate:
        from curate.probe.validation import validation_report

        if not holdout_rows:
            raise CurateError("--validate needs the held-out runs (drop --no-holdout)")
        summary["validation"] = validation_report(fit_rows, holdout_rows, unit="tokens")
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

"""curate validate: replay a plan in training and measure whether it beats its baselines.

A plan (`curate plan -o PLAN.json`) is a prediction of the law. This command trains the same
byte-level proxy the probe used on the plan, on every baseline in the plan file (best top-m by
predicted loss, all pools size-proportional, best single pool) and, when the plan was allowed
beyond the epochs the law was fitted on (--max-epochs), on the plan capped at the measured
epochs; each at budget / k with every pool subsampled to 1/k of its size, so each pool is
repeated exactly as often as the plan says. Every trained proxy is evaluated on the same target
text (the probe's own, rebuilt from --observations, or --target), for several seeds.

It prints per candidate the predicted loss (from the plan file), the measured mean loss and seed
s.d., and the verdict: "plan wins" (more than one seed s.d. below the best baseline), "within
noise", or "loses" (more than one s.d. above), with the measured difference plan - best baseline
beside the predicted one.

What it validates: a reduced-scale (1/k) replay of the plan's epochs per pool on this target;
not the full-scale loss.

Examples:
  curate validate plan.json --run run/ --observations obs.parquet --scale 1/32
  curate validate plan.json --run run/ --observations obs.parquet --time-budget 10m --json -o replay.json

Deterministic for fixed seeds and a fixed --scale (a --time-budget picks k from the measured
throughput of this machine; the report records k, so --scale 1/k reproduces it).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", type=Path, metavar="PLAN.json", help="plan file written by `curate plan -o`")
    parser.add_argument("--run", required=True, type=Path, metavar="RUN_DIR",
                        help="the `curate run` output whose pools the plan mixes")
    parser.add_argument("--observations", type=Path, default=None, metavar="OBS.parquet",
                        help="the probe's observations: its proxy, seed and target are replayed "
                             "(without it: --proxy, and a target rebuilt with seed 0)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--scale", default=None, metavar="1/K",
                      help="train at budget / K with every pool subsampled to 1/K (e.g. 1/32)")
    size.add_argument("--time-budget", default="10m",
                      help="choose K so the whole replay fits this wall-clock time (default 10m; "
                           "the proxy's throughput is measured first)")
    parser.add_argument("--seeds", type=int, default=2, metavar="N",
                        help="seeds 0..N-1 per candidate (default 2, at least 2)")
    parser.add_argument("--target", type=Path, default=None, metavar="FILE",
                        help="evaluation target: JSONL (.gz ok) with a 'text' field (default: the "
                             "probe's own target; required when the probe used --target)")
    parser.add_argument("--law", type=Path, default=None, metavar="LAW.json",
                        help="law file to re-plan the capped candidate with (default: the plan's "
                             "`law` when that file exists)")
    parser.add_argument("--proxy", default=None, metavar="NAME",
                        help="proxy size xs .. xxl (default: the probe's, else xs)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--workers", type=int, default=None,
                        help="runs trained at once on CPU, one process each (default: min(2, cores))")
    parser.add_argument("-o", "--output", type=Path, default=None, metavar="REPLAY.json",
                        help="also write the report as JSON")
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def run(args: argparse.Namespace) -> int:
    import os

    from curate.orchestration.commands.probe import parse_duration
    from curate.orchestration.errors import CurateError

    if args.seeds < 2:
        raise CurateError("--seeds must be >= 2: the verdict compares the plan with its baselines "
                          "within the seed spread")
    if args.workers is not None and args.workers < 1:
        raise CurateError("--workers must be >= 1")
    budget = parse_duration(args.time_budget)
    if args.output is not None:
        from curate.orchestration.output_paths import check_output_file

        check_output_file(args.output, "-o")  # before minutes of training, not after

    def say(msg: str) -> None:
        if not args.quiet:
            print(f"validate: {msg}", file=sys.stderr, flush=True)

    from curate.probe.proxy_lm import resolve_device
    from curate.probe.replay import ReplaySettings, format_report, parse_scale, replay_files

    scale = parse_scale(args.scale) if args.scale is not None else None
    device = resolve_device(args.device)
    workers = args.workers if args.workers is not None else min(2, os.cpu_count() or 1)
    settings = ReplaySettings(scale=scale, time_budget_s=budget, seeds=tuple(range(args.seeds)),
                              proxy=args.proxy, device=device, workers=workers, quiet=args.quiet)
    report = replay_files(args.plan, args.run, settings, observations=args.observations,
                          target=args.target, law_path=args.law, log=say)
    text = json.dumps(report, indent=2, default=float)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n", encoding="utf-8")
        say(f"wrote {args.output}")
    if args.json:
        print(text)
    else:
        print(format_report(report))
    return 0

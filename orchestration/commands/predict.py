"""Predict the metric of a training run from a fitted law file.

Examples:
  curate predict --law law.json --pool top10 --samples 1.28e8
  curate predict --law law.json --mixture top10=0.5,top20=0.5 --samples 3.2e7,6.4e7 --json
  curate predict --law law.json --pool top10 --samples 1e8 --unique 4e6   # a 4M subsample
  curate predict --law dc.json --params 8.67e9 --samples 178e9 --unique 25e9

QQT laws need --pool or --mixture (weights are normalised; sizes from the law file; --unique
overrides a single pool's size). Language-model laws need --params (model size); --unique
defaults to --samples (no repetition). With bootstrap draws in the law file the interval at the
law's level is shown too.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

HELP = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--law", type=Path, required=True, metavar="LAW.json",
                        help="law file from `curate fit`")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--pool", default=None, metavar="NAME", help="one pool (QQT laws)")
    target.add_argument("--mixture", default=None, metavar="NAME=WEIGHT,...",
                        help="a weighted mixture of pools (QQT laws)")
    parser.add_argument("--samples", required=True, metavar="N[,N...]",
                        help="samples (or tokens) seen; comma-separated for several")
    parser.add_argument("--params", type=float, default=None, metavar="N", help="model size (LM laws)")
    parser.add_argument("--unique", type=float, default=None, metavar="U",
                        help="unique samples: the pool's size (QQT) or U_D (data-constrained)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from curate.laws.lawfile import law_from_dict
    from curate.laws.prediction import predict_table
    from curate.orchestration.errors import CurateError

    law_data = read_law_file(args.law)
    law = law_from_dict(law_data)
    samples = _positive_list(args.samples, "--samples")
    if args.unique is not None and not (math.isfinite(args.unique) and args.unique > 0):
        raise CurateError("--unique must be a positive number")
    mixture = parse_mixture_arg(args.mixture) if args.mixture else None
    result = predict_table(law, samples, pool=args.pool, mixture=mixture, params=args.params,
                           unique=args.unique)
    result.update({"law": str(args.law), "kind": law.kind, "unit": law_data.get("unit")})
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        print(render(result))
    return 0


def read_law_file(path: Path) -> dict:
    from curate.orchestration.errors import CurateError

    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise CurateError(f"law file {path} does not exist") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CurateError(f"law file {path} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    return data


def parse_mixture_arg(text: str) -> dict[str, float]:
    """`a=0.5,b=0.5` (also `;`-separated) -> {pool: weight}, weights normalised."""
    from curate.laws.observations import parse_mixture
    from curate.orchestration.errors import CurateError

    spec = text.replace(",", ";")
    if "=" not in spec:
        raise CurateError(f"--mixture: expected NAME=WEIGHT,..., got {text!r}")
    return parse_mixture(spec, where="--mixture")


def _positive_list(text: str, option: str) -> list[float]:
    from curate.orchestration.errors import CurateError

    values = []
    for part in text.split(","):
        try:
            v = float(part)
        except ValueError:
            raise CurateError(f"{option}: {part!r} is not a number") from None
        if not (math.isfinite(v) and v > 0):
            raise CurateError(f"{option}: values must be positive and finite, got {part!r}")
        values.append(v)
    return values


def render(result: dict) -> str:
    unit = result.get("unit") or "samples"
    if "pool" in result:
        what = f"pool {result['pool']} (size {result['pool_size']:.4g})"
    elif "mixture" in result:
        what = "mixture " + ", ".join(f"{p}={w:.4g}" for p, w in result["mixture"].items())
    else:
        what = f"N = {result['params']:.4g} params"
    lines = [f"{result['kind']} law {result['law']}: {what}"]
    head = f"  {unit + ' seen':>16}  {'prediction':>12}"
    if result.get("interval"):
        head += f"  {int(round(result['level'] * 100))}% interval"
    lines.append(head)
    for i, (n, p) in enumerate(zip(result["samples"], result["prediction"])):
        line = f"  {n:>16.6g}  {p:>12.6g}"
        if result.get("interval"):
            lo, hi = result["interval"][i]
            line += f"  [{lo:.6g}, {hi:.6g}]"
        lines.append(line)
    return "\n".join(lines)

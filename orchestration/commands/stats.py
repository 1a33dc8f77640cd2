"""Show the per-pool table of a finished run (read from DIR/stats.parquet with DuckDB).

Columns: pool (0 = best), docs, chars, tokens (estimate: whitespace words x 1.3),
score min/mean/max, and each source's share of the pool's documents.
"""
from __future__ import annotations

import argparse

HELP = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="DIR", help="output directory of `curate run`")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")


def _fmt(value, digits=3):
    return "-" if value is None else f"{value:.{digits}f}"


def _table(rows: list[dict]) -> str:
    import json
    import os

    header = ["pool", "docs", "chars", "tokens", "score_min", "score_mean", "score_max", "top sources"]
    lines = []
    for r in rows:
        share = json.loads(r["source_share"] or "{}")
        top = sorted(share.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        sources = ", ".join(f"{os.path.basename(s.rstrip('/'))} {v:.0%}" for s, v in top)
        lines.append([str(r["pool"]), str(r["docs"]), str(r["chars"]), str(r["tokens"]),
                      _fmt(r["score_min"]), _fmt(r["score_mean"]), _fmt(r["score_max"]), sources])
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in lines]
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    import json

    from pools.stats import read_stats

    rows = read_stats(args.run_dir)
    if args.json:
        for r in rows:
            r["source_share"] = json.loads(r["source_share"] or "{}")
        print(json.dumps(rows, indent=2))
    else:
        print(_table(rows))
    return 0

"""Per-pool statistics: a mergeable accumulator (used by a Beam CombineFn) and the reader.

The accumulator is plain data so the same code serves Beam and tests. Token counts are the
`scorers.text.estimate_tokens` estimate (whitespace words x 1.3), summed per pool.
"""
from __future__ import annotations

import json
import math
from typing import Iterable



def empty() -> dict:
    return {"docs": 0, "chars": 0, "tokens": 0, "score_sum": 0.0, "score_min": math.inf,
            "score_max": -math.inf, "sources": {}}


def add(acc: dict, doc: dict) -> dict:
    """Fold one document (needs chars, tokens, score, source) into the accumulator."""
    acc["docs"] += 1
    acc["chars"] += int(doc["chars"])
    acc["tokens"] += int(doc["tokens"])
    score = float(doc["score"])
    acc["score_sum"] += score
    acc["score_min"] = min(acc["score_min"], score)
    acc["score_max"] = max(acc["score_max"], score)
    acc["sources"][doc["source"]] = acc["sources"].get(doc["source"], 0) + 1
    return acc


def merge(accs: Iterable[dict]) -> dict:
    out = empty()
    for acc in accs:
        out["docs"] += acc["docs"]
        out["chars"] += acc["chars"]
        out["tokens"] += acc["tokens"]
        out["score_sum"] += acc["score_sum"]
        out["score_min"] = min(out["score_min"], acc["score_min"])
        out["score_max"] = max(out["score_max"], acc["score_max"])
        for src, n in acc["sources"].items():
            out["sources"][src] = out["sources"].get(src, 0) + n
    return out


def finalize(acc: dict, pool: int) -> dict:
    """One stats.parquet row. An empty pool has docs=0 and null score columns."""
    docs = acc["docs"]
    share = {src: acc["sources"][src] / docs for src in sorted(acc["sources"])} if docs else {}
    return {
        "pool": int(pool),
        "docs": docs,
        "chars": acc["chars"],
        "tokens": acc["tokens"],
        "score_min": acc["score_min"] if docs else None,
        "score_mean": acc["score_sum"] / docs if docs else None,
        "score_max": acc["score_max"] if docs else None,
        "source_share": json.dumps(share, sort_keys=True),
    }


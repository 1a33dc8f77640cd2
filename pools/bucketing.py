"""Quality-pool bucketing: cut points -> pool id (plain Python, used from Beam as a side input).

Pool 0 is the best pool. Documents are ordered by the *rank key* `(-score, id)`: higher score
first, ties broken by the smaller id, so the order is total and deterministic. Two kinds of
cut points exist:

- **rank cuts** (from quantiles): K-1 rank keys; a document's pool is the number of cut keys
  that are <= its own key. Exact rank cuts put floor/ceil(N/K) documents in every pool even
  when many scores tie.
- **score cuts** (explicit, from config): K-1 descending score thresholds; pool = number of
  thresholds strictly greater than the score (score >= t0 -> pool 0, ...).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Iterable, Sequence

RankKey = tuple[float, str]


def rank_key(score: float, doc_id: str) -> RankKey:
    """Sort key with the best document first: (-score, id)."""
    return (-float(score), str(doc_id))


@dataclass(frozen=True)
class PoolCuts:
    """K-1 cut points of one kind; `kind` is "rank" or "score"."""

    kind: str
    cuts: tuple
    num_pools: int

    def __post_init__(self) -> None:
        if self.kind not in ("rank", "score"):
            raise ValueError(f"unknown cut kind {self.kind!r}")
        if len(self.cuts) != self.num_pools - 1:
            raise ValueError(f"{self.num_pools} pools need {self.num_pools - 1} cut points")

    def assign(self, score: float, doc_id: str) -> int:
        """Pool id in [0, num_pools) for one document."""
        if self.kind == "score":
            # thresholds are descending; count those strictly above the score
            return sum(1 for t in self.cuts if score < t)
        return bisect.bisect_right(list(self.cuts), rank_key(score, doc_id))

    def to_json(self) -> dict:
        return {"kind": self.kind, "num_pools": self.num_pools, "cuts": [list(c) if isinstance(c, tuple) else c for c in self.cuts]}


def score_cuts(thresholds: Sequence[float]) -> PoolCuts:
    """Explicit score thresholds (any order given; stored descending)."""
    ts = tuple(sorted((float(t) for t in thresholds), reverse=True))
    if len(set(ts)) != len(ts):
        raise ValueError("explicit pool cut points must be distinct")
    return PoolCuts("score", ts, len(ts) + 1)


def exact_rank_cuts(keys: Iterable[RankKey], num_pools: int) -> PoolCuts:
    """Exact quantile cuts over all rank keys: the document of rank i (0 = best) goes to pool
    floor(i*K/N), so pools differ in size by at most one and pool 0 is never empty."""
    if num_pools < 1:
        raise ValueError("number of pools must be >= 1")
    ordered = sorted(tuple(k) for k in keys)
    n = len(ordered)
    cuts = []
    for k in range(1, num_pools):
        pos = -(-k * n // num_pools)  # ceil(k*N/K): rank of the first document of pool k
        # with fewer documents than pools, cuts past the end leave trailing pools empty
        cuts.append(ordered[pos] if pos < n else (float("inf"), ""))
    return PoolCuts("rank", tuple(cuts), num_pools)


def rank_cuts_from_quantiles(quantiles: Sequence[RankKey], num_pools: int) -> PoolCuts:
    """Cuts from K+1 approximate quantiles (min, q1, ..., max) of the rank keys."""
    qs = [tuple(q) for q in quantiles]
    if len(qs) != num_pools + 1:
        raise ValueError(f"expected {num_pools + 1} quantiles, got {len(qs)}")
    return PoolCuts("rank", tuple(qs[1:-1]), num_pools)


def cuts_from_json(data: dict) -> PoolCuts:
    cuts = tuple(tuple(c) if isinstance(c, list) else c for c in data["cuts"])
    return PoolCuts(data["kind"], cuts, int(data["num_pools"]))

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
from typing import Iterable, Mapping, Sequence

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


def empty_pools_warning(per_pool: Mapping, cuts: Mapping) -> str | None:
    """One line naming the pools that got no document, and why; None when none is empty.

    per_pool: pool id -> documents written (every pool, empty ones with 0), as the manifest's
    `written_rows.per_pool`; cuts: the run's cut points as the manifest's `pools` records them
    (`PoolCuts.to_json()`, plus `mode`). An empty pool is a valid result, but a silent one made
    `--pools 8` on 5 kept documents look like 8 pools of data.
    """
    sizes = {int(k): int(v) for k, v in per_pool.items()}
    empty = sorted(k for k, v in sizes.items() if v == 0)
    if not empty:
        return None
    kept, num_pools = sum(sizes.values()), len(sizes)
    named = f"pool{'s' if len(empty) > 1 else ''} {', '.join(map(str, empty))} of {num_pools} "
    named += "are empty" if len(empty) > 1 else "is empty"
    if kept == 0:
        return f"{named}: no document was kept"
    if cuts.get("kind") == "score":
        thresholds = [float(t) for t in cuts["cuts"]]  # descending
        ranges = [_score_range(thresholds, k) for k in empty]
        return (f"{named}: no kept document has a score in {'its' if len(empty) == 1 else 'their'} "
                f"range of the explicit pools.cut_points ({'; '.join(ranges)})")
    if kept < num_pools:
        return (f"{named}: {kept} kept document{'s' if kept > 1 else ''} for {num_pools} pools, "
                f"and rank cuts put at most one document in each pool; set --pools (pools.num_pools) "
                f"to {kept} or fewer")
    return f"{named}: the {cuts.get('mode', 'rank')} cut points left no document between them"


def _score_range(thresholds: Sequence[float], pool: int) -> str:
    """The scores pool `pool` takes under descending explicit thresholds."""
    if pool == 0:
        return f"pool 0: score >= {thresholds[0]:g}"
    if pool == len(thresholds):
        return f"pool {pool}: score < {thresholds[-1]:g}"
    return f"pool {pool}: {thresholds[pool]:g} <= score < {thresholds[pool - 1]:g}"

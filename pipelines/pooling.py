"""Pool assignment: quantile cut points computed once (global combine), applied via side input.

Exact quantiles while the corpus has at most `exact_max_docs` surviving documents: the combine
keeps every rank key `(-score, id)` and sorts them. Past that size the accumulator switches to
Beam's `ApproximateQuantilesCombineFn` (bounded memory, epsilon-approximate, and possibly
dependent on bundling). Explicit cut points from config skip the combine altogether.
The bucketing rule itself is plain Python in `pools.bucketing`.

Merging never holds the partial accumulators together (issue 16: one list of them was ~17 GB
at 100M documents): they are folded one at a time, so a merge holds at most `exact_max_docs`
keys plus one incoming accumulator, or one approximate summary plus one incoming accumulator,
whatever the number of partial accumulators.
"""
from __future__ import annotations

import apache_beam as beam
from apache_beam.transforms.stats import ApproximateQuantilesCombineFn

from curate.pipelines.stage_configs import PoolsConfig
from curate.pools.bucketing import PoolCuts, exact_rank_cuts, rank_cuts_from_quantiles, rank_key, score_cuts


class QuantileCutsFn(beam.CombineFn):
    """Rank keys -> PoolCuts; exact up to `exact_max_docs` keys, approximate beyond."""

    def __init__(self, num_pools: int, exact_max_docs: int = 2_000_000):
        self.num_pools = num_pools
        self.exact_max_docs = exact_max_docs

    def _approx_fn(self):
        return ApproximateQuantilesCombineFn.create(num_quantiles=self.num_pools + 1)

    def _to_approx(self, keys):
        fn = self._approx_fn()
        acc = fn.create_accumulator()
        for k in keys:
            acc = fn.add_input(acc, k)
        return acc

    def create_accumulator(self):
        return ("exact", [])

    def add_input(self, acc, key):
        kind, state = acc
        if kind == "exact":
            state.append(tuple(key))
            if len(state) > self.exact_max_docs:
                return ("approx", self._to_approx(state))
            return acc
        return ("approx", self._approx_fn().add_input(state, tuple(key)))

    def merge_accumulators(self, accs):
        """Fold `accs` one at a time (an iterable, read once): exact while the keys seen so far
        fit `exact_max_docs`, approximate from the first accumulator that does not fit."""
        pending = iter(accs)
        merged: list = []
        sizes: list[int] = []  # keys each folded accumulator brought (see _approx_states)
        for kind, state in pending:
            if kind == "exact" and len(merged) + len(state) <= self.exact_max_docs:
                merged.extend(state)
                sizes.append(len(state))
                continue
            states = self._approx_states(merged, sizes, (kind, state), pending)
            return ("approx", self._approx_fn().merge_accumulators(states))
        return ("exact", merged)

    def _approx_states(self, merged: list, sizes: list[int], first, rest):
        """Approximate states of the exact keys folded so far, then of `first` and `rest`, made one
        at a time. Beam's merge collapses its buffers while it reads them, so fed lazily it holds
        one summary plus one incoming state. The exact keys are converted per accumulator, as
        they arrived, so the cuts are the ones a merge of the whole list gave (and still give)."""
        start = 0
        for n in sizes:
            yield self._to_approx(merged[i] for i in range(start, start + n))
            start += n
        merged.clear()  # the exact keys are summarised: free them before reading the rest
        yield self._as_approx(*first)
        for kind, state in rest:
            yield self._as_approx(kind, state)

    def _as_approx(self, kind, state):
        return state if kind == "approx" else self._to_approx(state)

    def extract_output(self, acc):
        kind, state = acc
        if kind == "exact":
            return exact_rank_cuts(state, self.num_pools), "exact"
        quantiles = self._approx_fn().extract_output(state)
        if len(quantiles) != self.num_pools + 1:  # fewer distinct keys than pools
            return exact_rank_cuts(quantiles, self.num_pools), "approximate"
        return rank_cuts_from_quantiles(quantiles, self.num_pools), "approximate"


def _assign(doc, cuts_and_mode):
    cuts: PoolCuts = cuts_and_mode[0]
    return {**doc, "pool": int(cuts.assign(doc["score"], doc["id"]))}


class AssignPools(beam.PTransform):
    """scored documents -> {"documents": documents with `pool`, "cuts": one (PoolCuts, mode)}.

    `mode` is "exact", "approximate" or "explicit" (cut points from config). The transform
    keeps nothing from `expand`: both PCollections are returned.
    """

    reads = ("id", "score")
    adds = ("pool",)

    def __init__(self, num_pools: int, cut_points: list[float] | None = None,
                 exact_max_docs: int = 2_000_000):
        super().__init__()
        self.num_pools = num_pools
        self.cut_points = cut_points
        self.exact_max_docs = exact_max_docs

    @classmethod
    def from_config(cls, config: PoolsConfig) -> "AssignPools":
        return cls(config.count, list(config.cut_points) if config.cut_points else None, config.exact_max_docs)

    def expand(self, docs):
        if self.cut_points:
            fixed = score_cuts(self.cut_points)
            cuts = docs.pipeline | "ExplicitCuts" >> beam.Create([(fixed, "explicit")])
        else:
            cuts = (
                docs
                | "RankKeys" >> beam.Map(lambda d: rank_key(d["score"], d["id"]))
                | "QuantileCuts" >> beam.CombineGlobally(QuantileCutsFn(self.num_pools, self.exact_max_docs))
            )
        pooled = docs | "AssignPool" >> beam.Map(_assign, beam.pvalue.AsSingleton(cuts))
        return {"documents": pooled, "cuts": cuts}

"""Connected components of an undirected edge list, distributed (no worker holds all edges).

Algorithm: min-label propagation. Every node starts with the smallest id among itself and its
neighbours, then `rounds` times takes the minimum label over its neighbourhood (one
CoGroupByKey + CombinePerKey per round, unrolled into the graph). A final round also emits
*residual* label pairs wherever two adjacent nodes still disagree. If the propagation
converged (the usual case: near-duplicate clusters have a small diameter) there are none. If
not, only the residual label pairs — typically a handful — go to one worker, which merges them
with union-find (smallest id as root) and broadcasts the label remapping as a side input. The
result is exact either way; the residual count is reported as a counter.
"""
from __future__ import annotations

import apache_beam as beam

from curate.pipelines import counters

RESIDUAL = "residual"


def _both_directions(edge):
    a, b = edge
    yield a, b
    yield b, a


def _initial_label(item):
    node, neighbours = item
    return node, min(node, min(neighbours))


def _send_label(item):
    node, grouped = item
    label = grouped["label"][0]
    yield node, label
    for neighbours in grouped["adj"]:
        for n in neighbours:
            yield n, label


class _FinalRound(beam.DoFn):
    def process(self, item):
        node, incoming = item
        labels = set(incoming)
        new = min(labels)
        yield node, new
        for other in sorted(labels - {new}):
            counters.inc(counters.CC_RESIDUAL_EDGES)
            yield beam.pvalue.TaggedOutput(RESIDUAL, (new, other))


def union_find_min(pairs) -> dict:
    """label -> smallest label connected to it via `pairs` (only labels that occur in pairs)."""
    parent: dict = {}

    def find(x):
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            lo, hi = (ra, rb) if ra < rb else (rb, ra)
            parent[hi] = lo
            parent.setdefault(lo, lo)
    return {x: find(x) for x in list(parent)}


def _apply_remap(item, remap):
    node, label = item
    return node, remap.get(label, label)


class ConnectedComponents(beam.PTransform):
    """(a, b) edges -> (node, component label) for every node in an edge; label = min id."""

    def __init__(self, rounds: int = 5):
        super().__init__()
        if rounds < 0:
            raise ValueError("connected-components rounds must be >= 0")
        self.rounds = rounds

    def expand(self, edges):
        adjacency = (
            edges
            | "BothDirections" >> beam.FlatMap(_both_directions)
            | "GroupNeighbours" >> beam.GroupByKey()
            | "DistinctNeighbours" >> beam.MapTuple(lambda n, nbrs: (n, sorted(set(nbrs))))
        )
        labels = adjacency | "InitialLabel" >> beam.Map(_initial_label)
        for r in range(self.rounds):
            labels = (
                {"label": labels, "adj": adjacency}
                | f"Join{r}" >> beam.CoGroupByKey()
                | f"Send{r}" >> beam.FlatMap(_send_label)
                | f"Min{r}" >> beam.CombinePerKey(min)
            )
        final = (
            {"label": labels, "adj": adjacency}
            | "JoinFinal" >> beam.CoGroupByKey()
            | "SendFinal" >> beam.FlatMap(_send_label)
            | "GroupFinal" >> beam.GroupByKey()
            | "FinalRound" >> beam.ParDo(_FinalRound()).with_outputs(RESIDUAL, main="labels")
        )
        remap = (
            final[RESIDUAL]
            | "CollectResidual" >> beam.combiners.ToList()
            | "UnionFindResidual" >> beam.Map(union_find_min)
        )
        return final.labels | "ApplyRemap" >> beam.Map(_apply_remap, beam.pvalue.AsSingleton(remap))

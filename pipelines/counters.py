"""Beam counter names. Every record lands in exactly one terminal counter, which is how the
manifest proves `input = kept + removed per reason + dead-lettered`."""
from __future__ import annotations

import apache_beam as beam

NAMESPACE = "curate"
INPUT = "input_records"
KEPT = "kept"
DEAD_LETTER_PREFIX = "dead_letter."  # + reason
REMOVED_PREFIX = "removed."  # + exact | near
FILTERED_PREFIX = "filtered."  # + rule
RENAMED_IDS = "renamed_duplicate_ids"  # informational: not a terminal counter
CC_RESIDUAL_EDGES = "near_dedup.cc_residual_edges"  # informational
NEAR_CANDIDATE_PAIRS = "near_dedup.candidate_pairs"
NEAR_VERIFIED_PAIRS = "near_dedup.verified_pairs"
EMBEDDED = "embedded"  # informational: documents embedded (= rows of RUN/embeddings/)


def inc(name: str, n: int = 1) -> None:
    beam.metrics.Metrics.counter(NAMESPACE, name).inc(n)


def query(result) -> dict[str, int]:
    """All curate counters of a finished pipeline result (committed values where available)."""
    from apache_beam.metrics.metric import MetricsFilter

    out: dict[str, int] = {}
    metrics = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    for counter in metrics["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        out[counter.key.metric.name] = out.get(counter.key.metric.name, 0) + int(value or 0)
    return out

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


class CountersUnavailable(ValueError):
    """The runner gives no committed counters, so the run cannot be reconciled (one line)."""


def inc(name: str, n: int = 1) -> None:
    beam.metrics.Metrics.counter(NAMESPACE, name).inc(n)


def query(result) -> dict[str, int]:
    """The committed values of all curate counters of a finished pipeline result.

    Committed values only: a runner that retries a failed bundle keeps the retried bundle's
    increments in its attempted values, so attempted counts can exceed what was written and
    would make the reconciliation fail (or, worse, hold by accident). A runner that reports no
    metrics, or a curate counter without a committed value, raises CountersUnavailable.
    """
    from apache_beam.metrics.metric import MetricsFilter

    runner = type(result).__module__.rsplit(".", 1)[-1] + "." + type(result).__name__
    try:
        metrics = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    except NotImplementedError:
        raise CountersUnavailable(
            f"the runner's result ({runner}) reports no metrics; curate needs its committed counters "
            "to reconcile the run, use a runner that reports them (FnApiRunner, PortableRunner, "
            "DataflowRunner)") from None
    out: dict[str, int] = {}
    for counter in metrics["counters"]:
        name = counter.key.metric.name
        if counter.committed is None:
            raise CountersUnavailable(
                f"the runner ({runner}) reports counter {NAMESPACE}.{name} without a committed value "
                f"(attempted: {counter.attempted}); curate reconciles runs on committed counters only, "
                "use a runner that commits them (FnApiRunner, PortableRunner, DataflowRunner)")
        # one counter can come back once per step that incremented it: their sum is the total
        out[name] = out.get(name, 0) + int(counter.committed)
    return out

"""Exact dedup on the normalised-text hash; the survivor of each group is the smallest id."""
from __future__ import annotations

import apache_beam as beam

from curate.pipelines import counters

REMOVED = "removed"


class _KeepSmallestId(beam.DoFn):
    def process(self, item):
        _, docs = item
        # two passes over the (re-iterable) group: a hot key never becomes one Python list
        kept_id = min(d["id"] for d in docs)  # ids are unique after ingest
        for doc in docs:
            if doc["id"] == kept_id:
                yield doc
            else:
                counters.inc(counters.REMOVED_PREFIX + "exact")
                yield beam.pvalue.TaggedOutput(REMOVED, {
                    "removed_id": doc["id"], "kept_id": kept_id, "method": "exact",
                    "similarity": 1.0})


class ExactDedup(beam.PTransform):
    """documents -> {"documents": survivors, "dedup": removal rows}."""

    reads = ("id", "text_hash")
    adds = ()

    def expand(self, docs):
        out = (
            docs
            | "KeyByHash" >> beam.Map(lambda d: (d["text_hash"], d))
            | "GroupByHash" >> beam.GroupByKey()
            | "KeepSmallestId" >> beam.ParDo(_KeepSmallestId()).with_outputs(REMOVED, main="documents")
        )
        return {"documents": out.documents, "dedup": out[REMOVED]}

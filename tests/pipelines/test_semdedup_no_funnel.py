"""Semantic dedup without single-worker funnels (issue 16 item 2), on real Beam runners.

The k-means sample is a bottom-k combine capped by `sample_size` / `sample_memory_mb`, and
documents are assigned to clusters in batches: the Beam stage must give what the in-memory
`scorers.semdedup` gives, document for document, with one worker or two.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

beam = pytest.importorskip("apache_beam")
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402
from apache_beam.runners.portability.fn_api_runner import FnApiRunner  # noqa: E402

from curate.pipelines.batching import BatchedDoFn  # noqa: E402
from curate.pipelines.semdedup import FitClusters, SemanticDedup  # noqa: E402
from curate.scorers.semdedup import (  # noqa: E402
    SemDedupConfig,
    fit_cluster_model,
    semantic_dedup,
    training_sample_rows,
)

# 2,000 documents in 10 topics; the sample is capped at 150 rows (the plan asks for 5 x 64)
CONFIG = SemDedupConfig(eps=0.05, n_clusters=5, max_cluster_size=300, sample_size=150)


def corpus(n=2000, dim=24, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(10, dim))
    x = centers[rng.integers(0, 10, n)] + 0.6 * rng.normal(size=(n, dim))
    x[-100:] = x[:100] + 0.01 * rng.normal(size=(100, dim))  # planted near copies
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    ids = [f"doc-{i:05d}" for i in range(n)]
    docs = [{"id": i, "embedding": v.tolist(), "score": float(k % 7) / 7} for k, (i, v) in enumerate(zip(ids, x))]
    return docs, ids, x


def run(docs, transform, target, workers: int):
    options = (PipelineOptions(direct_running_mode="multi_processing", direct_num_workers=2)
               if workers == 2 else PipelineOptions([]))
    runner = "DirectRunner" if workers == 2 else FnApiRunner()
    with beam.Pipeline(runner=runner, options=options) as p:
        (p | beam.Create(docs, reshuffle=False) | transform
         | beam.Map(json.dumps) | beam.io.WriteToText(str(target), shard_name_template=""))
    return [json.loads(line) for line in target.read_text().splitlines()]


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])  # 2: ~45 s
def test_capped_sample_and_batched_assignment_equal_the_in_memory_result(tmp_path, workers):
    docs, ids, x = corpus()
    rows = training_sample_rows(ids, x.shape[1], CONFIG)
    assert len(rows) == 150  # the cap binds
    model = fit_cluster_model(ids, x, CONFIG)

    class Centroids(beam.PTransform):
        def expand(self, pcoll):
            return pcoll | FitClusters(CONFIG) | beam.Map(lambda m: m.centroids.tolist())

    fitted = run(docs, Centroids(), tmp_path / "model.jsonl", workers)
    assert np.array_equal(np.asarray(fitted[0], dtype=np.float32), model.centroids)

    class Annotated(beam.PTransform):
        def expand(self, pcoll):
            return (pcoll | SemanticDedup(CONFIG, quality_field="score")
                    | beam.Map(lambda d: [d["id"], d["semdedup_cluster"], d["centroid_similarity"],
                                          d["semdedup_duplicate"], d["semdedup_matched_id"]]))

    got = {r[0]: r[1:] for r in run(docs, Annotated(), tmp_path / "out.jsonl", workers)}
    ref = semantic_dedup(ids, x, quality=np.asarray([d["score"] for d in docs]), config=CONFIG, model=model)
    expected = {i: [int(ref.cluster[k]), float(ref.centroid_similarity[k]), bool(ref.is_duplicate[k]),
                    ref.matched_id[k]] for k, i in enumerate(ids)}
    assert got == expected
    assert sum(v[2] for v in got.values()) >= 90  # the planted copies are found


class _Scale(BatchedDoFn):
    batches: list = []

    def process(self, x, factor, timestamp=beam.DoFn.TimestampParam, window=beam.DoFn.WindowParam):
        yield from self.add(x, (factor,), timestamp, window)

    def handle_batch(self, xs, factor):
        return [(x, x * factor, len(xs)) for x in xs]


def test_batched_dofn_flushes_every_element_once_in_batches(tmp_path):
    target = tmp_path / "out.jsonl"
    with beam.Pipeline(runner=FnApiRunner()) as p:
        factor = p | "Factor" >> beam.Create([3])
        (p | beam.Create(list(range(50)), reshuffle=False)
         | beam.ParDo(_Scale(batch_size=7), beam.pvalue.AsSingleton(factor))
         | beam.Map(json.dumps) | beam.io.WriteToText(str(target), shard_name_template=""))
    out = [json.loads(line) for line in target.read_text().splitlines()]
    assert sorted(r[:2] for r in out) == [[x, 3 * x] for x in range(50)]
    assert max(r[2] for r in out) == 7  # batched, and the rest flushed at the bundle's end


def test_batched_dofn_rejects_a_batch_with_missing_outputs():
    class Broken(_Scale):
        def handle_batch(self, xs, factor):
            return xs[:-1]

    fn = Broken(batch_size=2)
    fn.start_bundle()
    with pytest.raises(RuntimeError, match="1 outputs for 2 elements"):
        list(fn.add(1, (3,), 0, None))
        list(fn.add(2, (3,), 0, None))
    with pytest.raises(ValueError):
        _Scale(batch_size=0)

"""Beam semantic-dedup stage (SemDeDup): k-means on a hash sample, assign, dedup per cluster.

No stage funnels the corpus through one worker: the k-means sample is a bottom-k combine
(the documents with the smallest id hashes, at most ``sample_size`` rows and
``sample_memory_mb`` of vectors, accumulators bounded by that cap and merged streaming),
and documents are assigned to clusters in batches (``ClusterModel.assign_batch``).

``SemanticDedup`` takes documents carrying an ``embedding`` (and optionally a quality
score) and returns every document annotated with:

- ``semdedup_cluster`` (int leaf cluster), ``centroid_similarity`` and ``prototypicality``
  (1 - centroid_similarity, Sorscher et al. 2022);
- ``semdedup_duplicate`` (bool), ``semdedup_matched_id`` (the earlier-ranked document it
  matched, or None) and ``semdedup_similarity`` (cosine to it, or None).

The pipeline keeps documents with ``semdedup_duplicate`` False and writes
``removed_pair_row(doc)`` for the others to RUN/dedup/.  The same scorers functions as the
in-memory ``scorers.semdedup.semantic_dedup`` are used, so both give the same answer.
"""
from __future__ import annotations

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from curate.pipelines import counters
from curate.pipelines.batching import DEFAULT_BATCH_SIZE, BatchedDoFn
from curate.pipelines.stage_configs import SemanticDedupConfig
from curate.scorers.clustering import BottomK, id_hash64, sample_hash_bound
from curate.scorers.semdedup import SemDedupConfig, dedup_group, fit_on_sample


def removed_pair_row(doc: dict, id_field: str = "id") -> dict:
    """RUN/dedup/ row for a document removed by semantic dedup."""
    return {"removed_id": str(doc[id_field]), "kept_id": doc.get("semdedup_matched_id"),
            "method": "semantic", "similarity": doc.get("semdedup_similarity")}


class _DedupCluster(beam.DoFn):
    """One leaf cluster -> its documents annotated (blocked, split above the size cap)."""

    def __init__(self, config: SemDedupConfig, id_field: str, embedding_field: str, quality_field: str | None):
        self._config = config
        self._id_field = id_field
        self._embedding_field = embedding_field
        self._quality_field = quality_field
        self._removed = Metrics.counter("curate_semdedup", "removed")
        self._split = Metrics.counter("curate_semdedup", "split_clusters")

    def process(self, element):
        leaf, docs = element
        docs = list(docs)
        ids = [str(d[self._id_field]) for d in docs]
        x = np.asarray([d[self._embedding_field] for d in docs], dtype=np.float32)
        csim = np.asarray([d["centroid_similarity"] for d in docs], dtype=np.float64)
        quality = None
        if self._quality_field is not None:
            quality = np.asarray([np.nan if d.get(self._quality_field) is None else d[self._quality_field]
                                  for d in docs], dtype=np.float64)
        out = dedup_group(ids, x, self._config, quality, csim)
        self._removed.inc(int(out.is_duplicate.sum()))
        if out.n_subgroups > 1:
            self._split.inc()
        for i, doc in enumerate(docs):
            m = int(out.matched[i])
            sim = float(out.similarity[i])
            yield {**doc,
                   "semdedup_duplicate": bool(out.is_duplicate[i]),
                   "semdedup_matched_id": ids[m] if m >= 0 else None,
                   "semdedup_similarity": None if np.isnan(sim) else sim}


class HashSampleRows(beam.PTransform):
    """docs -> one-element PCollection: [(id, vector)] of a deterministic id-hash sample.

    ``fraction(n)`` gives the share to keep from the number of documents n (a side input),
    so the sample is the same whatever the runner, worker count or input order.
    """

    def __init__(self, fraction, seed: int, *, id_field: str = "id", embedding_field: str = "embedding"):
        super().__init__()
        self._fraction, self._seed = fraction, seed
        self._id_field, self._embedding_field = id_field, embedding_field

    def expand(self, docs):
        from curate.scorers.clustering import in_sample

        fraction, seed, id_field, field = self._fraction, self._seed, self._id_field, self._embedding_field
        n_docs = docs | "CountDocs" >> beam.combiners.Count.Globally()
        rows = (
            docs
            | "HashSample" >> beam.Filter(lambda d, n: in_sample(str(d[id_field]), fraction(n), seed),
                                          n=beam.pvalue.AsSingleton(n_docs))
            | "SampleRows" >> beam.Map(lambda d: (str(d[id_field]), d[field]))
            | "CollectSample" >> beam.combiners.ToList()
        )
        return rows, n_docs


class _SampleCandidates(beam.DoFn):
    """doc -> (id hash, id, float32 vector bytes) when its id hash is below the sample's bound.

    The bound (``sample_hash_bound``) lets through about as many documents as the sample
    keeps, so the partial samples of all bundles together stay near the cap.
    """

    def __init__(self, config: SemDedupConfig, id_field: str, embedding_field: str):
        self._config, self._id_field, self._field = config, id_field, embedding_field
        self._bounds: dict = {}

    def process(self, doc, n_docs):
        vector = np.asarray(doc[self._field], dtype=np.float32)
        key = (n_docs, len(vector))
        bound = self._bounds.get(key)
        if bound is None:
            rows, _ = self._config.training_plan(n_docs, len(vector))
            bound = self._bounds[key] = sample_hash_bound(n_docs, rows)
        doc_id = str(doc[self._id_field])
        doc_hash = id_hash64(doc_id, self._config.seed)
        if doc_hash < bound:
            yield doc_hash, doc_id, vector.tobytes()


class BottomKSample(beam.CombineFn):
    """(hash, id, vector bytes) rows -> the rows with the smallest (hash, id), at most the cap.

    Accumulators are ``scorers.clustering.BottomK`` (bounded by the cap whatever they are
    fed); ``merge_accumulators`` folds the partials one at a time into the first, so a runner
    that streams them (Dataflow's combine) never holds more than two. The output depends only
    on the set of rows, not on bundles, their order or the merge tree.
    """

    def __init__(self, sample_size: int, memory_mb: float):
        self._sample_size, self._memory_mb = sample_size, memory_mb

    def create_accumulator(self):
        return BottomK(sample_size=self._sample_size, memory_mb=self._memory_mb)

    def add_input(self, accumulator, row):
        accumulator.add(*row)
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = None
        for acc in accumulators:
            merged = acc if merged is None else merged.merge(acc)
        return self.create_accumulator() if merged is None else merged

    def extract_output(self, accumulator):
        return accumulator.rows()


def fit_bottom_k(rows: list, n_docs: int, config: SemDedupConfig):
    """The ClusterModel fitted on the bottom-k rows (None when there are no documents)."""
    if n_docs == 0:
        return None  # no documents: nothing is assigned, so no model is needed
    if not rows:
        raise ValueError("semantic dedup: the k-means training sample is empty")
    dim = len(rows[0][2]) // 4
    if any(len(r[2]) != 4 * dim for r in rows):
        raise ValueError("semantic dedup: the embeddings have different dimensions")
    keep, _ = config.training_plan(n_docs, dim)
    rows = rows[:keep]  # the smallest (hash, id) first: a prefix is the smaller sample
    x = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), dim)
    return fit_on_sample([r[1] for r in rows], x, n_docs, config)


class FitClusters(beam.PTransform):
    """embedded docs -> a one-element PCollection: the fitted ClusterModel (None if no docs).

    k-means on the bounded id-hash sample (``BottomKSample``, then
    ``scorers.semdedup.fit_on_sample``); the same sample as the in-memory
    ``scorers.semdedup.training_sample_rows``. Used as a side input by semantic dedup and by
    prototypicality (one clustering serves both).
    """

    reads = ("id", "embedding")  # id_field, embedding_field
    adds = ()  # its output is the model, not documents

    def __init__(self, config: SemDedupConfig = SemDedupConfig(), *, id_field: str = "id",
                 embedding_field: str = "embedding"):
        super().__init__()
        self._config = config
        self._id_field = id_field
        self._embedding_field = embedding_field

    def expand(self, docs):
        config = self._config
        n_docs = docs | "CountDocs" >> beam.combiners.Count.Globally()
        sample = (
            docs
            | "SampleCandidates" >> beam.ParDo(_SampleCandidates(config, self._id_field, self._embedding_field),
                                               n_docs=beam.pvalue.AsSingleton(n_docs))
            | "BottomK" >> beam.CombineGlobally(BottomKSample(config.sample_size, config.sample_memory_mb))
        )
        return sample | "FitKMeans" >> beam.Map(fit_bottom_k, n_docs=beam.pvalue.AsSingleton(n_docs),
                                                config=config)


class AssignClusters(BatchedDoFn):
    """doc -> (leaf, doc annotated with its cluster), one nearest-centroid search per batch."""

    def __init__(self, embedding_field: str = "embedding", batch_size: int = DEFAULT_BATCH_SIZE):
        super().__init__(batch_size)
        self._field = embedding_field

    def process(self, doc, model, timestamp=beam.DoFn.TimestampParam, window=beam.DoFn.WindowParam):
        yield from self.add(doc, (model,), timestamp, window)

    def handle_batch(self, docs, model):
        from curate.scorers.embedding_quality import round_score

        leaves, sims = model.assign_batch([d[self._field] for d in docs])
        # plain int key: numpy ints are not deterministically encodable in GroupByKey;
        # prototypicality rounded as embedding scores round it (the same value either way)
        return [(leaf, {**doc, "semdedup_cluster": leaf, "centroid_similarity": sim,
                        "prototypicality": round_score(1.0 - sim)})
                for doc, leaf, sim in zip(docs, leaves, sims)]


def cluster_info(model, config: SemDedupConfig) -> dict:
    """What the manifest records about the clustering (plain JSON)."""
    if model is None:
        return {"n_clusters": 0, "n_leaves": 0, "seed": config.seed}
    return {"n_clusters": int(model.n_clusters), "n_leaves": int(model.n_leaves), "seed": config.seed,
            "max_cluster_size": config.max_cluster_size}


class SemanticDedup(beam.PTransform):
    """Annotate documents with semantic-dedup results (see the module docstring).

    ``clusters``: a one-element PCollection from ``FitClusters`` to reuse; None fits one here.
    """

    reads = ("id", "embedding")  # id_field, embedding_field; and quality_field when given
    adds = ("semdedup_cluster", "centroid_similarity", "prototypicality", "semdedup_duplicate",
            "semdedup_matched_id", "semdedup_similarity")

    def __init__(self, config: SemDedupConfig = SemDedupConfig(), *, id_field: str = "id",
                 embedding_field: str = "embedding", quality_field: str | None = None, clusters=None):
        super().__init__()
        self._config = config
        self._id_field = id_field
        self._embedding_field = embedding_field
        self._quality_field = quality_field
        self._clusters = clusters

    def expand(self, docs):
        config, id_field, field = self._config, self._id_field, self._embedding_field
        model = self._clusters
        if model is None:
            model = docs | "FitClusters" >> FitClusters(config, id_field=id_field, embedding_field=field)

        return (
            docs
            | "AssignCluster" >> beam.ParDo(AssignClusters(field), beam.pvalue.AsSingleton(model))
            | "GroupByCluster" >> beam.GroupByKey()
            | "DedupCluster" >> beam.ParDo(_DedupCluster(config, id_field, field, self._quality_field))
        )


SEMANTIC_DUPLICATE = "semantic_duplicate"
# fields added by EmbedDocuments / SemanticDedup; dropped before the later stages (the pool
# Parquet has no column for them, and the vectors are the bulk of the shuffled bytes)
SEMANTIC_FIELDS = ("embedding", "semdedup_cluster", "centroid_similarity",
                   "semdedup_duplicate", "semdedup_matched_id", "semdedup_similarity")


def drop_semantic_fields(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in SEMANTIC_FIELDS}


class _RouteSemantic(beam.DoFn):
    """Annotated document -> survivor (semantic fields dropped) or a `semantic` dedup row."""

    def process(self, doc):
        if doc["semdedup_duplicate"]:
            counters.inc(counters.REMOVED_PREFIX + "semantic")
            yield beam.pvalue.TaggedOutput(SEMANTIC_DUPLICATE, removed_pair_row(doc))
            return
        yield drop_semantic_fields(doc)


class SemanticStage(beam.PTransform):
    """embedded documents -> {"documents": survivors, "dedup": `semantic` rows}.

    The run's semantic-dedup stage: ``SemanticDedup`` annotates, then duplicates become dedup
    rows (counted as removed.semantic) and survivors lose the vectors and annotations.
    ``clusters``: the run's FitClusters output (shared with prototypicality), or None.
    """

    reads = ("id", "embedding", "score")
    # SemanticDedup's `prototypicality` stays on the survivors (the same value embedding
    # scores computed from the same clustering, when they ran); the rest is removed
    adds = ("prototypicality",)
    removes = SEMANTIC_FIELDS

    def __init__(self, config: SemanticDedupConfig, clusters=None):
        super().__init__()
        self.config = config
        self.clusters = clusters

    def expand(self, docs):
        c = self.config
        annotated = docs | "Annotate" >> SemanticDedup(
            c.clustering(), quality_field="score" if c.ranking == "quality" else None,
            clusters=self.clusters)
        routed = annotated | "Route" >> beam.ParDo(_RouteSemantic()).with_outputs(
            SEMANTIC_DUPLICATE, main="documents")
        return {"documents": routed.documents, "dedup": routed[SEMANTIC_DUPLICATE]}


class DropSemanticFields(beam.PTransform):
    """Documents without the vectors (and any semantic annotations), for the later stages."""

    reads = ()
    adds = ()
    removes = SEMANTIC_FIELDS

    def expand(self, docs):
        return docs | "Drop" >> beam.Map(drop_semantic_fields)

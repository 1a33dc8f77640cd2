"""Beam semantic-dedup stage (SemDeDup): k-means on a hash sample, assign, dedup per cluster.

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
from curate.pipelines.stage_configs import SemanticDedupConfig
from curate.scorers.semdedup import SemDedupConfig, dedup_group, fit_on_sample, training_fraction


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


class FitClusters(beam.PTransform):
    """embedded docs -> a one-element PCollection: the fitted ClusterModel (None if no docs).

    k-means on a deterministic id-hash sample (``scorers.semdedup.fit_on_sample``); used as a
    side input by semantic dedup and by prototypicality (one clustering serves both).
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
        sample, n_docs = docs | "Sample" >> HashSampleRows(
            lambda n: training_fraction(n, config), config.seed, id_field=self._id_field,
            embedding_field=self._embedding_field)

        def fit(rows, n):
            if n == 0:
                return None  # no documents: nothing is assigned, so no model is needed
            rows = sorted(rows)
            return fit_on_sample([r[0] for r in rows], np.asarray([r[1] for r in rows], dtype=np.float32),
                                 n, config)

        return sample | "FitKMeans" >> beam.Map(fit, n=beam.pvalue.AsSingleton(n_docs))


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

        def assign(doc, model):
            from curate.scorers.embedding_quality import round_score

            leaf, sim = model.assign_one(doc[field])
            # plain int key: numpy ints are not deterministically encodable in GroupByKey;
            # prototypicality rounded as embedding scores round it (the same value either way)
            return int(leaf), {**doc, "semdedup_cluster": int(leaf), "centroid_similarity": sim,
                               "prototypicality": round_score(1.0 - sim)}

        return (
            docs
            | "AssignCluster" >> beam.Map(assign, model=beam.pvalue.AsSingleton(model))
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

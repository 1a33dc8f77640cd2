"""Beam stage: embedding-based quality scores and the combined pool score.

``EmbeddingScores`` takes embedded, heuristically scored documents and adds

- ``reference_score``: P(looks like the reference set), a logistic regression on embeddings
  (``scorers.embedding_quality.ReferenceClassifier``) fitted once per run on the reference
  embeddings (label 1) and a deterministic id-hash sample of the corpus (label 0);
- ``prototypicality``: 1 - cosine to the nearest k-means centroid (Sorscher et al. 2022),
  from the run's shared clustering (``pipelines.semdedup.FitClusters``);
- ``heuristic_score``: the rule-based score as it was;

and replaces ``score`` (what pools, the keep/drop rule and semantic-dedup ranking read) by
``combine_scores`` of the three with the configured weights. Scoring stays separate from the
keep/drop decision: nothing is dropped here.

The reference is the shipped default (MiniLM embeddings) or a JSONL file read on the launcher
(through Beam's filesystems) when the pipeline is built; its texts travel with the job (a
one-element input) and are embedded on a worker with the run's own embedding settings, so no
worker opens the launcher's path.
"""
from __future__ import annotations

import apache_beam as beam
import numpy as np

from curate.pipelines.batching import BatchedDoFn
from curate.pipelines.stage_configs import EmbedConfig, EmbeddingScoresConfig

REFERENCE_SCORE = "reference_score"
PROTOTYPICALITY = "prototypicality"
HEURISTIC_SCORE = "heuristic_score"
#: Extra pool-Parquet columns this stage adds (name, schema type).
SCORE_COLUMNS = ((HEURISTIC_SCORE, "float64"), (REFERENCE_SCORE, "float64"), (PROTOTYPICALITY, "float64"))


def reference_file_bytes(path: str) -> bytes:
    """The bytes of a reference file on any Beam filesystem, as stored; ValueError if unreadable."""
    from curate.pipelines import fsutil

    try:
        return fsutil.read_bytes(path)
    except Exception as exc:  # noqa: BLE001 - missing file, permissions: one message
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"cannot read quality reference {path}: {first}") from None


def reference_texts(raw: bytes, path: str, field: str = "text", limit: int | None = None) -> list[str]:
    """Texts of JSONL reference bytes (gzip recognised by its magic bytes, any file name)."""
    import gzip
    import io

    from curate.scorers.embedding_quality import parse_reference_lines

    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"cannot read quality reference {path}: {exc}") from None
    return parse_reference_lines(io.BytesIO(raw), path, field, limit)


def read_reference_texts(path: str, field: str = "text", limit: int | None = None) -> list[str]:
    """Texts of a JSONL(.gz) reference file on any Beam filesystem; ValueError if unusable."""
    return reference_texts(reference_file_bytes(path), path, field, limit)


def reference_embeddings(es: EmbeddingScoresConfig, embed: EmbedConfig, texts: list[str] | None = None,
                         model_stage: str | None = None) -> dict:
    """{"embeddings", "source", "n_texts"} of the configured reference set.

    `texts`: the reference texts, read on the launcher and shipped with the job (None: read
    `es.reference` here); `model_stage`: the staged copy of a local model folder."""
    if es.reference is None:
        from curate.scorers.embedding import DEFAULT_MODEL
        from curate.scorers.embedding_quality import DEFAULT_REFERENCE_PATH, load_default_reference

        x = load_default_reference(DEFAULT_MODEL)
        return {"embeddings": x, "source": f"default ({DEFAULT_REFERENCE_PATH.name})", "n_texts": len(x)}
    from curate.pipelines.embed import quiet_model_loading
    from curate.scorers.embedding import Embedder

    from curate.pipelines.job_files import fetch_folder

    quiet_model_loading()
    if texts is None:
        texts = read_reference_texts(es.reference, es.reference_field, es.reference_limit)
    embedder = Embedder(embed.model, device=embed.device, precision=embed.precision, mode=embed.mode,
                        backend=embed.backend, load_from=fetch_folder(model_stage) if model_stage else None)
    return {"embeddings": embedder.encode(texts), "source": es.reference, "n_texts": len(texts)}


def shipped_reference_texts(es: EmbeddingScoresConfig) -> list[str] | None:
    """The user reference's texts, read on the launcher (None for the shipped default).

    When `curate run` recorded the file's SHA-256 (part of the run fingerprint), the bytes
    read now must still have it: a file changed since would give a run its fingerprint
    does not describe."""
    if not es.reference:
        return None
    import hashlib

    raw = reference_file_bytes(es.reference)
    if es.reference_sha256 and hashlib.sha256(raw).hexdigest() != es.reference_sha256:
        raise ValueError(f"quality reference {es.reference} changed while the run was being prepared; run again")
    return reference_texts(raw, es.reference, es.reference_field, es.reference_limit)


def fit_reference_classifier(negatives: list, reference: dict, C: float, max_negatives: int) -> dict:
    """Classifier fitted on reference (1) vs corpus sample (0), with its training figures."""
    from curate.scorers.embedding_quality import ReferenceClassifier, ranking_auc

    rows = sorted(negatives)  # collection order is not deterministic; the fit must be
    ref = np.asarray(reference["embeddings"], dtype=np.float32)
    if not rows:  # empty corpus: nothing will be scored
        return {"classifier": None, "info": {"reference": reference["source"], "n_reference": int(len(ref)),
                                             "n_negatives": 0}}
    corpus = np.asarray([r[1] for r in rows], dtype=np.float32)
    clf = ReferenceClassifier(C=C, max_negatives=max_negatives).fit(ref, corpus)
    used = min(len(corpus), max_negatives)
    ref_scores, corpus_scores = clf.score(ref), clf.score(corpus)
    info = {
        "reference": reference["source"],
        "n_reference": int(len(ref)),
        "n_negatives": int(used),
        # in-sample: how separable the reference is from this corpus (1.0 = fully)
        "training_auc": round(ranking_auc(ref_scores, corpus_scores), 6),
        "reference_score_mean_reference": round(float(ref_scores.mean()), 6),
        "reference_score_mean_corpus_sample": round(float(corpus_scores.mean()), 6),
    }
    return {"classifier": clf, "info": info}


class _ScoreDocument(BatchedDoFn):
    """Embedding scores per document; prototypicality from one nearest-centroid search per
    batch of documents (`ClusterModel.assign_batch`, each row's answer independent of its
    batch) instead of one per document."""

    def __init__(self, weights: dict, embedding_field: str):
        super().__init__()
        self._weights = dict(weights)
        self._field = embedding_field

    def process(self, doc, fitted, clusters, timestamp=beam.DoFn.TimestampParam,
                window=beam.DoFn.WindowParam):
        yield from self.add(doc, (fitted, clusters), timestamp, window)

    def handle_batch(self, docs, fitted, clusters):
        from curate.scorers.embedding_quality import combine_scores, round_score

        x = np.asarray([d[self._field] for d in docs], dtype=np.float32)
        sims = clusters.assign_batch(x)[1] if clusters is not None else [None] * len(docs)
        out = []
        for doc, row, sim in zip(docs, x, sims):
            # rounded (SCORE_DECIMALS) before pools and dedup rank them; ties then go by id.
            # The classifier stays per row: a batched product may round its low bits differently
            reference = round_score(fitted["classifier"].score(row[None, :])[0])
            proto = float("nan") if sim is None else round_score(1.0 - float(sim))
            heuristic = float(doc["score"])
            combined = combine_scores({"heuristic": heuristic, "reference": reference, "prototypicality": proto},
                                      self._weights)[0]
            out.append({**doc, HEURISTIC_SCORE: heuristic, REFERENCE_SCORE: reference,
                        PROTOTYPICALITY: None if np.isnan(proto) else proto, "score": round_score(combined)})
        return out


class EmbeddingScores(beam.PTransform):
    """embedded scored docs -> {"documents": re-scored docs, "info": one manifest dict}.

    ``es`` / ``embed``: the run's ``embedding_scores`` / ``embed`` settings;
    ``clusters``: one-element PCollection of a ClusterModel (or None) for prototypicality.
    """

    reads = ("id", "embedding", "score")  # id_field, embedding_field
    adds = (HEURISTIC_SCORE, REFERENCE_SCORE, PROTOTYPICALITY)  # and `score` is replaced

    def __init__(self, es: EmbeddingScoresConfig, embed: EmbedConfig, clusters, *, seed: int = 0,
                 id_field: str = "id", embedding_field: str = "embedding", job_files_dir: str | None = None):
        super().__init__()
        self._job_files_dir = job_files_dir  # where a local model folder is staged (else the run's)
        self._es, self._embed, self._clusters = es, embed, clusters
        self._seed, self._id_field, self._field = seed, id_field, embedding_field

    def expand(self, docs):
        from curate.pipelines.semdedup import HashSampleRows

        from curate.pipelines.job_files import stage_model

        es, embed, field = self._es, self._embed, self._field
        # read here, on the launcher, and shipped with the job: workers never open the file
        texts = shipped_reference_texts(es)
        model_stage = stage_model(embed.model, docs.pipeline, self._job_files_dir) if texts else None
        reference = (docs.pipeline
                     | "ReferenceTexts" >> beam.Create([texts])
                     | "EmbedReference" >> beam.Map(
                         lambda t: reference_embeddings(es, embed, t, model_stage)))
        negatives, _ = docs | "NegativeSample" >> HashSampleRows(
            lambda n: min(1.0, es.negatives / max(n, 1)), self._seed, id_field=self._id_field,
            embedding_field=field)
        fitted = negatives | "FitClassifier" >> beam.Map(
            fit_reference_classifier, reference=beam.pvalue.AsSingleton(reference), C=float(es.C),
            max_negatives=int(es.negatives))
        scored = docs | "ScoreDocuments" >> beam.ParDo(
            _ScoreDocument(es.weights, field), beam.pvalue.AsSingleton(fitted),
            beam.pvalue.AsSingleton(self._clusters))  # positional: BatchedDoFn passes them on
        info = fitted | "Info" >> beam.Map(lambda f: {**f["info"], "weights": dict(es.weights)})
        return {"documents": scored, "info": info}

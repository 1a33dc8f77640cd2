"""Beam embedding stage: sentence-transformers through RunInference, keyed by document id.

``EmbedDocuments`` takes a PCollection of document dicts (``id``, ``text``, ...) and returns
the same dicts with an ``embedding`` field (list of floats, float32 or float16-rounded).
The model (``scorers.embedding.Embedder``) is loaded once per worker process by
RunInference's shared handle and used by all threads; the document dict rides along as the
example, so no join is needed afterwards.
"""
from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference

from curate.pipelines import counters
from curate.pipelines.job_files import fetch_folder, stage_model
from curate.pipelines.progress import ProgressWriter
from curate.pipelines.stage_configs import EmbedConfig

EMBEDDING_FIELD = "embedding"


def quiet_model_loading() -> None:
    """No per-load progress bars from transformers on stderr (curate reports progress itself)."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # older/newer layouts: a cosmetic loss only
        pass


class SentenceTransformerModelHandler(ModelHandler[dict, PredictionResult, Any]):
    """ModelHandler for a sentence-transformers model; examples are document dicts."""

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str | None = None,
        precision: str | None = None,
        mode: str = "sentences",
        cache_dir: str | None = None,
        backend: str | None = None,
        text_field: str = "text",
        min_batch_size: int = 16,
        max_batch_size: int = 256,
        model_stage: str | None = None,
    ):
        super().__init__(min_batch_size=min_batch_size, max_batch_size=max_batch_size)
        self._model_stage = model_stage  # staged copy of a local model folder (pipelines.job_files)
        self._model = model
        self._device = device
        self._precision = precision
        self._mode = mode
        self._cache_dir = cache_dir
        self._backend = backend
        self._text_field = text_field
        self._batch = {"min_batch_size": min_batch_size, "max_batch_size": max_batch_size}

    def load_model(self):
        from curate.scorers.embedding import EmbeddingCache, Embedder

        quiet_model_loading()
        cache = EmbeddingCache(self._cache_dir) if self._cache_dir else None
        load_from = fetch_folder(self._model_stage) if self._model_stage else None
        embedder = Embedder(self._model, device=self._device, precision=self._precision,
                            cache=cache, mode=self._mode, backend=self._backend, load_from=load_from)
        embedder.dimension  # load now (process-wide cache, any backend), not inside the first batch
        return embedder

    def run_inference(self, batch: Sequence[dict], model, inference_args: Optional[dict] = None
                      ) -> Iterable[PredictionResult]:
        texts = [doc.get(self._text_field) or "" for doc in batch]
        vectors = model.encode(texts)
        return [PredictionResult(doc, vec) for doc, vec in zip(batch, vectors)]

    def batch_elements_kwargs(self):
        return dict(self._batch)

    def get_metrics_namespace(self) -> str:
        return "curate_embed"


class EmbedDocuments(beam.PTransform):
    """docs -> docs with ``embedding_field`` added (RunInference, KeyedModelHandler by id)."""

    reads = ("id", "text")  # id_field, text_field
    adds = (EMBEDDING_FIELD,)  # embedding_field

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str | None = None,
        precision: str | None = None,
        mode: str = "sentences",
        cache_dir: str | None = None,
        backend: str | None = None,
        id_field: str = "id",
        text_field: str = "text",
        embedding_field: str = EMBEDDING_FIELD,
        dtype: str = "float32",
        min_batch_size: int = 16,
        max_batch_size: int = 256,
        job_files_dir: str | None = None,
    ):
        super().__init__()
        if dtype not in ("float32", "float16"):
            raise ValueError(f"embedding dtype must be float32 or float16, got {dtype!r}")
        self._handler = SentenceTransformerModelHandler(
            model, device=device, precision=precision, mode=mode, cache_dir=cache_dir, backend=backend,
            text_field=text_field, min_batch_size=min_batch_size, max_batch_size=max_batch_size)
        self._model_name, self._job_files_dir = model, job_files_dir
        self._id_field = id_field
        self._embedding_field = embedding_field
        self._dtype = dtype

    @classmethod
    def from_config(cls, config: EmbedConfig, stage_cache_dir: str | None = None) -> "EmbedDocuments":
        """The run's `embed` section -> the stage.

        Cache: `embed.cache_dir` if set, else `embeddings/` in the run's stage cache (the
        workspace cache of `curate run`), so a re-run with other dedup/score settings does not
        embed the corpus again (keys: model, precision, document mode and text hash).
        """
        cache_dir = config.cache_dir or (FileSystems.join(stage_cache_dir, "embeddings") if stage_cache_dir else None)
        return cls(config.model, device=config.device, precision=config.precision, mode=config.mode,
                   cache_dir=cache_dir, backend=config.backend, max_batch_size=config.batch_size,
                   min_batch_size=min(16, config.batch_size))

    def expand(self, docs):
        id_field, field, dtype = self._id_field, self._embedding_field, self._dtype
        # a local model folder is copied now, on the launcher, where workers can read it
        # (`job_files_dir`, else the run's --curate_job_files_dir): workers never open its path
        self._handler._model_stage = stage_model(self._model_name, docs.pipeline, self._job_files_dir)

        def attach(keyed):
            _, result = keyed
            vector = np.asarray(result.inference, dtype=dtype)
            return {**result.example, field: vector.astype(np.float32).tolist()}

        return (
            docs
            | "KeyById" >> beam.Map(lambda doc: (str(doc[id_field]), doc))
            | "RunInference" >> RunInference(KeyedModelHandler(self._handler))
            | "AttachEmbedding" >> beam.Map(attach)
        )


class CountEmbedded(beam.DoFn):
    """Counts embedded documents (manifest, rows check) and reports them as progress."""

    def __init__(self, progress_dir: str | None):
        self.progress_dir = progress_dir

    def setup(self):
        self.progress = ProgressWriter(self.progress_dir, "embed")

    def process(self, doc):
        counters.inc(counters.EMBEDDED)
        self.progress.add(1)
        yield doc

    def finish_bundle(self):
        self.progress.flush()

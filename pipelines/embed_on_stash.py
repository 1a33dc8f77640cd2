"""The embedding stages of the compact pipeline: texts read from the run's intermediate files
one chunk at a time, compact records with their vectors in the shuffles, rows joined back per
chunk for writing.

`EmbedOnStash`: chunk keys + near dedup's packed removed rows -> per chunk, the scored file
minus the removed rows, the texts of the rest embedded (the same model handler, cache,
precision and batch settings as `embed.EmbedDocuments`, so the same vectors bit for bit) ->
one compact record per survivor {id, _order (locator), score, failed_rules, source,
embedding}: no text, no f_* feature. The existing per-document stages (FitClusters,
EmbeddingScores, SemanticStage, KeepDropRule, AssignPools) take these records: they read only
id, embedding, score, failed_rules and source.

`RowsWithPools`: pooled compact records -> (row, pool, score columns) packed per chunk -> per
chunk, those rows of the scored file with their pool and final score columns: the documents
`WriteRun` writes.

Embeddings travel as float32 numpy arrays (~1.6 KB pickled for 384 dimensions), not lists of
Python floats (~12 KB decoded): the same values, as every consumer converts to float32.
"""
from __future__ import annotations

import apache_beam as beam
import numpy as np

from curate.pipelines import counters
from curate.pipelines import stash as ST
from curate.pipelines.embed import EMBEDDING_FIELD, EmbedDocuments
from curate.pipelines.job_files import stage_model
from curate.pipelines.progress import ProgressWriter
from curate.pipelines.stage_configs import EmbedConfig
from curate.pipelines.stash_stages import ROW, PackByKey, scored_schema, unpacked

_KEPT_COLUMNS = ("id", "source", "score", "failed_rules")


def row_locator(key: int, row: int) -> int:
    """The locator of row `row` of chunk `key` (inverse of stash.chunk_key / row_in_chunk)."""
    chunk = key & ((1 << ST._FILE_SHIFT) - 1)
    return ST.locator(key >> ST._FILE_SHIFT, chunk * ST.CHUNK_ROWS + row)


class _EmbedChunk(beam.DoFn):
    """(chunk, {"chunk": [key], "removed": [packed rows]}) -> a compact record with its vector
    per near-dedup survivor of the chunk. The one place near dedup's removals and `embedded`
    are counted (each chunk is read here once)."""

    def __init__(self, stash: ST.Stash, handler, dtype: str, progress_dir: str | None):
        self.stash, self.handler, self.dtype, self.progress_dir = stash, handler, dtype, progress_dir
        self.progress = ProgressWriter(None, "embed")  # replaced in setup()

    def setup(self):
        # scorers.embedding keeps one model per process: DoFn instances share it
        self.model = self.handler.load_model()
        self.progress = ProgressWriter(self.progress_dir, "embed")

    def finish_bundle(self):
        self.progress.flush()

    def process(self, item):
        key, grouped = item
        # removed rows without their chunk cannot happen: chunks list every signed one
        if grouped["chunk"]:
            yield from self._embed_chunk(key, set(unpacked(grouped["removed"])))

    def _embed_chunk(self, key: int, removed: set):
        table = ST.read_table(self.stash.scored_path(key), [ROW, *_KEPT_COLUMNS])
        kept = []
        for values in zip(*(table.column(c).to_pylist() for c in table.column_names)):
            if values[0] in removed:
                counters.inc(counters.REMOVED_PREFIX + "near")
            else:
                kept.append(values)
        del table
        if not kept:
            return
        texts = ST.read_table(self.stash.raw_path(key), ["text"]).column("text").to_pylist()
        # as SentenceTransformerModelHandler.run_inference; rows do not depend on their batch
        vectors = self.model.encode([texts[values[0]] or "" for values in kept])
        del texts
        for (row, doc_id, source, score, failed), vector in zip(kept, vectors):
            counters.inc(counters.EMBEDDED)
            self.progress.add(1)
            # as EmbedDocuments' attach: in its dtype, carried as float32
            embedding = np.asarray(vector, dtype=self.dtype).astype(np.float32)
            yield {"id": doc_id, "_order": row_locator(key, row), "score": score, "failed_rules": failed,
                   "source": source, EMBEDDING_FIELD: embedding}
        del vectors, kept


class EmbedOnStash(beam.PTransform):
    """chunk keys -> compact records with embeddings of near dedup's survivors.

    `removed`: (chunk key, packed rows of that chunk removed by near dedup), possibly empty;
    `stage_cache_dir`: the run's stage cache (the embedding cache's default home, as for
    `EmbedDocuments.from_config`).
    """

    reads = ("id", "_order", "score", "failed_rules", "source")
    adds = (EMBEDDING_FIELD,)

    def __init__(self, stash: ST.Stash, config: EmbedConfig, removed, stage_cache_dir: str | None = None,
                 progress_dir: str | None = None):
        super().__init__()
        self.stash, self.config, self.removed = stash, config, removed
        self.progress_dir = progress_dir
        # the document path's own handler: one place decides model, cache, precision, batches
        self.documents_stage = EmbedDocuments.from_config(config, stage_cache_dir)

    def expand(self, chunks):
        handler = self.documents_stage._handler
        # a local model folder is copied now, on the launcher, as EmbedDocuments does
        handler._model_stage = stage_model(self.config.model, chunks.pipeline)
        grouped = ({"chunk": chunks | "KeyChunks" >> beam.Map(lambda k: (k, k)), "removed": self.removed}
                   | "RemovedByChunk" >> beam.CoGroupByKey())
        # the vectors carried on are the document path's (float32 from EmbedDocuments.from_config);
        # embed.dtype applies to the written file only (WriteRun)
        return grouped | "EmbedChunks" >> beam.ParDo(
            _EmbedChunk(self.stash, handler, self.documents_stage._dtype, self.progress_dir))


class _ChunkRowsWithPools(beam.DoFn):
    """(chunk, packed (row, values)) -> those rows of the chunk's scored file, with `columns`
    set to the values (pool and the final score columns)."""

    def __init__(self, stash: ST.Stash, columns: tuple):
        self.stash, self.columns = stash, tuple(columns)

    def process(self, item):
        key, blobs = item
        wanted = dict(unpacked(blobs))
        table = ST.read_table(self.stash.scored_path(key))
        for record in table.to_pylist():
            values = wanted.get(record.pop(ROW))
            if values is None:
                continue
            record.update(zip(self.columns, values))
            yield record
        del table, wanted


def _row_values(doc: dict, columns: tuple):
    loc = doc["_order"]
    return ST.chunk_key(loc), (ST.row_in_chunk(loc), tuple(doc.get(c) for c in columns))


class RowsWithPools(beam.PTransform):
    """pooled compact records -> the written rows: each chunk's scored row with `pool`,
    `score` and `extra_columns` (embedding scores) taken from the record.

    What crosses the shuffle is one packed blob of (row, values) per chunk and bundle.
    """

    def __init__(self, stash: ST.Stash, feature_names, extra_columns=()):
        super().__init__()
        self.stash = stash
        self.columns = ("pool", "score", *extra_columns)
        self.reads = ("_order", *self.columns)
        self.adds = tuple(n for n in scored_schema(feature_names).names if n != ROW) + self.columns

    def expand(self, pooled):
        columns = self.columns
        return (
            pooled
            | "RowValues" >> beam.Map(_row_values, columns)
            | "PackRowValues" >> beam.ParDo(PackByKey(spill_folder=self.stash.spill_folder))
            | "GroupRowsByChunk" >> beam.GroupByKey()
            | "RowsWithPools" >> beam.ParDo(_ChunkRowsWithPools(self.stash, columns))
        )

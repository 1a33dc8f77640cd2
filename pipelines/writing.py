"""Write the run directory's outputs (into a staging folder; orchestration publishes it).

- pools/pool=K/part-*.parquet : one WriteToParquet per pool (Partition), never WriteToFiles
  with sub-directories in file names (that silently loses data on the local filesystem).
- dedup/part-*.parquet, filtered/part-*.parquet, dead_letter/part-*.jsonl
- embeddings/part-*.parquet : (id, embedding) of every embedded document, when embedding is on
- stats.parquet : one row per pool, written by a single DoFn call from the combined stats
- _pool_cuts.json : the cut points used (read into the manifest, not published)
- _stage_info.json : what optional stages report for the manifest (clusters, classifier)
Row counts of everything written are checked against the Beam counters afterwards
(`count_written`).
"""
from __future__ import annotations

import json

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from curate.pipelines import fsutil
from curate.pools import rundir
from curate.pools import schema as S
from curate.pools import stats as pool_stats

# The layout is the run-directory contract's (pools/rundir.py); these are its names here.
POOLS_DIR = rundir.POOLS
DEDUP_DIR = rundir.DEDUP
FILTERED_DIR = rundir.FILTERED
DEAD_LETTER_DIR = rundir.DEAD_LETTER
EMBEDDINGS_DIR = rundir.EMBEDDINGS
STATS_FILE = rundir.STATS
STAGE_INFO_FILE = rundir.STAGE_INFO
CUTS_FILE = rundir.CUTS


def pool_dir(root: str, pool: int) -> str:
    return FileSystems.join(root, POOLS_DIR, f"pool={pool}")


def _public(doc: dict, columns: list[str]) -> dict:
    return {c: doc.get(c) for c in columns}


class PoolStatsFn(beam.CombineFn):
    def create_accumulator(self):
        return pool_stats.empty()

    def add_input(self, acc, doc):
        return pool_stats.add(acc, doc)

    def merge_accumulators(self, accs):
        return pool_stats.merge(accs)

    def extract_output(self, acc):
        return acc


def _write_stats(per_pool: list, path: str, num_pools: int) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    accs = dict(per_pool)
    rows = [pool_stats.finalize(accs.get(k, pool_stats.empty()), k) for k in range(num_pools)]
    table = pa.Table.from_pylist(rows, schema=S.stats_schema())
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    fsutil.write_bytes(path, sink.getvalue().to_pybytes())
    return len(rows)


def _write_cuts(cuts_and_mode, path: str) -> None:
    cuts, mode = cuts_and_mode
    fsutil.write_bytes(path, json.dumps({"mode": mode, **cuts.to_json()}).encode("utf-8"))


def _write_stage_info(items: list, path: str) -> None:
    fsutil.write_bytes(path, json.dumps(dict(sorted(items)), sort_keys=True, default=str).encode("utf-8"))


def _embedding_row(doc: dict, dtype: str) -> dict:
    import numpy as np

    return {"id": str(doc["id"]), "embedding": np.asarray(doc["embedding"], dtype=dtype)}


def _by_pool(doc, num_partitions):
    return doc["pool"]


class WriteRun(beam.PTransform):
    """Write pooled documents, dedup rows, filtered rows, dead letters, stats and cut points."""

    def __init__(self, root: str, num_pools: int, feature_columns: list[str], dedup, filtered,
                 dead_letter, cuts, *, extra_columns=(), embeddings=None, embedding_dtype: str = "float32",
                 stage_info=()):
        super().__init__()
        self.root = root
        self.num_pools = num_pools
        self.schema = S.document_schema([c[2:] for c in feature_columns], extra_columns)
        self.columns = self.schema.names
        self.dedup, self.filtered, self.dead_letter, self.cuts = dedup, filtered, dead_letter, cuts
        self.embeddings, self.embedding_dtype = embeddings, embedding_dtype
        self.stage_info = list(stage_info)

    def expand(self, pooled):
        root, columns = self.root, self.columns
        parts = pooled | "SplitPools" >> beam.Partition(_by_pool, self.num_pools)
        for k in range(self.num_pools):
            (
                parts[k]
                | f"Rows{k}" >> beam.Map(_public, columns)
                | f"WritePool{k}" >> beam.io.WriteToParquet(
                    FileSystems.join(pool_dir(root, k), "part"), self.schema,
                    file_name_suffix=".parquet")
            )
        (
            self.dedup
            | "WriteDedup" >> beam.io.WriteToParquet(
                FileSystems.join(root, DEDUP_DIR, "part"), S.dedup_schema(), file_name_suffix=".parquet")
        )
        (
            self.filtered
            | "WriteFiltered" >> beam.io.WriteToParquet(
                FileSystems.join(root, FILTERED_DIR, "part"), S.filtered_schema(),
                file_name_suffix=".parquet")
        )
        (
            self.dead_letter
            | "DeadLetterJson" >> beam.Map(lambda d: json.dumps(d, ensure_ascii=False, sort_keys=True))
            | "WriteDeadLetter" >> beam.io.WriteToText(
                FileSystems.join(root, DEAD_LETTER_DIR, "part"), file_name_suffix=".jsonl")
        )
        num_pools = self.num_pools
        (
            pooled
            | "StatsFields" >> beam.Map(lambda d: (d["pool"], {
                "chars": d["chars"], "tokens": d["tokens"], "score": d["score"], "source": d["source"]}))
            | "StatsPerPool" >> beam.CombinePerKey(PoolStatsFn())
            | "CollectStats" >> beam.combiners.ToList()
            | "WriteStats" >> beam.Map(_write_stats, FileSystems.join(root, STATS_FILE), num_pools)
        )
        self.cuts | "WriteCuts" >> beam.Map(_write_cuts, FileSystems.join(root, CUTS_FILE))
        if self.embeddings is not None:
            dtype = self.embedding_dtype
            (
                self.embeddings
                | "EmbeddingRows" >> beam.Map(_embedding_row, dtype)
                | "WriteEmbeddings" >> beam.io.WriteToParquet(
                    FileSystems.join(root, EMBEDDINGS_DIR, "part"), S.embedding_schema(dtype),
                    file_name_suffix=".parquet")
            )
        if self.stage_info:
            (
                self.stage_info
                | "AllStageInfo" >> beam.Flatten()
                | "CollectStageInfo" >> beam.combiners.ToList()
                | "WriteStageInfo" >> beam.Map(_write_stage_info, FileSystems.join(root, STAGE_INFO_FILE))
            )
        return pooled.pipeline


def count_written(root: str, num_pools: int) -> dict:
    """Rows actually on disk, per output, read back from file metadata / lines."""
    import pyarrow.parquet as pq

    def parquet_rows(directory: str) -> int:
        total = 0
        for path in fsutil.list_files(directory):
            if path.endswith(".parquet"):
                with FileSystems.open(path) as fh:
                    total += pq.ParquetFile(fh).metadata.num_rows
        return total

    def jsonl_rows(directory: str) -> int:
        total = 0
        for path in fsutil.list_files(directory):
            if path.endswith(".jsonl"):
                total += sum(1 for line in fsutil.read_bytes(path).splitlines() if line.strip())
        return total

    return {
        "pools": {k: parquet_rows(pool_dir(root, k)) for k in range(num_pools)},
        "dedup": parquet_rows(FileSystems.join(root, DEDUP_DIR)),
        "filtered": parquet_rows(FileSystems.join(root, FILTERED_DIR)),
        "dead_letter": jsonl_rows(FileSystems.join(root, DEAD_LETTER_DIR)),
        "embeddings": parquet_rows(FileSystems.join(root, EMBEDDINGS_DIR)),
    }

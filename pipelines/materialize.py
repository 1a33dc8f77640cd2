"""The `curate materialize` pipeline: a plan's pools, sampled, repeated, shuffled and sharded.

No PCollection carries a document's text: the texts go from the pool files into spill files in
the staging folder and from there into the shard files, so the runner (the local FnApiRunner
holds every PCollection between stages and every grouping in memory) holds compact records
only, whatever the output size.

    pool files (the run's, via RunDir)
    -> ReadSelectionKeys: per batch of a pool file, arrays of its documents' seeded keys and
       sizes in the plan's unit (no texts)
    -> SelectPerPool (CombinePerKey over those arrays): the plan's unique subset and partial
       last epoch of each pool, as two cut-off keys (a side input)
    -> SpillCopies: each pool file read again with its texts; each selected document once per
       full epoch, plus once if its partial key is under the cut-off; every copy gets its own
       seeded shuffle key and goes into the pool file's spill file, grouped by key range
       (materialize_spill); emits the file's (bucket, rows) list only
    -> Layout: copies per bucket, total, shard count (shard i holds ranks [i*T//N, (i+1)*T//N)
       of all copies in key order)
    -> WriteShard (one element per shard number): reads the buckets its ranks span from every
       spill file, keeps its key range (materialize_core.shard_mask), sorts by shuffle key,
       spaces copies of a document at least a window apart (space_copies), encodes, writes
    -> _materialize_info.json in the staging folder (selections, files): the launcher builds
       the manifest from it and publishes

Memory: a shard writer holds one shard of texts (choose the shard size to bound it) plus the
edges of two buckets (BUCKETS_PER_SHARD); a reading worker holds one Parquet batch and the
spill buffer (materialize_spill.BUFFER_ROWS copies); selection holds ~28 bytes per document of
a pool; the runner holds per pool file its spill batch list. The output is a function of the
plan, run and options only: byte-identical for any runner and worker count.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from curate.pipelines.allocator import tune_allocator
from curate.pipelines import fsutil
from curate.pipelines.materialize_core import (BUCKETS_PER_SHARD, PoolTarget, batch_units, bucket_edges,
                                               bucket_of, copies_of, index_name, jsonl_bytes, order_key,
                                               parquet_bytes, seeded_key, select_pool, shard_mask,
                                               shard_name, shard_span, shard_window, space_copies,
                                               token_arrays, token_dtype)
from curate.pipelines.materialize_spill import SPILL_DIR, SpillWriter, read_buckets, spill_path
from curate.pipelines.progress import ProgressWriter

DATA_DIR = "data"
INFO_FILE = "_materialize_info.json"
DEFAULT_SHARD_SIZE = 100_000
DEFAULT_WINDOW = 1000
_BATCH_ROWS = 4096


@dataclass(frozen=True)
class MaterializeSpec:
    """Everything the pipeline needs (plain data: it travels to workers)."""

    targets: tuple[PoolTarget, ...]
    files: tuple[tuple[str, str], ...]   # (pool name, Parquet file of the run)
    unit: str
    seed: int = 0
    order: str = "hash"
    fmt: str = "parquet"
    shards: int | None = None
    shard_size: int | None = None
    window: int = DEFAULT_WINDOW
    tokenizer_json: str | None = None

    def shard_count(self, total: int) -> int:
        if self.shards:
            wanted = self.shards
        else:
            wanted = math.ceil(total / (self.shard_size or DEFAULT_SHARD_SIZE))
        return max(1, min(wanted, total))  # never an empty shard


def _ids(batch) -> list[str]:
    return [str(i) for i in batch.column("id").to_pylist()]


def _scores(batch) -> list[float]:
    if "score" not in batch.schema.names:
        return [0.0] * batch.num_rows
    return [float(s or 0.0) for s in batch.column("score").to_pylist()]


def _unit_columns(unit: str, names: list[str]) -> list[str]:
    wanted = {"docs": [], "bytes": ["text"], "chars": ["chars", "text"], "tokens": ["tokens"]}[unit]
    return [c for c in wanted if c in names]


class ReadSelectionKeys(beam.DoFn):
    """(pool, Parquet file) -> per batch (pool, (primary, unique hash, partial hash, units))
    arrays: what the selection needs of every document, no texts."""

    def __init__(self, spec: MaterializeSpec):
        self.spec = spec

    def process(self, item):
        import pyarrow.parquet as pq

        pool, path = item
        spec = self.spec
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
        columns = ["id"] + (["score"] if spec.order == "score" and "score" in names else [])
        columns += [c for c in _unit_columns(spec.unit, names) if c not in columns]
        for batch in parquet.iter_batches(batch_size=_BATCH_ROWS, columns=columns):
            ids = _ids(batch)
            scores = _scores(batch) if spec.order == "score" else [0.0] * len(ids)
            keys = [order_key(spec.order, spec.seed, pool, i, s) for i, s in zip(ids, scores)]
            yield pool, (np.array([k[0] for k in keys], dtype=np.float64),
                         np.array([k[1] for k in keys], dtype=np.uint64),
                         np.array([seeded_key(spec.seed, "partial", pool, i) for i in ids], dtype=np.uint64),
                         batch_units(spec.unit, batch))


class SelectFn(beam.CombineFn):
    """Per pool: (primary, unique hash, partial hash, units) arrays of every document -> all of
    them in four arrays (the selection is `select_pool` over them)."""

    def create_accumulator(self):
        return []

    def add_input(self, acc, arrays):
        acc.append(arrays)
        return acc

    def compact(self, acc):
        return [self._arrays(acc)] if acc else acc

    @staticmethod
    def _arrays(acc) -> tuple:
        if not acc:
            return (np.zeros(0), np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros(0, np.int64))
        return tuple(np.concatenate([a[j] for a in acc]) for j in range(4))

    def merge_accumulators(self, accs):
        return [self._arrays([x for acc in accs for x in acc])]

    def extract_output(self, acc):
        return self._arrays(acc)


def _select(item, targets: dict):
    pool, arrays = item
    primary, unique_hash, partial_hash, units = arrays
    return pool, select_pool(targets[pool], primary, unique_hash, partial_hash, units)


def spill_buckets(spec: MaterializeSpec, selections: dict) -> int:
    """How many key ranges the copies are spilled in: BUCKETS_PER_SHARD per shard expected
    from the selections (the shard writers stay correct for any count; it sets what they read)."""
    total = sum(s["full_epochs"] * s["unique_docs"] + s["partial_docs"] for s in selections.values())
    return BUCKETS_PER_SHARD * spec.shard_count(total) if total else 1


class SpillCopies(beam.DoFn):
    """(file index, (pool, Parquet file)) -> the file's copies in its spill file; emits the
    spill file's batch list (materialize_spill.SpillWriter.close)."""

    def __init__(self, spec: MaterializeSpec, staging: str, progress_dir: str | None):
        self.spec, self.staging, self.progress_dir = spec, staging, progress_dir

    def setup(self):
        self._progress = ProgressWriter(self.progress_dir, "read")

    def process(self, item, selections):
        import os

        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        from curate.pipelines.materialize_spill import SCHEMA

        file_index, (pool, path) = item
        spec = self.spec
        selection = selections.get(pool)
        buckets = spill_buckets(spec, selections)
        edges = bucket_edges(buckets)
        writer = SpillWriter(spill_path(self.staging, file_index), buckets)
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
        columns = [c for c in ("id", "text", "source", "score", "chars", "tokens") if c in names]
        size = os.path.getsize(path) if "://" not in path else 0
        rows_total = max(1, parquet.metadata.num_rows)
        for batch in parquet.iter_batches(batch_size=_BATCH_ROWS, columns=columns):
            n = batch.num_rows
            self._progress.add(n, size * n // rows_total)
            if selection is None or selection["cutoff"] is None:
                continue
            ids, scores = _ids(batch), _scores(batch)
            rows, epochs, keys = [], [], []
            for j, (doc_id, score) in enumerate(zip(ids, scores)):
                key = order_key(spec.order, spec.seed, pool, doc_id, score)
                copies = copies_of(selection, key, seeded_key(spec.seed, "partial", pool, doc_id))
                for epoch in range(copies):
                    rows.append(j)
                    epochs.append(epoch)
                    keys.append(seeded_key(spec.seed, "shuffle", pool, doc_id, epoch))
            if not rows:
                continue
            take = pa.array(rows, pa.int64())
            text = pc.fill_null(batch.column("text"), "").cast(pa.large_string())
            source = (batch.column("source").cast(pa.string()) if "source" in names
                      else pa.nulls(n, pa.string()))
            key_array = np.array(keys, dtype=np.uint64)
            copies_table = pa.Table.from_arrays([
                pa.array(key_array, pa.uint64()), text.take(take), pa.array(ids, pa.string()).take(take),
                pa.array([pool] * len(rows), pa.string()), pa.array(epochs, pa.int32()), source.take(take),
                pa.array(scores, pa.float64()).take(take),
                pa.array(batch_units(spec.unit, batch), pa.int64()).take(take)], schema=SCHEMA)
            writer.add(copies_table, bucket_of(key_array, edges))
        self._progress.flush()
        yield writer.close()


def _layout(_, spills: list, spec: MaterializeSpec) -> dict:
    """{buckets, counts, total, shards}: copies per bucket over every spill file, their total
    and the shard count."""
    buckets = spills[0]["buckets"] if spills else 1
    counts = np.zeros(buckets, dtype=np.int64)
    for spill in spills:
        for bucket, rows in spill["batches"]:
            counts[bucket] += rows
    total = int(counts.sum())
    return {"buckets": buckets, "counts": counts.tolist(), "total": total,
            "shards": spec.shard_count(total) if total else 0}


def _doc_of(row: dict) -> tuple:
    return row["pool"], row["id"]


class WriteShard(beam.DoFn):
    """A shard number -> its copies, read from the spill files, in one file (two for tokens:
    .bin and .idx) in staging/data."""

    def __init__(self, spec: MaterializeSpec, staging: str, progress_dir: str | None):
        self.spec, self.staging, self.progress_dir = spec, staging, progress_dir

    def setup(self):
        self._tokenizer = None
        if self.spec.fmt == "tokens":
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_str(self.spec.tokenizer_json)
            self._dtype = token_dtype(self._tokenizer.get_vocab_size(with_added_tokens=True))
        self._progress = ProgressWriter(self.progress_dir, "write")

    def process(self, shard, layout, spills):
        first, last, base, lo, hi = shard_span(layout["counts"], layout["total"], layout["shards"], shard)
        table = read_buckets(spills, first, last)
        table = table.filter(shard_mask(table.column("key").to_numpy(), base, lo, hi))
        rows = sorted(table.to_pylist(), key=lambda r: (r["key"], r["pool"], r["id"], r["epoch"]))
        del table
        most = max(Counter(_doc_of(r) for r in rows).values())
        window = shard_window(self.spec.window, len(rows), most)
        rows, violations, gap = space_copies(rows, _doc_of, window)
        name = shard_name(shard, layout["shards"], self.spec.fmt)
        record = {"shard": shard, "file": f"{DATA_DIR}/{name}", "rows": len(rows), "window": window,
                  "spacing_violations": violations, "min_copy_gap": gap, "per_pool": {}}
        for r in rows:
            per = record["per_pool"].setdefault(r["pool"], {"docs": 0, "units": 0})
            per["docs"] += 1
            per["units"] += r["units"]
        if self.spec.fmt == "tokens":
            data, index, tokens = token_arrays(self._tokenizer, [r["text"] for r in rows], self._dtype)
            record["tokens"] = tokens
            record["index_file"] = f"{DATA_DIR}/{index_name(name)}"
            record["index_sha256"] = hashlib.sha256(index).hexdigest()
            fsutil.write_bytes(FileSystems.join(self.staging, record["index_file"]), index)
        elif self.spec.fmt == "parquet":
            data = parquet_bytes(rows)
        else:
            data = jsonl_bytes(rows, compress=self.spec.fmt == "jsonl.gz")
        fsutil.write_bytes(FileSystems.join(self.staging, record["file"]), data)
        record["bytes"] = len(data)
        record["sha256"] = hashlib.sha256(data).hexdigest()
        self._progress.add(len(rows))
        self._progress.flush()
        yield record


def _write_info(_, staging: str, selections: list, files: list, layout: dict) -> None:
    info = {"selections": dict(sorted(selections)), "files": sorted(files, key=lambda f: f["shard"]),
            "layout": {"total": layout["total"], "shards": layout["shards"]}}
    fsutil.write_bytes(FileSystems.join(staging, INFO_FILE),
                       json.dumps(info, sort_keys=True).encode("utf-8"))


def build_materialize(p, spec: MaterializeSpec, staging: str, progress_dir: str | None = None):
    """The pipeline on `p`; returns its PCollections by name (tests inspect what they carry)."""
    targets = {t.name: t for t in spec.targets}
    files = (p
             | "PoolFiles" >> beam.Create(list(enumerate(sorted(spec.files))))
             | "SpreadFiles" >> beam.Reshuffle())
    selections = (files
                  | "PoolFile" >> beam.Map(lambda item: item[1])
                  | "ReadSelectionKeys" >> beam.ParDo(ReadSelectionKeys(spec))
                  | "CollectPerPool" >> beam.CombinePerKey(SelectFn())
                  | "SelectPerPool" >> beam.Map(_select, targets))
    spills = files | "SpillCopies" >> beam.ParDo(SpillCopies(spec, staging, progress_dir),
                                                 beam.pvalue.AsDict(selections))
    layout = (p
              | "LayoutTrigger" >> beam.Create([None])
              | "Layout" >> beam.Map(_layout, beam.pvalue.AsList(spills), spec))
    shard_numbers = (layout
                     | "ShardNumbers" >> beam.FlatMap(lambda l: range(l["shards"]))
                     | "SpreadShards" >> beam.Reshuffle())
    written = shard_numbers | "WriteShard" >> beam.ParDo(WriteShard(spec, staging, progress_dir),
                                                         beam.pvalue.AsSingleton(layout),
                                                         beam.pvalue.AsList(spills))
    info = (p
            | "InfoTrigger" >> beam.Create([None])
            | "WriteInfo" >> beam.Map(_write_info, staging, beam.pvalue.AsList(selections),
                                      beam.pvalue.AsList(written), beam.pvalue.AsSingleton(layout)))
    return {"files": files, "selections": selections, "spills": spills, "layout": layout,
            "shard_numbers": shard_numbers, "written": written, "info": info}


def run_materialize(spec: MaterializeSpec, staging: str, options, progress_dir: str | None = None) -> dict:
    """Run the pipeline into `staging`; returns the info the manifest is built from."""
    fsutil.mkdirs(FileSystems.join(staging, DATA_DIR))
    fsutil.mkdirs(FileSystems.join(staging, SPILL_DIR))
    tune_allocator()  # before the runner starts its worker processes: they inherit it
    try:
        with beam.Pipeline(options=options) as p:
            build_materialize(p, spec, staging, progress_dir)
    finally:
        spill = FileSystems.join(staging, SPILL_DIR)
        if fsutil.exists(spill):
            fsutil.delete(spill)
    path = FileSystems.join(staging, INFO_FILE)
    info = json.loads(fsutil.read_bytes(path))
    fsutil.delete(path)
    return info

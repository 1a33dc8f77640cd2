"""The `curate materialize` pipeline: a plan's pools, sampled, repeated, shuffled and sharded.

    pool files (the run's, via RunDir) -> ReadPoolDocs: one row per document with its seeded
        keys and its size in the plan's unit
    -> SelectPerPool (CombinePerKey over (key, units) arrays, no texts): the plan's unique
       subset and partial last epoch of each pool, as two cut-off keys (a side input)
    -> ExpandCopies: each selected document once per full epoch, plus once if its partial key
       is under the cut-off; every copy gets its own seeded shuffle key
    -> ShardBoundaries (CombineGlobally over the shuffle keys, 8 bytes per copy): the keys where
       shards start, so every shard holds T//N or T//N + 1 copies
    -> GroupByKey on the shard -> WriteShard: sorted by shuffle key, copies of a document spaced
       at least a window apart (materialize_core.space_copies), encoded and written
    -> _materialize_info.json in the staging folder (selections, files): the launcher builds
       the manifest from it and publishes

Memory: the texts are never held in one place except one shard in its writer (choose the
shard size to bound it); selection holds ~28 bytes per document of a pool, the shard
boundaries 8 bytes per copy. The output is a function of the plan, run and options only:
byte-identical for any runner and worker count.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from curate.pipelines import fsutil
from curate.pipelines.materialize_core import (PoolTarget, copies_of, doc_units, index_name, jsonl_bytes,
                                               order_key, parquet_bytes, seeded_key, select_pool,
                                               shard_boundaries, shard_name, shard_window, space_copies,
                                               token_arrays, token_dtype)
from curate.pipelines.progress import ProgressWriter

DATA_DIR = "data"
INFO_FILE = "_materialize_info.json"
DEFAULT_SHARD_SIZE = 100_000
DEFAULT_WINDOW = 1000
_READ_COLUMNS = ["id", "text", "source", "score", "chars", "tokens"]


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


class ReadPoolDocs(beam.DoFn):
    """One Parquet file of a pool -> one row per document, with keys and units."""

    def __init__(self, spec: MaterializeSpec, progress_dir: str | None):
        self.spec, self.progress_dir = spec, progress_dir

    def setup(self):
        self._progress = ProgressWriter(self.progress_dir, "read")

    def process(self, item):
        import os

        import pyarrow.parquet as pq

        pool, path = item
        spec = self.spec
        parquet = pq.ParquetFile(path)
        present = [c for c in _READ_COLUMNS if c in parquet.schema_arrow.names]
        size = os.path.getsize(path) if "://" not in path else 0
        rows_total = max(1, parquet.metadata.num_rows)
        for batch in parquet.iter_batches(batch_size=4096, columns=present):
            cols = batch.to_pydict()
            n = batch.num_rows
            for i in range(n):
                doc_id, text = str(cols["id"][i]), cols["text"][i] or ""
                score = float(cols.get("score", [0.0] * n)[i] or 0.0)
                key = order_key(spec.order, spec.seed, pool, doc_id, score)
                yield {"pool": pool, "id": doc_id, "text": text, "source": cols.get("source", [None] * n)[i],
                       "score": score, "key0": key[0], "key1": key[1],
                       "pkey": seeded_key(spec.seed, "partial", pool, doc_id),
                       "units": doc_units(spec.unit, text, cols.get("chars", [None] * n)[i],
                                          cols.get("tokens", [None] * n)[i])}
            self._progress.add(n, size * n // rows_total)

    def finish_bundle(self):
        self._progress.flush()


class SelectFn(beam.CombineFn):
    """Per pool: (primary, unique hash, partial hash, units) of every document -> the selection."""

    def __init__(self, targets: dict):
        self.targets = targets

    def create_accumulator(self):
        return []

    def add_input(self, acc, row):
        acc.append(row)
        return acc

    def compact(self, acc):
        return [self._arrays(acc)] if acc else acc

    @staticmethod
    def _arrays(acc) -> tuple:
        plain = [r for r in acc if not isinstance(r, tuple)]
        packed = [r for r in acc if isinstance(r, tuple)]
        parts = [(np.array([r[0] for r in plain], dtype=np.float64),
                  np.array([r[1] for r in plain], dtype=np.uint64),
                  np.array([r[2] for r in plain], dtype=np.uint64),
                  np.array([r[3] for r in plain], dtype=np.int64))] if plain else []
        parts += packed
        if not parts:
            return (np.zeros(0), np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros(0, np.int64))
        return tuple(np.concatenate([p[j] for p in parts]) for j in range(4))

    def merge_accumulators(self, accs):
        return [self._arrays([x for acc in accs for x in acc])]

    def extract_output(self, acc):
        return self._arrays(acc)


def _light(row: dict):
    return row["pool"], [row["key0"], row["key1"], row["pkey"], row["units"]]


def _select(item, targets: dict):
    pool, arrays = item
    primary, unique_hash, partial_hash, units = arrays
    return pool, select_pool(targets[pool], primary, unique_hash, partial_hash, units)


def _expand(row: dict, selections: dict, seed: int):
    selection = selections.get(row["pool"])
    if selection is None:
        return
    for epoch in range(copies_of(selection, (row["key0"], row["key1"]), row["pkey"])):
        yield (seeded_key(seed, "shuffle", row["pool"], row["id"], epoch),
               {"text": row["text"], "id": row["id"], "pool": row["pool"], "epoch": epoch,
                "source": row["source"], "score": row["score"], "units": row["units"]})


class ShardsFn(beam.CombineFn):
    """Shuffle keys of every copy (uint64 arrays) -> {total, shards, boundaries}."""

    def __init__(self, spec: MaterializeSpec):
        self.spec = spec

    def create_accumulator(self):
        return []

    def add_input(self, acc, key):
        acc.append(key)
        return acc

    def compact(self, acc):
        return [self._array(acc)]

    @staticmethod
    def _array(acc) -> np.ndarray:
        ints = [k for k in acc if not isinstance(k, np.ndarray)]
        arrays = [k for k in acc if isinstance(k, np.ndarray)]
        if ints:
            arrays.append(np.array(ints, dtype=np.uint64))
        return np.concatenate(arrays) if arrays else np.zeros(0, np.uint64)

    def merge_accumulators(self, accs):
        return [self._array([x for acc in accs for x in acc])]

    def extract_output(self, acc):
        keys = self._array(acc)
        total = int(len(keys))
        shards = self.spec.shard_count(total) if total else 0
        return {"total": total, "shards": shards,
                "boundaries": shard_boundaries(keys, shards) if shards else []}


def _to_shard(item, layout: dict):
    return bisect.bisect_right(layout["boundaries"], item[0]), item


def _doc_of(row: dict) -> tuple:
    return row["pool"], row["id"]


class WriteShard(beam.DoFn):
    """All copies of one shard -> one file (two for tokens: .bin and .idx) in staging/data."""

    def __init__(self, spec: MaterializeSpec, staging: str, progress_dir: str | None):
        self.spec, self.staging, self.progress_dir = spec, staging, progress_dir

    def setup(self):
        self._tokenizer = None
        if self.spec.fmt == "tokens":
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_str(self.spec.tokenizer_json)
            self._dtype = token_dtype(self._tokenizer.get_vocab_size(with_added_tokens=True))
        self._progress = ProgressWriter(self.progress_dir, "write")

    def process(self, item, layout):
        shard, copies = item
        ordered = sorted(copies, key=lambda kv: (kv[0], kv[1]["pool"], kv[1]["id"], kv[1]["epoch"]))
        rows = [row for _, row in ordered]
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


def build_materialize(p, spec: MaterializeSpec, staging: str, progress_dir: str | None = None) -> None:
    targets = {t.name: t for t in spec.targets}
    docs = (p
            | "PoolFiles" >> beam.Create(sorted(spec.files))
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadPoolDocs" >> beam.ParDo(ReadPoolDocs(spec, progress_dir)))
    selections = (docs
                  | "Light" >> beam.Map(_light)
                  | "CollectPerPool" >> beam.CombinePerKey(SelectFn(targets))
                  | "SelectPerPool" >> beam.Map(_select, targets))
    copies = docs | "ExpandCopies" >> beam.FlatMap(_expand, beam.pvalue.AsDict(selections), spec.seed)
    layout = (copies
              | "ShuffleKeys" >> beam.Map(lambda kv: kv[0])
              | "ShardBoundaries" >> beam.CombineGlobally(ShardsFn(spec)))
    files = (copies
             | "ToShard" >> beam.Map(_to_shard, beam.pvalue.AsSingleton(layout))
             | "GroupShards" >> beam.GroupByKey()
             | "WriteShard" >> beam.ParDo(WriteShard(spec, staging, progress_dir),
                                          beam.pvalue.AsSingleton(layout)))
    _ = (p
         | "InfoTrigger" >> beam.Create([None])
         | "WriteInfo" >> beam.Map(_write_info, staging, beam.pvalue.AsList(selections),
                                   beam.pvalue.AsList(files), beam.pvalue.AsSingleton(layout)))


def run_materialize(spec: MaterializeSpec, staging: str, options, progress_dir: str | None = None) -> dict:
    """Run the pipeline into `staging`; returns the info the manifest is built from."""
    fsutil.mkdirs(FileSystems.join(staging, DATA_DIR))
    with beam.Pipeline(options=options) as p:
        build_materialize(p, spec, staging, progress_dir)
    path = FileSystems.join(staging, INFO_FILE)
    info = json.loads(fsutil.read_bytes(path))
    fsutil.delete(path)
    return info

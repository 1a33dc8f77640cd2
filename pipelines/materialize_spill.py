"""Spill files of `curate materialize`: the copies of one pool file, grouped by key range.

Why: a Beam shuffle holds what it carries (the local FnApiRunner keeps every grouped value
and every PCollection between stages as Python objects in one process), so a GroupByKey of
the copies' texts on the shard number grew with the output (4.2 GB at 1.44M rows). Instead
the DoFn that reads a pool file writes its copies to one Arrow IPC file in the staging
folder, each record batch holding copies of one key range ("bucket",
`materialize_core.bucket_edges`), and emits only the list of (bucket, rows) of its batches.
A shard's writer then reads, from every spill file, the batches of the buckets its ranks span
(random access through the IPC footer), so the runner never carries a text and a worker holds
at most one shard (plus the edges of two buckets) or the fixed write buffer below.

    <staging>/_spill/f<FILE>.arrow     FILE: index of the pool file in the spec (sorted)

Names are fixed by the pool file, so a retried bundle rewrites the same file with the same
content; the folder is deleted when the pipeline ends (`run_materialize`), and with the staging
folder on failure. All I/O goes through Beam FileSystems (any filesystem Beam has).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

SPILL_DIR = "_spill"
# Rows buffered per spill writer before a bucket's batch is written: bounds a reading worker's
# memory whatever the pool file or output size (~300 B a copy: ~20 MB).
BUFFER_ROWS = 65_536
# A batch is never cut smaller than this (many shards): IPC batch headers stay small next to it.
MIN_BATCH_ROWS = 64
SCHEMA = pa.schema([("key", pa.uint64()), ("text", pa.large_string()), ("id", pa.string()),
                    ("pool", pa.string()), ("epoch", pa.int32()), ("source", pa.string()),
                    ("score", pa.float64()), ("units", pa.int64())])
_RAW = CompressionTypes.UNCOMPRESSED


def spill_path(staging: str, file_index: int) -> str:
    return FileSystems.join(staging, SPILL_DIR, f"f{file_index:06d}.arrow")


class SpillWriter:
    """Copies of one pool file -> one Arrow IPC file of record batches, one bucket each.

    `add` takes a table of copies (SCHEMA) and their buckets; a bucket's rows are written as a
    batch once BUFFER_ROWS / buckets of them wait (never fewer than MIN_BATCH_ROWS), the rest on
    `close`, which returns {"path", "buckets", "batches": [[bucket, rows], ...] in file order}.
    Nothing is created for a pool file without copies.
    """

    def __init__(self, path: str, buckets: int):
        self.path, self.buckets = path, buckets
        self.flush_rows = max(MIN_BATCH_ROWS, BUFFER_ROWS // max(1, buckets))
        self._pending: dict[int, list] = {}
        self._pending_rows: dict[int, int] = {}
        self._batches: list[list[int]] = []
        self._sink = None
        self._writer = None

    def add(self, table: pa.Table, buckets: np.ndarray) -> None:
        if table.num_rows == 0:
            return
        order = np.argsort(buckets, kind="stable")
        ordered = buckets[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        ends = np.r_[starts[1:], len(ordered)]
        for start, end in zip(starts, ends):
            bucket = int(ordered[start])
            # take copies the rows: a buffered slice would keep the whole input batch alive
            self._pending.setdefault(bucket, []).append(table.take(pa.array(order[start:end])))
            self._pending_rows[bucket] = self._pending_rows.get(bucket, 0) + int(end - start)
            if self._pending_rows[bucket] >= self.flush_rows:
                self._flush(bucket)

    def _flush(self, bucket: int) -> None:
        parts = self._pending.pop(bucket)
        self._pending_rows.pop(bucket)
        if self._writer is None:
            self._sink = FileSystems.create(self.path, compression_type=_RAW)
            self._writer = pa.ipc.new_file(self._sink, SCHEMA,
                                           options=pa.ipc.IpcWriteOptions(compression="lz4"))
        for batch in pa.concat_tables(parts).combine_chunks().to_batches():
            self._writer.write_batch(batch)
            self._batches.append([bucket, batch.num_rows])

    def close(self) -> dict:
        for bucket in sorted(self._pending):
            self._flush(bucket)
        if self._writer is not None:
            self._writer.close()
            if not self._sink.closed:
                self._sink.close()
        return {"path": self.path, "buckets": self.buckets, "batches": self._batches}


def read_buckets(spills: list[dict], first: int, last: int) -> pa.Table:
    """Every copy of buckets first..last, from all spill files (only those batches are read)."""
    batches = []
    for spill in sorted(spills, key=lambda s: s["path"]):
        wanted = [i for i, (bucket, _) in enumerate(spill["batches"]) if first <= bucket <= last]
        if not wanted:
            continue
        with FileSystems.open(spill["path"], compression_type=_RAW) as fh:
            reader = pa.ipc.open_file(pa.PythonFile(fh, mode="r"))
            batches += [reader.get_batch(i) for i in wanted]
    return pa.Table.from_batches(batches, schema=SCHEMA)

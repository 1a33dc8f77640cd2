"""Packed blobs: many record tuples in one zlib-compressed pickle, what the compact pipeline's
shuffles carry (the local runner holds one bytes object per blob, not a Python object per
record). A leaf module, so stash_stages, compact_head and packed_components share one copy.

Spilled blobs: the local FnApiRunner keeps every shuffle in its main process and hands a
worker its whole input (the worker's data channel queues it), so even packed blobs made both
grow with the corpus (1.1M documents: the runner's process ~0.7-1.1 GB, each worker ~0.8 GB,
mostly near-dedup pairs, edges and adjacency). `spill(folder, items)` writes the blobs of one
flush to one file under `folder` and returns references in their place: a shuffle then carries
~100 bytes per blob whatever its size. `unpack` takes a blob or a reference alike, so consumers
do not change. A reference is bytes (the shuffles' coders stay bytes) that starts with REF, which
a zlib stream never does (its first byte is 0x78 at every level used here).

Retries: a failed bundle's file stays unreferenced (only committed outputs reach a shuffle) and
goes with the run's intermediate folder; files are never rewritten, so no reader sees a torn one.
"""
from __future__ import annotations

import pickle
import struct
import uuid
import zlib

REF = b"@ref\x00"
# below this many bytes in one flush, blobs stay inline: a file per few records would cost more
# than it saves (the runner then holds at most this much per flush)
SPILL_MIN_BYTES = 16 * 1024
_SPAN = struct.Struct("<QQ")


def pack(obj) -> bytes:
    return zlib.compress(pickle.dumps(obj, protocol=5), 1)


def unpack(blob: bytes):
    if is_ref(blob):
        blob = _read_ref(blob)
    return pickle.loads(zlib.decompress(blob))  # noqa: S301 - our own blobs, within one run


def spill(folder: str | None, items: list) -> list:
    """[(key, blob)] -> [(key, reference)] to one new file under `folder` holding every blob,
    in order; unchanged when `folder` is None or the blobs are small (SPILL_MIN_BYTES)."""
    if folder is None or not items or sum(len(blob) for _, blob in items) < SPILL_MIN_BYTES:
        return items
    from apache_beam.io.filesystems import FileSystems

    from curate.pipelines import fsutil

    path = FileSystems.join(folder, f"{uuid.uuid4().hex}.blobs")
    encoded = path.encode("utf-8")
    out, offset = [], 0
    for key, blob in items:
        out.append((key, REF + _SPAN.pack(offset, len(blob)) + encoded))
        offset += len(blob)
    fsutil.write_bytes(path, b"".join(blob for _, blob in items))
    return out


def is_ref(blob: bytes) -> bool:
    return blob[:len(REF)] == REF


def _read_ref(ref: bytes) -> bytes:
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    offset, length = _SPAN.unpack_from(ref, len(REF))
    path = ref[len(REF) + _SPAN.size:].decode("utf-8")
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        fh.seek(offset)
        data = fh.read(length)
    if len(data) != length:
        raise OSError(f"{path}: spilled blob at {offset} has {len(data)} of {length} bytes (file cut short?)")
    return data

"""Packed blobs: many record tuples in one zlib-compressed pickle, what the compact pipeline's
shuffles carry (the local runner holds one bytes object per blob, not a Python object per
record). A leaf module, so stash_stages, compact_head and packed_components share one copy."""
from __future__ import annotations

import pickle
import zlib


def pack(obj) -> bytes:
    return zlib.compress(pickle.dumps(obj, protocol=5), 1)


def unpack(blob: bytes):
    return pickle.loads(zlib.decompress(blob))  # noqa: S301 - our own blobs, within one run

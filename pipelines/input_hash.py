"""Whole-content hashes of input files, for run fingerprints (orchestration/fingerprint.py).

Read through Beam's FileSystems (local disks and object stores alike) in fixed-size chunks, so
hashing a file of any size holds one chunk in memory.
"""
from __future__ import annotations

import hashlib

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

HASH_CHUNK_BYTES = 1 << 20
HEAD_BYTES = 1 << 20  # sha256_first_mb: the old fingerprint's hash, kept beside the full one


def content_hashes(path: str) -> dict:
    """{"sha256", "sha256_first_mb"} of the file's bytes, read in HASH_CHUNK_BYTES chunks."""
    whole, head = hashlib.sha256(), hashlib.sha256()
    seen = 0
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        while True:
            chunk = fh.read(HASH_CHUNK_BYTES)
            if not chunk:
                break
            whole.update(chunk)
            if seen < HEAD_BYTES:
                head.update(chunk[: HEAD_BYTES - seen])
            seen += len(chunk)
    return {"sha256": whole.hexdigest(), "sha256_first_mb": head.hexdigest()}


def size_and_mtime(path: str) -> tuple[int, float]:
    """(size in bytes, mtime in seconds) of one file; its name is never read as a glob."""
    meta = FileSystems.get_filesystem(path).metadata(path)
    return meta.size_in_bytes, meta.last_updated_in_seconds

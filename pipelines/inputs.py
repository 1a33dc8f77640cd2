"""Input discovery and fingerprints: `--input` paths/globs -> a list of typed input files.

Supported inputs: JSONL (`.jsonl`, `.json`, `.ndjson`, optionally `.gz`), Parquet (`.parquet`),
and directories written by HF `datasets`' `save_to_disk` (a folder with `state.json`, read
as its Arrow IPC stream files without importing `datasets`). All file access goes through
Beam's `FileSystems`, so the same code runs against local disks and object stores.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

FINGERPRINT_HEAD_BYTES = 1 << 20  # sha256 over the first MB (+ size + mtime)


@dataclass(frozen=True, order=True)
class InputFile:
    """One physical file to read. `source` is the name written into every document."""

    source: str  # user-visible source: the file path, or the dataset directory for HF datasets
    path: str  # physical file
    kind: str  # "jsonl" | "parquet" | "arrow"
    shard: int = 0  # position within a multi-file HF dataset (row numbers restart per shard)


def _kind_of(path: str) -> str | None:
    name = path.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".arrow"):
        return "arrow"
    return None


def _hf_dataset_files(directory: str) -> list[InputFile] | None:
    """Arrow shards of a `save_to_disk` directory in state.json order, or None if not one."""
    state_path = FileSystems.join(directory, "state.json")
    if not FileSystems.exists(state_path):
        return None
    with FileSystems.open(state_path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        state = json.loads(fh.read().decode("utf-8"))
    files = [entry["filename"] for entry in state.get("_data_files", [])]
    if not files:
        raise ValueError(f"{directory}: state.json lists no data files")
    return [
        InputFile(source=directory.rstrip("/"), path=FileSystems.join(directory, name), kind="arrow", shard=i)
        for i, name in enumerate(files)
    ]


def _is_dir(path: str) -> bool:
    import os

    # FileSystems has no portable "is directory"; for object stores a trailing "/" marks one.
    if "://" not in path:
        return os.path.isdir(path)
    return path.endswith("/")


def expand_inputs(patterns: list[str]) -> list[InputFile]:
    """Resolve paths, globs and dataset directories; raise FileNotFoundError for a miss.

    The result is sorted and de-duplicated so the same inputs give the same order.
    """
    if not patterns:
        raise ValueError("no --input given")
    found: set[InputFile] = set()
    for pattern in patterns:
        if _is_dir(pattern):
            hf = _hf_dataset_files(pattern)
            if hf is None:
                raise ValueError(
                    f"{pattern} is a directory but not a saved HF dataset (no state.json); "
                    "pass a glob such as DIR/*.jsonl.gz"
                )
            found.update(hf)
            continue
        matches = FileSystems.match([pattern])[0].metadata_list
        if not matches:
            raise FileNotFoundError(f"input not found: {pattern}")
        for meta in matches:
            kind = _kind_of(meta.path)
            if kind is None:
                raise ValueError(
                    f"{meta.path}: unknown input format (expected .jsonl[.gz], .parquet, "
                    "or a save_to_disk directory)"
                )
            found.add(InputFile(source=meta.path, path=meta.path, kind=kind))
    return sorted(found)


def fingerprint(path: str) -> dict:
    """size, mtime and sha256 of the first MB: cheap and good enough to notice changed inputs."""
    meta = FileSystems.match([path])[0].metadata_list[0]
    digest = hashlib.sha256()
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        digest.update(fh.read(FINGERPRINT_HEAD_BYTES))
    return {
        "path": path,
        "size": meta.size_in_bytes,
        "mtime": meta.last_updated_in_seconds,
        "sha256_first_mb": digest.hexdigest(),
    }

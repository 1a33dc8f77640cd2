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

from curate.pipelines import fsutil

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
    """Arrow shards of a `save_to_disk` directory in state.json order, or None if not one.

    A state.json that cannot be read, has the wrong shape or names a shard that is not there
    is one error naming state.json (the run would otherwise fail later, far from the cause).
    """
    state_path = FileSystems.join(directory, "state.json")
    if not FileSystems.exists(state_path):
        return None
    try:
        state = json.loads(fsutil.read_bytes(state_path).decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{state_path}: not a readable HF datasets state.json ({_first_line(exc)})") from None
    entries = state.get("_data_files") if isinstance(state, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{state_path}: no _data_files list (not a datasets save_to_disk folder?)")
    files = []
    for entry in entries:
        name = entry.get("filename") if isinstance(entry, dict) else None
        # save_to_disk writes plain names beside state.json; anything else is not its output
        if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name:
            raise ValueError(f"{state_path}: _data_files entry {json.dumps(entry)[:200]} is not "
                             "{\"filename\": NAME} with a file name in this folder")
        files.append(name)
    if not files:
        raise ValueError(f"{directory}: state.json lists no data files")
    shards = [FileSystems.join(directory, name) for name in files]
    missing = [name for name, path in zip(files, shards) if not FileSystems.exists(path)]
    if missing:
        raise FileNotFoundError(f"{state_path} names {', '.join(missing[:3])}"
                                f"{f' and {len(missing) - 3} more' if len(missing) > 3 else ''}, "
                                f"not found in {directory}")
    return [
        InputFile(source=directory.rstrip("/"), path=path, kind="arrow", shard=i)
        for i, path in enumerate(shards)
    ]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_dir(path: str) -> bool:
    import os

    # FileSystems has no portable "is directory"; for object stores a trailing "/" marks one.
    if "://" not in path:
        return os.path.isdir(path)
    return path.endswith("/")


def expand_inputs(patterns: list[str]) -> list[InputFile]:
    """Resolve paths, globs and dataset directories; raise FileNotFoundError for a miss.

    Local paths and globs are made absolute first (`fsutil.absolute`): workers read the files
    by these names, and a worker's folder is not the launcher's. `source` is that absolute path.
    The result is sorted and de-duplicated so the same inputs give the same order.
    """
    if not patterns:
        raise ValueError("no --input given")
    found: set[InputFile] = set()
    for pattern in map(fsutil.absolute, patterns):
        if _is_dir(pattern):
            hf = _hf_dataset_files(pattern)
            if hf is None:
                raise ValueError(
                    f"{pattern} is a directory but not a saved HF dataset (no state.json); "
                    "pass a glob such as DIR/*.jsonl.gz"
                )
            found.update(hf)
            continue
        if FileSystems.exists(pattern):
            # an existing path is that file, even with [ * ? in its name (not a glob of others)
            matches = [fsutil.metadata(pattern)]
        else:
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
    meta = fsutil.metadata(path)  # not match(): a name with [ * ? is not a pattern here
    digest = hashlib.sha256()
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        digest.update(fh.read(FINGERPRINT_HEAD_BYTES))
    return {
        "path": path,
        "size": meta.size_in_bytes,
        "mtime": meta.last_updated_in_seconds,
        "sha256_first_mb": digest.hexdigest(),
    }

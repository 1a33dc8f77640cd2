"""Input discovery and fingerprints: `--input` paths/globs -> a list of typed input files.

Supported inputs: JSONL (`.jsonl`, `.json`, `.ndjson`, optionally `.gz`), Parquet (`.parquet`),
and directories written by HF `datasets`' `save_to_disk` (a folder with `state.json`, read
as its Arrow IPC stream files without importing `datasets`). All file access goes through
Beam's `FileSystems`, so the same code runs against local disks and object stores.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from curate.pipelines import fsutil

FINGERPRINT_HEAD_BYTES = 1 << 20  # sha256 over the first MB (+ size + mtime)
# Files above this size are read in pieces of about this size where the format allows (one
# DoFn call per piece, so one big file does not funnel through one worker); tests lower it.
PIECE_BYTES = 256 << 20


@dataclass(frozen=True, order=True)
class InputFile:
    """One physical file to read. `source` is the name written into every document."""

    source: str  # user-visible source: the file path, or the dataset directory for HF datasets
    path: str  # physical file
    kind: str  # "jsonl" | "parquet" | "arrow"
    shard: int = 0  # position within a multi-file HF dataset (row numbers restart per shard)
    # A piece of a file read in parts (`read_pieces`); the defaults mean the whole file. The
    # fields after `piece` only matter when pieces > 1; what start/stop count depends on kind:
    piece: int = 0  # position of this piece within its file
    pieces: int = 1  # how many pieces the file is read in
    start: int = 0  # jsonl: first byte; parquet: first row group; arrow: offset of the first batch message
    stop: int = 0  # jsonl: end byte (excl.); parquet: end row group (excl.); arrow: number of batches
    first_row: int = 0  # parquet/arrow: the file's row number of the piece's first row
    nbytes: int = 0  # bytes of the file this piece covers (progress only)

    @property
    def split(self) -> bool:
        return self.pieces > 1


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


@dataclass(frozen=True)
class ReadingPlan:
    """What ReadRecords gets (`pieces`, sorted) and the launch warnings about big files that
    one worker must read whole (`warnings`, one line per file)."""

    pieces: tuple[InputFile, ...]
    warnings: tuple[str, ...]


def reading_plan(files: list[InputFile], piece_bytes: int | None = None) -> ReadingPlan:
    """Split every file above `piece_bytes` (default PIECE_BYTES) into pieces of about that
    size where its format allows: uncompressed JSONL by byte ranges, Parquet by row-group
    ranges, Arrow IPC streams by record-batch ranges (row numbers from the metadata, so they
    stay exact). A compressed JSONL file (gzip can only be read from its start), a Parquet file
    with one row group or an Arrow stream with one batch (or dictionary batches) is read whole,
    with a warning. A file whose size or metadata cannot be read here is read whole too: the
    worker then dead-letters what it cannot read, as for any file.

    Deterministic: the same files and sizes give the same pieces, whatever the worker count.
    """
    limit = int(piece_bytes or PIECE_BYTES)
    pieces: list[InputFile] = []
    warnings: list[str] = []
    for f in files:
        try:
            size = fsutil.metadata(f.path).size_in_bytes
        except Exception:  # noqa: BLE001 - the worker reports an unreadable file
            size = None
        if size is None or size <= limit or f.split:
            pieces.append(f)
            continue
        split, why = _split(f, size, limit)
        pieces += split
        if why:
            warnings.append(f"{f.path} ({size / 2**20:.0f} MiB) is read whole by one worker: {why}")
    return ReadingPlan(tuple(sorted(pieces)), tuple(warnings))


def read_pieces(files: list[InputFile], piece_bytes: int | None = None) -> list[InputFile]:
    return list(reading_plan(files, piece_bytes).pieces)


def _split(f: InputFile, size: int, limit: int) -> tuple[list[InputFile], str | None]:
    """(pieces of f, None) or ([f], why it cannot be split)."""
    if f.kind == "jsonl":
        if CompressionTypes.detect_compression_type(f.path) != CompressionTypes.UNCOMPRESSED:
            return [f], ("a compressed stream can only be read from its start; shard it into files "
                         f"of at most {limit / 2**20:.0f} MiB each, or store it uncompressed (JSONL) "
                         "or as Parquet, to have it read in parallel")
        n = -(-size // limit)
        bounds = [size * i // n for i in range(n + 1)]
        return [replace(f, piece=i, pieces=n, start=bounds[i], stop=bounds[i + 1],
                        nbytes=bounds[i + 1] - bounds[i]) for i in range(n)], None
    try:
        units = _parquet_units(f.path) if f.kind == "parquet" else _arrow_units(f.path)
    except Exception:  # noqa: BLE001 - unreadable here: the worker reads it whole and reports it
        return [f], None
    if units is None:
        return [f], ("its Arrow stream has dictionary batches, which must be read from the "
                     "start; save it without dictionary encoding to have it read in parallel")
    groups = _group_units(units, limit)
    if len(groups) < 2:
        unit = "row group" if f.kind == "parquet" else "record batch"
        return [f], (f"it has {len(units)} {unit}(s), too few to split; rewrite it with {unit}s "
                     f"of at most {limit / 2**20:.0f} MiB (or shard it) to have it read in parallel")
    out = []
    for i, (first, end, first_row, nbytes, offset) in enumerate(groups):
        start, stop = (first, end) if f.kind == "parquet" else (offset, end - first)
        out.append(replace(f, piece=i, pieces=len(groups), start=start, stop=stop,
                           first_row=first_row, nbytes=nbytes))
    return out, None


def _parquet_units(path: str) -> list[tuple[int, int, int]]:
    """(rows, compressed bytes, 0) of each row group, from the footer."""
    import pyarrow.parquet as pq

    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        meta = pq.ParquetFile(fh).metadata
        units = []
        for i in range(meta.num_row_groups):
            group = meta.row_group(i)
            nbytes = sum(group.column(c).total_compressed_size for c in range(group.num_columns))
            units.append((group.num_rows, nbytes, 0))
    return units


def _arrow_units(path: str) -> list[tuple[int, int, int]] | None:
    """(rows, bytes, byte offset of the message) of each record batch of an Arrow IPC stream,
    or None when it has dictionary batches. Local files are memory-mapped, so only the
    messages' metadata is read; on object stores this reads the file once."""
    import pyarrow as pa

    source = pa.memory_map(path) if not fsutil.is_url(path) else pa.PythonFile(
        FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED), mode="r")
    with source:
        reader = pa.ipc.MessageReader.open_stream(source)
        schema = pa.ipc.read_schema(reader.read_next_message())
        units = []
        while True:
            offset = source.tell()
            try:
                message = reader.read_next_message()
            except StopIteration:
                break
            if message.type != "record batch":
                return None
            rows = pa.ipc.read_record_batch(message, schema).num_rows
            units.append((rows, source.tell() - offset, offset))
    return units


def _group_units(units, limit: int) -> list[tuple[int, int, int, int, int]]:
    """Consecutive units (row groups / batches) grouped into pieces of about `limit` bytes:
    (first unit, end unit, first row, bytes, byte offset of the first unit)."""
    groups, first, row, first_row, nbytes = [], 0, 0, 0, 0
    for i, (rows, size, _offset) in enumerate(units):
        if nbytes and nbytes + size > limit:
            groups.append((first, i, first_row, nbytes, units[first][2]))
            first, first_row, nbytes = i, row, 0
        nbytes += size
        row += rows
    if first < len(units):
        groups.append((first, len(units), first_row, nbytes, units[first][2]))
    return groups

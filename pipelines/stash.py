"""The per-run intermediate Parquet ("stash"): texts and features stay on disk, shuffles carry
compact records.

Why: a Beam shuffle holds what it carries (the local FnApiRunner holds every grouped value as a
Python object in its main process), so carrying whole documents through the id, exact-dedup
and near-dedup groupings cost ~11 KB per document. Here the reading DoFn writes each text once,
in input order, into fixed-size chunks, and emits a compact record instead; later stages that
need the text read one chunk at a time:

    ReadRecords (stash mode)   raw/f<FILE>-c<CHUNK>.parquet      column text, row = position
    SignAndScore (per chunk)   scored/f<FILE>-c<CHUNK>.parquet   every written column but pool,
                                                                 exact-dedup survivors only
    JoinStash (per chunk)      the kept rows of a scored chunk + their pool -> WriteRun

A document's *locator* is one int: file index (inputs sorted by source, shard, path, piece;
each piece of a file read in parts has its own) << 32 | its running number among the file's
(piece's) documents. It orders documents as `_order` = (source,
shard, position) does, so it replaces `_order` for tie-breaking. Chunks hold CHUNK_ROWS
documents, which bounds what one DoFn call holds whatever the corpus size. File names are
fixed by (file, chunk), so a retried bundle rewrites the same file with the same content and
reruns write identical files. Everything lives in `<staging>/_intermediate/`, which publish
never moves (it is not a run-directory name) and `run_curation` deletes when the pipeline ends.
"""
from __future__ import annotations

import io

from apache_beam.io.filesystems import FileSystems

from curate.pipelines import fsutil

WORK_DIR = "_intermediate"
CHUNK_ROWS = 8192
CHUNK_TEXT_CHARS = 8_000_000  # a chunk also ends once its texts pass this many characters
_FILE_SHIFT = 32
_SEQ_LIMIT = 1 << _FILE_SHIFT


def locator(file_index: int, seq: int) -> int:
    return (file_index << _FILE_SHIFT) | seq


def chunk_key(loc: int) -> int:
    """(file index, chunk) packed in one int: the key that groups a chunk's documents."""
    file_index, seq = loc >> _FILE_SHIFT, loc & ((1 << _FILE_SHIFT) - 1)
    return (file_index << _FILE_SHIFT) | (seq // CHUNK_ROWS)


def row_in_chunk(loc: int) -> int:
    return (loc & ((1 << _FILE_SHIFT) - 1)) % CHUNK_ROWS


def _chunk_name(key: int) -> str:
    return f"f{key >> _FILE_SHIFT:06d}-c{key & ((1 << _FILE_SHIFT) - 1):06d}.parquet"


def write_table(path: str, table) -> None:
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(table, sink)
    fsutil.write_bytes(path, sink.getvalue())


def read_table(path: str, columns=None):
    import pyarrow.parquet as pq

    with FileSystems.open(path) as fh:
        return pq.read_table(io.BytesIO(fh.read()), columns=columns)


def _file_key(f) -> tuple:
    return (f.source, f.shard, f.path, f.piece)


class Stash:
    """Where a run's intermediate files go and how inputs map to file indexes (picklable)."""

    def __init__(self, out_dir: str, files):
        self.root = FileSystems.join(out_dir, WORK_DIR)
        # a piece of a file read in parts (InputFile.piece) has its own index: its own locator
        # space, so no piece needs to know how many documents the pieces before it hold
        ordered = sorted(files, key=_file_key)
        self.index = {_file_key(f): i for i, f in enumerate(ordered)}
        self.sources = [f.source for f in ordered]

    def file_index(self, f) -> int:
        return self.index[_file_key(f)]

    @property
    def spill_folder(self) -> str:
        """Where shuffled blobs are spilled (packing.spill): the shuffles carry references."""
        return FileSystems.join(self.root, "spill")

    def raw_path(self, key: int) -> str:
        return FileSystems.join(self.root, "raw", _chunk_name(key))

    def scored_path(self, key: int) -> str:
        return FileSystems.join(self.root, "scored", _chunk_name(key))

    def payload_path(self, key: int) -> str:
        return FileSystems.join(self.root, "payload", _chunk_name(key))

    def writer(self, f) -> "RawWriter":
        return RawWriter(self, self.file_index(f))


class RawWriter:
    """Texts of one input file, in reading order, written CHUNK_ROWS at a time, or fewer once
    the chunk's texts pass CHUNK_TEXT_CHARS: the next chunk then starts at its own first row
    (locators need not be dense, only unique and ordered), so what a per-chunk stage holds is
    bounded by characters as well as rows (8,192 news articles were ~5x the texts' size in one
    signing call)."""

    def __init__(self, stash: Stash, file_index: int):
        self.stash, self.file_index = stash, file_index
        self.seq = 0
        self.chars = 0
        self.texts: list[str] = []

    def add(self, text: str) -> int:
        """Stash `text`; its locator."""
        if self.seq >= _SEQ_LIMIT:
            raise ValueError(f"more than {_SEQ_LIMIT:,} document slots in one input file or piece; "
                             "split the file into smaller files")
        loc = locator(self.file_index, self.seq)
        self.texts.append(text)
        self.chars += len(text)
        self.seq += 1
        if len(self.texts) == CHUNK_ROWS:
            self.flush()
        elif self.chars >= CHUNK_TEXT_CHARS:
            self.flush()
            self.seq = -(-self.seq // CHUNK_ROWS) * CHUNK_ROWS  # the next chunk's first row
        return loc

    def flush(self) -> None:
        if not self.texts:
            return
        import pyarrow as pa

        key = chunk_key(locator(self.file_index, self.seq - 1))
        write_table(self.stash.raw_path(key), pa.table({"text": pa.array(self.texts, pa.string())}))
        self.texts, self.chars = [], 0

    def close(self) -> None:
        self.flush()


def delete(out_dir: str) -> None:
    path = FileSystems.join(out_dir, WORK_DIR)
    if fsutil.exists(path):
        fsutil.delete(path)

"""Ingest + validate: input files -> documents, with every bad record dead-lettered.

`ReadRecords` is a DoFn over `InputFile`s (one file, or one piece of a big file, per call:
`inputs.reading_plan`), so files and pieces are read in parallel. Row numbers are exact
(pieces of Parquet/Arrow files know their first row from the metadata); a piece of a JSONL
file after the first does not know its line numbers, so its dead letters give the line's byte
offset instead (in `detail`). It never raises on bad data: unreadable or truncated files become
dead letters too, after the records that could be read.
"""
from __future__ import annotations

import json
import re
from typing import Iterator

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from curate.pipelines import counters
from curate.pipelines import records as R
from curate.pipelines.inputs import InputFile
from curate.pipelines.progress import ProgressWriter
from curate.pipelines.runtime import runtime_options
from curate.pipelines.stage_configs import IngestConfig

DEAD = "dead_letter"
_BATCH_ROWS = 4096


def _open_text_source(path: str):
    """(binary line source, raw file) for a JSONL file, decompressing by extension; the raw
    file's position measures progress in input bytes.

    gzip goes through Python's `gzip` module on the raw stream because it raises EOFError on
    a truncated file, where Beam's CompressedFile just stops early (silent data loss).
    """
    if path.lower().endswith(".gz"):
        import gzip

        raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    fh = FileSystems.open(path, compression_type=CompressionTypes.AUTO)
    return fh, fh


def _position(raw) -> int:
    try:
        return int(raw.tell())
    except Exception:  # noqa: BLE001 - progress only
        return 0


class ReadRecords(beam.DoFn):
    """InputFile -> documents (main output) and dead letters (tagged `dead_letter`)."""

    def __init__(self, id_field: str, text_field: str, max_text_bytes: int,
                 max_record_bytes: int, max_raw_chars: int, progress_dir: str | None = None,
                 stash=None, cache_keys: bool = False):
        # stash (pipelines.stash.Stash): texts go to the run's intermediate files and the
        # documents leave as compact records (see `compact_document`)
        self.stash, self.cache_keys = stash, cache_keys
        self.id_field = id_field
        self.text_field = text_field
        self.max_text_bytes = max_text_bytes
        self.max_record_bytes = max_record_bytes
        self.max_raw_chars = max_raw_chars
        self.progress_dir = progress_dir
        self.progress = ProgressWriter(None, "read")  # replaced in setup(); here for direct calls

    def setup(self):
        self.progress = ProgressWriter(self.progress_dir, "read")

    def finish_bundle(self):
        self.progress.flush()

    def _dead(self, f: InputFile, reason: str, detail: str = "", raw=None, line=None, row=None,
              offset=None):
        counters.inc(counters.INPUT)
        counters.inc(counters.DEAD_LETTER_PREFIX + reason)
        if offset is not None:  # a line of a JSONL file read in pieces: its byte offset locates it
            known = "" if line else " (line number not known: the file is read in pieces)"
            detail = f"at byte offset {offset}{known}: {detail}"
        return beam.pvalue.TaggedOutput(DEAD, R.dead_letter(
            source=f.source, reason=reason, detail=detail, raw=raw, line=line, row=row,
            max_raw_chars=self.max_raw_chars))

    def _document(self, f: InputFile, obj, position: int, line=None, row=None, offset=None):
        try:
            doc = R.to_document(obj, id_field=self.id_field, text_field=self.text_field,
                                max_text_bytes=self.max_text_bytes, source=f.source,
                                order=(f.source, f.shard, position))
        except R.RecordError as err:
            return self._dead(f, err.reason, err.detail, raw=obj, line=line, row=row, offset=offset)
        counters.inc(counters.INPUT)
        return doc

    def process(self, f: InputFile) -> Iterator:
        # progress: records as read; bytes = the raw position in the current file
        before = self.progress.bytes
        self._file_start = before
        if f.kind == "jsonl":
            items = self._read_jsonl_piece(f) if f.split else self._read_jsonl(f)
        else:
            items = self._read_table(f)
        if self.stash is None:
            yield from items
        else:
            writer = self.stash.writer(f)
            for item in items:
                yield compact_document(item, writer, self.cache_keys) if isinstance(item, dict) else item
            writer.close()
        size = f.nbytes if f.split else _file_size(f.path)
        self.progress.bytes = before + size if size is not None else self.progress.bytes
        self.progress.add(0)

    # -- JSONL ---------------------------------------------------------------------------
    def _read_jsonl(self, f: InputFile) -> Iterator:
        line_no = 0
        try:
            fh, raw_fh = _open_text_source(f.path)
        except Exception as exc:  # noqa: BLE001 - any failure to open is a dead letter
            yield self._dead(f, R.UNREADABLE_FILE, f"{type(exc).__name__}: {exc}")
            return
        try:
            with fh:
                while True:
                    raw = fh.readline()
                    if not raw:
                        break
                    line_no += 1
                    yield from self._jsonl_line(f, raw, line_no)
                    if line_no % 256 == 0:
                        self.progress.bytes = self._file_start + _position(raw_fh)
                        self.progress.add(256)
                self.progress.records += line_no % 256
        except Exception as exc:  # noqa: BLE001
            # EOFError: compressed stream ended early. Otherwise: unreadable from the start,
            # or broken part-way (also reported as truncated: earlier lines were kept).
            reason = R.TRUNCATED_FILE if line_no or isinstance(exc, EOFError) else R.UNREADABLE_FILE
            yield self._dead(f, reason, f"after line {line_no}: {type(exc).__name__}: {exc}",
                             line=line_no + 1)

    def _read_jsonl_piece(self, f: InputFile) -> Iterator:
        """The lines of an uncompressed JSONL file that start in [f.start, f.stop): a piece
        skips the line that crosses its start (the piece before reads it whole) and reads the
        one that crosses its end, so every line is read exactly once. `_order` positions are
        byte offsets (they order lines as line numbers do); the first piece also knows line
        numbers, the others give only the byte offset (dead letters say so in `detail`)."""
        offset, lines = f.start, 0
        try:
            fh = FileSystems.open(f.path, compression_type=CompressionTypes.UNCOMPRESSED)
        except Exception as exc:  # noqa: BLE001 - any failure to open is a dead letter
            # the first piece stands for the file; a later one failing alone loses its part only
            reason = R.UNREADABLE_FILE if f.piece == 0 else R.TRUNCATED_FILE
            yield self._dead(f, reason, f"piece {f.piece + 1} of {f.pieces} (bytes {f.start}-{f.stop}) "
                                        f"could not be opened: {type(exc).__name__}: {exc}")
            return
        try:
            with fh:
                if f.start > 0:
                    fh.seek(f.start - 1)
                    offset = f.start - 1 + len(fh.readline())  # to the end of the line crossing start
                while offset < f.stop:
                    raw = fh.readline()
                    if not raw:
                        break
                    lines += 1
                    yield from self._jsonl_line(f, raw, lines if f.piece == 0 else None, offset=offset)
                    offset += len(raw)
                    if lines % 256 == 0:
                        self.progress.bytes = self._file_start + offset - f.start
                        self.progress.add(256)
                self.progress.records += lines % 256
        except Exception as exc:  # noqa: BLE001
            reason = R.TRUNCATED_FILE if lines or f.piece or isinstance(exc, EOFError) else R.UNREADABLE_FILE
            yield self._dead(f, reason, f"at byte offset {offset} (piece {f.piece + 1} of {f.pieces}): "
                                        f"{type(exc).__name__}: {exc}",
                             line=lines + 1 if f.piece == 0 else None)

    def _jsonl_line(self, f: InputFile, raw: bytes, line_no: int | None, offset: int | None = None) -> Iterator:
        """offset: the line's byte offset when the file is read in pieces (then it is the
        `_order` position and dead letters give it), else None (the line number is)."""
        raw = raw.rstrip(b"\r\n")
        if not raw.strip():
            return  # blank lines are not records
        at = {"line": line_no, "offset": offset}
        if len(raw) > self.max_record_bytes:
            yield self._dead(f, R.RECORD_TOO_LARGE,
                             f"line is {len(raw)} bytes > limit {self.max_record_bytes}", raw=raw, **at)
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield self._dead(f, R.INVALID_UTF8, str(exc), raw=raw, **at)
            return
        try:
            obj = json.loads(text)
        except ValueError as exc:
            yield self._dead(f, R.MALFORMED_JSON, str(exc), raw=text, **at)
            return
        except RecursionError:  # nested deeper than the parser goes: this line only, read on
            yield self._dead(f, R.MALFORMED_JSON, "RecursionError: JSON nested too deeply to parse",
                             raw=text[:1000], **at)
            return
        yield self._document(f, obj, line_no if offset is None else offset, **at)

    # -- Parquet / Arrow -----------------------------------------------------------------
    def _batches(self, f: InputFile, fh):
        import pyarrow as pa
        import pyarrow.parquet as pq

        if f.kind == "parquet":
            pf = pq.ParquetFile(fh)
            names = set(pf.schema_arrow.names)
            columns = [c for c in (self.id_field, self.text_field) if c in names]
            groups = list(range(f.start, f.stop)) if f.split else None  # a piece: its row groups
            yield from pf.iter_batches(batch_size=_BATCH_ROWS, row_groups=groups, columns=columns or None)
            return
        # HF datasets save_to_disk shards are Arrow IPC *streams*
        batches = _ArrowPiece(fh, f) if f.split else pa.ipc.open_stream(fh)
        names = set(batches.schema.names)
        columns = [c for c in (self.id_field, self.text_field) if c in names]
        for batch in batches:
            yield batch.select(columns) if columns else batch

    def _read_table(self, f: InputFile) -> Iterator:
        row = f.first_row  # a piece's first row number comes from the file's metadata
        try:
            fh = FileSystems.open(f.path, compression_type=CompressionTypes.UNCOMPRESSED)
        except Exception as exc:  # noqa: BLE001
            yield self._dead(f, R.UNREADABLE_FILE, f"{type(exc).__name__}: {exc}")
            return
        try:
            with fh:
                for batch in self._batches(f, fh):
                    for obj in _rows(batch):
                        if isinstance(obj, _RowError):  # this row alone cannot be converted
                            yield self._dead(f, R.MALFORMED_ROW, obj.detail, row=row)
                        else:
                            yield self._document(f, obj, row, row=row)
                        row += 1
                    self.progress.add(batch.num_rows)
        except Exception as exc:  # noqa: BLE001
            # a later piece of a file stands for its part only: it never marks the file unreadable
            reason = R.TRUNCATED_FILE if row or f.piece else R.UNREADABLE_FILE
            piece = f" (piece {f.piece + 1} of {f.pieces})" if f.split else ""
            yield self._dead(f, reason, f"after row {row}{piece}: {type(exc).__name__}: {exc}", row=row)


def compact_document(doc: dict, writer, cache_keys: bool) -> dict:
    """A read document -> {id, _order (its locator), text_hash[, _key]}: the text goes to the
    stash (`writer`), the normalised text is only hashed here (and again where it is needed)."""
    from curate.pipelines.near_dedup import text_key
    from curate.scorers.text import normalise_text, text_hash

    norm = normalise_text(doc["text"])
    out = {"id": doc["id"], "_order": writer.add(doc["text"]), "text_hash": text_hash(norm)}
    if cache_keys:  # the signature cache is keyed by the normalised text's content
        out["_key"] = text_key(norm)
    return out


class _RowError:
    """A row whose values Arrow cannot turn into Python (e.g. a timestamp out of range)."""

    def __init__(self, detail: str):
        self.detail = detail


def _rows(batch):
    """The batch's rows as dicts; if the batch cannot be converted whole, row by row, with a
    _RowError in place of each row that fails (so one bad value costs one row, not the batch)."""
    try:
        yield from batch.to_pylist()
        return
    except Exception:  # noqa: BLE001 - isolate below
        pass
    for i in range(batch.num_rows):
        try:
            yield batch.slice(i, 1).to_pylist()[0]
        except Exception as exc:  # noqa: BLE001 - any conversion failure is this row's
            yield _RowError(f"{type(exc).__name__}: {exc}")


def _file_size(path: str) -> int | None:
    from curate.pipelines import fsutil

    try:  # not FileSystems.match: a name with [ * ? is a file here, not a pattern
        return fsutil.metadata(path).size_in_bytes
    except Exception:  # noqa: BLE001 - progress only
        return None


class _ArrowPiece:
    """The record batches of one piece of an Arrow IPC stream: the schema message from the
    start, then `f.stop` batch messages from byte `f.start` (offsets from `inputs._arrow_units`)."""

    def __init__(self, fh, f: InputFile):
        import pyarrow as pa

        self.schema = pa.ipc.read_schema(pa.ipc.MessageReader.open_stream(fh).read_next_message())
        fh.seek(f.start)
        self._messages = pa.ipc.MessageReader.open_stream(fh)
        self._count = f.stop

    def __iter__(self):
        import pyarrow as pa

        for _ in range(self._count):
            yield pa.ipc.read_record_batch(self._messages.read_next_message(), self.schema)


# Renaming duplicate ids, collision-free by construction. The later copies of id X become
# X#(m+1), X#(m+2), ... where m is the largest k of any input id of the form X#k (0 if none):
#  - no input id equals one: an input id "X#j" has j <= m < the new suffix (as numbers; a new
#    suffix has no leading zero);
#  - no two new ids are equal: "Y#a" == "X#b" with a, b digits only means Y == X (the last
#    '#' is at the same place), and the copies of one X get distinct suffixes.
# m comes from a per-key max (a combiner: no id's group is ever held whole), so this costs one
# small record per id ending in "#<digits>" and one join over the duplicated ids only.
_LAST_SUFFIX = re.compile(r"#([0-9]+)\Z")
_EXTRA = "extra_copies"
_SUFFIXED = "suffixed_ids"


def split_suffix(doc_id: str) -> tuple[str, tuple[int, str]] | None:
    """("X", k) for an id "X#k" (k ASCII digits), else None. k is kept as (number of digits,
    digits) without leading zeros: ordered like the number, and no int() of a hostile
    thousands-of-digits suffix (Python refuses to parse those)."""
    m = _LAST_SUFFIX.search(doc_id)
    if m is None:
        return None
    digits = m.group(1).lstrip("0")
    return doc_id[: m.start()], (len(digits), digits)


def _suffixes_above(largest: tuple[int, str] | None, count: int) -> list[str]:
    """`count` decimal suffixes, each larger than the number `largest` (None: 0)."""
    length, digits = largest or (0, "")
    if length <= 18:
        base = int(digits or "0")
        return [str(base + i) for i in range(1, count + 1)]
    # 10**length + i, written without int(): above any number of `length` digits
    return ["1" + str(i).zfill(length) for i in range(1, count + 1)]


class _SplitById(beam.DoFn):
    """(id, docs) -> the first doc by `_order`, which keeps the id; tagged `extra_copies`,
    (id, its later copies in `_order`) when there are any; tagged `suffixed_ids`, (X, k) when
    the id is "X#k"."""

    def process(self, item):
        doc_id, docs = item
        docs = sorted(docs, key=lambda d: d["_order"])
        yield docs[0]
        if len(docs) > 1:
            yield beam.pvalue.TaggedOutput(_EXTRA, (doc_id, docs[1:]))
        suffixed = split_suffix(doc_id)
        if suffixed is not None:
            yield beam.pvalue.TaggedOutput(_SUFFIXED, suffixed)


def _renamed(item):
    """(X, {"extra": [later copies of X], "max_k": [largest k of the ids X#k]}) -> the later
    copies renamed X#(m+1), X#(m+2), ... (nothing for an X without copies)."""
    doc_id, grouped = item
    extras = list(grouped["extra"])
    if not extras:
        return
    (copies,) = extras  # one group per id upstream
    largest = max(grouped["max_k"], default=None)
    for doc, suffix in zip(copies, _suffixes_above(largest, len(copies))):
        counters.inc(counters.RENAMED_IDS)
        yield {**doc, "id": f"{doc_id}#{suffix}"}


def read_files(pbegin, files, config: IngestConfig, stash=None, cache_keys: bool = False):
    """The input files (or pieces), spread over workers, read by `ReadRecords`: a tagged
    output with the documents ("documents") and dead letters (DEAD)."""
    runtime = runtime_options(pbegin.pipeline)
    read = ReadRecords(config.id_field, config.text_field, config.max_text_bytes, config.max_record_bytes,
                       config.dead_letter_max_chars, runtime.curate_progress_dir if runtime else None,
                       stash=stash, cache_keys=cache_keys)
    return (
        pbegin
        | "ListFiles" >> beam.Create(files)
        | "SpreadFiles" >> beam.Reshuffle()
        | "ReadRecords" >> beam.ParDo(read).with_outputs(DEAD, main="documents")
    )


class IngestAndValidate(beam.PTransform):
    """InputFiles -> {"documents": ..., "dead_letter": ...} with unique ids.

    Records sharing an id: the first by `_order` keeps it, the later ones become `id#k` with k
    above every `id#j` in the input, so a renamed id never equals an input id nor another
    renamed one (ids `dup`, `dup`, `dup#1` give `dup`, `dup#2`, `dup#1`; see `_renamed`).

    A document is {id, text, source, _order}: `_order` = (source, shard, position), for
    deterministic tie-breaking; it is never written.
    """

    reads = ()
    adds = ("id", "text", "source", "_order")

    def __init__(self, files: list[InputFile], config: IngestConfig = IngestConfig(), *,
                 stash=None, cache_keys: bool = False):
        super().__init__()
        self.files = list(files)
        self.config = config
        # with a stash, documents leave as compact records (pipelines.stash): the text is on
        # disk, `_order` is the document's locator and `text_hash` is already there
        self.stash, self.cache_keys = stash, cache_keys
        if stash is not None:
            self.adds = ("id", "_order", "text_hash")

    def expand(self, pbegin):
        parsed = read_files(pbegin, self.files, self.config, self.stash, self.cache_keys)
        by_id = (
            parsed.documents
            | "KeyById" >> beam.Map(lambda d: (d["id"], d))
            | "GroupById" >> beam.GroupByKey()
            | "SplitById" >> beam.ParDo(_SplitById()).with_outputs(_EXTRA, _SUFFIXED, main="first")
        )
        max_k = by_id[_SUFFIXED] | "LargestSuffix" >> beam.CombinePerKey(max)
        renamed = (
            {"extra": by_id[_EXTRA], "max_k": max_k}
            | "JoinLargestSuffix" >> beam.CoGroupByKey()
            | "RenameCopies" >> beam.FlatMap(_renamed)
        )
        documents = (by_id.first, renamed) | "UniqueIds" >> beam.Flatten()
        return {"documents": documents, "dead_letter": parsed[DEAD]}

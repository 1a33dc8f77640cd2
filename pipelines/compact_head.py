"""The head of the compact pipeline: input files -> unique ids -> exact dedup -> documents
grouped by stash chunk, with no per-document element in any shuffle.

Why: the local FnApiRunner holds every grouped value of a shuffle as a decoded Python object
in its main process. `IngestAndValidate(stash=...)` + `ExactDedup` shuffle one dict per
document three times (by id, by text hash, by chunk: ~520 bytes each, deep size); here every
shuffle carries zlib-pickled blobs of many record tuples (`stash_stages.pack`): ~25 bytes per
document (measured on the shared corpora, benchmarks/bench_compact_head.py).

    ReadRecords (stash mode, as IngestAndValidate)       dead letters -> "dead_letter"
      -> PackByIdRoot     per bundle, records packed by partition of the id's *root*
      -> GroupByIdRoot    (partition, blob)
      -> UniqueIds        per partition: the first copy of an id (by locator) keeps it,
                          later copies become X#(m+1), X#(m+2), ... (`ingest._renamed`'s rule)
      -> GroupByHash      (partition of text_hash, blob)           [exact dedup on]
      -> KeepSmallestId   per partition: smallest id per text hash survives (dedup rows
                          as `ExactDedup`'s)                        -> "dedup"
      -> "chunks"         (stash chunk key, blob of member tuples)

The id's root is the id with every trailing "#<digits>" removed ("a#3#2" -> "a"). An id X,
its copies and every input id X#k share a root, so the renaming rule (which needs the largest
k of the ids X#k) is decided inside one partition, for suffixed X too.

A member tuple is (row_in_chunk, id, locator, text_hash, key): key is the signature-cache key
(`near_dedup.text_key` of the normalised text) when `cache_keys`, else None. A chunk's members
may be spread over several blobs (one per upstream partition and flush); the consumer groups
by chunk key and concatenates, and sorts by row: which blob holds which member depends on the
bundling, the multiset of members per chunk does not.

Per-worker memory, N documents, P partitions (default 256), F = FLUSH_RECORDS:
  PackByIdRoot     F buffered record tuples (~230 bytes each) + one input file streamed: flat
  UniqueIds        one partition: its blobs (~25 bytes per record, as the shuffle hands them)
                   read twice, never held unpacked; its distinct ids with a locator (~140 bytes
                   each); for ids with copies, their locators and new suffixes (~150 bytes per
                   copy); F buffered output tuples
  KeepSmallestId   one partition: its blobs; its distinct text hashes with their smallest id
                   (~220 bytes each; a text with 1M identical copies is one entry); F tuples
So ~0.25 KB x N/P: ~1 MB at 1.1M documents, ~100 MB at 100M (raise P beyond). Skew: all
ids sharing one root (a, a#1, a#2, ...) are one partition; 1M copies of one id cost ~150 MB.
(Measured with tracemalloc on 200k-record partitions; benchmarks/bench_compact_head.py
measures the whole head against IngestAndValidate + ExactDedup.)
"""
from __future__ import annotations

import typing
import zlib

import apache_beam as beam
import numpy as np
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from curate.pipelines import counters
from curate.pipelines import stash as ST
from curate.pipelines.ingest import DEAD, _suffixes_above, read_files, split_suffix
from curate.pipelines.stage_configs import IngestConfig
from curate.pipelines.packing import pack, spill, unpack

PARTITIONS = 256
# records buffered per DoFn instance before every buffered partition is packed and emitted:
# bounds the buffer, and makes blobs large enough to compress (F / P ~ 128 records each)
FLUSH_RECORDS = 32768
REMOVED = "removed"
Blob = typing.Tuple[int, bytes]

_DIGITS = frozenset("0123456789")  # ASCII only, as ingest's `#([0-9]+)\Z`


def root_id(doc_id: str) -> str:
    """The id without every trailing "#<digits>": root("a#3#2") == root("a#3") == "a".

    Equal to applying `ingest.split_suffix` until it gives None, in time linear in the
    suffixes' length (a regex per step would be quadratic on a hostile "x#1#1#1...")."""
    end = len(doc_id)
    while True:
        j = end
        while j > 0 and doc_id[j - 1] in _DIGITS:
            j -= 1
        if j == end or j == 0 or doc_id[j - 1] != "#":
            return doc_id[:end]
        end = j - 1


def id_partition(doc_id: str, partitions: int) -> int:
    # crc32, not hash(): Python's str hash differs per worker process
    return zlib.crc32(root_id(doc_id).encode("utf-8", "surrogatepass")) % partitions


def hash_partition(digest: bytes, partitions: int) -> int:
    return int.from_bytes(digest[:4], "big") % partitions


class _Packer:
    """Record tuples buffered per key, packed into one blob per key at most every
    `flush_records` records (and at `drain`); with `spill_folder`, a flush's blobs go to one
    file there and references to them go on (`packing.spill`)."""

    def __init__(self, flush_records: int, spill_folder: str | None = None):
        self.flush_records, self.spill_folder = flush_records, spill_folder
        self.buffers: dict[int, list] = {}
        self.count = 0

    def add(self, key: int, record: tuple) -> list:
        self.buffers.setdefault(key, []).append(record)
        self.count += 1
        return self.drain() if self.count >= self.flush_records else []

    def drain(self) -> list:
        out = [(key, pack(self.buffers[key])) for key in sorted(self.buffers)]
        self.buffers, self.count = {}, 0
        return spill(self.spill_folder, out)


class _PackByIdRoot(beam.DoFn):
    """compact records {id, _order, text_hash[, _key]} -> (id-root partition, blob of
    (id, locator, 16-byte text hash, key)), packed across the records of a bundle."""

    def __init__(self, partitions: int, flush_records: int, spill_folder: str | None = None):
        self.partitions, self.flush_records, self.spill_folder = partitions, flush_records, spill_folder

    def start_bundle(self):
        self.packer = _Packer(self.flush_records, self.spill_folder)

    def process(self, doc):
        record = (doc["id"], doc["_order"], bytes.fromhex(doc["text_hash"]), doc.get("_key"))
        yield from self.packer.add(id_partition(doc["id"], self.partitions), record)

    def finish_bundle(self):
        for item in self.packer.drain():
            yield WindowedValue(item, MIN_TIMESTAMP, [GlobalWindow()])


def _member(doc_id: str, loc: int, digest: bytes, key):
    return ST.chunk_key(loc), (ST.row_in_chunk(loc), doc_id, loc, digest.hex(), key)


class _UniqueIds(beam.DoFn):
    """(partition, blobs) -> the partition's records with unique ids, packed for the next
    step: by text-hash partition (exact dedup on) or as chunk members (off).

    Same rule as `ingest._SplitById` + `_renamed`: the first copy of X by locator keeps X,
    the later ones in locator order become X#(m+1), X#(m+2), ... with m the largest k of the
    input ids X#k."""

    def __init__(self, partitions: int, flush_records: int, exact_dedup: bool, spill_folder: str | None = None):
        self.partitions, self.flush_records, self.exact_dedup = partitions, flush_records, exact_dedup
        self.spill_folder = spill_folder

    def process(self, item):
        _, blobs = item
        seen: dict[str, int] = {}  # id -> locator of the first of its records read
        copies: dict[str, list[int]] = {}  # id -> locators of all its records, ids seen twice+
        for blob in blobs:
            for doc_id, loc, _digest, _key in unpack(blob):
                first = seen.get(doc_id)
                if first is None:
                    seen[doc_id] = loc
                    continue
                locs = copies.get(doc_id)
                if locs is None:
                    copies[doc_id] = [first, loc]
                else:
                    locs.append(loc)
        renames = self._renames(seen, copies) if copies else {}
        del seen, copies
        packer = _Packer(self.flush_records, self.spill_folder)
        renamed = 0
        for blob in blobs:
            for doc_id, loc, digest, key in unpack(blob):
                plan = renames.get(doc_id)
                if plan is not None:
                    order, suffixes = plan
                    rank = int(np.searchsorted(order, loc))
                    if rank:
                        renamed += 1
                        doc_id = f"{doc_id}#{suffixes[rank - 1]}"
                if self.exact_dedup:
                    out = hash_partition(digest, self.partitions), (doc_id, loc, digest, key)
                else:
                    out = _member(doc_id, loc, digest, key)
                yield from packer.add(*out)
        yield from packer.drain()
        if renamed:
            counters.inc(counters.RENAMED_IDS, renamed)

    @staticmethod
    def _renames(seen, copies):
        """id -> (its records' locators sorted, the suffixes of its 2nd, 3rd, ... copy)."""
        largest: dict[str, tuple[int, str]] = {}
        for doc_id in seen:
            suffixed = split_suffix(doc_id)
            if suffixed is not None and suffixed[0] in copies:
                base, k = suffixed
                if base not in largest or k > largest[base]:
                    largest[base] = k
        return {doc_id: (order, _suffixes_above(largest.get(doc_id), len(order) - 1))
                for doc_id, order in ((d, np.sort(np.asarray(locs, dtype=np.int64)))
                                      for d, locs in copies.items())}


class _KeepSmallestId(beam.DoFn):
    """(partition, blobs) -> chunk members of the exact-dedup survivors (smallest id per text
    hash), and tagged `removed`, one dedup row per removed document (as `ExactDedup`'s)."""

    def __init__(self, flush_records: int, spill_folder: str | None = None):
        self.flush_records, self.spill_folder = flush_records, spill_folder

    def process(self, item):
        _, blobs = item
        kept: dict[bytes, str] = {}
        for blob in blobs:
            for doc_id, _loc, digest, _key in unpack(blob):
                best = kept.get(digest)
                if best is None or doc_id < best:
                    kept[digest] = doc_id
        packer = _Packer(self.flush_records, self.spill_folder)
        removed = 0
        for blob in blobs:
            for doc_id, loc, digest, key in unpack(blob):
                kept_id = kept[digest]
                if doc_id == kept_id:  # ids are unique here: one survivor per hash
                    yield from packer.add(*_member(doc_id, loc, digest, key))
                else:
                    removed += 1
                    yield beam.pvalue.TaggedOutput(REMOVED, {
                        "removed_id": doc_id, "kept_id": kept_id, "method": "exact", "similarity": 1.0})
        yield from packer.drain()
        if removed:
            counters.inc(counters.REMOVED_PREFIX + "exact", removed)


class CompactHead(beam.PTransform):
    """pbegin -> {"chunks": (chunk key, blob), "dead_letter": dead letters, "dedup": exact
    dedup rows}: what `IngestAndValidate(stash=...)` + `ExactDedup` decide (same ids,
    renamings, survivors, dedup rows and counters), with only packed blobs in its shuffles.

    `stash_stages.unpack(blob)` is a list of (row_in_chunk, id, locator, text_hash, key); a
    chunk's members may come in several blobs. exact_dedup False: every unique-id document,
    and "dedup" is empty.
    """

    reads = ()
    adds = ("id", "_order", "text_hash")

    def __init__(self, files, ingest_config: IngestConfig, stash: ST.Stash, exact_dedup: bool,
                 cache_keys: bool, *, partitions: int = PARTITIONS, flush_records: int = FLUSH_RECORDS):
        super().__init__()
        if partitions < 1 or flush_records < 1:
            raise ValueError(f"partitions ({partitions}) and flush_records ({flush_records}) must be >= 1")
        self.files = list(files)
        self.ingest_config, self.stash = ingest_config, stash
        self.exact_dedup, self.cache_keys = exact_dedup, cache_keys
        self.partitions, self.flush_records = partitions, flush_records

    def expand(self, pbegin):
        parsed = read_files(pbegin, self.files, self.ingest_config, self.stash, self.cache_keys)
        spills = self.stash.spill_folder
        unique = (
            parsed.documents
            | "PackByIdRoot" >> beam.ParDo(_PackByIdRoot(self.partitions, self.flush_records, spills))
            .with_output_types(Blob)
            | "GroupByIdRoot" >> beam.GroupByKey()
            | "UniqueIds" >> beam.ParDo(_UniqueIds(self.partitions, self.flush_records, self.exact_dedup, spills))
            .with_output_types(Blob)
        )
        if not self.exact_dedup:
            return {"chunks": unique, "dead_letter": parsed[DEAD],
                    "dedup": pbegin | "NoExactDedup" >> beam.Create([])}
        deduped = (
            unique
            | "GroupByHash" >> beam.GroupByKey()
            | "KeepSmallestId" >> beam.ParDo(_KeepSmallestId(self.flush_records, spills))
            .with_outputs(REMOVED, main="chunks")
        )
        return {"chunks": deduped.chunks, "dead_letter": parsed[DEAD], "dedup": deduped[REMOVED]}

"""The stages that read the run's intermediate files (pipelines.stash) one chunk at a time.

`SignAndScore`: exact-dedup survivors (compact records) -> grouped by chunk -> the chunk's
texts read back -> MinHash signatures and LSH band keys (near dedup's input, computed from
the normalised text exactly as `NearDedup` does) and the heuristic score of every document;
the full output row (every written column but `pool`), the verification payloads and the band
entries go to the chunk's files; one chunk key goes on.

`NearDedupOnStash`: chunk keys -> band partitions read from the chunks' band files ->
buckets, candidate pairs, verification per chunk pair, connected components -> removed rows
packed per chunk, and dedup rows.

`KeepPoolAndRows`: chunk keys + removed rows -> the keep/drop rule, pool cuts and the kept
rows of each chunk's scored file with their pool: the documents `WriteRun` writes.

What a worker holds is one chunk (stash.CHUNK_ROWS documents) or one partition at a time;
what a shuffle carries after signing is a chunk key per chunk and packed blobs sized by the
duplicates found (see docs/architecture.md, per-stage memory).
"""
from __future__ import annotations

import hashlib
import struct
import zlib

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from curate.pipelines import counters
from curate.pipelines import fsutil
from curate.pipelines.packing import pack, spill, unpack
from curate.pipelines import stash as ST
from curate.pipelines.near_dedup import (BANDS, EXACT_PAYLOAD, NEW_SIGNATURES, SIGNATURE, SIGNATURES,
                                         SignatureLookup, text_key, warn_old_cache_formats)
from curate.scorers.minhash import jaccard_estimate, jaccard_of_hashes
from curate.pipelines.progress import ProgressWriter
from curate.pipelines.runtime import runtime_options
from curate.pipelines.packed_components import PackedConnectedComponents
from curate.pipelines.pooling import AssignPools, QuantileCutsFn
from curate.pipelines.scoring import FILTERED, KeepDropRule, Score, _Score, drop_reason
from curate.pools import schema as S
from curate.pools.bucketing import rank_key, score_cuts

ROW = "_row"  # the row's number within its chunk, in the scored files
# LSH band entries travel packed, one blob per (chunk, partition of the band-key space): a
# shuffle then holds ~35 bytes per entry instead of a Python tuple per entry (16 per document)
BAND_PARTITIONS = 256
MEMBER_PARTITIONS = 256  # where equal bucket member sets meet (see _bucket_members)
PAIR_PARTITIONS = 256  # where candidate pairs meet, several pairs of chunks each (see pair_partition)




def scored_schema(feature_names):
    import pyarrow as pa

    base = S.document_schema(feature_names)
    fields = [f for f in base if f.name != "pool"]
    return pa.schema([pa.field(ROW, pa.int64()), *fields])


class _SignAndScoreChunk(beam.DoFn):
    """(chunk key, member tuples) -> the chunk's scored, payload and band files; the chunk key.
    With `cache_folder`, the chunk's signatures are looked up in the signature cache in one
    batch (keys: `near_dedup.text_key` of each normalised text) and the ones computed here are
    written to it as new files, before the chunk key goes on."""

    def __init__(self, stash: ST.Stash, signer, heuristics_config, feature_names, progress_dir=None,
                 cache_folder: str | None = None):
        self.stash, self.signer = stash, signer
        self.heuristics_config, self.feature_names = heuristics_config, list(feature_names)
        self.progress_dir, self.cache_folder = progress_dir, cache_folder
        self.progress = ProgressWriter(None, "minhash")  # replaced in setup()

    def setup(self):
        self.scorer = _Score(self.heuristics_config)
        self.scorer.setup()
        self.schema = scored_schema(self.feature_names)
        self.progress = ProgressWriter(self.progress_dir, "minhash")
        self.lookup = None
        if self.cache_folder and self.signer is not None:
            self.lookup = SignatureLookup(self.cache_folder, self.signer.hasher)

    def finish_bundle(self):
        self.progress.flush()

    def process(self, item):
        import pyarrow as pa

        from curate.scorers.text import normalise_text

        key, members = item
        # (row, id, locator, text_hash, _): rows in input order
        members = sorted(members, key=lambda m: m[0])
        texts = ST.read_table(self.stash.raw_path(key), ["text"]).column("text").to_pylist()
        norms = [normalise_text(texts[m[0]]) for m in members]
        cache_keys = [text_key(norm) for norm in norms] if self.lookup else [None] * len(members)
        cached = self.lookup.get(cache_keys) if self.lookup else [None] * len(members)
        new_signatures = []
        source_index = key >> ST._FILE_SHIFT
        source = self.stash.sources[source_index]
        columns = self.schema.names
        rows = []
        payload_rows, payloads = [], []
        bands: dict[int, tuple[list, list, list]] = {}
        for (row, doc_id, loc, hashed, _), norm, cache_key, sig in zip(members, norms, cache_keys, cached):
            text = texts[row]
            if self.signer is not None:
                for out in self.signer.outputs(doc_id, norm, sig, cache_key):
                    if out.tag == SIGNATURES:
                        payload_rows.append(row)
                        payloads.append(out.value[1])
                    elif out.tag == BANDS:
                        band_key = out.value[0]
                        keys, ids, locs = bands.setdefault(band_partition(band_key), ([], [], []))
                        keys.append(band_key)
                        ids.append(doc_id)
                        locs.append(loc)
                    elif out.tag == NEW_SIGNATURES:
                        new_signatures.append(out.value)
            [scored] = self.scorer.process({"id": doc_id, "text": text, "source": source, "_norm": norm})
            scored[ROW], scored["text_hash"] = row, hashed
            rows.append(scored)
            self.progress.add(1)
        table = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows], schema=self.schema)
        ST.write_table(self.stash.scored_path(key), table)
        if self.signer is not None:
            ST.write_table(self.stash.payload_path(key), pa.table({
                ROW: pa.array(payload_rows, pa.int64()), "payload": pa.array(payloads, pa.binary())}))
            write_bands(bands_path(self.stash, key), bands)
        if self.lookup is not None:
            self.lookup.put(new_signatures)
        yield key
        del texts, norms, rows, table, payloads, bands, cached, new_signatures


class SignAndScore(beam.PTransform):
    """compact records -> {"chunks": one chunk key per chunk}.

    Per chunk, the scored rows (every written column but `pool`), the verification payloads
    (shingle-hash sets or signatures) and the LSH band entries (`bands/`, one Arrow IPC stream per
    partition of the band-key space) are written to the stash; nothing per document goes on.
    With a cache folder (the run's `--cache-dir`), each chunk looks its signatures up in the
    signature cache and adds the ones it computed (`_SignAndScoreChunk`): the shuffle is the
    same packed blobs per chunk as without a cache.

    near: the run's NearDedup (its Signer settings), or None when near dedup is off.
    """

    reads = ("id", "_order", "text_hash")

    def __init__(self, stash: ST.Stash, score: Score, near=None, caching: bool = False):
        super().__init__()
        self.stash, self.score, self.near, self.caching = stash, score, near, caching
        self.adds = ("score", "failed_rules", "source")  # in the chunks' scored files

    def expand(self, chunk_blobs):
        """chunk_blobs: (chunk key, packed member tuples) from `compact_head.CompactHead`."""
        runtime = runtime_options(chunk_blobs.pipeline)
        cache_dir = runtime.curate_cache_dir if runtime else None
        progress_dir = runtime.curate_progress_dir if runtime else None
        caching = bool(self.near is not None and cache_dir)
        signer = self.near.signer(caching) if self.near is not None else None
        folder = None
        if caching:
            warn_old_cache_formats(cache_dir)
            folder = self.near.cache_folder(cache_dir)
        fn = _SignAndScoreChunk(self.stash, signer, self.score.heuristics_config,
                                [c[2:] for c in self.score.adds if c.startswith("f_")], progress_dir, folder)
        out = (
            chunk_blobs
            | "GroupChunks" >> beam.GroupByKey()
            | "Unpack" >> beam.MapTuple(lambda key, blobs: (key, unpacked(blobs)))
            | "SignAndScoreChunk" >> beam.ParDo(fn)
        )
        return {"chunks": out}


class PackByKey(beam.DoFn):
    """(key, value) -> (key, packed list of values), one blob per key per bundle (or per
    `limit` values): what a shuffle then holds is bytes, ~10x less than a Python object per
    value in the local runner's grouping buffers; with `spill_folder`, references to the blobs
    written there (`packing.spill`)."""

    def __init__(self, limit: int = 50_000, spill_folder: str | None = None):
        self.limit, self.spill_folder = limit, spill_folder

    def start_bundle(self):
        self.buffers: dict = {}

    def process(self, item):
        key, value = item
        buffer = self.buffers.setdefault(key, [])
        buffer.append(value)
        if len(buffer) >= self.limit:
            del self.buffers[key]
            yield from spill(self.spill_folder, [(key, pack(buffer))])

    def finish_bundle(self):
        from apache_beam.transforms.window import GlobalWindow
        from apache_beam.utils.windowed_value import WindowedValue

        items = spill(self.spill_folder, [(key, pack(self.buffers[key])) for key in sorted(self.buffers)])
        self.buffers = {}
        for item in items:
            yield WindowedValue(item, GlobalWindow().max_timestamp(), [GlobalWindow()])


def unpacked(blobs) -> list:
    return [value for blob in blobs for value in unpack(blob)]


# ------------------------------------------------------------------ after dedup: keep/drop, pools, rows

class _ChunkSurvivors(beam.DoFn):
    """(chunk, {"chunk": [key], "removed": [packed rows]}) -> the rank key of every kept
    document (the pool cuts' input) and, tagged FILTERED, a row per dropped one. The only
    place the terminal counters of near dedup's removals, the filter rule and `kept` are
    incremented (the pool-writing pass reads the same chunk again and counts nothing)."""

    def __init__(self, stash: ST.Stash, drop_failed, min_score):
        self.stash, self.drop_failed, self.min_score = stash, list(drop_failed), min_score

    def process(self, item):
        key, grouped = item
        if not grouped["chunk"]:
            return  # removed rows without their chunk cannot happen: chunks list every signed one
        removed = set(unpacked(grouped["removed"]))
        table = ST.read_table(self.stash.scored_path(key), [ROW, "id", "source", "score", "failed_rules"])
        for row, doc_id, source, score, failed in zip(*(table.column(c).to_pylist() for c in table.column_names)):
            if row in removed:
                counters.inc(counters.REMOVED_PREFIX + "near")
                continue
            doc = {"id": doc_id, "score": score, "failed_rules": failed}
            reason = drop_reason(doc, self.drop_failed, self.min_score)
            if reason is None:
                counters.inc(counters.KEPT)
                yield rank_key(score, doc_id)
            else:
                counters.inc(counters.FILTERED_PREFIX + reason)
                yield beam.pvalue.TaggedOutput(FILTERED, {"id": doc_id, "source": source, "reason": reason,
                                                          "score": score})
        del table


class _ChunkPools(beam.DoFn):
    """(chunk, {"chunk", "removed"}), cuts -> the chunk's kept documents, every written column
    with its pool: the rows `WriteRun` writes, read back from the chunk's scored file."""

    def __init__(self, stash: ST.Stash, drop_failed, min_score):
        self.stash, self.drop_failed, self.min_score = stash, list(drop_failed), min_score

    def process(self, item, cuts_and_mode):
        key, grouped = item
        if not grouped["chunk"]:
            return
        cuts = cuts_and_mode[0]
        removed = set(unpacked(grouped["removed"]))
        table = ST.read_table(self.stash.scored_path(key))
        for record in table.to_pylist():
            if record.pop(ROW) in removed or drop_reason(record, self.drop_failed, self.min_score) is not None:
                continue
            record["pool"] = int(cuts.assign(record["score"], record["id"]))
            yield record
        del table


class KeepPoolAndRows(beam.PTransform):
    """Per chunk, after dedup: the keep/drop rule, pool cuts and pool assignment on the
    chunks' scored files, minus the rows dedup removed -> {"documents": written rows with
    `pool`, "filtered": rows, "cuts": one (PoolCuts, mode)}.

    Two passes over each chunk (survivors' rank keys for the cuts, then the rows with their
    pool), so what crosses a shuffle is one chunk key per chunk, packed removed rows and the
    cuts combine's accumulators: never a record per kept document.
    `removed`: (chunk key, packed rows in that chunk) from dedup (may be empty).
    """

    def __init__(self, stash: ST.Stash, score: Score, rule: KeepDropRule, pools: AssignPools, removed):
        super().__init__()
        self.stash, self.rule, self.pools, self.removed = stash, rule, pools, removed
        self.reads = ("id", "score", "failed_rules", "source")
        self.adds = tuple(n for n in scored_schema(
            [c[2:] for c in score.adds if c.startswith("f_")]).names if n != ROW) + ("pool",)

    def expand(self, chunks):
        rule, pools = self.rule, self.pools
        grouped = ({"chunk": chunks | "KeyChunks" >> beam.Map(lambda k: (k, k)), "removed": self.removed}
                   | "RemovedByChunk" >> beam.CoGroupByKey())
        survivors = grouped | "Survivors" >> beam.ParDo(
            _ChunkSurvivors(self.stash, rule.drop_failed, rule.min_score)).with_outputs(FILTERED, main="rank_keys")
        if pools.cut_points:
            cuts = chunks.pipeline | "ExplicitCuts" >> beam.Create([(score_cuts(pools.cut_points), "explicit")])
        else:
            cuts = survivors.rank_keys | "QuantileCuts" >> beam.CombineGlobally(
                QuantileCutsFn(pools.num_pools, pools.exact_max_docs))
        documents = grouped | "RowsWithPools" >> beam.ParDo(
            _ChunkPools(self.stash, rule.drop_failed, rule.min_score), beam.pvalue.AsSingleton(cuts))
        return {"documents": documents, "filtered": survivors[FILTERED], "cuts": cuts}


# ------------------------------------------------------------------ LSH band entries on disk

def band_partition(band_key: bytes) -> int:
    return int.from_bytes(band_key[-4:], "big") % BAND_PARTITIONS


def components_dir(stash: ST.Stash) -> str:
    return FileSystems.join(stash.root, "components")


def bands_path(stash: ST.Stash, key: int) -> str:
    return FileSystems.join(stash.root, "bands", ST._chunk_name(key)[: -len(".parquet")] + ".bands")


_BANDS_SCHEMA = None


def _bands_schema():
    import pyarrow as pa

    global _BANDS_SCHEMA  # noqa: PLW0603 - a constant built lazily (pyarrow stays a lazy import)
    if _BANDS_SCHEMA is None:
        _BANDS_SCHEMA = pa.schema([("key", pa.binary()), ("id", pa.binary()), ("loc", pa.int64())])
    return _BANDS_SCHEMA


def write_bands(path: str, bands: dict) -> None:
    """{partition: (band keys, ids, locators)} -> one file: P, then P + 1 byte offsets (uint64,
    little-endian), then per partition one Arrow IPC stream of one record batch (ids as UTF-8
    bytes with surrogates passed: any id JSON can carry). A reader seeks to its partition and
    hands Arrow bytes, never a Python file object (Arrow's threads calling back into one were
    the suspects of segfaults in test processes)."""
    import pyarrow as pa

    schema = _bands_schema()
    parts = []
    for partition in range(BAND_PARTITIONS):
        keys, ids, locs = bands.get(partition, ((), (), ()))
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, schema) as writer:
            writer.write_batch(pa.record_batch([
                pa.array(keys, pa.binary()),
                pa.array([i.encode("utf-8", "surrogatepass") for i in ids], pa.binary()),
                pa.array(locs, pa.int64())], schema=schema))
        parts.append(sink.getvalue().to_pybytes())
    offsets = [8 * (len(parts) + 2)]
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    header = struct.pack(f"<{len(offsets) + 1}Q", len(parts), *offsets)
    fsutil.write_bytes(path, header + b"".join(parts))


def read_band_partition(path: str, partition: int) -> tuple[list, list, list]:
    """One partition's (band keys, ids, locators) of a chunk: two seeks, not the whole file."""
    import pyarrow as pa
    from apache_beam.io.filesystem import CompressionTypes

    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        (count,) = struct.unpack("<Q", fh.read(8))
        if not 0 <= partition < count:
            raise ValueError(f"{path}: no band partition {partition} (the file has {count})")
        fh.seek(8 * (partition + 1))
        start, stop = struct.unpack("<2Q", fh.read(16))
        fh.seek(start)
        data = fh.read(stop - start)
    batch = pa.ipc.open_stream(pa.py_buffer(data)).read_next_batch()
    return (batch.column(0).to_pylist(),
            [i.decode("utf-8", "surrogatepass") for i in batch.column(1).to_pylist()],
            batch.column(2).to_pylist())


# ------------------------------------------------------------------ near dedup on the stash

def _pair_count(n: int, max_all_pairs: int) -> int:
    """How many pairs `near_dedup._candidate_pairs` makes of a bucket of n ids."""
    if n < 2:
        return 0
    return n * (n - 1) // 2 if n <= max_all_pairs else 2 * n - 3


def _bucket_members(partition: int, chunk_keys: list, stash: ST.Stash, max_all_pairs: int):
    """A partition of the band-key space, read from every chunk's band file -> (member-set
    partition, packed member sets).

    A bucket's pairs depend only on its members, and near-identical documents share most of
    their 16 bands: the same member set comes out of up to 16 buckets (16 copies: 16 x 120
    pairs for 120 distinct ones). So each bucket of >= 2 members goes on as its sorted
    ((id, locator), ...) set, sent by a hash of the ids to where equal sets meet; the candidate
    pairs counter still counts every bucket's pairs, as NearDedup does. A worker holds one
    partition: ~16 N / BAND_PARTITIONS band entries for N signed documents."""
    buckets: dict[bytes, dict[str, int]] = {}
    for chunk in chunk_keys:
        keys, ids, locs = read_band_partition(bands_path(stash, chunk), partition)
        for key, doc_id, loc in zip(keys, ids, locs):
            buckets.setdefault(key, {})[doc_id] = loc
    out: dict[int, list] = {}
    pairs = 0
    for key in sorted(buckets):
        members = buckets[key]
        if len(members) < 2:
            continue
        pairs += _pair_count(len(members), max_all_pairs)
        ordered = tuple(sorted(members.items()))
        digest = hashlib.blake2b("\0".join(i for i, _ in ordered).encode("utf-8", "surrogatepass"),
                                 digest_size=8).digest()
        out.setdefault(int.from_bytes(digest, "big") % MEMBER_PARTITIONS, []).append(ordered)
    if pairs:
        counters.inc(counters.NEAR_CANDIDATE_PAIRS, pairs)
    del buckets
    yield from spill(stash.spill_folder, [(m, pack(out[m])) for m in sorted(out)])


def _bucket_pairs(item, max_all_pairs: int, spill_folder: str | None = None):
    """(member-set partition, packed member sets) -> (pair partition, packed candidate pairs):
    the pairs of each distinct member set (`_candidate_pairs` on its ids, counted upstream);
    a pair is (locator_a, locator_b) with id_a < id_b, packed as an int64 array (~16 bytes a
    pair before compression; the ids, ~4x that, are read back where the pair is verified),
    sent to the partition of the pair of chunks holding the two payloads."""
    _, blobs = item
    distinct = dict.fromkeys(m for blob in blobs for m in unpack(blob))
    by_partition: dict[int, list] = {}
    for ordered in distinct:
        members = dict(ordered)
        ids = [i for i, _ in ordered]
        n = len(ids)
        if n <= max_all_pairs:
            pairs = ((ids[i], ids[j]) for i in range(n) for j in range(i + 1, n))
        else:  # as near_dedup._candidate_pairs: star from the smallest id, chain over the rest
            pairs = [(ids[0], x) for x in ids[1:]] + [(ids[i], ids[i + 1]) for i in range(1, n - 1)]
        for a, b in pairs:
            la, lb = members[a], members[b]
            by_partition.setdefault(pair_partition(ST.chunk_key(la), ST.chunk_key(lb)), []).append((la, lb))
    del distinct
    yield from spill(spill_folder, [(part, pack(np.asarray(by_partition[part], dtype=np.int64).reshape(-1, 2)))
                                    for part in sorted(by_partition)])


def pair_partition(chunk_a: int, chunk_b: int) -> int:
    """Where the pairs of one pair of chunks meet: one of PAIR_PARTITIONS groups, so a shuffle
    holds a bounded number of blobs (or spill references) however many chunk pairs there are
    (~20k at 1.1M documents; one reference per chunk pair and upstream partition was ~0.1 GB
    in the local runner's process)."""
    return zlib.crc32(struct.pack("<qq", chunk_a, chunk_b)) % PAIR_PARTITIONS


class _ChunkPairJaccard(beam.DoFn):
    """(pair partition, packed pairs) -> ((id_a, loc_a), (id_b, loc_b), Jaccard) per distinct pair,
    with the payloads read from the two chunks' payload files, one pair of chunks at a time
    (sorted; a chunk's payloads are kept while consecutive chunk pairs share it). Pairs are
    (id_a, loc_a, id_b, loc_b) tuples, or with `ids_from_stash` (loc_a, loc_b) int64 arrays whose
    ids are read from the two chunks' scored files. The key is not used: each pair's chunks
    come from its locators."""

    def __init__(self, stash: ST.Stash, exact: bool, ids_from_stash: bool = False):
        self.stash, self.exact, self.ids_from_stash = stash, exact, ids_from_stash

    def _ids(self, key: int, rows: set) -> dict:
        table = ST.read_table(self.stash.scored_path(key), [ROW, "id"])
        return {r: i for r, i in zip(table.column(ROW).to_pylist(), table.column("id").to_pylist()) if r in rows}

    def _by_chunks(self, blobs) -> dict:
        """{(chunk a, chunk b): pairs} of the distinct pairs in the blobs."""
        groups: dict = {}
        if not self.ids_from_stash:
            for pair in dict.fromkeys(p for blob in blobs for p in unpack(blob)):  # distinct, first-seen order
                groups.setdefault((ST.chunk_key(pair[1]), ST.chunk_key(pair[3])), []).append(pair)
            return groups
        arrays = [unpack(blob) for blob in blobs]
        locs = np.unique(np.concatenate(arrays), axis=0) if arrays else np.empty((0, 2), np.int64)  # sorted
        del arrays
        for la, lb in locs.tolist():
            groups.setdefault((ST.chunk_key(la), ST.chunk_key(lb)), []).append((la, lb))
        return groups

    def _with_ids(self, key_a: int, key_b: int, locs: list) -> list:
        rows_a = {ST.row_in_chunk(la) for la, _ in locs}
        rows_b = {ST.row_in_chunk(lb) for _, lb in locs}
        if key_a == key_b:
            ids_a = ids_b = self._ids(key_a, rows_a | rows_b)
        else:
            ids_a, ids_b = self._ids(key_a, rows_a), self._ids(key_b, rows_b)
        return [(ids_a[ST.row_in_chunk(la)], la, ids_b[ST.row_in_chunk(lb)], lb) for la, lb in locs]

    def _payloads(self, key: int, rows: set) -> dict:
        """{row: payload} for the wanted rows only: Arrow picks them, so the chunk's other
        payloads never become Python objects."""
        import pyarrow as pa

        table = ST.read_table(self.stash.payload_path(key))
        stored = table.column(ROW).to_numpy()
        order = np.argsort(stored, kind="stable")
        ordered = stored[order]
        wanted = np.fromiter(sorted(rows), dtype=np.int64, count=len(rows))
        at = np.minimum(np.searchsorted(ordered, wanted), max(len(stored) - 1, 0))
        found = ordered[at] == wanted if len(stored) else np.zeros(len(wanted), bool)
        picked = table.column("payload").take(pa.array(order[at][found]))
        dtype = EXACT_PAYLOAD if self.exact else SIGNATURE
        return {int(r): np.frombuffer(p, dtype=dtype) for r, p in zip(wanted[found], picked.to_pylist())}

    def process(self, item):
        _, blobs = item
        groups = self._by_chunks(blobs)
        measure = jaccard_of_hashes if self.exact else jaccard_estimate
        held: tuple = (None, {})  # (chunk, its payloads) kept for the next chunk pair
        for key_a, key_b in sorted(groups):
            pairs = groups.pop((key_a, key_b))
            if self.ids_from_stash:
                pairs = self._with_ids(key_a, key_b, pairs)
            need_a = {ST.row_in_chunk(la) for _, la, _, _ in pairs}
            need_b = {ST.row_in_chunk(lb) for _, _, _, lb in pairs}
            if key_a == key_b:
                payload_a = payload_b = self._payloads(key_a, need_a | need_b)
                held = (None, {})
            else:
                if held[0] != key_a or not need_a <= held[1].keys():
                    held = (key_a, self._payloads(key_a, need_a))
                payload_a, payload_b = held[1], self._payloads(key_b, need_b)
            for a, la, b, lb in pairs:
                pa_ = payload_a.get(ST.row_in_chunk(la))
                pb_ = payload_b.get(ST.row_in_chunk(lb))
                if pa_ is None or pb_ is None:
                    continue
                yield (a, la), (b, lb), float(measure(pa_, pb_))
            del payload_a, payload_b, pairs


def node_key(doc_id: str, loc: int) -> bytes:
    """(id, locator) as one bytes object ordered as the ids are (ids are unique): the
    connected-components nodes, ~65 bytes in a shuffle instead of a ~160-byte tuple.
    Order-preserving: UTF-8 keeps code point order, NUL is escaped as 00 FF and the id ends
    with 00 00 (below any escaped or plain byte), then the 8-byte locator."""
    return doc_id.encode("utf-8", "surrogatepass").replace(b"\x00", b"\x00\xff") + b"\x00\x00" + loc.to_bytes(8, "big")


def node_parts(node: bytes) -> tuple[str, int]:
    return (node[:-10].replace(b"\x00\xff", b"\x00").decode("utf-8", "surrogatepass"),
            int.from_bytes(node[-8:], "big"))


def _verified(triple, threshold: float):
    a, b, sim = triple
    if sim >= threshold:
        counters.inc(counters.NEAR_VERIFIED_PAIRS)
        yield node_key(*a), node_key(*b)


def _removed_pair(node_label):
    """(removed node, survivor node) -> ((chunk of removed, chunk of survivor), the pair)."""
    (removed, lr), (kept, lk) = node_parts(node_label[0]), node_parts(node_label[1])
    return (ST.chunk_key(lr), ST.chunk_key(lk)), (removed, lr, kept, lk)


def _removed_row(node_label):
    loc = node_parts(node_label[0])[1]
    return ST.chunk_key(loc), ST.row_in_chunk(loc)


class NearDedupOnStash(beam.PTransform):
    """NearDedup's decisions and dedup rows on the chunks SignAndScore wrote: chunk keys ->
    {"removed": (chunk key, packed rows of that chunk removed), "dedup": rows}.

    Each partition of the band-key space is read from every chunk's band file (after all
    chunks are signed: the chunk list is a side input), buckets become candidate pairs, which
    go, packed, to the pair of chunks holding their payloads and are verified there (a worker
    holds two chunks' payloads, never one per pair); connected components run on (id, locator)
    nodes, whose order is the ids' (ids are unique), so the smallest id survives; the
    similarity of each removed document to its survivor is computed the same way, per chunk
    pair. Shuffles carry packed blobs per partition or chunk pair, sized by the duplicates.
    """

    reads = ("id",)
    adds = ()

    def __init__(self, stash: ST.Stash, near):
        super().__init__()
        self.stash, self.near = stash, near

    def expand(self, chunks):
        c = self.near.config
        exact = c.verify == "exact"
        spills = self.stash.spill_folder
        chunk_list = chunks | "ChunkList" >> beam.combiners.ToList() | "SortChunks" >> beam.Map(sorted)
        edges = (
            chunks.pipeline
            | "BandPartitions" >> beam.Create(range(BAND_PARTITIONS))
            | "SpreadPartitions" >> beam.Reshuffle()
            | "BucketMembers" >> beam.FlatMap(_bucket_members, beam.pvalue.AsSingleton(chunk_list), self.stash,
                                              c.max_bucket_all_pairs)
            | "GroupMemberSets" >> beam.GroupByKey()
            | "BucketPairs" >> beam.FlatMap(_bucket_pairs, c.max_bucket_all_pairs, spills)
            | "GroupPairsByPartition" >> beam.GroupByKey()
            | "VerifyPairs" >> beam.ParDo(_ChunkPairJaccard(self.stash, exact, ids_from_stash=True))
            | "AboveThreshold" >> beam.FlatMap(_verified, c.threshold)
            | "KeyEdges" >> beam.Map(lambda edge: (0, edge))
            | "PackEdges" >> beam.ParDo(PackByKey(spill_folder=spills))
            | "EdgeBlobs" >> beam.Values()
        )
        labels = edges | "Components" >> PackedConnectedComponents(components_dir(self.stash), c.cc_rounds,
                                                                       spill_folder=spills)
        removed_pairs = labels | "NonSurvivors" >> beam.FlatMap(unpack)  # (node, label), node != label
        dedup = (
            removed_pairs
            | "RemovedByChunks" >> beam.Map(_removed_pair)
            | "PackRemovedPairs" >> beam.ParDo(PackByKey(spill_folder=spills))
            | "GroupRemovedByChunks" >> beam.GroupByKey()
            | "SurvivorSimilarity" >> beam.ParDo(_ChunkPairJaccard(self.stash, exact))
            | "DedupRows" >> beam.MapTuple(lambda removed, kept, sim: {
                "removed_id": removed[0], "kept_id": kept[0], "method": "near", "similarity": sim})
        )
        removed = (removed_pairs
                   | "RemovedRows" >> beam.Map(_removed_row)
                   | "PackRemovedRows" >> beam.ParDo(PackByKey(spill_folder=spills)))
        return {"removed": removed, "dedup": dedup}

"""The stages that read the run's intermediate files (pipelines.stash) one chunk at a time.

`SignAndScore`: exact-dedup survivors (compact records) -> grouped by chunk -> the chunk's
texts read back -> MinHash signatures and LSH band keys (near dedup's input, computed from
the normalised text exactly as `NearDedup` does) and the heuristic score of every document;
the full output row (every written column but `pool`) goes to the chunk's `scored` file, a
compact record {id, _order, score, failed_rules, source (file index)} goes on.

`JoinStash`: pooled compact records -> grouped by chunk -> the kept rows of the chunk's
`scored` file with their pool: the documents `WriteRun` writes.

What a worker holds is one chunk (stash.CHUNK_ROWS documents) at a time; what a shuffle
carries per document is a few ints and short strings.
"""
from __future__ import annotations

import hashlib
import pickle
import zlib

import apache_beam as beam
import numpy as np

from curate.pipelines import counters
from curate.pipelines import stash as ST
from curate.pipelines.components import ConnectedComponents
from curate.pipelines.near_dedup import (BANDS, EXACT_PAYLOAD, NEW_SIGNATURES, SIGNATURE, SIGNATURES,
                                         SignatureCache, _keep_unremoved)
from curate.scorers.minhash import jaccard_estimate, jaccard_of_hashes
from curate.pipelines.progress import ProgressWriter
from curate.pipelines.runtime import runtime_options
from curate.pipelines.scoring import Score, _Score
from curate.pools import schema as S

ROW = "_row"  # the row's number within its chunk, in the scored files
# LSH band entries travel packed, one blob per (chunk, partition of the band-key space): a
# shuffle then holds ~35 bytes per entry instead of a Python tuple per entry (16 per document)
BAND_PARTITIONS = 256
MEMBER_PARTITIONS = 256  # where equal bucket member sets meet (see _bucket_members)


def pack(obj) -> bytes:
    return zlib.compress(pickle.dumps(obj, protocol=5), 1)


def unpack(blob: bytes):
    return pickle.loads(zlib.decompress(blob))  # noqa: S301 - our own blobs, within one run


def scored_schema(feature_names):
    import pyarrow as pa

    base = S.document_schema(feature_names)
    fields = [f for f in base if f.name != "pool"]
    return pa.schema([pa.field(ROW, pa.int64()), *fields])


class _SignAndScoreChunk(beam.DoFn):
    def __init__(self, stash: ST.Stash, signer, heuristics_config, feature_names, progress_dir=None):
        self.stash, self.signer = stash, signer
        self.heuristics_config, self.feature_names = heuristics_config, list(feature_names)
        self.progress_dir = progress_dir
        self.progress = ProgressWriter(None, "minhash")  # replaced in setup()

    def setup(self):
        self.scorer = _Score(self.heuristics_config)
        self.scorer.setup()
        self.schema = scored_schema(self.feature_names)
        self.progress = ProgressWriter(self.progress_dir, "minhash")

    def finish_bundle(self):
        self.progress.flush()

    def process(self, item):
        import pyarrow as pa

        from curate.scorers.text import normalise_text

        key, members = item
        # (row, id, locator, text_hash, cached signature): rows in input order
        members = sorted(members, key=lambda m: m[0])
        texts = ST.read_table(self.stash.raw_path(key), ["text"]).column("text").to_pylist()
        source_index = key >> ST._FILE_SHIFT
        source = self.stash.sources[source_index]
        columns = self.schema.names
        rows = []
        payload_rows, payloads = [], []
        bands: dict[int, tuple[list, list, list]] = {}
        for row, doc_id, loc, hashed, cached in members:
            text = texts[row]
            norm = normalise_text(text)
            if self.signer is not None:
                for out in self.signer.outputs(doc_id, norm, cached):
                    if out.tag == SIGNATURES:
                        payload_rows.append(row)
                        payloads.append(out.value[1])
                    elif out.tag == BANDS:
                        band_key = out.value[0]
                        keys, ids, locs = bands.setdefault(
                            int.from_bytes(band_key[-4:], "big") % BAND_PARTITIONS, ([], [], []))
                        keys.append(band_key)
                        ids.append(doc_id)
                        locs.append(loc)
                    else:
                        yield out
            [scored] = self.scorer.process({"id": doc_id, "text": text, "source": source, "_norm": norm})
            scored[ROW], scored["text_hash"] = row, hashed
            rows.append(scored)
            yield {"id": doc_id, "_order": loc, "score": scored["score"],
                   "failed_rules": scored["failed_rules"], "source": source_index}
            self.progress.add(1)
        table = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows], schema=self.schema)
        ST.write_table(self.stash.scored_path(key), table)
        if self.signer is not None:
            ST.write_table(self.stash.payload_path(key), pa.table({
                ROW: pa.array(payload_rows, pa.int64()), "payload": pa.array(payloads, pa.binary())}))
            for partition in sorted(bands):
                yield beam.pvalue.TaggedOutput(BANDS, (partition, pack(bands[partition])))


class SignAndScore(beam.PTransform):
    """compact records -> {"documents": compact scored records, BANDS: (partition, packed
    band entries of one chunk), NEW_SIGNATURES (cache rows)}; the scored rows and the
    verification payloads (shingle-hash sets or signatures) are written to the stash.

    near: the run's NearDedup (its Signer settings), or None when near dedup is off.
    """

    reads = ("id", "_order", "text_hash")

    def __init__(self, stash: ST.Stash, score: Score, near=None, caching: bool = False):
        super().__init__()
        self.stash, self.score, self.near, self.caching = stash, score, near, caching
        # `source` is the input's file index here (a small int, not a path per record);
        # JoinStash brings back the names
        self.adds = ("score", "failed_rules", "source")

    def expand(self, docs):
        runtime = runtime_options(docs.pipeline)
        cache_dir = runtime.curate_cache_dir if runtime else None
        progress_dir = runtime.curate_progress_dir if runtime else None
        caching = bool(self.near is not None and cache_dir)
        if caching:
            to_sign = docs | "SignatureCache" >> SignatureCache(self.near.cache_folder(cache_dir), self.near.hasher)
        else:
            to_sign = docs | "NoSignatureCache" >> beam.Map(lambda d: (d, None))
        signer = self.near.signer(caching) if self.near is not None else None
        fn = _SignAndScoreChunk(self.stash, signer, self.score.heuristics_config,
                                [c[2:] for c in self.score.adds if c.startswith("f_")], progress_dir)
        out = (
            to_sign
            | "ByChunk" >> beam.Map(_by_chunk)
            | "GroupChunks" >> beam.GroupByKey()
            | "SignAndScoreChunk" >> beam.ParDo(fn).with_outputs(BANDS, NEW_SIGNATURES, main="documents")
        )
        if caching:
            self.near.write_cache(out[NEW_SIGNATURES], cache_dir)
        return out


def _by_chunk(doc_cached):
    doc, cached = doc_cached
    loc = doc["_order"]
    return ST.chunk_key(loc), (ST.row_in_chunk(loc), doc["id"], loc, doc["text_hash"], cached)


class _JoinChunk(beam.DoFn):
    def __init__(self, stash: ST.Stash):
        self.stash = stash

    def process(self, item):
        key, members = item
        pools = dict(members)  # row -> pool
        table = ST.read_table(self.stash.scored_path(key))
        for record in table.to_pylist():
            pool = pools.get(record.pop(ROW))
            if pool is not None:
                record["pool"] = pool
                yield record


class JoinStash(beam.PTransform):
    """pooled compact records -> full documents (every written column), read back from the
    chunks' scored files: a partition-wise join, one chunk per group."""

    reads = ("_order", "pool")

    def __init__(self, stash: ST.Stash, score: Score):
        super().__init__()
        self.stash = stash
        self.adds = tuple(n for n in scored_schema(
            [c[2:] for c in score.adds if c.startswith("f_")]).names if n != ROW)

    def expand(self, pooled):
        return (
            pooled
            | "RowAndPool" >> beam.Map(lambda d: (ST.chunk_key(d["_order"]), (ST.row_in_chunk(d["_order"]), d["pool"])))
            | "GroupKeptByChunk" >> beam.GroupByKey()
            | "ReadKeptRows" >> beam.ParDo(_JoinChunk(self.stash))
        )


# ------------------------------------------------------------------ near dedup on the stash

def _pair_count(n: int, max_all_pairs: int) -> int:
    """How many pairs `near_dedup._candidate_pairs` makes of a bucket of n ids."""
    if n < 2:
        return 0
    return n * (n - 1) // 2 if n <= max_all_pairs else 2 * n - 3


def _bucket_members(item, max_all_pairs: int):
    """(partition, packed band entries) -> (member-set partition, packed member sets).

    A bucket's pairs depend only on its members, and near-identical documents share most of
    their 16 bands: the same member set comes out of up to 16 buckets (16 copies: 16 x 120
    pairs for 120 distinct ones). So each bucket of >= 2 members goes on as its sorted
    ((id, locator), ...) set, sent by a hash of the ids to where equal sets meet; the candidate
    pairs counter still counts every bucket's pairs, as NearDedup does."""
    _, blobs = item
    buckets: dict[bytes, dict[str, int]] = {}
    for blob in blobs:
        keys, ids, locs = unpack(blob)
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
    for partition in sorted(out):
        yield partition, pack(out[partition])


def _bucket_pairs(item, max_all_pairs: int):
    """(member-set partition, packed member sets) -> (chunk pair, packed candidate pairs):
    the pairs of each distinct member set (`_candidate_pairs` on its ids, counted upstream);
    a pair is (id_a, locator_a, id_b, locator_b) with id_a < id_b, sent to the pair of
    chunks holding the two payloads."""
    _, blobs = item
    distinct = dict.fromkeys(m for blob in blobs for m in unpack(blob))
    by_chunks: dict[tuple, list] = {}
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
            by_chunks.setdefault((ST.chunk_key(la), ST.chunk_key(lb)), []).append((a, la, b, lb))
    for chunks in sorted(by_chunks):
        yield chunks, pack(by_chunks[chunks])


class _ChunkPairJaccard(beam.DoFn):
    """(chunk pair, packed (id_a, loc_a, id_b, loc_b) lists) -> ((id_a, loc_a), (id_b, loc_b),
    Jaccard) per distinct pair, with the payloads read from the two chunks' payload files."""

    def __init__(self, stash: ST.Stash, exact: bool):
        self.stash, self.exact = stash, exact

    def _payloads(self, key: int, rows: set) -> dict:
        table = ST.read_table(self.stash.payload_path(key))
        dtype = EXACT_PAYLOAD if self.exact else SIGNATURE
        return {r: np.frombuffer(p, dtype=dtype)
                for r, p in zip(table.column(ROW).to_pylist(), table.column("payload").to_pylist()) if r in rows}

    def process(self, item):
        (key_a, key_b), blobs = item
        pairs = list(dict.fromkeys(p for blob in blobs for p in unpack(blob)))  # distinct, first-seen order
        need_a = {ST.row_in_chunk(la) for _, la, _, _ in pairs}
        need_b = {ST.row_in_chunk(lb) for _, _, _, lb in pairs}
        if key_a == key_b:
            payload_a = payload_b = self._payloads(key_a, need_a | need_b)
        else:
            payload_a, payload_b = self._payloads(key_a, need_a), self._payloads(key_b, need_b)
        measure = jaccard_of_hashes if self.exact else jaccard_estimate
        for a, la, b, lb in pairs:
            pa_ = payload_a.get(ST.row_in_chunk(la))
            pb_ = payload_b.get(ST.row_in_chunk(lb))
            if pa_ is None or pb_ is None:
                continue
            yield (a, la), (b, lb), float(measure(pa_, pb_))


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


def _removed_by_chunks(node_label):
    (removed, lr), (kept, lk) = node_parts(node_label[0]), node_parts(node_label[1])
    return (ST.chunk_key(lr), ST.chunk_key(lk)), pack([(removed, lr, kept, lk)])


class NearDedupOnStash(beam.PTransform):
    """NearDedup's decisions and dedup rows for compact records whose band entries and
    payloads SignAndScore computed: documents -> {"documents": survivors, "dedup": rows}.

    Buckets are grouped per partition of the band-key space; candidate pairs go, packed, to
    the pair of chunks holding their payloads and are verified there (a worker holds two
    chunks' payloads, never one per pair); connected components run on (id, locator) nodes,
    whose order is the ids' (ids are unique), so the smallest id survives; the similarity of
    each removed document to its survivor is computed the same way, per chunk pair.
    """

    reads = ("id",)
    adds = ()

    def __init__(self, stash: ST.Stash, near, signed):
        super().__init__()
        self.stash, self.near, self.signed = stash, near, signed

    def expand(self, docs):
        c = self.near.config
        exact = c.verify == "exact"
        edges = (
            self.signed[BANDS]
            | "GroupBandPartitions" >> beam.GroupByKey()
            | "BucketMembers" >> beam.FlatMap(_bucket_members, c.max_bucket_all_pairs)
            | "GroupMemberSets" >> beam.GroupByKey()
            | "BucketPairs" >> beam.FlatMap(_bucket_pairs, c.max_bucket_all_pairs)
            | "GroupPairsByChunks" >> beam.GroupByKey()
            | "VerifyPairs" >> beam.ParDo(_ChunkPairJaccard(self.stash, exact))
            | "AboveThreshold" >> beam.FlatMap(_verified, c.threshold)
        )
        labels = edges | "Components" >> ConnectedComponents(c.cc_rounds)
        removed_pairs = labels | "NonSurvivors" >> beam.Filter(lambda nl: nl[0] != nl[1])
        dedup = (
            removed_pairs
            | "RemovedByChunks" >> beam.Map(_removed_by_chunks)
            | "GroupRemovedByChunks" >> beam.GroupByKey()
            | "SurvivorSimilarity" >> beam.ParDo(_ChunkPairJaccard(self.stash, exact))
            | "DedupRows" >> beam.MapTuple(lambda removed, kept, sim: {
                "removed_id": removed[0], "kept_id": kept[0], "method": "near", "similarity": sim})
        )
        removed_ids = removed_pairs | "RemovedIds" >> beam.Map(lambda nl: (node_parts(nl[0])[0], node_parts(nl[1])[0]))
        documents = (
            {"doc": docs | "KeyDocs" >> beam.Map(lambda d: (d["id"], d)), "removed": removed_ids}
            | "JoinRemoved" >> beam.CoGroupByKey()
            | "KeepUnremoved" >> beam.FlatMap(_keep_unremoved)
        )
        return {"documents": documents, "dedup": dedup}

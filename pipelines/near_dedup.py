"""Near dedup: MinHash-LSH candidates -> verified pairs -> connected components -> survivors.

1. Signatures of the normalised text (scorers.minhash) and one bucket key per LSH band.
2. Each bucket emits candidate pairs: all pairs for buckets up to `max_bucket_all_pairs` ids,
   otherwise a star from the smallest id plus a chain over the sorted ids (bounded work for
   huge buckets; verification and connected components recover the rest).
3. Candidates are verified: Jaccard >= threshold (keeps precision). By default the exact
   Jaccard of the shingle-hash sets; optionally the MinHash estimate (less data shuffled).
4. Connected components over verified edges (pipelines.components); in every component the
   smallest id survives, every other member is removed with a `near` dedup row whose
   similarity is the (exact or estimated) Jaccard between it and the survivor.

With a cache folder (`--cache-dir`), signatures are looked up and stored per batch of
documents (`_Sign`) or per stash chunk (`stash_stages.SignAndScore`) in
`scorers.signature_cache`'s partitioned files, keyed by `text_key` of the normalised text:
no shuffle carries the cache's rows or a record per document to meet them.
"""
from __future__ import annotations

import hashlib
import sys
from dataclasses import replace

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from curate.pipelines import counters
from curate.pipelines.components import ConnectedComponents
from curate.pipelines.progress import ProgressWriter
from curate.pipelines.runtime import runtime_options
from curate.pipelines.stage_configs import NearDedupConfig
from curate.scorers.minhash import MinHasher, band_keys, jaccard_estimate, jaccard_of_hashes

BANDS = "bands"
SIGNATURES = "signatures"
NEW_SIGNATURES = "new_signatures"
SIG_CACHE_HITS = "near_dedup.signature_cache_hits"
SIG_CACHE_MISSES = "near_dedup.signature_cache_misses"
# cache rows or files found invalid while read (rows whose checksum is wrong, files whose
# structure is): their signatures are recomputed
SIG_CACHE_REJECTED = "near_dedup.signature_cache_rejected"
# bump when MinHasher's output or the cache's file format changes for the same parameters:
# v2 = 64-bit shingle hashes (scorers.minhash.SHINGLE_HASH_SCHEME) and a checksum per row;
# v3 = scorers.signature_cache's partitioned fixed-width files, looked up per chunk.
# The version names the folder, so signatures of another format are never read.
CACHE_FORMAT = "minhash-v3"
OLD_CACHE_FORMATS = ("minhash-v1", "minhash-v2")
# shingle-hash payloads (exact verification) are uint64; MinHash signatures are uint32
EXACT_PAYLOAD = np.uint64
SIGNATURE = np.uint32
LOOKUP_BATCH = 1024  # documents signed together by _Sign (one cache lookup per batch)


def _warn(message: str) -> None:
    # stderr, not logging: `curate run` holds the root logger at ERROR to silence Beam
    print(f"curate run: warning: {message}", file=sys.stderr)


def text_key(text: str) -> bytes:
    """Content fingerprint of the text a signature is computed from."""
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


def cache_folder(cache_dir: str, hasher: MinHasher) -> str:
    """One folder per signature-determining parameter set."""
    return FileSystems.join(cache_dir, _cache_name(hasher))


def _cache_name(hasher: MinHasher) -> str:
    return f"{CACHE_FORMAT}-p{hasher.num_perm}-s{hasher.shingle_size}-seed{hasher.seed}"


def warn_old_cache_formats(cache_dir: str) -> None:
    """One line (at pipeline construction) when the cache folder holds signatures of an earlier
    format: they are ignored, never read or mixed with this format's."""
    try:
        old = [m.path for pattern in OLD_CACHE_FORMATS
               for m in FileSystems.match([FileSystems.join(cache_dir, f"{pattern}-*", "*")], limits=[1])[0].metadata_list]
    except Exception:  # noqa: BLE001 - a cache folder that cannot be listed holds nothing old to mention
        return
    if old:
        _warn(f"signature cache {cache_dir} holds signatures of an earlier format ({', '.join(OLD_CACHE_FORMATS)}); "
              f"they are ignored (signed again into {CACHE_FORMAT}-*), delete those folders to reclaim the space")


class SignatureLookup:
    """A worker's view of the signature cache (`scorers.signature_cache.SignatureCache` in the
    run's parameter folder): batch lookups and writes, with the cache's rejected rows and files
    counted in SIG_CACHE_REJECTED. Build it in a DoFn's setup (it holds an index and a lock)."""

    def __init__(self, folder: str, hasher: MinHasher):
        from curate.scorers.signature_cache import SignatureCache

        self.cache = SignatureCache(folder, hasher.num_perm * np.dtype(SIGNATURE).itemsize,
                                    _cache_name(hasher), warn=_warn)
        self._rejected = 0

    def _count_rejected(self) -> None:
        rejected = self.cache.rejected_rows + self.cache.rejected_files
        if rejected > self._rejected:
            counters.inc(SIG_CACHE_REJECTED, rejected - self._rejected)
            self._rejected = rejected

    def get(self, keys: list[bytes]) -> list:
        found = self.cache.get(keys)
        self._count_rejected()
        return found

    def put(self, new_signatures: list[tuple[bytes, bytes]]) -> None:
        if new_signatures:
            keys, sigs = zip(*new_signatures)
            self.cache.put(list(keys), list(sigs))
            self._count_rejected()


class Signer:
    """What one document contributes to near dedup, from its normalised text: (id, verification
    payload) and (band key, id) per LSH band, plus (tagged NEW_SIGNATURES) the (text key,
    signature bytes) of a newly computed signature when caching, for the caller to store.

    The payload is the sorted shingle-hash set (verify="exact": exact Jaccard, the default)
    or the MinHash signature (verify="minhash": smaller, but the estimate's noise, about
    +-0.035 at 128 permutations, loses pairs just above the threshold).
    Used by `_Sign` (documents carrying `_norm`) and by `pipelines.stash_stages.SignAndScore`
    (texts read back from the run's intermediate files).
    """

    def __init__(self, hasher: MinHasher, bands: int, rows: int, verify: str, caching: bool = False):
        self.hasher, self.bands, self.rows, self.verify = hasher, bands, rows, verify
        self.caching = caching

    def outputs(self, doc_id: str, norm: str, cached, key: bytes | None = None):
        """cached: the signature bytes from the cache, or None; key: the text's cache key
        (text_key(norm), computed here if not given)."""
        hashes = None
        if cached is not None:
            sig = np.frombuffer(cached, dtype=SIGNATURE)
            counters.inc(SIG_CACHE_HITS)
        else:
            hashes = self.hasher.shingle_hashes(norm)
            sig = self.hasher.signature_of_hashes(hashes)
            if self.caching:
                counters.inc(SIG_CACHE_MISSES)
                yield beam.pvalue.TaggedOutput(NEW_SIGNATURES, (key or text_key(norm), sig.tobytes()))
        if self.verify == "exact":
            payload = hashes if hashes is not None else self.hasher.shingle_hashes(norm)
        else:
            payload = sig
        yield beam.pvalue.TaggedOutput(SIGNATURES, (doc_id, payload.tobytes()))
        for key in band_keys(sig, self.bands, self.rows):
            yield beam.pvalue.TaggedOutput(BANDS, (key, doc_id))


class _Sign(beam.DoFn):
    """documents -> Signer outputs (all tagged), signed LOOKUP_BATCH documents at a time: with
    a cache folder, each batch's signatures are looked up together and the new ones written
    to the cache (no per-document join with the cache's rows)."""

    def __init__(self, signer: Signer, progress_dir: str | None = None, cache_folder: str | None = None):
        self.signer, self.progress_dir, self.cache_folder = signer, progress_dir, cache_folder
        self.progress = ProgressWriter(None, "minhash")  # replaced in setup()

    def setup(self):
        self.progress = ProgressWriter(self.progress_dir, "minhash")
        self.lookup = SignatureLookup(self.cache_folder, self.signer.hasher) if self.cache_folder else None

    def start_bundle(self):
        self.batch: list = []

    def process(self, doc):
        self.batch.append(doc)
        if len(self.batch) >= LOOKUP_BATCH:
            yield from self._flush(windowed=False)

    def finish_bundle(self):
        yield from self._flush(windowed=True)
        self.progress.flush()

    def _flush(self, windowed: bool):
        from apache_beam.transforms.window import GlobalWindow
        from apache_beam.utils.windowed_value import WindowedValue

        batch, self.batch = self.batch, []
        if not batch:
            return
        keys = [text_key(d["_norm"]) for d in batch] if self.lookup else [None] * len(batch)
        cached = self.lookup.get(keys) if self.lookup else [None] * len(batch)
        new = []
        for doc, key, sig in zip(batch, keys, cached):
            for out in self.signer.outputs(doc["id"], doc["_norm"], sig, key):
                if out.tag == NEW_SIGNATURES:
                    new.append(out.value)
                elif windowed:  # finish_bundle's outputs carry their window
                    yield beam.pvalue.TaggedOutput(out.tag, WindowedValue(
                        out.value, GlobalWindow().max_timestamp(), [GlobalWindow()]))
                else:
                    yield out
        if self.lookup:
            self.lookup.put(new)
        self.progress.add(len(batch))


def _candidate_pairs(item, max_all_pairs: int):
    _, ids = item
    ids = sorted(set(ids))
    n = len(ids)
    if n < 2:
        return
    if n <= max_all_pairs:
        pairs = [(ids[i], ids[j]) for i in range(n) for j in range(i + 1, n)]
    else:
        pairs = [(ids[0], x) for x in ids[1:]] + [(ids[i], ids[i + 1]) for i in range(1, n - 1)]
    counters.inc(counters.NEAR_CANDIDATE_PAIRS, len(pairs))
    yield from pairs


def _left_half(item):
    a, grouped = item
    if not grouped["sig"]:
        return
    sig = grouped["sig"][0]
    for b in grouped["pairs"]:
        yield b, (a, sig)


def _similarity(item, exact: bool):
    b, grouped = item
    if not grouped["sig"]:
        return
    measure = jaccard_of_hashes if exact else jaccard_estimate
    dtype = EXACT_PAYLOAD if exact else SIGNATURE
    payload_b = np.frombuffer(grouped["sig"][0], dtype=dtype)
    for a, payload_a in grouped["half"]:
        yield a, b, float(measure(np.frombuffer(payload_a, dtype=dtype), payload_b))


class PairSimilarity(beam.PTransform):
    """(a, b) pairs + (id, payload bytes) -> (a, b, Jaccard), via two joins.

    Payloads are shingle-hash sets (exact=True) or MinHash signatures (exact=False).
    """

    def __init__(self, signatures, exact: bool = True):
        super().__init__()
        self.signatures = signatures
        self.exact = exact

    def expand(self, pairs):
        half = (
            {"sig": self.signatures, "pairs": pairs}
            | "JoinLeft" >> beam.CoGroupByKey()
            | "LeftHalf" >> beam.FlatMap(_left_half)
        )
        return (
            {"sig": self.signatures, "half": half}
            | "JoinRight" >> beam.CoGroupByKey()
            | "Similarity" >> beam.FlatMap(_similarity, self.exact)
        )


def _verified(triple, threshold: float):
    a, b, sim = triple
    if sim >= threshold:
        counters.inc(counters.NEAR_VERIFIED_PAIRS)
        yield a, b


def _keep_unremoved(item):
    _, grouped = item
    removed = bool(grouped["removed"])
    for doc in grouped["doc"]:
        if removed:
            counters.inc(counters.REMOVED_PREFIX + "near")
        else:
            yield doc


def _fan_out_survivor(item):
    """(kept, {"sig": [its payload], "members": [removed ids]}) -> (removed, (kept, payload))."""
    kept, grouped = item
    if not grouped["sig"]:
        return
    payload = grouped["sig"][0]
    for removed in grouped["members"]:
        yield removed, (kept, payload)


def _member_similarity(item, exact: bool):
    """(removed, {"sig": [its payload], "kept": [(kept, kept's payload)]}) -> (removed, kept, J)."""
    removed, grouped = item
    if not grouped["sig"]:
        return
    measure = jaccard_of_hashes if exact else jaccard_estimate
    dtype = EXACT_PAYLOAD if exact else SIGNATURE
    payload = np.frombuffer(grouped["sig"][0], dtype=dtype)
    for kept, kept_payload in grouped["kept"]:
        yield removed, kept, float(measure(payload, np.frombuffer(kept_payload, dtype=dtype)))


class SurvivorSimilarity(beam.PTransform):
    """(removed, kept) pairs + (id, payload bytes) -> (removed, kept, Jaccard).

    Bounded per key whatever the component's size: the survivor's one payload is sent to each
    member (grouped by the survivor: its payload and the members' ids), then each member
    meets it alone (grouped by the member). Joining the other way round put every member's
    payload on the survivor's worker (a 1M-member boilerplate component: GBs on one worker).
    Jaccard is symmetric, so the values are those of PairSimilarity on the same pairs.
    """

    def __init__(self, signatures, exact: bool = True):
        super().__init__()
        self.signatures = signatures
        self.exact = exact

    def expand(self, removed_kept):
        by_survivor = removed_kept | "BySurvivor" >> beam.Map(lambda rk: (rk[1], rk[0]))
        fanned = (
            {"sig": self.signatures, "members": by_survivor}
            | "JoinSurvivor" >> beam.CoGroupByKey()
            | "FanOutSurvivor" >> beam.FlatMap(_fan_out_survivor)
        )
        return (
            {"sig": self.signatures, "kept": fanned}
            | "JoinMember" >> beam.CoGroupByKey()
            | "MemberSimilarity" >> beam.FlatMap(_member_similarity, self.exact)
        )


class NearDedup(beam.PTransform):
    """documents -> {"documents": survivors, "dedup": near-duplicate removal rows}.

    Settings are those of `NearDedupConfig` (validated there): `NearDedup(threshold=0.85)`,
    or `NearDedup.from_config(config)` for a run's `near_dedup` section.

    Documents carry `_norm` and are signed here; or `signed` is given: the tagged outputs of
    `Signer` computed upstream (`pipelines.stash_stages.SignAndScore`, which signs texts read
    back from the run's intermediate files), and the documents need only their `id`.
    """

    adds = ()

    def __init__(self, config: NearDedupConfig | None = None, *, signed=None, **settings):
        super().__init__()
        config = replace(config or NearDedupConfig(), **settings)
        self.config = config
        self.hasher = MinHasher(num_perm=config.num_perm, shingle_size=config.shingle_size, seed=config.seed)
        self.bands, self.rows = config.lsh_bands_rows()
        self.signed = signed
        self.reads = ("id",) if signed is not None else ("id", "_norm")

    @classmethod
    def from_config(cls, config: NearDedupConfig, signed=None) -> "NearDedup":
        return cls(config, signed=signed)

    def signer(self, caching: bool) -> Signer:
        return Signer(self.hasher, self.bands, self.rows, self.config.verify, caching)

    def cache_folder(self, cache_dir: str) -> str:
        return cache_folder(cache_dir, self.hasher)

    def expand(self, docs):
        c = self.config
        exact = c.verify == "exact"
        signed = self.signed
        if signed is None:
            runtime = runtime_options(docs.pipeline)
            cache_dir = runtime.curate_cache_dir if runtime else None
            progress_dir = runtime.curate_progress_dir if runtime else None
            folder = None
            if cache_dir:
                warn_old_cache_formats(cache_dir)
                folder = self.cache_folder(cache_dir)
            signed = docs | "Sign" >> beam.ParDo(_Sign(self.signer(bool(cache_dir)), progress_dir, folder)).with_outputs(
                SIGNATURES, BANDS)
        signatures = signed[SIGNATURES]
        candidates = (
            signed[BANDS]
            | "GroupBuckets" >> beam.GroupByKey()
            | "CandidatePairs" >> beam.FlatMap(_candidate_pairs, c.max_bucket_all_pairs)
            | "DistinctPairs" >> beam.Distinct()
        )
        edges = (
            candidates
            | "VerifyPairs" >> PairSimilarity(signatures, exact)
            | "AboveThreshold" >> beam.FlatMap(_verified, c.threshold)
        )
        labels = edges | "Components" >> ConnectedComponents(c.cc_rounds)
        removed_pairs = labels | "NonSurvivors" >> beam.Filter(lambda nl: nl[0] != nl[1])
        dedup = (
            removed_pairs
            | "SurvivorSimilarity" >> SurvivorSimilarity(signatures, exact)
            | "DedupRows" >> beam.MapTuple(lambda removed, kept, sim: {
                "removed_id": removed, "kept_id": kept, "method": "near", "similarity": sim})
        )
        documents = (
            {"doc": docs | "KeyDocs" >> beam.Map(lambda d: (d["id"], d)), "removed": removed_pairs}
            | "JoinRemoved" >> beam.CoGroupByKey()
            | "KeepUnremoved" >> beam.FlatMap(_keep_unremoved)
        )
        return {"documents": documents, "dedup": dedup}

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
"""
from __future__ import annotations

import hashlib
import sys
import uuid
from dataclasses import replace

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
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
# cache rows or files found invalid while the pipeline read them (rows whose checksum or length
# is wrong, files that could not be read to the end); their signatures are recomputed
SIG_CACHE_REJECTED = "near_dedup.signature_cache_rejected"
# bump when MinHasher's output or the cache's file format changes for the same parameters:
# v2 = 64-bit shingle hashes (scorers.minhash.SHINGLE_HASH_SCHEME) and a checksum per row.
# The version names the folder, so v1 signatures (32-bit shingle hashes) are never read.
CACHE_FORMAT = "minhash-v2"
CORRUPT_SUFFIX = ".corrupt"
# shingle-hash payloads (exact verification) are uint64; MinHash signatures are uint32
EXACT_PAYLOAD = np.uint64
SIGNATURE = np.uint32



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


def entry_checksum(folder_name: str, key: bytes, sig: bytes) -> bytes:
    """Checksum of one cache row, bound to the parameter set: a flipped bit, a signature
    swapped in from another text or copied from another parameter folder does not match."""
    digest = hashlib.blake2b(digest_size=16, key=folder_name.encode("utf-8")[:64])
    digest.update(len(key).to_bytes(4, "little"))
    digest.update(key)
    digest.update(sig)
    return digest.digest()


def _cache_schema():
    import pyarrow as pa

    return pa.schema([("key", pa.binary()), ("sig", pa.binary()), ("check", pa.binary())])


def _valid_entries(folder_name: str, num_perm: int, table_batches):
    """(key, sig) of each row whose signature has the right length and whose checksum holds;
    the count of the others (ints yielded in between: rejected rows in that batch)."""
    size = num_perm * np.dtype(SIGNATURE).itemsize
    for batch in table_batches:
        columns = batch.to_pydict()
        bad = 0
        for key, sig, check in zip(columns["key"], columns["sig"], columns["check"]):
            if (isinstance(key, bytes) and isinstance(sig, bytes) and len(sig) == size
                    and check == entry_checksum(folder_name, key, sig)):
                yield key, sig
            else:
                bad += 1
        if bad:
            yield bad


def _open_cache_file(path: str):
    import pyarrow.parquet as pq

    fh = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    try:
        pf = pq.ParquetFile(fh)
        missing = {"key", "sig", "check"} - set(pf.schema_arrow.names)
        if missing:
            raise ValueError(f"no column(s) {', '.join(sorted(missing))}")
    except BaseException:
        fh.close()
        raise
    return fh, pf


def check_cache_file(path: str, folder_name: str, num_perm: int) -> str | None:
    """None if every row of the cache file is valid, else why not (one line)."""
    try:
        fh, pf = _open_cache_file(path)
        with fh:
            for item in _valid_entries(folder_name, num_perm, pf.iter_batches(batch_size=8192)):
                if isinstance(item, int):
                    return f"{item} entr{'y' if item == 1 else 'ies'} with a wrong checksum or length"
    except Exception as exc:  # noqa: BLE001 - any failure to read it makes the file unusable
        return f"unreadable: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def quarantine_invalid_cache_files(folder: str, hasher: MinHasher) -> list[str]:
    """Check every cache file before the run uses it; move each invalid one aside (to
    NAME.corrupt, never read again, kept for inspection) with a warning, so its signatures
    are recomputed and written anew instead of failing this and every later run.
    Returns the paths of the files left to read."""
    pattern = FileSystems.join(folder, "*.parquet")
    paths = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    good = []
    for path in paths:
        problem = check_cache_file(path, _cache_name(hasher), hasher.num_perm)
        if problem is None:
            good.append(path)
            continue
        try:
            FileSystems.rename([path], [path + CORRUPT_SUFFIX])
            where = f"moved to {path + CORRUPT_SUFFIX}"
        except Exception:  # noqa: BLE001 - e.g. a concurrent run moved it first
            where = "left in place, not read"
        _warn(f"signature cache file {path} is invalid ({problem}); {where}, its signatures "
              "are recomputed")
    return good


class _ReadCacheFile(beam.DoFn):
    """cache file path -> (text key, signature bytes) of its valid rows. Checked again while
    read (the file may have been moved or replaced since the check at construction); what
    cannot be read counts as rejected and is recomputed, never a failure of the run."""

    def __init__(self, folder_name: str, num_perm: int):
        self.folder_name, self.num_perm = folder_name, num_perm

    def process(self, path: str):
        try:
            fh, pf = _open_cache_file(path)
            with fh:
                for item in _valid_entries(self.folder_name, self.num_perm,
                                           pf.iter_batches(batch_size=8192)):
                    if isinstance(item, int):
                        counters.inc(SIG_CACHE_REJECTED, item)
                    else:
                        yield item
        except Exception:  # noqa: BLE001 - the rows read so far were valid; the rest recompute
            counters.inc(SIG_CACHE_REJECTED)


def _attach_cached(item):
    """(text key, {"doc": [...], "sig": [...]}) -> (doc, cached signature or None) per doc."""
    _, grouped = item
    cached = grouped["sig"][0] if grouped["sig"] else None
    for doc in grouped["doc"]:
        yield doc, cached


class SignatureCache(beam.PTransform):
    """docs -> (doc, cached signature bytes or None), joining on the text's content key.

    The cache is a folder of Parquet files (key, sig, check) checked at pipeline construction
    (`quarantine_invalid_cache_files`) and read row by row with their checksums verified.
    Files appear only by Beam's finalize rename, so a half-written file is never read (temp
    files sit in beam-temp-* sub-folders the `*.parquet` glob does not match).
    """

    def __init__(self, folder: str, hasher: MinHasher):
        super().__init__()
        self.folder = folder
        self.hasher = hasher

    def expand(self, docs):
        files = quarantine_invalid_cache_files(self.folder, self.hasher)
        if files:
            cached = (docs.pipeline
                      | "SigCacheFiles" >> beam.Create(files)
                      | "ReadSigCache" >> beam.ParDo(_ReadCacheFile(_cache_name(self.hasher),
                                                                    self.hasher.num_perm)))
        else:
            cached = docs.pipeline | "EmptySigCache" >> beam.Create([])
        # compact records (pipelines.stash) carry the key; documents carry the text
        keyed = docs | "KeyByText" >> beam.Map(lambda d: (d["_key"] if "_key" in d else text_key(d["_norm"]), d))
        return ({"doc": keyed, "sig": cached}
                | "JoinSigCache" >> beam.CoGroupByKey()
                | "AttachCached" >> beam.FlatMap(_attach_cached))


class Signer:
    """What one document contributes to near dedup, from its normalised text: (id, verification
    payload) and (band key, id) per LSH band, plus a cache row for a newly computed signature.

    The payload is the sorted shingle-hash set (verify="exact": exact Jaccard, the default)
    or the MinHash signature (verify="minhash": smaller, but the estimate's noise, about
    +-0.035 at 128 permutations, loses pairs just above the threshold).
    Used by `_Sign` (documents carrying `_norm`) and by `pipelines.stash_stages.SignAndScore`
    (texts read back from the run's intermediate files).
    """

    def __init__(self, hasher: MinHasher, bands: int, rows: int, verify: str, caching: bool = False):
        self.hasher, self.bands, self.rows, self.verify = hasher, bands, rows, verify
        self.caching = caching
        self.cache_name = _cache_name(hasher)

    def outputs(self, doc_id: str, norm: str, cached):
        hashes = None
        if cached is not None:
            sig = np.frombuffer(cached, dtype=SIGNATURE)
            counters.inc(SIG_CACHE_HITS)
        else:
            hashes = self.hasher.shingle_hashes(norm)
            sig = self.hasher.signature_of_hashes(hashes)
            if self.caching:
                counters.inc(SIG_CACHE_MISSES)
                key, sig_bytes = text_key(norm), sig.tobytes()
                yield beam.pvalue.TaggedOutput(NEW_SIGNATURES, {
                    "key": key, "sig": sig_bytes, "check": entry_checksum(self.cache_name, key, sig_bytes)})
        if self.verify == "exact":
            payload = hashes if hashes is not None else self.hasher.shingle_hashes(norm)
        else:
            payload = sig
        yield beam.pvalue.TaggedOutput(SIGNATURES, (doc_id, payload.tobytes()))
        for key in band_keys(sig, self.bands, self.rows):
            yield beam.pvalue.TaggedOutput(BANDS, (key, doc_id))


class _Sign(beam.DoFn):
    """(doc, cached signature bytes or None) -> Signer outputs (all tagged)."""

    def __init__(self, signer: Signer, progress_dir: str | None = None):
        self.signer, self.progress_dir = signer, progress_dir
        self.progress = ProgressWriter(None, "minhash")  # replaced in setup()

    def setup(self):
        self.progress = ProgressWriter(self.progress_dir, "minhash")

    def finish_bundle(self):
        self.progress.flush()

    def process(self, item):
        doc, cached = item
        yield from self.signer.outputs(doc["id"], doc["_norm"], cached)
        self.progress.add(1)


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

    def write_cache(self, new_signatures, cache_dir: str) -> None:
        """Newly computed signatures -> a new file in the cache (unique prefix per run:
        concurrent runs never write the same cache file)."""
        (new_signatures
         | "WriteSigCache" >> beam.io.WriteToParquet(
             FileSystems.join(self.cache_folder(cache_dir), f"sigs-{uuid.uuid4().hex[:12]}"), _cache_schema(),
             file_name_suffix=".parquet"))

    def expand(self, docs):
        c = self.config
        exact = c.verify == "exact"
        signed = self.signed
        if signed is None:
            runtime = runtime_options(docs.pipeline)
            cache_dir = runtime.curate_cache_dir if runtime else None
            progress_dir = runtime.curate_progress_dir if runtime else None
            if cache_dir:
                to_sign = docs | "SignatureCache" >> SignatureCache(self.cache_folder(cache_dir), self.hasher)
            else:
                to_sign = docs | "NoSignatureCache" >> beam.Map(lambda d: (d, None))
            signed = to_sign | "Sign" >> beam.ParDo(_Sign(self.signer(bool(cache_dir)), progress_dir)).with_outputs(
                SIGNATURES, BANDS, NEW_SIGNATURES)
            if cache_dir:
                self.write_cache(signed[NEW_SIGNATURES], cache_dir)
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

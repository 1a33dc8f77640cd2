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
import uuid
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
NEW_SIGNATURES = "new_signatures"
SIG_CACHE_HITS = "near_dedup.signature_cache_hits"
SIG_CACHE_MISSES = "near_dedup.signature_cache_misses"
CACHE_FORMAT = "minhash-v1"  # bump when MinHasher's output changes for the same parameters


def text_key(text: str) -> bytes:
    """Content fingerprint of the text a signature is computed from."""
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


def cache_folder(cache_dir: str, hasher: MinHasher) -> str:
    """One folder per signature-determining parameter set."""
    return FileSystems.join(cache_dir, f"{CACHE_FORMAT}-p{hasher.num_perm}-s{hasher.shingle_size}-seed{hasher.seed}")


def _cache_schema():
    import pyarrow as pa

    return pa.schema([("key", pa.binary()), ("sig", pa.binary())])


def _attach_cached(item):
    """(text key, {"doc": [...], "sig": [...]}) -> (doc, cached signature or None) per doc."""
    _, grouped = item
    cached = grouped["sig"][0] if grouped["sig"] else None
    for doc in grouped["doc"]:
        yield doc, cached


class SignatureCache(beam.PTransform):
    """docs -> (doc, cached signature bytes or None), joining on the text's content key.

    The cache is a folder of Parquet files (key, sig) read at pipeline construction: files
    appear only by Beam's finalize rename, so a half-written file is never read (temp files
    sit in beam-temp-* sub-folders the `*.parquet` glob does not match).
    """

    def __init__(self, folder: str):
        super().__init__()
        self.folder = folder

    def expand(self, docs):
        pattern = FileSystems.join(self.folder, "*.parquet")
        has_files = bool(FileSystems.match([pattern])[0].metadata_list)
        if has_files:
            cached = (docs.pipeline
                      | "ReadSigCache" >> beam.io.ReadFromParquet(pattern)
                      | "KeySigCache" >> beam.Map(lambda r: (r["key"], r["sig"])))
        else:
            cached = docs.pipeline | "EmptySigCache" >> beam.Create([])
        keyed = docs | "KeyByText" >> beam.Map(lambda d: (text_key(d["_norm"]), d))
        return ({"doc": keyed, "sig": cached}
                | "JoinSigCache" >> beam.CoGroupByKey()
                | "AttachCached" >> beam.FlatMap(_attach_cached))


class _Sign(beam.DoFn):
    """(doc, cached signature bytes or None) -> (id, verification payload) and (band key, id)
    per LSH band; newly computed signatures also go out tagged `new_signatures` for the cache.

    The payload is the sorted shingle-hash set (verify="exact": exact Jaccard, the default)
    or the MinHash signature (verify="minhash": smaller, but the estimate's noise, about
    +-0.035 at 128 permutations, loses pairs just above the threshold).
    """

    def __init__(self, hasher: MinHasher, bands: int, rows: int, verify: str,
                 caching: bool = False, progress_dir: str | None = None):
        self.hasher, self.bands, self.rows, self.verify = hasher, bands, rows, verify
        self.caching, self.progress_dir = caching, progress_dir
        self.progress = ProgressWriter(None, "minhash")  # replaced in setup()

    def setup(self):
        self.progress = ProgressWriter(self.progress_dir, "minhash")

    def finish_bundle(self):
        self.progress.flush()

    def process(self, item):
        doc, cached = item
        hashes = None
        if cached is not None:
            sig = np.frombuffer(cached, dtype=np.uint32)
            counters.inc(SIG_CACHE_HITS)
        else:
            hashes = self.hasher.shingle_hashes(doc["_norm"])
            sig = self.hasher.signature_of_hashes(hashes)
            if self.caching:
                counters.inc(SIG_CACHE_MISSES)
                yield beam.pvalue.TaggedOutput(NEW_SIGNATURES, {"key": text_key(doc["_norm"]), "sig": sig.tobytes()})
        if self.verify == "exact":
            payload = hashes if hashes is not None else self.hasher.shingle_hashes(doc["_norm"])
        else:
            payload = sig
        self.progress.add(1)
        yield doc["id"], payload.tobytes()
        for key in band_keys(sig, self.bands, self.rows):
            yield beam.pvalue.TaggedOutput(BANDS, (key, doc["id"]))


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
    payload_b = np.frombuffer(grouped["sig"][0], dtype=np.uint32)
    for a, payload_a in grouped["half"]:
        yield a, b, float(measure(np.frombuffer(payload_a, dtype=np.uint32), payload_b))


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


class NearDedup(beam.PTransform):
    """documents -> {"documents": survivors, "dedup": near-duplicate removal rows}.

    Settings are those of `NearDedupConfig` (validated there): `NearDedup(threshold=0.85)`,
    or `NearDedup.from_config(config)` for a run's `near_dedup` section.
    """

    reads = ("id", "_norm")
    adds = ()

    def __init__(self, config: NearDedupConfig | None = None, **settings):
        super().__init__()
        config = replace(config or NearDedupConfig(), **settings)
        self.config = config
        self.hasher = MinHasher(num_perm=config.num_perm, shingle_size=config.shingle_size, seed=config.seed)
        self.bands, self.rows = config.lsh_bands_rows()

    @classmethod
    def from_config(cls, config: NearDedupConfig) -> "NearDedup":
        return cls(config)

    def expand(self, docs):
        runtime = runtime_options(docs.pipeline)
        cache_dir = runtime.curate_cache_dir if runtime else None
        progress_dir = runtime.curate_progress_dir if runtime else None
        if cache_dir:
            folder = cache_folder(cache_dir, self.hasher)
            to_sign = docs | "SignatureCache" >> SignatureCache(folder)
        else:
            to_sign = docs | "NoSignatureCache" >> beam.Map(lambda d: (d, None))
        c = self.config
        exact = c.verify == "exact"
        signed = to_sign | "Sign" >> beam.ParDo(_Sign(
            self.hasher, self.bands, self.rows, c.verify, bool(cache_dir), progress_dir)).with_outputs(
            BANDS, NEW_SIGNATURES, main="signatures")
        signatures = signed.signatures
        if cache_dir:
            # unique prefix per run: concurrent runs never write the same cache file
            (signed[NEW_SIGNATURES]
             | "WriteSigCache" >> beam.io.WriteToParquet(
                 FileSystems.join(folder, f"sigs-{uuid.uuid4().hex[:12]}"), _cache_schema(),
                 file_name_suffix=".parquet"))
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
            | "SurvivorSimilarity" >> PairSimilarity(signatures, exact)
            | "DedupRows" >> beam.MapTuple(lambda removed, kept, sim: {
                "removed_id": removed, "kept_id": kept, "method": "near", "similarity": sim})
        )
        documents = (
            {"doc": docs | "KeyDocs" >> beam.Map(lambda d: (d["id"], d)), "removed": removed_pairs}
            | "JoinRemoved" >> beam.CoGroupByKey()
            | "KeepUnremoved" >> beam.FlatMap(_keep_unremoved)
        )
        return {"documents": documents, "dedup": dedup}

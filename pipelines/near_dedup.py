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

import apache_beam as beam
import numpy as np

from pipelines import counters
from pipelines.components import ConnectedComponents
from scorers.minhash import MinHasher, band_keys, jaccard_estimate, jaccard_of_hashes, lsh_params

BANDS = "bands"


class _Sign(beam.DoFn):
    """doc -> (id, verification payload) and (band key, id) per LSH band.

    The payload is the sorted shingle-hash set (verify="exact": exact Jaccard, the default)
    or the MinHash signature (verify="minhash": smaller, but the estimate's noise, about
    +-0.035 at 128 permutations, loses pairs just above the threshold).
    """

    def __init__(self, hasher: MinHasher, bands: int, rows: int, verify: str):
        self.hasher, self.bands, self.rows, self.verify = hasher, bands, rows, verify

    def process(self, doc):
        hashes = self.hasher.shingle_hashes(doc["_norm"])
        sig = self.hasher.signature_of_hashes(hashes)
        yield doc["id"], (hashes if self.verify == "exact" else sig).tobytes()
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
    """documents -> {"documents": survivors, "dedup": near-duplicate removal rows}."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, shingle_size: int = 2,
                 bands: int | None = None, rows: int | None = None, seed: int = 42,
                 max_bucket_all_pairs: int = 20, cc_rounds: int = 5, verify: str = "exact",
                 min_lsh_recall: float = 0.99):
        super().__init__()
        if verify not in ("exact", "minhash"):
            raise ValueError(f"near_dedup: verify must be 'exact' or 'minhash', got {verify!r}")
        self.verify = verify
        if (bands is None) != (rows is None):
            raise ValueError("near_dedup: give both bands and rows, or neither")
        if bands is None:
            bands, rows = lsh_params(threshold, num_perm, min_lsh_recall)
        if bands * rows > num_perm:
            raise ValueError(f"near_dedup: bands*rows = {bands * rows} > num_perm = {num_perm}")
        self.threshold = threshold
        self.hasher = MinHasher(num_perm=num_perm, shingle_size=shingle_size, seed=seed)
        self.bands, self.rows = bands, rows
        self.max_bucket_all_pairs = max_bucket_all_pairs
        self.cc_rounds = cc_rounds

    def expand(self, docs):
        signed = docs | "Sign" >> beam.ParDo(_Sign(self.hasher, self.bands, self.rows, self.verify)).with_outputs(
            BANDS, main="signatures")
        signatures = signed.signatures
        candidates = (
            signed[BANDS]
            | "GroupBuckets" >> beam.GroupByKey()
            | "CandidatePairs" >> beam.FlatMap(_candidate_pairs, self.max_bucket_all_pairs)
            | "DistinctPairs" >> beam.Distinct()
        )
        edges = (
            candidates
            | "VerifyPairs" >> PairSimilarity(signatures, self.verify == "exact")
            | "AboveThreshold" >> beam.FlatMap(_verified, self.threshold)
        )
        labels = edges | "Components" >> ConnectedComponents(self.cc_rounds)
        removed_pairs = labels | "NonSurvivors" >> beam.Filter(lambda nl: nl[0] != nl[1])
        dedup = (
            removed_pairs
            | "SurvivorSimilarity" >> PairSimilarity(signatures, self.verify == "exact")
            | "DedupRows" >> beam.MapTuple(lambda removed, kept, sim: {
                "removed_id": removed, "kept_id": kept, "method": "near", "similarity": sim})
        )
        documents = (
            {"doc": docs | "KeyDocs" >> beam.Map(lambda d: (d["id"], d)), "removed": removed_pairs}
            | "JoinRemoved" >> beam.CoGroupByKey()
            | "KeepUnremoved" >> beam.FlatMap(_keep_unremoved)
        )
        return {"documents": documents, "dedup": dedup}

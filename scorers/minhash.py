"""MinHash signatures and LSH banding for near-duplicate detection (plain numpy, no Beam).

Shingles are word n-grams over lower-cased word tokens. Each token is hashed to 64 bits
(BLAKE2b: stable across processes, unlike Python's `hash`), each n-gram to 64 bits by a
polynomial over its token hashes and a bijective mix. 64 bits because exact verification
compares these hash sets: with 32-bit shingle hashes, 1M short documents gave 5 unrelated
pairs whose single shingles collided (Jaccard 1.0, removed as duplicates); at 64 bits a
collision among 1e9 shingles has probability ~3e-2 over the whole set and a pair of documents
needs all of its shingles to collide. `num_perm` universal hash functions of the
multiply-add-shift family then map each shingle hash to 32 bits; a signature is the
per-function minimum, and the fraction of equal positions estimates the Jaccard similarity.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from curate.scorers.text import TOKEN_CHUNK_CHARS, word_token_chunks, word_tokens

# the shingle-hash scheme: part of the signature cache's key (pipelines.near_dedup), since
# signatures of the same text under another scheme must never be mixed with these
SHINGLE_HASH_SCHEME = "blake2b64-poly-xorshift"
# odd 64-bit multipliers of the n-gram polynomial and of its final mix
_NGRAM_MULT = np.uint64(0x9E3779B97F4A7C15)
_NGRAM_MIX = np.uint64(0xBF58476D1CE4E5B9)
# ~125 bytes per entry: 100k entries ~12 MB per worker (500k were 62 MB, a growth with the
# vocabulary seen); Zipfian word frequencies keep most lookups hits at this size
_TOKEN_CACHE_MAX = 100_000
# shingle hashes signed at a time: bounds the (rows x num_perm) uint64 block to ~4 MB at 128
# permutations (one block of every shingle took 8.7 GB for a 50 MB document)
_SIGN_ROWS = 4096


def _hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, person=b"curate-shingle").digest(), "little")


def _mix64(x: np.ndarray) -> np.ndarray:
    """Fold the high half into the low half, in place (a bijection of uint64: distinct hashes
    stay distinct), so the signature's multiply-add-shift sees n-grams that differ only
    linearly (a shared token) as unrelated keys; two numpy calls, cheap on short documents."""
    x ^= x >> np.uint64(32)
    return x


def shingles(text: str, size: int) -> set[str]:
    """Set of word `size`-grams; a text shorter than `size` words is one shingle of all its words.

    A text with no word characters at all yields its stripped self as one shingle, so it still
    gets a signature (identical such texts then collide, different ones almost never do).
    """
    tokens = word_tokens(text)
    if not tokens:
        stripped = text.strip()
        return {stripped} if stripped else set()
    if len(tokens) <= size:
        return {" ".join(tokens)}
    return {" ".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1)}


def _false_positive_area(threshold: float, bands: int, rows: int) -> float:
    x = np.linspace(0.0, threshold, 201)
    return float(np.trapezoid(1.0 - (1.0 - x**rows) ** bands, x))


def candidate_probability(similarity: float, bands: int, rows: int) -> float:
    """P(two documents with this Jaccard share at least one LSH band): 1 - (1 - s^r)^b."""
    return 1.0 - (1.0 - similarity**rows) ** bands


def lsh_params(threshold: float, num_perm: int, min_recall: float = 0.99) -> tuple[int, int]:
    """(bands, rows), bands*rows <= num_perm, for candidate generation at `threshold`.

    Among the layouts that make a pair *at* the threshold a candidate with probability
    >= `min_recall`, take the one with the least false-positive mass below the threshold
    (candidates are verified afterwards, so extra candidates cost work, not precision).
    datasketch's equal-weight criterion (9 x 13 for 0.8 / 128) finds only ~40 % of pairs at
    the threshold, which is why recall gets this explicit floor.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"near-dedup threshold must be in (0, 1), got {threshold}")
    best: tuple[float, int, int] | None = None
    fallback: tuple[float, int, int] | None = None
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            recall = candidate_probability(threshold, bands, rows)
            fp = _false_positive_area(threshold, bands, rows)
            if recall >= min_recall and (best is None or fp < best[0] - 1e-12):
                best = (fp, bands, rows)
            if fallback is None or recall > fallback[0] + 1e-12:
                fallback = (recall, bands, rows)
    chosen = best or fallback
    assert chosen is not None
    return chosen[1], chosen[2]


@dataclass(frozen=True)
class MinHasher:
    """Picklable MinHash signer; all state derives from (num_perm, shingle_size, seed)."""

    num_perm: int = 128
    shingle_size: int = 3
    seed: int = 42
    _a: np.ndarray = field(init=False, repr=False, compare=False)
    _b: np.ndarray = field(init=False, repr=False, compare=False)
    _token_cache: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.num_perm < 1 or self.shingle_size < 1:
            raise ValueError("num_perm and shingle_size must be >= 1")
        rng = np.random.default_rng(self.seed)
        a = rng.integers(1, 2**63, size=self.num_perm, dtype=np.uint64) | np.uint64(1)  # odd
        b = rng.integers(0, 2**63, size=self.num_perm, dtype=np.uint64)
        object.__setattr__(self, "_a", a)
        object.__setattr__(self, "_b", b)
        object.__setattr__(self, "_token_cache", {})

    def __getstate__(self):  # ship parameters, not the memo
        return {"num_perm": self.num_perm, "shingle_size": self.shingle_size, "seed": self.seed}

    def __setstate__(self, state):
        for key, value in state.items():
            object.__setattr__(self, key, value)
        self.__post_init__()

    def _token_hashes(self, tokens: list[str]):
        """64-bit hash per token, memoised per instance (word frequencies are Zipfian: most hits)."""
        cache = self._token_cache
        if len(cache) > _TOKEN_CACHE_MAX:
            cache.clear()
        get = cache.get
        for t in tokens:
            value = get(t)
            if value is None:
                value = cache[t] = _hash64(t.encode("utf-8"))
            yield value

    def _token_hash_array(self, text: str) -> np.ndarray:
        """uint64 hash of every word token in order; the text is tokenised a piece at a time,
        so a very large document never holds its lower-cased copy and all its words at once."""
        if len(text) <= TOKEN_CHUNK_CHARS:  # the common case, without the generator
            tokens = word_tokens(text)
            return np.fromiter(self._token_hashes(tokens), dtype=np.uint64, count=len(tokens))
        parts = [np.fromiter(self._token_hashes(chunk), dtype=np.uint64, count=len(chunk))
                 for chunk in word_token_chunks(text)]
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.uint64)

    def shingle_hashes(self, text: str) -> np.ndarray:
        """Sorted unique uint64 hashes of the text's word shingles (the set MinHash samples).

        Each n-gram's hash is a polynomial over its token hashes (vectorised, wrapping mod
        2**64) then mixed: the same set structure as `shingles(text, n)`, without building
        every n-gram string. A text with no word tokens is one shingle, its stripped self.
        """
        tok = self._token_hash_array(text)
        if tok.size == 0:
            stripped = text.strip()
            if not stripped:
                return np.empty(0, dtype=np.uint64)
            return np.array([_hash64(stripped.encode("utf-8"))], dtype=np.uint64)
        n = min(self.shingle_size, tok.size)
        count = tok.size - n + 1
        acc = np.zeros(count, dtype=np.uint64)
        one = np.uint64(1)
        with np.errstate(over="ignore"):  # in place: one array of n-gram hashes, no temporaries
            for j in range(n):
                acc *= _NGRAM_MULT
                acc += tok[j : j + count]
                acc += one
            acc *= _NGRAM_MIX
        del tok
        return np.unique(_mix64(acc))

    def signature_of_hashes(self, hashes: np.ndarray) -> np.ndarray:
        """uint32 signature from `shingle_hashes`; all-0xFFFFFFFF for an empty set."""
        hashes = np.asarray(hashes, dtype=np.uint64)
        if hashes.size <= _SIGN_ROWS:  # the common case in one block
            if hashes.size == 0:
                return np.full(self.num_perm, 0xFFFFFFFF, dtype=np.uint32)
            with np.errstate(over="ignore"):
                values = (np.multiply.outer(hashes, self._a) + self._b) >> np.uint64(32)
            return values.min(axis=0).astype(np.uint32)
        sig = np.full(self.num_perm, 0xFFFFFFFF, dtype=np.uint32)
        # multiply-add-shift hashing (wraps mod 2**64), keep the high 32 bits; a block of rows
        # at a time so memory stays bounded whatever the document's length
        with np.errstate(over="ignore"):
            for start in range(0, hashes.size, _SIGN_ROWS):
                block = hashes[start : start + _SIGN_ROWS]
                values = (np.multiply.outer(block, self._a) + self._b) >> np.uint64(32)
                np.minimum(sig, values.min(axis=0).astype(np.uint32), out=sig)
        return sig

    def signature(self, text: str) -> np.ndarray:
        """uint32 array of length num_perm."""
        return self.signature_of_hashes(self.shingle_hashes(text))


def band_keys(signature: np.ndarray, bands: int, rows: int) -> list[bytes]:
    """One bucket key per band: band index + 8-byte digest of that band's rows."""
    keys = []
    for band in range(bands):
        chunk = np.ascontiguousarray(signature[band * rows : (band + 1) * rows]).tobytes()
        digest = hashlib.blake2b(chunk, digest_size=8, person=b"lsh-band").digest()
        keys.append(band.to_bytes(2, "big") + digest)
    return keys


def jaccard_estimate(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """Fraction of equal positions: an unbiased estimate of the shingle-set Jaccard."""
    return float(np.mean(np.asarray(sig_a) == np.asarray(sig_b)))


def jaccard_of_hashes(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard of two sorted unique hash arrays (as from `MinHasher.shingle_hashes`)."""
    if a.size == 0 and b.size == 0:
        return 1.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


def jaccard(a: set, b: set) -> float:
    """Exact Jaccard of two sets (for tests and ground truth)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)

import pickle
import random

import numpy as np
import pytest

from curate.scorers.minhash import (MinHasher, band_keys, candidate_probability, jaccard, jaccard_estimate,
                             jaccard_of_hashes, lsh_params, shingles)


def _words(n, rng, vocab=5000):
    return [f"w{rng.randrange(vocab)}" for _ in range(n)]


def test_shingles_word_ngrams_lowercased_without_punctuation():
    assert shingles("The cat, the HAT.", 2) == {"the cat", "cat the", "the hat"}
    assert shingles("Too short", 5) == {"too short"}
    assert shingles("?!", 2) == {"?!"}
    assert shingles("   ", 2) == set()


def test_signature_deterministic_and_picklable():
    a, b = MinHasher(64, 2, seed=1), MinHasher(64, 2, seed=1)
    text = "a quick brown fox jumps over the lazy dog again and again"
    assert np.array_equal(a.signature(text), b.signature(text))
    clone = pickle.loads(pickle.dumps(a))
    assert np.array_equal(clone.signature(text), a.signature(text))
    assert not np.array_equal(MinHasher(64, 2, seed=2).signature(text), a.signature(text))
    assert a.signature(text).dtype == np.uint32 and a.signature(text).shape == (64,)


def test_estimate_tracks_exact_jaccard():
    rng = random.Random(0)
    hasher = MinHasher(256, 1, seed=3)
    errors = []
    for overlap in (0.2, 0.5, 0.8, 0.95):
        base = _words(400, rng)
        keep = int(len(base) * overlap)
        other = base[:keep] + _words(len(base) - keep, rng)
        t1, t2 = " ".join(base), " ".join(other)
        exact = jaccard(shingles(t1, 1), shingles(t2, 1))
        est = jaccard_estimate(hasher.signature(t1), hasher.signature(t2))
        assert jaccard_of_hashes(hasher.shingle_hashes(t1), hasher.shingle_hashes(t2)) == pytest.approx(exact, abs=0.01)
        errors.append(abs(est - exact))
    assert max(errors) < 0.1  # ~3 standard errors at 256 permutations


def test_lsh_params_reach_the_recall_floor():
    for threshold in (0.5, 0.7, 0.8, 0.9):
        bands, rows = lsh_params(threshold, 128, min_recall=0.99)
        assert bands * rows <= 128
        assert candidate_probability(threshold, bands, rows) >= 0.99
        assert candidate_probability(0.1, bands, rows) < 0.05
    assert lsh_params(0.8, 128) == (16, 6)
    with pytest.raises(ValueError):
        lsh_params(1.0, 128)


def test_band_keys_collide_for_identical_and_rarely_for_unrelated():
    rng = random.Random(1)
    hasher = MinHasher(128, 2)
    t1 = " ".join(_words(300, rng))
    t2 = " ".join(_words(300, rng))
    k1, k1b, k2 = (band_keys(hasher.signature(t), 16, 6) for t in (t1, t1, t2))
    assert k1 == k1b and len(set(k1)) == 16
    assert not set(k1) & set(k2)


def _colliding_under_32_bits(count: int = 300_000) -> tuple[str, str]:
    """Two one-word texts whose shingle hashes were equal under the old 32-bit scheme (CRC32
    per token, polynomial, high 32 bits of the mixed value), found by a birthday search."""
    import zlib

    words = [f"w{i}q" for i in range(count)]
    crc = np.array([zlib.crc32(w.encode()) for w in words], dtype=np.uint64)
    with np.errstate(over="ignore"):  # the old one-token shingle: (crc + 1) * mix, high half
        old = ((crc + np.uint64(1)) * np.uint64(0xBF58476D1CE4E5B9)) >> np.uint64(32)
    order = np.argsort(old, kind="stable")
    same = np.flatnonzero(old[order][1:] == old[order][:-1])
    assert same.size, "no 32-bit collision among the words: raise count"
    i, j = order[same[0]], order[same[0] + 1]
    return words[i], words[j]


def test_texts_whose_32_bit_shingle_hashes_collide_are_unrelated_at_64_bits():
    """1M short documents gave 5 unrelated pairs at Jaccard 1.0 from 32-bit shingle-hash
    collisions (the reliability issue's item 5); at 64 bits they share nothing."""
    a, b = _colliding_under_32_bits()
    hasher = MinHasher(128, 2)
    ha, hb = hasher.shingle_hashes(a), hasher.shingle_hashes(b)
    assert ha.dtype == np.uint64 and ha.size == hb.size == 1
    assert jaccard_of_hashes(ha, hb) == 0.0
    assert jaccard_estimate(hasher.signature(a), hasher.signature(b)) < 0.1


def test_large_texts_are_shingled_and_signed_in_pieces_with_the_same_result(monkeypatch):
    from curate.scorers import minhash, text

    rng = random.Random(5)
    doc = "\n".join(" ".join(_words(12, rng)) + ("  Σ." if i % 7 == 0 else "") for i in range(300))
    hasher = MinHasher(64, 3)
    whole_hashes, whole_sig = hasher.shingle_hashes(doc), hasher.signature(doc)
    assert sum(text.word_token_chunks(doc, 50), []) == text.word_tokens(doc)
    monkeypatch.setattr(minhash, "TOKEN_CHUNK_CHARS", 50)  # tokenise ~50 characters at a time
    monkeypatch.setattr(text, "TOKEN_CHUNK_CHARS", 50)
    monkeypatch.setattr(minhash, "_SIGN_ROWS", 7)  # sign 7 shingles at a time
    pieces = MinHasher(64, 3)
    assert np.array_equal(pieces.shingle_hashes(doc), whole_hashes)
    assert np.array_equal(pieces.signature(doc), whole_sig)


_PEAK_SCRIPT = """
import random, resource, sys
from curate.scorers.minhash import MinHasher
from curate.scorers.text import normalise_text
rng = random.Random(0)
vocab = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randrange(2, 10))) for _ in range(20000)]
text = "\\n".join(" ".join(rng.choices(vocab, k=12)) for _ in range(int(sys.argv[1]) // 70))
hasher = MinHasher(128, 2)
hasher.signature(text[:1000])  # imports and first-call allocations before the baseline
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
norm = normalise_text(text)
hashes = hasher.shingle_hashes(norm)
sig = hasher.signature_of_hashes(hashes)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(len(text), hashes.size, (after - before) * 1024)
"""


def test_peak_memory_of_one_large_document_is_a_small_multiple_of_its_size():
    """A 50 MB document peaked at 8.7 GB (every shingle x every permutation as one block,
    ~1 KB per word); signing in blocks and tokenising in pieces keeps it to a few bytes per
    input byte. Measured in a fresh process (ru_maxrss is a per-process high-water mark)."""
    import subprocess
    import sys

    size = 8_000_000
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(size)], capture_output=True,
                         text=True, check=True, timeout=300).stdout.split()
    chars, shingles, grown = int(out[0]), int(out[1]), int(out[2])
    assert chars > 0.9 * size and shingles > 1_000_000
    # the old single block alone was shingles x 128 x 8 bytes (> 1 GB here); allow 40 x the text
    assert grown < 40 * chars, f"scoring a {chars:,}-char document grew the peak by {grown:,} bytes"

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

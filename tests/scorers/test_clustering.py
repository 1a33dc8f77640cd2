"""Spherical k-means, nearest-centroid search and the id-hash sample (scorers.clustering)."""
from __future__ import annotations

import numpy as np

from curate.scorers.clustering import (
    ClusterModel,
    _cluster_sums,
    as_unit_rows,
    in_sample,
    nearest,
    sample_mask,
    spherical_kmeans,
)


def unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def test_vectorised_sample_mask_equals_in_sample():
    ids = [f"doc-{i}" for i in range(5000)] + ["", "é", "a:b"]
    for seed, fraction in ((0, 0.1), (3, 0.5), (7, 0.001)):
        expected = np.array([in_sample(i, fraction, seed) for i in ids])
        assert np.array_equal(sample_mask(ids, fraction, seed), expected)
    assert sample_mask(ids, 1.0).all()


def test_nearest_matches_argmax_for_any_block():
    rng = np.random.default_rng(0)
    x = unit(rng.normal(size=(1000, 16)))
    c = unit(rng.normal(size=(37, 16)))
    s = x @ c.T
    for block in (None, 1, 100, 5000):
        idx, sim = nearest(x, c, block=block)
        assert np.array_equal(idx, s.argmax(axis=1))
        np.testing.assert_allclose(sim, s.max(axis=1), atol=1e-6)


def test_cluster_sums_match_a_loop():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 8)).astype(np.float32)
    labels = rng.integers(0, 10, 500)
    labels[labels == 3] = 4  # label 3 empty
    sums = _cluster_sums(x, labels, 10)
    for c in range(10):
        np.testing.assert_allclose(sums[c], x[labels == c].sum(axis=0), atol=1e-4)
    assert not sums[3].any()


def test_kmeans_is_seeded_unit_norm_and_finds_separated_clusters():
    rng = np.random.default_rng(2)
    centers = unit(rng.normal(size=(8, 32)))
    truth = rng.integers(0, 8, 4000)
    x = unit(centers[truth] + 0.05 * rng.normal(size=(4000, 32)))
    a = spherical_kmeans(x, 8, seed=0)
    np.testing.assert_array_equal(a, spherical_kmeans(x, 8, seed=0))
    assert not np.array_equal(a, spherical_kmeans(x, 8, seed=1))
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    labels, _ = nearest(x, a)
    # every found cluster is one true cluster (up to the k-means local optimum: allow 1 merge)
    purity = sum(np.bincount(truth[labels == c]).max() for c in np.unique(labels)) / len(x)
    assert purity > 0.85


def test_kmeans_with_fewer_distinct_points_than_k_has_no_nan():
    rng = np.random.default_rng(3)
    x = np.repeat(unit(rng.normal(size=(3, 16))), 50, axis=0)
    c = spherical_kmeans(x, 10, seed=0)
    assert c.shape == (10, 16) and np.isfinite(c).all()


def test_as_unit_rows_reuses_unit_float32_and_copies_otherwise():
    rng = np.random.default_rng(4)
    x = unit(rng.normal(size=(100, 8)))
    assert as_unit_rows(x) is x
    raw = rng.normal(size=(100, 8)).astype(np.float32)
    y = as_unit_rows(raw)
    assert y is not raw and np.allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-6)
    assert as_unit_rows(x.astype(np.float64)).dtype == np.float32


def test_model_fit_labels_agree_with_assign():
    rng = np.random.default_rng(5)
    x = unit(rng.normal(size=(3000, 16)))
    model = ClusterModel.fit(x, 12, seed=0)
    leaf, sim = model.assign(x)
    idx, top_sim = nearest(x, model.centroids)
    assert np.array_equal(leaf, model.leaf_offsets[idx])
    np.testing.assert_allclose(sim, top_sim, atol=1e-6)


def test_faiss_search_gives_the_same_kmeans_as_numpy():
    """The GPU path swaps only the nearest-centroid search for a FAISS index; on CPU the
    FAISS IndexFlatIP search must give the same clustering as numpy up to float rounding."""
    import pytest

    pytest.importorskip("faiss")
    from curate.scorers.clustering import _lloyd_spherical, faiss_nearest

    rng = np.random.default_rng(5)
    centers = unit(rng.normal(size=(40, 64)))
    x = unit(centers[rng.integers(0, 40, 6000)] + 0.3 * rng.normal(size=(6000, 64)))
    ref_c, ref_l = _lloyd_spherical(x, 40, seed=3, niter=20)
    got_c, got_l = _lloyd_spherical(x, 40, seed=3, niter=20, search=faiss_nearest(gpu=False))
    assert (got_l == ref_l).mean() > 0.999  # ties at float rounding may flip a row
    np.testing.assert_allclose(got_c, ref_c, atol=1e-4)


# --- the bounded k-means sample (bottom-k by id hash) and batch-independent assignment ---

def _sample_rows(n, dim=16, seed=0):
    from curate.scorers.clustering import id_hash64

    rng = np.random.default_rng(seed)
    x = unit(rng.normal(size=(n, dim)))
    ids = [f"doc-{i}" for i in range(n)]
    return ids, x, [(id_hash64(i), i, v.tobytes()) for i, v in zip(ids, x)]


def test_bottom_k_is_the_smallest_hashes_whatever_the_bundles_and_merge_order():
    from curate.scorers.clustering import BottomK, bottom_k_rows, id_hashes64

    ids, x, rows = _sample_rows(3000)
    expected = bottom_k_rows(id_hashes64(ids), ids, 250)
    assert len(expected) == 250
    rng = np.random.default_rng(0)
    outputs = []
    for trial in range(4):  # random bundles, random order inside them, random merge order
        order = rng.permutation(len(rows))
        cuts = np.sort(rng.choice(np.arange(1, len(rows)), size=trial * 3 + 1, replace=False))
        partials = []
        for part in np.split(order, cuts):
            acc = BottomK(250)
            for r in part.tolist():
                acc.add(*rows[r])
            assert len(acc) <= 250
            partials.append(acc)
        rng.shuffle(partials)
        merged = partials[0]
        for acc in partials[1:]:
            merged.merge(acc)
        outputs.append(merged.rows())
    assert all(out == outputs[0] for out in outputs)
    assert [r[1] for r in outputs[0]] == [ids[i] for i in expected.tolist()]
    np.testing.assert_array_equal(np.frombuffer(outputs[0][0][2], dtype=np.float32), x[expected[0]])


def test_bottom_k_ties_on_the_hash_are_broken_by_id():
    from curate.scorers.clustering import BottomK, bottom_k_rows

    vec = np.zeros(4, dtype=np.float32).tobytes()
    hashes = np.array([5, 3, 5, 5, 9], dtype=np.uint64)
    ids = ["e", "z", "c", "a", "b"]
    acc = BottomK(3)
    for h, i in zip(hashes.tolist()[::-1], ids[::-1]):
        acc.add(h, i, vec)
    assert [r[1] for r in acc.rows()] == ["z", "a", "c"]
    assert [ids[i] for i in bottom_k_rows(hashes, ids, 3).tolist()] == ["z", "a", "c"]


def test_sample_cap_and_training_plan():
    from curate.scorers.clustering import sample_cap_rows, sample_hash_bound, training_plan

    assert sample_cap_rows(384, sample_size=10**9, memory_mb=256) == 256 * 2**20 // (384 * 4)
    assert sample_cap_rows(384, sample_size=1000, memory_mb=256) == 1000
    # 1M docs at the defaults: k = 1000, 64 rows per centroid, below the cap
    assert training_plan(1_000_000, 384) == (64_000, 1000)
    # 100M docs: rows held to the cap, k to cap / 64 (each centroid keeps its 64 points)
    rows, k = training_plan(100_000_000, 384, memory_mb=96)
    assert rows == 96 * 2**20 // (384 * 4) == 65_536 and k == 1024
    assert training_plan(10, 384) == (10, 1)
    assert training_plan(10**6, 384, n_clusters=7) == (7 * 64, 7)
    assert sample_hash_bound(100, 100) == 2**64
    assert 0 < sample_hash_bound(10**8, 65_536) < 2**64 * 0.001


def test_bottom_k_memory_stays_at_the_cap_whatever_the_number_of_rows():
    """The sample's memory is set by the cap: 4x the rows, streamed in 40 partial samples
    merged one at a time, do not grow the peak (the k-means sample of 100M documents holds
    what the one of 1M does, once the cap binds)."""
    import tracemalloc

    from curate.scorers.clustering import BottomK, id_hashes64

    dim, cap_mb, n_max = 64, 0.125, 160_000  # a cap of 512 rows of 256 bytes
    ids = [str(i) for i in range(n_max)]
    hashes = id_hashes64(ids).tolist()
    rng = np.random.default_rng(0)
    payloads = [v.tobytes() for v in rng.normal(size=(500, dim)).astype(np.float32)]

    def partial(p, n_rows):
        acc = BottomK(sample_size=10**9, memory_mb=cap_mb)
        for i in range(p * n_rows, (p + 1) * n_rows):
            acc.add(hashes[i], ids[i], payloads[i % 500])
        return acc

    def peak(n_docs):
        tracemalloc.start()
        merged = BottomK(sample_size=10**9, memory_mb=cap_mb)
        for acc in (partial(p, n_docs // 40) for p in range(40)):  # streamed, as a runner merges
            merged.merge(acc)
        size = len(merged)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return size, top

    small_rows, small = peak(40_000)  # partials of 1,000 rows: each already above the cap
    big_rows, big = peak(n_max)
    assert small_rows == big_rows == 512
    assert big < 1.25 * small
    assert big < 3 * 512 * (dim * 4 + 300)  # a merged and a partial sample, with overheads


def test_assign_batch_equals_assign_one_bit_for_bit_even_on_near_ties():
    rng = np.random.default_rng(6)
    centroids = unit(rng.normal(size=(20, 48)))
    centroids[7] = centroids[3]  # an exact tie: the smaller index must win
    centroids[11] = unit(centroids[5] + 1e-6 * rng.normal(size=48))  # near tie, BLAS-rounding close
    model = ClusterModel(centroids=centroids, leaf_offsets=np.arange(20, dtype=np.int64))
    x = np.concatenate([unit(rng.normal(size=(600, 48))),
                        unit(centroids[[3, 5, 11]] + 1e-3 * rng.normal(size=(3, 48))),
                        centroids[[3, 5, 11, 7]]])
    x[10] *= 2.5  # one row not unit: normalised alone, the rest of its batch untouched
    x[20] = 0.0
    one = [model.assign_one(v) for v in x]
    for size in (1, 7, 256, len(x)):
        got = []
        for s in range(0, len(x), size):
            leaves, sims = model.assign_batch(x[s:s + size])
            assert all(type(v) is int for v in leaves) and all(type(v) is float for v in sims)
            got += list(zip(leaves, sims))
        assert got == one
    assert one[-1][0] == 3 and one[-4][0] == 3  # centroid 7 (a copy of 3) never wins
    assert model.assign_batch([]) == ([], [])


def test_fixed_point_dots_do_not_depend_on_the_summation_order():
    from curate.scorers.clustering import FIXED_POINT_BITS, fixed_point_dots

    rng = np.random.default_rng(7)
    a, b = unit(rng.normal(size=(50, 384))), unit(rng.normal(size=(50, 384)))
    ref = fixed_point_dots(a, b)
    for _ in range(3):
        perm = rng.permutation(384)
        assert np.array_equal(fixed_point_dots(a[:, perm], b[:, perm]), ref)
    np.testing.assert_allclose(ref / 2.0**FIXED_POINT_BITS, np.einsum("ij,ij->i", a, b), atol=1e-6)

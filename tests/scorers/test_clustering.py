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

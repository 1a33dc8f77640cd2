"""Semantic dedup on synthetic embeddings: correctness, determinism, bounded memory."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

pytest.importorskip("faiss")

from curate.scorers.clustering import ClusterModel, default_n_clusters, in_sample, sample_mask
from curate.scorers.semdedup import (
    SemDedupConfig,
    TIE_TOLERANCE,
    _max_earlier_similarity,
    dedup_cluster,
    rank_order,
    semantic_dedup,
)

DIM = 64


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def planted_corpus(n_base=2000, n_dups=200, noise=0.08, seed=0, centers=20):
    """Clustered base vectors plus noisy copies (cos ~0.99) of the first n_dups of them."""
    rng = np.random.default_rng(seed)
    c = unit(rng.normal(size=(centers, DIM)))
    base = unit(c[rng.integers(0, centers, n_base)] + 0.9 * rng.normal(size=(n_base, DIM)) / np.sqrt(DIM) * 3)
    dups = unit(base[:n_dups] + noise * rng.normal(size=(n_dups, DIM)) / np.sqrt(DIM))
    x = np.concatenate([base, dups]).astype(np.float32)
    ids = [f"b{i}" for i in range(n_base)] + [f"d{i}" for i in range(n_dups)]
    return ids, x


def test_blocked_max_matches_brute_force():
    rng = np.random.default_rng(1)
    x = unit(rng.normal(size=(257, 16))).astype(np.float32)
    s = x @ x.T
    for block in (1, 7, 64, 1000):
        best, arg, tile = _max_earlier_similarity(x, block)
        assert arg[0] == -1
        for i in range(1, len(x)):
            assert arg[i] == int(np.argmax(s[i, :i]))
            assert best[i] == pytest.approx(s[i, :i].max(), abs=1e-5)
        assert tile <= block * block


def test_finds_planted_duplicates_and_keeps_the_better_one():
    ids, x = planted_corpus()
    quality = np.array([0.1 if i.startswith("d") else 0.9 for i in ids])
    result = semantic_dedup(ids, x, quality=quality, config=SemDedupConfig(eps=0.05, n_clusters=8))
    removed = {ids[i] for i in np.flatnonzero(result.is_duplicate)}
    # a copy and its original can fall on two sides of a cluster border (SemDeDup's known
    # recall loss), so require most, and no false positive
    assert removed <= {f"d{i}" for i in range(200)}
    assert len(removed) >= 190
    for name in removed:
        j = ids.index(name)
        assert result.matched_id[j] == "b" + name[1:]
        assert result.similarity[j] > 0.95
    assert len(result.removed_pairs()) == len(removed)
    assert all(isinstance(int(c), int) for c in result.cluster)

    # ranking by quality decides which copy stays
    flipped = semantic_dedup(ids, x, quality=1 - quality, config=SemDedupConfig(eps=0.05, n_clusters=8))
    removed_flipped = {ids[i] for i in np.flatnonzero(flipped.is_duplicate)}
    assert removed_flipped == {"b" + name[1:] for name in removed}


def test_identical_across_runs_and_input_order():
    ids, x = planted_corpus(seed=3)
    cfg = SemDedupConfig(eps=0.05)
    a = semantic_dedup(ids, x, config=cfg)
    b = semantic_dedup(ids, x, config=cfg)
    assert np.array_equal(a.is_duplicate, b.is_duplicate)
    assert a.matched_id == b.matched_id
    assert np.array_equal(a.cluster, b.cluster)
    np.testing.assert_array_equal(a.model.centroids, b.model.centroids)
    # the sample is chosen by id hash, so shuffling the input changes nothing
    perm = np.random.default_rng(0).permutation(len(ids))
    c = semantic_dedup([ids[p] for p in perm], x[perm], config=cfg)
    assert {ids[p] for p in perm[c.is_duplicate]} == {ids[i] for i in np.flatnonzero(a.is_duplicate)}


def test_rank_orders():
    ids = ["a", "b", "c"]
    q = np.array([0.2, 0.9, 0.5])
    csim = np.array([0.9, 0.1, 0.5])
    assert list(rank_order(ids, "quality", q, csim)) == [1, 2, 0]
    assert list(rank_order(ids, "far", q, csim)) == [1, 2, 0]
    assert list(rank_order(ids, "close", q, csim)) == [0, 2, 1]
    assert list(rank_order(ids, "quality", None, None)) == [0, 1, 2]  # ties: by id
    with pytest.raises(ValueError):
        SemDedupConfig(ranking="random")
    with pytest.raises(ValueError):
        SemDedupConfig(eps=1.5)


def test_deterministic_hash_sample_and_default_k():
    ids = [f"doc-{i}" for i in range(20000)]
    m = sample_mask(ids, 0.1, seed=0)
    assert 0.09 < m.mean() < 0.11
    assert np.array_equal(m, sample_mask(ids, 0.1, seed=0))
    assert not np.array_equal(m, sample_mask(ids, 0.1, seed=1))
    assert in_sample("x", 1.0)
    assert default_n_clusters(300) == 1
    assert default_n_clusters(1_000_000) == 1000


def test_hot_cluster_split_in_model_gives_plain_int_leaves():
    rng = np.random.default_rng(0)
    hot = unit(np.ones(DIM) + 0.3 * rng.normal(size=(6000, DIM)))
    cold = unit(rng.normal(size=(600, DIM)))
    x = np.concatenate([hot, cold]).astype(np.float32)
    model = ClusterModel.fit(x, 4, n_docs=len(x), max_cluster_size=1000, seed=0)
    assert model.sub_centroids, "the hot cluster should have been split"
    leaf, _ = model.assign(x)
    assert np.bincount(leaf).max() < 3000
    one, sim = model.assign_one(x[0])
    assert type(one) is int and one == leaf[0] and isinstance(sim, float)
    assert model.n_leaves == leaf.max() + 1 or model.n_leaves > leaf.max()


def test_hot_cluster_is_split_and_memory_stays_far_below_n_squared():
    """One 16k-document cluster above a 2k cap: split, tiled, and every planted copy found."""
    rng = np.random.default_rng(5)
    n, n_dups = 16_000, 300
    base = unit(np.ones(DIM) + 0.35 * rng.normal(size=(n, DIM))).astype(np.float32)
    dups = unit(base[:n_dups] + 0.005 * rng.normal(size=(n_dups, DIM))).astype(np.float32)
    x = np.concatenate([base, dups])
    order = np.arange(len(x))  # originals rank before their copies
    tracemalloc.start()
    out = dedup_cluster(x, order, eps=0.02, block_size=512, max_cluster_size=2000, seed=0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    n_total = len(x)
    full_matrix_bytes = n_total * n_total * 4
    assert out.n_subgroups > 1
    assert out.max_tile_elements <= 512 * 512
    assert peak < full_matrix_bytes / 50, (peak, full_matrix_bytes)
    found = out.is_duplicate[n:].mean()
    assert found >= 0.95
    assert out.is_duplicate[:n].mean() < 0.01
    assert np.all(out.matched[n:][out.is_duplicate[n:]] == np.arange(n_dups)[out.is_duplicate[n:]])


@pytest.mark.parametrize("n,block,strip", [(700, 1000, 256), (700, 300, 64), (1025, 1024, 256), (513, 512, 512), (50, 16, 5)])
def test_diagonal_strips_match_brute_force(n, block, strip):
    rng = np.random.default_rng(n + block + strip)
    x = unit(rng.normal(size=(n, 24))).astype(np.float32)
    x[n // 2] = x[n // 3]  # an exact tie: the earlier column must win, as with one argmax
    x[n // 2 + 1] = x[n // 3]
    s = x.astype(np.float64) @ x.T.astype(np.float64)  # the exact ranking, no float32 rounding
    best, arg, tile = _max_earlier_similarity(x, block, strip)
    assert arg[0] == -1 and best[0] == -np.inf
    for i in range(1, n):
        top = s[i, :i].max()
        # columns within the tie tolerance are one value (decided by index): the answer is no
        # later than the first surely-tied column and near the maximum (float32 rounding: 1e-6)
        surely_tied = np.flatnonzero(s[i, :i] >= top - TIE_TOLERANCE + 1e-6)
        assert arg[i] <= surely_tied[0], i
        assert s[i, arg[i]] >= top - 2 * TIE_TOLERANCE - 1e-6, i
        if len(np.flatnonzero(s[i, :i] >= top - 2 * TIE_TOLERANCE)) == 1:
            assert arg[i] == int(np.argmax(s[i, :i])), i  # a clear winner is found exactly
        assert best[i] == pytest.approx(top, abs=1e-5)
    # the planted exact ties go to the earliest equal column, whatever the kernel's rounding
    assert arg[n // 2] == n // 3 and arg[n // 2 + 1] == n // 3
    assert tile <= block * block


def test_worker_count_does_not_change_the_result():
    ids, x = planted_corpus(seed=4)
    cfg = SemDedupConfig(eps=0.05, n_clusters=6)
    one = semantic_dedup(ids, x, config=cfg, workers=1)
    two = semantic_dedup(ids, x, config=cfg, workers=3)
    assert np.array_equal(one.is_duplicate, two.is_duplicate)
    assert one.matched_id == two.matched_id
    np.testing.assert_array_equal(one.similarity, two.similarity)


def _pair_with_cosine(target: float, seed: int = 0) -> np.ndarray:
    """Two float32 unit-ish rows whose exact cosine (exact_cosine) is near ``target``."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=384)
    a /= np.linalg.norm(a)
    b = rng.normal(size=384)
    b -= (b @ a) * a
    b /= np.linalg.norm(b)
    return np.stack([a, target * a + np.sqrt(1 - target ** 2) * b]).astype(np.float32)


def test_pairs_at_the_threshold_are_decided_on_the_exact_cosine():
    from curate.scorers.semdedup import dedup_cluster, exact_cosine

    decided = {}
    for k, delta in enumerate((-3e-7, -4e-8, 4e-8, 3e-7, 5e-5)):
        x = _pair_with_cosine(0.9 + delta, seed=k)
        exact = exact_cosine(x[0], x[1])
        out = dedup_cluster(x, np.array([0, 1]), eps=0.1, normalized=True)
        assert bool(out.is_duplicate[1]) == (exact > 0.9), (delta, exact, out.similarity[1])
        assert not out.is_duplicate[0]
        decided[delta] = bool(out.is_duplicate[1])
    assert set(decided.values()) == {True, False}  # both sides of the threshold were exercised


def test_rank_keys_equal_after_rounding_are_ties_broken_by_id():
    from curate.scorers.semdedup import rank_order

    order = rank_order(["b", "a", "c"], "quality", np.array([0.5 + 1e-9, 0.5, 0.4]))
    assert order.tolist() == [1, 0, 2]  # a and b tie at 1e-6: the smaller id first

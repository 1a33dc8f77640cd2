"""Semantic deduplication (SemDeDup, Abbas et al. 2023) on document embeddings.

1. Fit a spherical k-means on a deterministic, bounded sample: the documents with the
   smallest id hashes, as many as ``training_plan`` allows under the sample-size and memory
   caps (``scorers.clustering``).
2. Assign every document to its nearest centroid (hot clusters have sub-centroids, so a
   document lands in a leaf cluster; leaf ids are plain ints).
3. Inside each leaf, rank the documents (default: highest quality score first) and mark a
   document a duplicate when its cosine similarity to some earlier-ranked document exceeds
   ``1 - eps``; record that document and the similarity.

Step 3 runs in tiles of ``block_size`` x ``block_size`` with a running maximum, so memory is
O(n * d + block_size**2) for a cluster of n documents, never O(n**2).  A group that still
exceeds ``max_cluster_size`` (the size estimate of step 1 can be off, e.g. for a million
copies of one template) is split again by k-means before comparing.

Comparing against *all* earlier-ranked documents (removed ones included) is what the paper
does; it makes each document's decision independent of the others', hence parallel and
order-free.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from curate.scorers.clustering import (
    DEFAULT_MAX_CLUSTER_SIZE,
    DEFAULT_SAMPLE_MEMORY_MB,
    DEFAULT_SAMPLE_SIZE,
    POINTS_PER_CENTROID,
    ClusterModel,
    as_unit_rows,
    bottom_k_rows,
    default_n_clusters,
    id_hashes64,
    normalize_rows,
    sample_hash_bound,
    spherical_kmeans,
    training_plan,
)

#: Default threshold: a pair is a duplicate when cosine > 1 - eps.  Chosen with the
#: acceptance test on MiniLM (tests/scorers/test_semdedup_acceptance.py): planted
#: paraphrases (sentences shuffled + a boilerplate header) sit above 0.9 (96 % of 80) while
#: < 1 % of distinct real news/C4 documents have a neighbour above it (sentence-mode MiniLM).
DEFAULT_EPS = 0.1
RANKINGS = ("quality", "far", "close")
DEFAULT_BLOCK_SIZE = 1024
#: Ranking keys (quality scores, centroid cosines) are compared at this many decimals (the
#: resolution of embedding scores, scorers.embedding_quality.SCORE_DECIMALS).
RANK_DECIMALS = 6
#: A document whose best float32 cosine is within this margin of the threshold 1 - eps is
#: decided on exact cosines instead (``_decide_near_threshold``).  float32 products of unit
#: rows err by at most ~d * 2^-24 (2.3e-5 at d = 384), so outside the margin the float32 answer
#: is the exact one, and inside it the answer no longer depends on a BLAS kernel or tile shape.
DECISION_MARGIN = 1e-4


@dataclass(frozen=True)
class SemDedupConfig:
    """Parameters of semantic dedup (all have defaults; see the module docstring)."""

    eps: float = DEFAULT_EPS
    n_clusters: int | None = None  # None: default_n_clusters(n_docs)
    ranking: str = "quality"  # "quality" (highest first), "far"/"close" (from centroid)
    max_cluster_size: int = DEFAULT_MAX_CLUSTER_SIZE
    block_size: int = DEFAULT_BLOCK_SIZE
    points_per_centroid: int = POINTS_PER_CENTROID
    seed: int = 0
    niter: int = 20
    sample_size: int = DEFAULT_SAMPLE_SIZE  # most k-means training rows
    sample_memory_mb: float = DEFAULT_SAMPLE_MEMORY_MB  # most MB of training vectors (rows x dim x 4)

    def __post_init__(self) -> None:
        if not 0.0 < self.eps < 1.0:
            raise ValueError(f"semantic dedup eps must be in (0, 1), got {self.eps}")
        if self.ranking not in RANKINGS:
            raise ValueError(f"semantic dedup ranking must be one of {RANKINGS}, got {self.ranking!r}")
        if self.block_size < 1 or self.max_cluster_size < 2:
            raise ValueError("block_size must be >= 1 and max_cluster_size >= 2")
        if self.sample_size < 1 or not self.sample_memory_mb > 0:
            raise ValueError("sample_size must be >= 1 and sample_memory_mb > 0")

    def clusters_for(self, n_docs: int) -> int:
        """k before the sample caps (``training_plan`` gives the k actually fitted)."""
        return self.n_clusters or default_n_clusters(n_docs)

    def training_plan(self, n_docs: int, dim: int) -> tuple[int, int]:
        """(training rows, k) for ``n_docs`` vectors of ``dim`` (``clustering.training_plan``)."""
        return training_plan(n_docs, dim, self.n_clusters, points_per_centroid=self.points_per_centroid,
                             sample_size=self.sample_size, memory_mb=self.sample_memory_mb)


def rank_order(
    ids: Sequence[str],
    ranking: str,
    quality: np.ndarray | None = None,
    centroid_similarity: np.ndarray | None = None,
) -> np.ndarray:
    """Indices of the documents, best (kept first) to worst; ties broken by id.

    ``quality`` ranking without quality scores falls back to ``far`` (SemDeDup's choice:
    keep the least prototypical copy).  Keys are rounded to ``RANK_DECIMALS`` first, so keys
    that differ only by float rounding are ties, decided by id.
    """
    id_key = np.asarray(ids, dtype=object).astype(str)
    if ranking == "quality" and quality is not None:
        key = -np.asarray(quality, dtype=np.float64)
    elif ranking in ("quality", "far") and centroid_similarity is not None:
        key = np.asarray(centroid_similarity, dtype=np.float64)
    elif ranking == "close" and centroid_similarity is not None:
        key = -np.asarray(centroid_similarity, dtype=np.float64)
    else:
        key = np.zeros(len(id_key))
    key = np.where(np.isnan(key), np.inf, np.round(key, RANK_DECIMALS))  # missing scores rank last
    return np.lexsort((id_key, key))


@dataclass
class ClusterDedup:
    """Per-document outcome for one group, in the group's input order."""

    is_duplicate: np.ndarray  # bool
    matched: np.ndarray  # int64 index (into the group) of the most similar earlier doc, -1 if none
    similarity: np.ndarray  # float32 cosine to that doc, nan if none
    n_subgroups: int = 1  # >1 when the group was split for being above the size cap
    max_tile_elements: int = 0  # largest similarity tile computed (memory witness)


#: Rows per product inside a diagonal tile: the strict-lower-triangle mask then touches
#: only a strip x strip square per product instead of the whole block x block tile.
DIAGONAL_STRIP = 256
# Cosines of unit float32 rows closer than this are one value: the same product rounds
# differently in another BLAS kernel or tile shape by up to ~d * 2^-24 (2.3e-5 at d = 384 in the
# worst case, ~1e-6 typically), so which of two equal neighbours wins is decided by index.
TIE_TOLERANCE = 1e-5


def _max_earlier_similarity(
    ranked: np.ndarray, block: int, strip: int = DIAGONAL_STRIP,
) -> tuple[np.ndarray, np.ndarray, int]:
    """For row i of ``ranked`` (unit rows), max cosine and argmax over rows j < i.

    Tiles of at most block x block; running max per row.  The diagonal tile of each row
    block is done in strips of ``strip`` rows against the columns up to the strip's end,
    so only earlier columns are computed (half the products of a full tile) and only the
    strip's own square is masked.  Ties go to the earliest column: columns whose cosine is
    within ``TIE_TOLERANCE`` of the row's maximum count as tied, so the choice is made by index
    and not by how a BLAS kernel rounded two equal products.  ``best`` is the maximum itself.
    """
    n = len(ranked)
    best = np.full(n, -np.inf, dtype=np.float32)
    arg = np.full(n, -1, dtype=np.int64)
    max_tile = 0
    strip = max(1, min(strip, block))
    # 0 strictly below the diagonal, -inf on and above: added to a strip's own square
    mask = np.triu(np.full((strip, strip), -np.inf, dtype=np.float32))

    def merge(r0: int, c0: int, tile: np.ndarray) -> None:
        val = tile.max(axis=1)
        col = (tile >= (val - TIE_TOLERANCE)[:, None]).argmax(axis=1)  # earliest near-maximum
        r1 = r0 + len(tile)
        # tiles come in column order: a later tile takes the row only if clearly better
        clearly = val > best[r0:r1] + TIE_TOLERANCE
        arg[r0:r1][clearly] = c0 + col[clearly]
        best[r0:r1] = np.maximum(best[r0:r1], val)

    for rs in range(0, n, block):
        re = min(rs + block, n)
        rows = ranked[rs:re]
        for cs in range(0, rs, block):  # tiles wholly before the row block
            tile = rows @ ranked[cs:cs + block].T
            max_tile = max(max_tile, tile.size)
            merge(rs, cs, tile)
        for a in range(rs, re, strip):  # the diagonal tile, strip by strip
            b = min(a + strip, re)
            tile = ranked[a:b] @ ranked[rs:b].T  # (b - a) x (b - rs)
            max_tile = max(max_tile, tile.size)
            tile[:, a - rs:] += mask[:b - a, :b - a]
            merge(a, rs, tile)
    return best, arg, max_tile


def exact_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The dot product of two float32 rows, correctly rounded to float64.

    Each float32 x float32 product is exact in float64 (48 significant bits) and ``math.fsum``
    sums exactly, so the value is the same on every machine and in every summation order.
    """
    return math.fsum((np.asarray(a, dtype=np.float64) * np.asarray(b, dtype=np.float64)).tolist())


def _decide_near_threshold(ranked: np.ndarray, best: np.ndarray, arg: np.ndarray, threshold: float,
                           margin: float = DECISION_MARGIN) -> None:
    """Re-decide, in place, rows whose best float32 cosine lies within ``margin`` of ``threshold``.

    For such a row the cosines to every earlier row are recomputed in float64 and, where those
    are within 1e-9 of the threshold, exactly (``exact_cosine``); the row is a duplicate when
    one of them exceeds the threshold. ``best`` becomes the best of those cosines (rounded to
    float32: pushed to just above or at most the threshold to agree with the decision) and
    ``arg`` the earliest row within ``TIE_TOLERANCE`` of it.
    """
    near = np.flatnonzero((arg >= 0) & (np.abs(best.astype(np.float64) - threshold) <= margin))
    # the caller tests float32 best > float32(threshold): the stored value must agree with
    # the exact decision (NumPy compares a float32 array with a Python float in float32)
    threshold32 = np.float32(threshold)
    for i in near.tolist():
        sims = ranked[:i].astype(np.float64) @ ranked[i].astype(np.float64)
        for j in np.flatnonzero(np.abs(sims - threshold) <= 1e-9).tolist():
            sims[j] = exact_cosine(ranked[j], ranked[i])
        top = float(sims.max())
        duplicate = top > threshold
        pick = sims >= top - TIE_TOLERANCE
        if duplicate:
            pick &= sims > threshold
        arg[i] = int(np.flatnonzero(pick)[0])
        value = np.float32(top)
        if duplicate and not value > threshold32:
            value = np.nextafter(threshold32, np.float32(2.0))
        elif not duplicate and value > threshold32:
            value = threshold32
        best[i] = value


def dedup_cluster(
    embeddings: np.ndarray,
    order: np.ndarray,
    eps: float = DEFAULT_EPS,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    max_cluster_size: int | None = DEFAULT_MAX_CLUSTER_SIZE,
    seed: int = 0,
    normalized: bool = False,
) -> ClusterDedup:
    """Mark duplicates inside one cluster.

    ``order`` is the ranking (indices into ``embeddings``, best first, e.g. from
    ``rank_order``).  Groups above ``max_cluster_size`` are split by k-means first.
    ``normalized=True`` promises unit-norm float32 rows and saves a copy.
    """
    n = len(embeddings)
    is_dup = np.zeros(n, dtype=bool)
    matched = np.full(n, -1, dtype=np.int64)
    similarity = np.full(n, np.nan, dtype=np.float32)
    if n == 0:
        return ClusterDedup(is_dup, matched, similarity, 0, 0)
    x = embeddings if normalized else normalize_rows(embeddings)
    order = np.asarray(order, dtype=np.int64)
    groups = [order]
    if max_cluster_size is not None and n > max_cluster_size:
        groups = _split_ranked(x, order, max_cluster_size, seed)
    max_tile = 0
    best_all = np.full(n, -np.inf, dtype=np.float32)
    for group in groups:  # groups may overlap (split path): keep each document's maximum
        ranked = np.take(x, group, axis=0)
        best, arg, tile = _max_earlier_similarity(ranked, block_size)
        _decide_near_threshold(ranked, best, arg, 1.0 - eps)
        max_tile = max(max_tile, tile)
        better = (arg >= 0) & (best > best_all[group])
        rows = group[better]
        best_all[rows] = best[better]
        matched[rows] = group[arg[better]]
        similarity[rows] = best[better]
    is_dup = best_all > np.float32(1.0 - eps)
    return ClusterDedup(is_dup, matched, similarity, len(groups), max_tile)


def _split_ranked(x: np.ndarray, order: np.ndarray, cap: int, seed: int) -> list[np.ndarray]:
    """Split a ranked group into overlapping sub-groups of about ``cap`` (ranking kept inside).

    Seeded spherical k-means with k = ceil(2n / cap); each document joins the sub-groups of
    its two nearest sub-centroids, so a pair of near-copies lying on either side of a border
    still meets in one of them (the caller takes the maximum over groups).  Parts still above
    the cap are split again; if k-means cannot separate the points (e.g. all identical), the
    part is cut into consecutive ranked chunks: bounded work, copies meet inside each chunk.
    """
    rank_pos = np.empty(len(x), dtype=np.int64)
    rank_pos[order] = np.arange(len(order))
    pending, done = [(order, 0)], []
    while pending:
        part, depth = pending.pop()
        if len(part) <= cap:
            done.append(part)
            continue
        k = math.ceil(2 * len(part) / cap)
        centroids = spherical_kmeans(x[part], k, seed=seed + 1 + depth)
        if len(centroids) < 2 or depth >= 8:
            done.extend(part[s:s + cap] for s in range(0, len(part), cap))
            continue
        scores = x[part] @ centroids.T
        top2 = np.argsort(-scores, axis=1, kind="stable")[:, :2]
        pieces = []
        for c in range(len(centroids)):
            member = (top2[:, 0] == c) | (top2[:, 1] == c)
            piece = part[member]
            if len(piece):
                pieces.append(piece[np.argsort(rank_pos[piece], kind="stable")])
        if max(len(p) for p in pieces) >= len(part):
            done.extend(part[s:s + cap] for s in range(0, len(part), cap))
        else:
            pending.extend((p, depth + 1) for p in pieces)
    # deterministic processing order: by the best-ranked member's position in the ranking
    return sorted(done, key=lambda g: (int(rank_pos[g[0]]), len(g)))


@dataclass
class SemDedupResult:
    """Outcome of ``semantic_dedup``, one entry per input document, in input order."""

    ids: list[str]
    cluster: np.ndarray  # int64 leaf cluster id
    centroid_similarity: np.ndarray  # cosine to the top-level centroid
    is_duplicate: np.ndarray
    matched_id: list[str | None]
    similarity: np.ndarray
    model: ClusterModel
    eps: float
    n_split_groups: int = 0
    max_tile_elements: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def n_removed(self) -> int:
        return int(self.is_duplicate.sum())

    def removed_pairs(self) -> list[dict]:
        """Rows for RUN/dedup/: removed id, kept (matched) id, method, similarity."""
        return [
            {"removed_id": self.ids[i], "kept_id": self.matched_id[i], "method": "semantic",
             "similarity": float(self.similarity[i])}
            for i in np.flatnonzero(self.is_duplicate)
        ]


def training_sample_rows(ids: Sequence[str], dim: int, config: SemDedupConfig) -> np.ndarray:
    """Indices of the k-means training sample of an in-memory corpus, smallest (hash, id) first.

    The rule of the Beam stage (``pipelines.semdedup.FitClusters``): candidates below
    ``sample_hash_bound``, then the ``training_plan`` rows with the smallest (id hash, id).
    """
    rows, _ = config.training_plan(len(ids), dim)
    return bottom_k_rows(id_hashes64(ids, config.seed), ids, rows, sample_hash_bound(len(ids), rows))


def fit_cluster_model(ids: Sequence[str], embeddings: np.ndarray, config: SemDedupConfig) -> ClusterModel:
    """Fit the clustering on the bounded id-hash sample of a corpus held in memory."""
    rows = training_sample_rows(ids, embeddings.shape[1], config)
    return fit_on_sample([ids[r] for r in rows.tolist()], embeddings[rows], len(ids), config)


def fit_on_sample(sample_ids: Sequence[str], sample: np.ndarray, n_docs: int, config: SemDedupConfig) -> ClusterModel:
    """Fit on an already drawn sample (the Beam path passes its side input here).

    The start is drawn from the row order, so rows are sorted by id: input order never matters.
    """
    if len(sample_ids) == 0:
        raise ValueError("semantic dedup: the k-means training sample is empty")
    sample = np.asarray(sample, dtype=np.float32)
    _, k = config.training_plan(n_docs, sample.shape[1])
    order = np.argsort(np.asarray(sample_ids, dtype=object).astype(str), kind="stable")
    return ClusterModel.fit(
        sample[order], k, n_docs=n_docs,
        max_cluster_size=config.max_cluster_size, seed=config.seed, niter=config.niter,
    )


def dedup_group(
    ids: Sequence[str],
    embeddings: np.ndarray,
    config: SemDedupConfig,
    quality: np.ndarray | None = None,
    centroid_similarity: np.ndarray | None = None,
    *,
    normalized: bool = False,
) -> ClusterDedup:
    """Rank one leaf cluster's documents and mark its duplicates (plain and Beam paths)."""
    order = rank_order(ids, config.ranking, quality, centroid_similarity)
    return dedup_cluster(embeddings, order, config.eps, block_size=config.block_size,
                         max_cluster_size=config.max_cluster_size, seed=config.seed,
                         normalized=normalized)


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def semantic_dedup(
    ids: Sequence[str],
    embeddings: np.ndarray,
    quality: np.ndarray | None = None,
    config: SemDedupConfig = SemDedupConfig(),
    model: ClusterModel | None = None,
    *,
    workers: int | None = None,
) -> SemDedupResult:
    """Semantic dedup of an in-memory corpus (the Beam stage does the same per cluster).

    Leaf clusters are deduplicated by ``workers`` threads (default: one per CPU), each with
    a single-threaded BLAS: a ~1000-document cluster is too small a product to share
    between BLAS threads (on a loaded 2-core machine two BLAS threads were 5-9x slower than
    one on these products), while clusters are independent, so the result does not depend
    on the number of workers.
    """
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        raise ValueError("semantic dedup needs unique document ids")
    x = as_unit_rows(embeddings)
    n = len(ids)
    if model is None:
        model = fit_cluster_model(ids, x, config)
    leaf, csim = model.assign(x, normalized=True)
    is_dup = np.zeros(n, dtype=bool)
    matched = np.full(n, -1, dtype=np.int64)
    sim = np.full(n, np.nan, dtype=np.float32)
    q = None if quality is None else np.asarray(quality, dtype=np.float64)
    id_arr = np.asarray(ids, dtype=object)
    n_split, max_tile = 0, 0
    # one stable sort by leaf; each leaf's documents are then a contiguous slice
    by_leaf = np.argsort(leaf, kind="stable")
    bounds = np.flatnonzero(np.diff(leaf[by_leaf])) + 1
    leaves = [m for m in np.split(by_leaf, bounds) if len(m)]

    def dedup_leaf(members: np.ndarray) -> ClusterDedup:
        return dedup_group(list(id_arr[members]), np.take(x, members, axis=0), config,
                           None if q is None else q[members], csim[members], normalized=True)

    workers = _default_workers() if workers is None else max(1, int(workers))
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        # map yields in leaf order, so the assembly below is the same for any worker count
        for members, out in zip(leaves, pool.map(dedup_leaf, leaves)):
            is_dup[members] = out.is_duplicate
            has = out.matched >= 0
            matched[members[has]] = members[out.matched[has]]
            sim[members] = out.similarity
            n_split += out.n_subgroups > 1
            max_tile = max(max_tile, out.max_tile_elements)
    matched_id = [ids[m] if m >= 0 else None for m in matched.tolist()]
    return SemDedupResult(ids, leaf, csim, is_dup, matched_id, sim, model, config.eps,
                          n_split, max_tile)

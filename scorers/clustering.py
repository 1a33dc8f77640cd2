"""Spherical k-means over document embeddings, shared by semantic dedup and prototypicality.

The model is fitted once, on a deterministic sample (chosen by a hash of the document id,
never by a random draw, so the same corpus always gives the same centroids), then every
document is assigned to its nearest centroid.  Clusters whose estimated size exceeds a cap
are split by a second, seeded k-means on their own sample points, so the leaves that later
stages group by stay small enough for one worker.  Leaf ids are plain Python ints.

FAISS is imported lazily; its GPU k-means is used when FAISS sees a GPU, the CPU one
otherwise (same algorithm, equal up to float tolerance).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

#: Average number of documents per cluster that the default cluster count aims at.
#: Within-cluster work is quadratic in the cluster size, so the total dedup cost is
#: about n_docs * TARGET_CLUSTER_SIZE dot products: linear in the corpus size.
TARGET_CLUSTER_SIZE = 1000
#: Training points per centroid.  FAISS would silently subsample to 256 per centroid;
#: we choose the sample ourselves (by id hash) so the fit is reproducible outside FAISS too.
POINTS_PER_CENTROID = 64
#: Clusters estimated above this many documents are split (see ClusterModel.fit).
DEFAULT_MAX_CLUSTER_SIZE = 20_000


def default_n_clusters(n_docs: int, target_cluster_size: int = TARGET_CLUSTER_SIZE) -> int:
    """Default k: ceil(n_docs / target_cluster_size), at least 1.

    1M documents -> 1000 clusters of ~1000; 300 documents -> 1 cluster (all pairs, cheap).
    """
    if n_docs <= 0:
        return 1
    return max(1, math.ceil(n_docs / target_cluster_size))


def id_hash_unit(doc_id: str, seed: int = 0) -> float:
    """Map an id to a number in [0, 1) that depends only on (id, seed)."""
    digest = hashlib.blake2b(f"{seed}:{doc_id}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def sample_fraction(n_docs: int, n_clusters: int, points_per_centroid: int = POINTS_PER_CENTROID) -> float:
    """Fraction of documents to train k-means on (1.0 for small corpora)."""
    if n_docs <= 0:
        return 1.0
    return min(1.0, n_clusters * points_per_centroid / n_docs)


def in_sample(doc_id: str, fraction: float, seed: int = 0) -> bool:
    """Deterministic sampling rule: keep a document when hash(id) < fraction."""
    return fraction >= 1.0 or id_hash_unit(doc_id, seed) < fraction


def sample_mask(ids: Sequence[str], fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean mask of the documents that ``in_sample`` keeps."""
    return np.fromiter((in_sample(i, fraction, seed) for i in ids), dtype=bool, count=len(ids))


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Unit-normalise rows as float32 (zero rows stay zero)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _use_faiss_gpu() -> bool:
    import faiss

    return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0


def spherical_kmeans(x: np.ndarray, k: int, seed: int = 0, niter: int = 20) -> np.ndarray:
    """Unit-norm centroids (k' x d, k' = min(k, len(x))) of a seeded spherical k-means."""
    import faiss

    x = normalize_rows(x)
    k = max(1, min(int(k), len(x)))
    if k == 1:
        return normalize_rows(x.mean(axis=0, keepdims=True))
    km = faiss.Kmeans(
        x.shape[1], k, niter=niter, seed=seed, spherical=True,
        # we already chose the training sample; let FAISS use all of it
        max_points_per_centroid=max(256, math.ceil(len(x) / k) + 1),
        min_points_per_centroid=1, verbose=False, gpu=_use_faiss_gpu(),
    )
    km.train(x)
    return normalize_rows(km.centroids)


def nearest(x: np.ndarray, centroids: np.ndarray, block: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """(index, cosine) of the nearest centroid for each row of unit-norm ``x`` (blocked)."""
    idx = np.empty(len(x), dtype=np.int64)
    sim = np.empty(len(x), dtype=np.float32)
    ct = np.ascontiguousarray(centroids.T, dtype=np.float32)
    for s in range(0, len(x), block):
        scores = x[s:s + block] @ ct
        best = scores.argmax(axis=1)
        idx[s:s + block] = best
        sim[s:s + block] = scores[np.arange(len(best)), best]
    return idx, sim


@dataclass
class ClusterModel:
    """Two-level spherical k-means: top centroids, and for hot clusters, sub-centroids.

    ``leaf_offsets[c]`` is the first leaf id of top cluster c; a cluster that was not split
    owns one leaf, a split one owns ``len(sub_centroids[c])`` consecutive leaves.
    """

    centroids: np.ndarray
    sub_centroids: dict[int, np.ndarray] = field(default_factory=dict)
    leaf_offsets: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    seed: int = 0

    @property
    def n_clusters(self) -> int:
        return len(self.centroids)

    @property
    def n_leaves(self) -> int:
        last = self.n_clusters - 1
        return int(self.leaf_offsets[last]) + len(self.sub_centroids.get(last, [None]))

    @classmethod
    def fit(
        cls,
        sample: np.ndarray,
        n_clusters: int,
        *,
        n_docs: int | None = None,
        max_cluster_size: int = DEFAULT_MAX_CLUSTER_SIZE,
        seed: int = 0,
        niter: int = 20,
    ) -> "ClusterModel":
        """Fit on ``sample`` (the hash-sampled embeddings of a corpus of ``n_docs``).

        A cluster whose share of the sample, scaled to ``n_docs``, exceeds
        ``max_cluster_size`` gets ceil(2 * estimate / cap) sub-centroids fitted on its own
        sample points (factor 2: room for the estimate being low).
        """
        sample = normalize_rows(sample)
        if len(sample) == 0:
            raise ValueError("cannot fit clusters on an empty sample")
        n_docs = len(sample) if n_docs is None else n_docs
        centroids = spherical_kmeans(sample, n_clusters, seed=seed, niter=niter)
        top, _ = nearest(sample, centroids)
        scale = n_docs / len(sample)
        subs: dict[int, np.ndarray] = {}
        offsets = np.zeros(len(centroids), dtype=np.int64)
        next_leaf = 0
        for c in range(len(centroids)):
            offsets[c] = next_leaf
            members = sample[top == c]
            estimate = len(members) * scale
            if estimate > max_cluster_size and len(members) > 1:
                parts = math.ceil(2 * estimate / max_cluster_size)
                sub = spherical_kmeans(members, parts, seed=seed + 1 + c, niter=niter)
                if len(sub) > 1:
                    subs[c] = sub
            next_leaf += len(subs.get(c, [None]))
        return cls(centroids=centroids, sub_centroids=subs, leaf_offsets=offsets, seed=seed)

    def assign(self, x: np.ndarray, normalized: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(leaf id, cosine to the top-level centroid) for each row of ``x``.

        ``normalized=True`` promises unit-norm float32 rows and saves a copy of ``x``.
        """
        x = x if normalized else normalize_rows(x)
        top, sim = nearest(x, self.centroids)
        leaf = self.leaf_offsets[top].copy()
        for c, sub in self.sub_centroids.items():
            rows = np.flatnonzero(top == c)
            if len(rows):
                sub_idx, _ = nearest(x[rows], sub)
                leaf[rows] += sub_idx
        return leaf, sim

    def assign_one(self, vector: Iterable[float]) -> tuple[int, float]:
        """Plain-int leaf id and cosine for one embedding (the Beam per-element path)."""
        leaf, sim = self.assign(np.asarray(vector, dtype=np.float32)[None, :])
        return int(leaf[0]), float(sim[0])

    def leaf_centroid(self, leaf: int) -> np.ndarray:
        """The centroid a leaf's documents were assigned to (sub-centroid when split)."""
        top = int(np.searchsorted(self.leaf_offsets, leaf, side="right") - 1)
        sub = self.sub_centroids.get(top)
        return self.centroids[top] if sub is None else sub[leaf - int(self.leaf_offsets[top])]

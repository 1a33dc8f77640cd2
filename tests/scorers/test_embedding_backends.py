"""Fast CPU embedding backend (openvino-int8) vs the fp32 torch reference on real text."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from curate.scorers import embedding_backends as eb
from curate.scorers.embedding import Embedder

needs_ov = pytest.mark.skipif(not eb.backend_available("openvino-int8"),
                              reason="openvino-int8 backend needs the packages openvino and nncf (curate[fast-cpu])")


def _texts(corpora_dir, name, n, min_len=200, max_len=2000):
    out = []
    with gzip.open(corpora_dir / name, "rt", encoding="utf-8") as f:
        for line in f:
            t = json.loads(line).get("text") or ""
            if min_len <= len(t) <= max_len:
                out.append(t)
            if len(out) >= n:
                break
    return out


@pytest.fixture(scope="module")
def real_texts(corpora_dir):
    texts = (_texts(corpora_dir, "news_articles.jsonl.gz", 40) + _texts(corpora_dir, "c4_sample_b.jsonl.gz", 40)
             + _texts(corpora_dir, "wikipedia_30.jsonl.gz", 10, max_len=10 ** 7)
             + _texts(corpora_dir, "health_tweets.jsonl.gz", 30, min_len=40))
    assert len(texts) >= 100
    return texts


def test_unknown_backend_rejected():
    with pytest.raises(ValueError):
        Embedder(backend="tensorrt")


def test_default_backend_is_torch(monkeypatch):
    monkeypatch.delenv(eb.BACKEND_ENV, raising=False)
    emb = Embedder(device="cpu")
    assert emb.backend == "torch" and "openvino" not in emb.model_id


@needs_ov
@pytest.mark.parametrize("mode", ["truncate", "sentences"])
def test_int8_matches_fp32_per_document(real_texts, mode):
    ref = Embedder(device="cpu", mode=mode).encode(real_texts)
    fast = Embedder(device="cpu", mode=mode, backend="openvino-int8")
    got = fast.encode(real_texts)
    assert got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
    cos = (got * ref).sum(axis=1)
    assert cos.min() >= 0.99, f"min per-document cosine {cos.min():.4f} (median {np.median(cos):.4f})"
    assert fast.model_id.endswith("|openvino-int8") and fast.model_id != Embedder(device="cpu", mode=mode).model_id


@needs_ov
def test_int8_deterministic_and_order_independent(real_texts):
    fast = Embedder(device="cpu", mode="truncate", backend="openvino-int8")
    a = fast.encode(real_texts[:50])
    b = fast.encode(real_texts[:50])
    np.testing.assert_array_equal(a, b)
    c = fast.encode(real_texts[:50][::-1])[::-1]
    np.testing.assert_allclose(a, c, atol=2e-3)  # different batch composition, same documents
    assert fast.dimension == 384
    assert fast.encode([]).shape == (0, 384)


@needs_ov
def test_int8_shared_encoder_across_threads(real_texts):
    """Beam runs several DoFn threads on one process-wide encoder: each gets its own request
    queue, and every thread's rows come back where they belong (same as a lone call)."""
    from concurrent.futures import ThreadPoolExecutor

    fast = Embedder(device="cpu", mode="truncate", backend="openvino-int8")
    chunks = [real_texts[i::4] for i in range(4)]
    alone = [fast.encode(c) for c in chunks]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(fast.encode, chunks * 2))
    for i, got in enumerate(together):
        np.testing.assert_array_equal(got, alone[i % 4])
    assert fast.batch_tokens == eb.OPENVINO_BATCH_TOKENS

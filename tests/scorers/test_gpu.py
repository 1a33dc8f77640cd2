"""GPU checks (marker `gpu`; run with `pytest -m gpu` on a CUDA machine, skipped elsewhere).

CI has no GPU, so these run only by hand on a lent GPU machine; they assert the GPU paths
agree with the CPU reference, which is what the CPU-only suite cannot see.
"""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device: GPU tests run only on a GPU machine (-m gpu)", allow_module_level=True)


def _paragraphs(corpora_dir, n=128):
    texts = []
    with gzip.open(corpora_dir / "news_articles.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            text = json.loads(line)["text"]
            if len(text.split()) >= 60:
                texts.append(" ".join(text.split()[:140]))
            if len(texts) == n:
                break
    return texts


@pytest.mark.parametrize("mode", ["sentences", "truncate"])
def test_gpu_fp16_embeddings_match_cpu_fp32(corpora_dir, mode):
    from curate.scorers.embedding import Embedder

    texts = _paragraphs(corpora_dir)
    gpu = Embedder(device="cuda", mode=mode)
    assert gpu.precision == "fp16"  # chosen automatically on CUDA
    cpu = Embedder(device="cpu", precision="fp32", mode=mode)
    a, b = gpu.encode(texts), cpu.encode(texts)
    cosine = np.sum(a * b, axis=1)
    assert cosine.min() >= 0.99, cosine.min()
    again = gpu.encode(texts)  # cuBLAS may pick other kernels, but not other answers
    assert np.sum(again * a, axis=1).min() >= 0.9999


def test_gpu_is_picked_automatically():
    from curate.scorers.embedding import pick_device

    assert pick_device(None) == "cuda"


def test_faiss_gpu_semantic_dedup_matches_cpu(monkeypatch):
    faiss = pytest.importorskip("faiss")
    if not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() == 0:
        pytest.skip("faiss has no GPU support here (install the gpu extra: faiss-gpu)")
    import curate.scorers.clustering as clustering
    from curate.scorers.semdedup import SemDedupConfig, semantic_dedup

    rng = np.random.default_rng(0)
    centers = rng.standard_normal((200, 384)).astype(np.float32)
    x = centers[rng.integers(0, 200, 20000)] + rng.standard_normal((20000, 384)).astype(np.float32) * 0.06
    x[-200:] = x[:200] + rng.standard_normal((200, 384)).astype(np.float32) * 0.005  # planted copies
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = [f"d{i:05d}" for i in range(len(x))]
    gpu = semantic_dedup(ids, x, config=SemDedupConfig())
    monkeypatch.setattr(clustering, "_use_faiss_gpu", lambda: False)
    cpu = semantic_dedup(ids, x, config=SemDedupConfig())
    same = (gpu.is_duplicate == cpu.is_duplicate).mean()
    assert same > 0.999, same
    assert gpu.is_duplicate[-200:].mean() >= 0.95

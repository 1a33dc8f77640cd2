"""Embedding model path: fast batched encode vs plain encode, document units, cache."""
from __future__ import annotations

import gzip
import json
import random
import re

import numpy as np
import pytest

from curate.scorers.embedding import (
    EmbeddingCache,
    Embedder,
    document_units,
    pick_precision,
    text_key,
    token_budget_batches,
)


def test_token_budget_batches_cover_everything_within_budget():
    lengths = [5, 250, 30, 30, 120, 7, 256, 64] * 10
    batches = token_budget_batches(lengths, batch_tokens=512)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 512
    # longest first, so padding inside a batch is small
    assert lengths[batches[0][0]] == 256


def test_document_units_ignore_sentence_order_and_are_bounded():
    text = " ".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(40))
    sentences = re.split(r"(?<=[.!?])\s+", text)
    random.Random(0).shuffle(sentences)
    assert sorted(document_units(text)) == sorted(document_units(" ".join(sentences)))
    assert len(document_units(text)) == 16
    assert document_units("") == [""]
    long_run = " ".join(["word"] * 450)  # no punctuation: cut into windows
    assert len(document_units(long_run)) == 2  # windows of 200, 200, 50 words; repeats count once
    assert len(document_units(" ".join(f"w{i}" for i in range(450)))) == 3


def test_precision_follows_device():
    assert pick_precision("cuda") == "fp16"
    assert pick_precision("cpu") == "fp32"  # bf16 autocast only when asked
    assert pick_precision("cpu", "fp32") == "fp32"
    with pytest.raises(ValueError):
        pick_precision("cpu", "int4")
    with pytest.raises(ValueError):
        Embedder(mode="paragraphs")


@pytest.fixture(scope="module")
def real_texts(corpora_dir):
    with gzip.open(corpora_dir / "c4_sample_c.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"][:800] for _, line in zip(range(12), f)]


def test_fast_path_matches_plain_encode(real_texts):
    emb = Embedder(device="cpu", mode="truncate", batch_tokens=2048)
    fast = emb.encode(real_texts)
    plain = emb.model.encode(real_texts, batch_size=32, normalize_embeddings=True)
    cos = (fast * plain).sum(axis=1)
    assert fast.shape == (len(real_texts), 384) and fast.dtype == np.float32
    assert cos.min() >= 0.99, cos.min()
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)


def test_cache_returns_stored_vectors_without_the_model(real_texts, tmp_path):
    texts = real_texts[:6]
    first = Embedder(device="cpu", cache=EmbeddingCache(str(tmp_path))).encode(texts)
    assert list(tmp_path.glob("v2/p=*/part-*.parquet"))
    again = Embedder(device="cpu", cache=EmbeddingCache(str(tmp_path)))

    def boom(_texts):
        raise AssertionError("model called although every text was cached")

    again._encode_documents = boom
    np.testing.assert_array_equal(again.encode(texts), first)
    # a different model id misses the cache
    other = Embedder(device="cpu", mode="truncate")
    assert text_key(other.model_id, texts[0]) != text_key(again.model_id, texts[0])


def test_one_precision_per_run_is_fixed_before_the_run():
    from curate.pipelines.run_config import RunConfig
    from curate.scorers.embedding import run_precision

    assert run_precision(None, None, "torch") == "fp32"
    assert run_precision("cuda:0", None, "torch") == "fp16"
    assert run_precision(None, "bf16", "torch") == "bf16"
    assert run_precision(None, None, "openvino-int8") == "int8"
    for args in ((None, "int8", "torch"), (None, "bf16", "openvino-int8")):
        with pytest.raises(ValueError):
            run_precision(*args)
    embed = RunConfig.from_dict({"embed": {"enabled": True}}).to_dict()["embed"]
    assert (embed["precision"], embed["backend"]) == ("fp32", "torch")  # manifest + fingerprint
    assert RunConfig.from_dict({}).to_dict()["embed"]["precision"] is None  # embedding off


def test_fixed_shape_batches_depend_only_on_width():
    from curate.scorers.embedding_units import fixed_shape_batches, pad_widths

    lengths = [3, 15, 16, 17, 40, 255, 100, 2] * 30
    batches = fixed_shape_batches(lengths, 256, batch_tokens=1024)
    assert sorted(np.concatenate([b[0] for b in batches]).tolist()) == list(range(len(lengths)))
    rows_of = {}
    for idx, width, rows in batches:
        assert width in pad_widths(256) and len(idx) <= rows
        assert all(lengths[i] < width for i in idx)  # a padding position in every row
        assert all(lengths[i] >= max([w for w in pad_widths(256) if w < width], default=0) for i in idx)
        assert rows_of.setdefault(width, rows) == rows == min(512, 1024 // width)
    with pytest.raises(ValueError):
        fixed_shape_batches([256], 256, 1024)


def test_a_texts_vector_does_not_depend_on_its_batch(real_texts):
    emb = Embedder(device="cpu")
    together = emb.encode(real_texts)
    alone = np.stack([emb.encode([t])[0] for t in real_texts[:6]])
    shuffled = emb.encode(real_texts[::-1])[::-1]
    np.testing.assert_array_equal(alone, together[:6])  # bitwise, not approximately
    np.testing.assert_array_equal(shuffled, together)

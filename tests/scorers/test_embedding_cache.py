"""The embedding cache: per-batch lookups, bounded memory, merges, damage and concurrent writers."""
from __future__ import annotations

import logging
import multiprocessing
import tracemalloc

import numpy as np
import pytest

from curate.scorers.embedding_cache import FORMAT, MERGE_FILES, EmbeddingCache, text_key

MODEL = "test-model|fp32|x"


def vectors(n: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def fill(cache: EmbeddingCache, texts: list[str], vecs: np.ndarray, batch: int = 256) -> None:
    for s in range(0, len(texts), batch):
        cache.put(MODEL, texts[s:s + batch], vecs[s:s + batch])


def files(root) -> list:
    return sorted(root.glob(f"{FORMAT}/p=*/part-*.parquet"))


def test_lookups_equal_what_was_put_across_merges(tmp_path):
    texts = [f"document {i}" for i in range(6000)]
    vecs = vectors(len(texts))
    cache = EmbeddingCache(str(tmp_path))
    fill(cache, texts, vecs, batch=100)  # 60 puts: every partition's small files are merged
    per_partition = {}
    for f in files(tmp_path):
        per_partition.setdefault(f.parent.name, []).append(f)
    assert len(per_partition) == 16
    # 60 files were written per partition; merging keeps fewer than 8 per size tier
    assert max(len(v) for v in per_partition.values()) < 2 * MERGE_FILES
    fresh = EmbeddingCache(str(tmp_path))
    query = texts[::7] + ["never stored"]
    got, missing = fresh.get(MODEL, query)
    assert missing == [len(query) - 1]
    np.testing.assert_array_equal(got[:-1], vecs[::7])
    assert not got[-1].any()
    # another model id never sees these vectors
    assert EmbeddingCache(str(tmp_path)).get("other|fp32|x", texts[:5]) == (None, [0, 1, 2, 3, 4])


def test_a_lookup_reads_only_the_partitions_of_its_keys(tmp_path, caplog):
    texts = [f"t{i}" for i in range(2000)]
    vecs = vectors(len(texts), seed=1)
    fill(EmbeddingCache(str(tmp_path)), texts, vecs)
    query = texts[:3]
    mine = {text_key(MODEL, t)[0] for t in query}
    others = [f for f in files(tmp_path) if f.parent.name[2:] not in mine]
    assert others
    for f in others:  # any read of another partition would fail (and log) or lose vectors
        f.write_bytes(b"not parquet")
    with caplog.at_level(logging.WARNING):
        got, missing = EmbeddingCache(str(tmp_path)).get(MODEL, query)
    assert missing == [] and not caplog.records
    np.testing.assert_array_equal(got, vecs[:3])
    # the damaged partitions are misses with one log line, never an error or a wrong vector
    far = [t for t in texts if text_key(MODEL, t)[0] not in mine][:5]
    with caplog.at_level(logging.WARNING):
        got, missing = EmbeddingCache(str(tmp_path)).get(MODEL, far)
    assert missing == [0, 1, 2, 3, 4] and got is None
    assert any("unreadable" in r.getMessage() for r in caplog.records)


def _peak_of_lookup(root, query) -> int:
    cache = EmbeddingCache(str(root))
    tracemalloc.start()
    try:
        got, missing = cache.get(MODEL, query)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        assert not missing


def test_lookup_memory_does_not_grow_with_the_cache(tmp_path):
    dim = 384
    small, large = tmp_path / "small", tmp_path / "large"
    texts = [f"doc {i}" for i in range(24_000)]
    vecs = vectors(len(texts), dim, seed=2)
    fill(EmbeddingCache(str(small)), texts[:3_000], vecs[:3_000], batch=1000)
    fill(EmbeddingCache(str(large)), texts, vecs, batch=1000)
    query = texts[:256]
    whole = len(texts) * dim * 4  # 37 MB: what loading the cache whole would hold
    peak_small, peak_large = _peak_of_lookup(small, query), _peak_of_lookup(large, query)
    # bound: the batch's vectors, one footer and a few row groups, the index of the files read
    bound = 256 * dim * 4 + 4_000_000
    assert peak_large < bound < whole / 5, (peak_large, bound)
    assert peak_large < 2 * peak_small + 1_000_000, (peak_small, peak_large)


def test_damaged_rows_are_misses_and_old_shards_are_ignored(tmp_path, caplog):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [f"x{i}" for i in range(40)]
    vecs = vectors(40, seed=3)
    EmbeddingCache(str(tmp_path)).put(MODEL, texts, vecs)
    victim = files(tmp_path)[0]
    table = pq.read_table(victim)
    crc = table.column("crc").to_numpy().copy()
    crc[0] ^= 1
    pq.write_table(table.set_column(2, "crc", pa.array(crc, pa.uint32())), victim)
    bad_key = table.column("key")[0].as_py()
    # an old-format shard at the top: the earlier layout, same keys, wrong vectors
    pq.write_table(pa.table({"key": [text_key(MODEL, t) for t in texts],
                             "embedding": pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(40 * 64, np.float32)), 64)}),
                   tmp_path / "part-0123456789abcdef.parquet")
    with caplog.at_level(logging.WARNING):
        got, missing = EmbeddingCache(str(tmp_path)).get(MODEL, texts)
    assert [texts[i] for i in missing] == [t for t in texts if text_key(MODEL, t) == bad_key]
    hit = [i for i in range(40) if i not in missing]
    np.testing.assert_array_equal(got[hit], vecs[hit])
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "checksum mismatch" in messages and "earlier format" in messages


def _writer(args):
    root, start = args
    texts = [f"shared {i}" for i in range(start, start + 1500)]
    vecs = vectors(3000, seed=4)[start:start + 1500]
    fill(EmbeddingCache(root), texts, vecs, batch=50)


def test_concurrent_writers_lose_nothing(tmp_path):
    # two processes write overlapping key sets into the same partitions, merging as they go
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_writer, [(str(tmp_path), 0), (str(tmp_path), 1500 - 500)])
    texts = [f"shared {i}" for i in range(2500)]
    got, missing = EmbeddingCache(str(tmp_path)).get(MODEL, texts)
    assert missing == []
    np.testing.assert_array_equal(got, vectors(3000, seed=4)[:2500])
    assert not list(tmp_path.rglob(".tmp-*"))

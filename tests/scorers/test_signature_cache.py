"""scorers.signature_cache: the MinHash signature cache looked up per batch (a stash chunk):
values come back exactly, damaged rows and files are misses (never wrong values), concurrent
writers and merges lose nothing, a lookup's memory does not grow with the cache."""
from __future__ import annotations

import hashlib
import threading
import tracemalloc

import pytest

from curate.scorers import signature_cache as SC
from curate.scorers.signature_cache import SignatureCache

VALUE = 512  # 128 permutations x 4 bytes


def keys_of(start: int, stop: int) -> list[bytes]:
    return [hashlib.sha256(str(i).encode()).digest()[:16] for i in range(start, stop)]


def value_of(key: bytes) -> bytes:
    return hashlib.sha512(key).digest() * (VALUE // 64)


def cache(folder, **kw) -> SignatureCache:
    return SignatureCache(str(folder), VALUE, "minhash-v3-test", **kw)


def fill(folder, n: int, batch: int) -> None:
    c = cache(folder)
    for start in range(0, n, batch):
        keys = keys_of(start, min(n, start + batch))
        c.put(keys, [value_of(k) for k in keys])


def test_values_come_back_exactly_and_unknown_keys_are_misses(tmp_path):
    keys = keys_of(0, 300)
    cache(tmp_path).put(keys, [value_of(k) for k in keys])
    asked = keys[::7] + keys_of(1000, 1010) + keys[:3]  # repeats in a batch too
    got = cache(tmp_path).get(asked)  # a fresh instance: read from the files
    assert got == [value_of(k) if k in set(keys) else None for k in asked]
    assert cache(tmp_path).get([]) == []
    with pytest.raises(ValueError, match="16 bytes"):
        cache(tmp_path).get([b"short"])


def test_many_batches_are_merged_by_tier_and_every_value_stays_findable(tmp_path):
    fill(tmp_path, 20_000, 500)  # 40 batches: ~31 rows per partition each, merged 8 at a time
    files = sorted(tmp_path.rglob("*.sig"))
    assert len(files) < 16 * 8, len(files)  # fewer than MERGE_FILES files per tier and partition
    assert max(SC.rows_in_name(f.name) for f in files) > 100  # merges (a batch: ~31 rows a partition)
    keys = keys_of(0, 20_000)
    assert cache(tmp_path).get(keys) == [value_of(k) for k in keys]
    assert not list(tmp_path.rglob(".tmp-*"))


def test_a_damaged_row_is_a_miss_never_a_wrong_value(tmp_path):
    keys = keys_of(0, 50)
    c = cache(tmp_path)
    c.put(keys, [value_of(k) for k in keys])
    path = sorted(tmp_path.rglob("*.sig"))[0]
    data = bytearray(path.read_bytes())
    data[VALUE // 2] ^= 0x01  # one bit of row 0's signature
    path.write_bytes(bytes(data))
    reader = cache(tmp_path)
    got = reader.get(keys)
    assert sum(v is None for v in got) == 1 and reader.rejected_rows == 1
    assert all(v == value_of(k) for k, v in zip(keys, got) if v is not None)


def test_a_damaged_key_is_a_miss(tmp_path):
    keys = keys_of(0, 50)
    cache(tmp_path).put(keys, [value_of(k) for k in keys])
    path = sorted(tmp_path.rglob("*.sig"))[0]
    data = bytearray(path.read_bytes())
    rows = SC.rows_in_name(path.name)
    data[rows * (VALUE + SC.CHECK_BYTES) + 3] ^= 0x40  # a byte of the first key
    path.write_bytes(bytes(data))
    got = cache(tmp_path).get(keys)
    assert sum(v is None for v in got) >= 1
    assert all(v == value_of(k) for k, v in zip(keys, got) if v is not None)


def test_rows_are_bound_to_their_parameter_set(tmp_path):
    keys = keys_of(0, 20)
    cache(tmp_path).put(keys, [value_of(k) for k in keys])
    other = SignatureCache(str(tmp_path), VALUE, "minhash-v3-another-seed")
    assert other.get(keys) == [None] * 20 and other.rejected_rows == 20


def test_a_truncated_file_is_moved_aside_and_the_rest_still_read(tmp_path):
    keys = keys_of(0, 400)
    cache(tmp_path).put(keys, [value_of(k) for k in keys])
    damaged = sorted(tmp_path.rglob("*.sig"))[0]
    damaged.write_bytes(damaged.read_bytes()[:-10])
    warnings = []
    reader = cache(tmp_path, warn=warnings.append)
    got = reader.get(keys)
    assert reader.rejected_files == 1 and len(warnings) == 1 and str(damaged) in warnings[0]
    assert damaged.with_name(damaged.name + ".corrupt").exists() and not damaged.exists()
    lost = [k for k, v in zip(keys, got) if v is None]
    assert lost and all(SC.partition_of(k) == damaged.parent.name[2:] for k in lost)
    assert all(v == value_of(k) for k, v in zip(keys, got) if v is not None)


def test_a_cache_that_cannot_be_written_warns_once_and_is_skipped(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would be")
    warnings = []
    c = SignatureCache(str(blocker), VALUE, "x", warn=warnings.append)
    keys = keys_of(0, 10)
    c.put(keys, [value_of(k) for k in keys])
    c.put(keys, [value_of(k) for k in keys])
    assert len(warnings) == 1 and "not written" in warnings[0]
    assert c.get(keys) == [None] * 10


def test_concurrent_writers_and_merges_lose_nothing(tmp_path):
    """Two writers (their own instances, as two workers) put overlapping batches and merge the
    same partitions; a reader whose listing went stale meanwhile still finds every value."""
    reader = cache(tmp_path)
    first = keys_of(0, 200)
    cache(tmp_path).put(first, [value_of(k) for k in first])
    assert reader.get(first) == [value_of(k) for k in first]  # listings now held by the reader

    def writer(offset: int) -> None:
        c = cache(tmp_path)
        for start in range(offset, 6000 + offset, 150):
            keys = keys_of(start, start + 200)
            c.put(keys, [value_of(k) for k in keys])

    threads = [threading.Thread(target=writer, args=(o,)) for o in (0, 75)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    keys = keys_of(0, 6125)  # the last batch starts at 5925
    assert reader.get(keys) == [value_of(k) for k in keys]
    assert cache(tmp_path).get(keys) == [value_of(k) for k in keys]


def _lookup_peak(folder, keys) -> int:
    c = cache(folder)
    tracemalloc.start()
    got = c.get(keys)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert all(v is not None for v in got)
    return peak


def test_a_chunk_lookup_does_not_grow_with_the_cache(tmp_path):
    """One chunk's lookup (8,192 keys) against a cache of 16k and of 200k signatures: the
    larger cache costs reads, not memory (what is held: the hits, one run of key blocks, the
    fences of the files read)."""
    chunk = keys_of(0, 8192)
    fill(tmp_path / "small", 16_384, 8192)
    fill(tmp_path / "large", 200_000, 8192)
    small = _lookup_peak(tmp_path / "small", chunk)
    large = _lookup_peak(tmp_path / "large", chunk)
    hits = 8192 * (VALUE + 33)  # the returned values (bytes objects)
    assert large <= 1.25 * small + (512 << 10), (small, large)
    assert large <= hits + (4 << 20), (large, hits)


def test_the_index_stays_within_its_budget(tmp_path):
    fill(tmp_path, 20_000, 2000)
    c = cache(tmp_path, index_budget=4096)
    keys = keys_of(0, 20_000)
    assert c.get(keys) == [value_of(k) for k in keys]
    assert c._cost <= 4096 or len(c._index) == 1

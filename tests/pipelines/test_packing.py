"""Packed and spilled blobs (pipelines/packing.py): what a shuffle carries in the compact
pipeline is either a blob or a reference to it in a file, and `unpack` reads both the same."""
from __future__ import annotations

import numpy as np
import pytest

from curate.pipelines import packing
from curate.pipelines.packing import REF, is_ref, pack, spill, unpack


def test_a_reference_never_looks_like_a_blob():
    for obj in ([], [("a", 1)], b"\x00" * 1000, list(range(10_000))):
        blob = pack(obj)
        assert blob[:1] == b"\x78" and not is_ref(blob)  # zlib's header, never REF's first byte
    assert REF[:1] != b"\x78"


def test_spilled_blobs_read_back_as_the_blobs_did(tmp_path):
    rng = np.random.default_rng(0)
    items = [(k, pack([(f"id{k}-{i}", int(x)) for i, x in enumerate(rng.integers(0, 1 << 40, 3000))]))
             for k in range(5)]
    refs = spill(str(tmp_path / "spill"), items)
    files = list((tmp_path / "spill").glob("*.blobs"))
    assert len(files) == 1  # one file per flush, however many blobs
    assert [k for k, _ in refs] == [k for k, _ in items]
    assert all(is_ref(r) and len(r) < 200 for _, r in refs)  # what the shuffle holds: ~100 bytes
    assert sum(len(r) for _, r in refs) < sum(len(b) for _, b in items) / 100
    for (_, blob), (_, ref) in zip(items, refs):
        assert unpack(ref) == unpack(blob)
    arrays = spill(str(tmp_path / "spill"), [("pairs", pack(np.arange(40_000, dtype=np.int64).reshape(-1, 2)))])
    assert np.array_equal(unpack(arrays[0][1]), np.arange(40_000, dtype=np.int64).reshape(-1, 2))


def test_small_flushes_and_no_folder_stay_inline(tmp_path, monkeypatch):
    small = [(0, pack([1, 2, 3]))]
    assert spill(str(tmp_path / "s"), small) == small
    assert not (tmp_path / "s").exists()
    big = [(0, pack(list(range(100_000))))]
    assert spill(None, big) == big
    monkeypatch.setattr(packing, "SPILL_MIN_BYTES", 0)
    assert is_ref(spill(str(tmp_path / "s"), small)[0][1])


def test_a_cut_spill_file_fails_loudly(tmp_path):
    [(_, ref)] = spill(str(tmp_path), [(0, pack(list(range(50_000))))])
    [path] = tmp_path.glob("*.blobs")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(OSError, match="cut short"):
        unpack(ref)

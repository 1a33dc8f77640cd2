"""The compact pipeline (texts in the run's intermediate files, compact records in every
shuffle: pipelines/stash.py, stash_stages.py) decides exactly what the whole-document
pipeline decides: same pools, rows, dedup rows, filtered rows, dead letters and counters,
with chunks small enough that documents, buckets and near-duplicate components span many
chunks, big LSH buckets (star + chain pairs), renamed duplicate ids and exact duplicates."""
from __future__ import annotations

import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curate.pipelines import counters, packing
from curate.pipelines import stash as ST
from curate.pipelines import stash_stages
from curate.pipelines.inputs import expand_inputs
from curate.pipelines.run_config import RunConfig
from tests.pipelines.curation_runs import dead_letter_lines, run_curation_pipeline, sorted_rows, write_gzip_parts

MIN_SCORE = 0.245  # drops a few of these word-salad texts (scores ~0.239-0.26)


def _corpus(folder: Path) -> list[str]:
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(400)]
    base = [" ".join(rng.choice(vocab) for _ in range(rng.randint(12, 60))) for _ in range(60)]
    boiler = "this page uses cookies to improve your experience please accept all of them now or leave"
    records = []
    for i, text in enumerate(base):
        records.append({"id": f"d{i:03d}", "text": text})
        if i % 4 == 0:  # near copy: one word changed
            words = text.split()
            words[len(words) // 2] = "changed"
            records.append({"id": f"n{i:03d}", "text": " ".join(words)})
        if i % 9 == 0:  # exact copy under another id
            records.append({"id": f"e{i:03d}", "text": text})
    for k in range(45):  # one big near-duplicate cluster: buckets above max_bucket_all_pairs
        records.append({"id": f"b{k:03d}", "text": f"{boiler} ref{k}"})
    records += [{"id": "d001", "text": "a second document reusing an id that exists already"},
                {"id": "d001#1", "text": "an id that looks like a renamed one but is an input id"},
                {"text": "no id at all, so the content decides one"}, {"id": "z", "text": "   "},
                "not an object"]
    rng.shuffle(records)
    return write_gzip_parts(records, folder)


def _run(paths, out: Path, compact: bool, cache_dir=None) -> dict:
    config = RunConfig.from_dict({"filter": {"min_score": MIN_SCORE}, "pools": {"num_pools": 3}})
    result = run_curation_pipeline(expand_inputs(paths), out, config, compact, cache_dir=cache_dir)
    spilled = len(list((out / ST.WORK_DIR / "spill").glob("*.blobs")))
    ST.delete(str(out))
    return {"pools": sorted_rows(out, "pools", "id"), "dedup": sorted_rows(out, "dedup", "removed_id"),
            "filtered": sorted_rows(out, "filtered", "id"), "dead": dead_letter_lines(out),
            "counters": counters.query(result),
            "stats": pq.read_table(out / "stats.parquet").to_pylist(), "spilled": spilled}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _corpus(tmp_path_factory.mktemp("corpus"))


@pytest.mark.parametrize("cached, spill_all", [(False, False), (True, False), (False, True)],
                         ids=["plain", "cached", "every-blob-spilled"])
def test_compact_pipeline_decides_what_the_document_pipeline_decides(corpus, tmp_path, monkeypatch, cached, spill_all):
    if spill_all:  # every shuffled blob goes to a file and the shuffles carry references
        monkeypatch.setattr(packing, "SPILL_MIN_BYTES", 0)
    monkeypatch.setattr(ST, "CHUNK_ROWS", 5)  # many chunks: components and buckets span them
    # and some chunks cut early by characters (texts here are ~60-400 characters)
    monkeypatch.setattr(ST, "CHUNK_TEXT_CHARS", 900)
    monkeypatch.setattr(stash_stages, "BAND_PARTITIONS", 7)
    monkeypatch.setattr(stash_stages, "MEMBER_PARTITIONS", 3)
    monkeypatch.setattr(stash_stages, "PAIR_PARTITIONS", 2)  # many pairs of chunks per verifying call
    cache = str(tmp_path / "cache") if cached else None
    whole = _run(corpus, tmp_path / "whole", compact=False, cache_dir=cache)
    compact = _run(corpus, tmp_path / "compact", compact=True, cache_dir=cache)
    assert whole["pools"] and whole["dedup"] and whole["filtered"] and whole["dead"]
    assert {r["method"] for r in whole["dedup"]} == {"exact", "near"}
    assert any(r["id"].startswith("d001#") and r["id"] != "d001#1" for r in whole["pools"]), "no renamed id"
    big = [r for r in whole["dedup"] if r["removed_id"].startswith("b")]
    assert len(big) == 44 and {r["kept_id"] for r in big} == {"b000"}  # buckets of 45 ids: star + chain
    for key in ("pools", "dedup", "filtered", "dead", "stats"):
        assert compact[key] == whole[key], key
    if spill_all:
        assert compact["spilled"] > 20, compact["spilled"]  # head, pairs, edges, components, rows
    else:
        assert compact["spilled"] == 0  # blobs this small stay inline
    if cached:  # the second run read every signature from the cache the first one wrote
        assert whole["counters"].get("near_dedup.signature_cache_misses", 0) > 0
        assert compact["counters"].get("near_dedup.signature_cache_hits", 0) > 0
        assert compact["counters"].get("near_dedup.signature_cache_misses", 0) == 0
        assert not list((tmp_path / "cache").glob("minhash-v2-*"))
        assert list((tmp_path / "cache").glob("minhash-v3-*/p=*/part-*.sig"))
        for name in ("signature_cache_hits", "signature_cache_misses"):
            whole["counters"].pop(f"near_dedup.{name}", None)
            compact["counters"].pop(f"near_dedup.{name}", None)
    assert compact["counters"] == whole["counters"]
    assert not (tmp_path / "compact" / ST.WORK_DIR).exists()  # intermediate files never stay


def test_chunks_end_at_rows_or_characters_with_unique_ordered_locators(tmp_path, monkeypatch):
    monkeypatch.setattr(ST, "CHUNK_ROWS", 4)
    monkeypatch.setattr(ST, "CHUNK_TEXT_CHARS", 10)
    stash = ST.Stash(str(tmp_path), [])
    writer = ST.RawWriter(stash, 3)
    texts = ["a" * n for n in (1, 2, 3, 4, 5, 6, 1, 1, 1, 1, 12, 1)]
    locs = [writer.add(t) for t in texts]
    writer.close()
    assert locs == sorted(set(locs))  # unique, in reading order
    chunks: dict = {}
    for loc, text in zip(locs, texts):
        chunks.setdefault(ST.chunk_key(loc), []).append((ST.row_in_chunk(loc), text))
    # 4 rows (and 10 chars); 5+6 chars; 4 rows; 12 chars alone; the last text at close
    assert [len(v) for v in chunks.values()] == [4, 2, 4, 1, 1]
    for key, rows in chunks.items():
        stored = ST.read_table(stash.raw_path(key)).column("text").to_pylist()
        assert [r for r, _ in rows] == list(range(len(rows))) and stored == [t for _, t in rows]


def test_node_keys_order_as_their_ids():
    ids = ["a", "ab", "a\x00", "a\x00b", "a\x00\x00", "\x00", "", "b", "\ud800x", "\ue000", "\U00010000", "ä", "a\xff"]
    keys = {i: stash_stages.node_key(i, n * 7919) for n, i in enumerate(ids)}
    assert sorted(ids, key=lambda i: keys[i]) == sorted(ids)
    assert all(stash_stages.node_parts(keys[i]) == (i, n * 7919) for n, i in enumerate(ids))


def test_survivor_join_groups_are_bounded_by_chunks_not_components():
    """A component of 10,000 members: the survivor join's groups (one per pair of chunks)
    hold at most CHUNK_ROWS members each, whatever the component's size."""
    from collections import Counter

    kept = stash_stages.node_key("a0", ST.locator(0, 0))
    removed = [stash_stages.node_key(f"a{i}", ST.locator(i % 3, i)) for i in range(1, 10_000)]
    groups = Counter(stash_stages._removed_pair((node, kept))[0] for node in removed)
    assert len(groups) > 3 and max(groups.values()) <= ST.CHUNK_ROWS


def _survivor_similarity_peak(tmp_path, members: int) -> int:
    """Largest traced memory of one survivor-similarity call (one pair of chunks) for a
    component of `members` documents around one survivor, CHUNK_ROWS documents per chunk."""
    import tracemalloc

    import numpy as np
    import pyarrow as pa

    stash = ST.Stash(str(tmp_path / f"m{members}"), [])
    locs = [ST.locator(0, i) for i in range(members)]
    for key in sorted({ST.chunk_key(loc) for loc in locs}):
        rows = [ST.row_in_chunk(loc) for loc in locs if ST.chunk_key(loc) == key]
        payloads = [np.arange(r, r + 200, dtype=np.uint64).tobytes() for r in rows]
        ST.write_table(stash.payload_path(key), pa.table({
            stash_stages.ROW: pa.array(rows, pa.int64()), "payload": pa.array(payloads, pa.binary())}))
    kept = stash_stages.node_key("a0", locs[0])
    groups: dict = {}
    for i, loc in enumerate(locs[1:], start=1):
        chunks, pair = stash_stages._removed_pair((stash_stages.node_key(f"a{i}", loc), kept))
        groups.setdefault(chunks, []).append(pair)
    fn = stash_stages._ChunkPairJaccard(stash, exact=True)
    blobs = {chunks: stash_stages.pack(groups[chunks]) for chunks in sorted(groups)}
    peak = 0
    # started once, peak reset per call; run in a process of its own (see the test below)
    tracemalloc.start()
    try:
        for chunks, blob in blobs.items():
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            assert len(list(fn.process((chunks, [blob])))) == len(groups[chunks])
            peak = max(peak, tracemalloc.get_traced_memory()[1] - base)
    finally:
        tracemalloc.stop()
    return peak


def test_survivor_similarity_memory_does_not_grow_with_component_size(tmp_path):
    """The survivor join compares each removed document with its survivor per pair of chunks:
    a 16x larger component means 16x more calls, not a bigger one.

    Measured in a fresh interpreter: stopping tracemalloc while native threads left by earlier
    Beam tests allocate crashed a test process (a CPython 3.11 race, fixed upstream in 3.12.9 /
    3.13.2: gh-128679), even with one start and one stop per measurement."""
    import json
    import subprocess
    import sys

    code = ("import json, sys; from pathlib import Path; from curate.pipelines import stash as ST; "
            "ST.CHUNK_ROWS = 256; from tests.pipelines.test_compact_pipeline import _survivor_similarity_peak as peak; "
            "print(json.dumps([peak(Path(sys.argv[1]), 512), peak(Path(sys.argv[1]), 8192)]))")
    child = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                           cwd=Path(__file__).resolve().parents[2], timeout=600)
    assert child.returncode == 0, child.stderr[-3000:]
    small, large = json.loads(child.stdout.strip().splitlines()[-1])
    assert large <= 1.3 * small + 256 * 1024, (small, large)


def test_band_files_give_back_each_partition(tmp_path, monkeypatch):
    monkeypatch.setattr(stash_stages, "BAND_PARTITIONS", 5)
    bands = {0: ([b"k0", b"k1"], ["a", "\ud800b"], [1, 2]), 3: ([b"k3"], ["c"], [2 ** 40])}
    path = str(tmp_path / "x.bands")
    stash_stages.write_bands(path, bands)
    for partition in range(5):
        keys, ids, locs = bands.get(partition, ([], [], []))
        assert stash_stages.read_band_partition(path, partition) == (list(keys), list(ids), list(locs))
    with pytest.raises(ValueError, match="no band partition 5"):
        stash_stages.read_band_partition(path, 5)

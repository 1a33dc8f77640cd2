"""CompactHead (pipelines/compact_head.py) decides what IngestAndValidate(stash=...) +
ExactDedup decide — same ids, renamings, survivors, dedup rows, dead letters and counters —
while its shuffles carry packed blobs only. Real Beam pipelines on the FnApiRunner (in process
and with two multi_processing workers), real stash files."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from curate.pipelines import counters
from curate.pipelines import stash as ST
from curate.pipelines.compact_head import CompactHead, root_id
from curate.pipelines.exact_dedup import ExactDedup
from curate.pipelines.ingest import IngestAndValidate, split_suffix
from curate.pipelines.inputs import expand_inputs
from curate.pipelines.stage_configs import IngestConfig
from curate.pipelines.stash_stages import unpack
from curate.scorers.text import normalise_text, text_hash

TWO_WORKERS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


def _corpus(folder: Path) -> list[str]:
    """Three input files: duplicate ids (dup, dup, dup, dup#1, dup#05), duplicated suffixed ids
    (x#3 twice beside x#3#7: the renaming of x#3 needs x#3#7, another partition under a naive
    split), a suffix past 18 digits, id-less copies, one id copied 40 times, one text copied
    60 times, exact copies under renamed ids, and dead letters."""
    records = [{"id": f"d{i:03d}", "text": f"document number {i} says {i * 7919 % 1000}"} for i in range(150)]
    records += [{"id": "dup", "text": "first dup"}, {"id": "dup", "text": "second dup"},
                {"id": "dup", "text": "first dup"}, {"id": "dup#1", "text": "an input id that looks renamed"},
                {"id": "dup#05", "text": "leading zero suffix"},
                {"id": "x#3", "text": "x three"}, {"id": "x#3", "text": "x three again"},
                {"id": "x#3#7", "text": "x three seven"}, {"id": "x", "text": "plain x"},
                {"id": "big", "text": "big one"}, {"id": "big", "text": "big two"},
                {"id": "big#1234567890123456789012", "text": "big huge suffix"},
                {"text": "no id, content decides"}, {"id": "", "text": "no id, content decides"},
                {"id": 42, "text": "an integer id"}, {"id": "42", "text": "a string id equal to it"}]
    records += [{"id": "hot", "text": f"hot copy {i % 13}"} for i in range(40)]
    records += [{"id": f"same{i:02d}", "text": "one text, sixty ids"} for i in range(60)]
    records += [dict(records[7])]  # d007 again: renamed, then removed as an exact copy
    dead = ['{"id": "broken", "text": ', '[1, 2]', '{"id": "m"}', '{"id": "e", "text": "   "}',
            '{"id": {"a": 1}, "text": "bad id"}']
    lines = [json.dumps(r) for r in records]
    lines[30:30] = dead[:2]
    lines[200:200] = dead[2:]
    paths = []
    for part in range(3):
        chunk = "\n".join(lines[part::3]) + "\n"
        path = folder / (f"part{part}.jsonl" + (".gz" if part == 1 else ""))
        if part == 1:
            with gzip.open(path, "wt", encoding="utf-8") as fh:
                fh.write(chunk)
        else:
            path.write_text(chunk, encoding="utf-8")
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _corpus(tmp_path_factory.mktemp("head-corpus"))


def _pipeline(flags=()):
    return beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner", *flags]))


def _write(pcoll, label, path: Path, to_json):
    return pcoll | f"{label}Json" >> beam.Map(lambda x: json.dumps(to_json(x))) | f"Write{label}" >> (
        beam.io.WriteToText(str(path)))


def _lines(prefix: Path) -> list:
    out = []
    for f in sorted(prefix.parent.glob(prefix.name + "*")):
        out += [json.loads(line) for line in f.read_text().splitlines()]
    return sorted(out, key=json.dumps)


def _hex(key):
    return None if key is None else key.hex()


def _reference(paths, out: Path, exact: bool, cache_keys: bool) -> dict:
    files = expand_inputs(paths)
    p = _pipeline()
    ingested = p | "Ingest" >> IngestAndValidate(files, IngestConfig(), stash=ST.Stash(str(out), files),
                                                 cache_keys=cache_keys)
    docs, dedup = ingested["documents"], None
    if exact:
        deduped = docs | "ExactDedup" >> ExactDedup()
        docs, dedup = deduped["documents"], deduped["dedup"]
        _write(dedup, "Dedup", out / "dedup", lambda r: r)
    _write(docs, "Docs", out / "docs", lambda d: [d["id"], d["_order"], d["text_hash"], _hex(d.get("_key"))])
    _write(ingested["dead_letter"], "Dead", out / "dead", lambda r: r)
    result = p.run()
    result.wait_until_finish()
    return {"docs": _lines(out / "docs"), "dedup": _lines(out / "dedup"), "dead": _lines(out / "dead"),
            "counters": counters.query(result)}


def _members(item):
    chunk, blob = item
    for row, doc_id, loc, hashed, key in unpack(blob):
        # the member's place in the stash agrees with its locator
        assert (ST.chunk_key(loc), ST.row_in_chunk(loc)) == (chunk, row), (chunk, row, loc)
        yield [doc_id, loc, hashed, _hex(key)]


def _compact(paths, out: Path, exact: bool, cache_keys: bool, flags=(), **knobs) -> dict:
    files = expand_inputs(paths)
    p = _pipeline(flags)
    head = p | "Head" >> CompactHead(files, IngestConfig(), ST.Stash(str(out), files), exact, cache_keys, **knobs)
    _write(head["chunks"] | "Members" >> beam.FlatMap(_members), "Docs", out / "docs", lambda m: m)
    _write(head["dedup"], "Dedup", out / "dedup", lambda r: r)
    _write(head["dead_letter"], "Dead", out / "dead", lambda r: r)
    result = p.run()
    result.wait_until_finish()
    return {"docs": _lines(out / "docs"), "dedup": _lines(out / "dedup"), "dead": _lines(out / "dead"),
            "counters": counters.query(result)}


def _assert_stash_texts_match(out: Path, files, docs):
    """Each member's locator points at its own text in the stash (the hash of its text)."""
    stash, texts = ST.Stash(str(out), files), {}
    for _id, loc, hashed, _key in docs:
        key = ST.chunk_key(loc)
        if key not in texts:
            texts[key] = ST.read_table(stash.raw_path(key), ["text"]).column("text").to_pylist()
        assert text_hash(normalise_text(texts[key][ST.row_in_chunk(loc)])) == hashed


@pytest.mark.parametrize("exact,cache_keys,partitions,flush", [
    (True, False, 256, 32768),  # the defaults
    (True, True, 3, 4),  # few partitions, tiny blobs: many blobs per partition and per chunk
    (False, False, 5, 7),
])
def test_compact_head_decides_what_ingest_and_exact_dedup_decide(corpus, tmp_path, monkeypatch, exact,
                                                                 cache_keys, partitions, flush):
    monkeypatch.setattr(ST, "CHUNK_ROWS", 16)  # many chunks per file (in-process runner)
    whole = _reference(corpus, tmp_path / "ref", exact, cache_keys)
    head = _compact(corpus, tmp_path / "head", exact, cache_keys, partitions=partitions, flush_records=flush)
    ids = [d[0] for d in whole["docs"]]
    assert len(ids) == len(set(ids))
    renamed = {"dup#6", "dup#7", "x#3#8", "big#1" + "1".zfill(22), "hot#39", "d007#1", "42#1"}
    assert renamed <= set(ids) | {r["removed_id"] for r in whole["dedup"]}
    assert {"dup", "dup#1", "dup#05", "x#3", "x#3#7", "x"} <= set(ids)
    assert whole["counters"][counters.RENAMED_IDS] == 2 + 1 + 1 + 1 + 1 + 39 + 1
    assert len(whole["dead"]) == 5
    if exact:  # 59 of "one text", 27 hot copies, dup, d007, the id-less copy
        assert len(whole["dedup"]) == 59 + 27 + 3 and all(r["method"] == "exact" for r in whole["dedup"])
    assert head["docs"] == whole["docs"]
    assert head["dedup"] == whole["dedup"]
    assert head["dead"] == whole["dead"]
    assert head["counters"] == whole["counters"]
    assert all((d[3] is not None) == cache_keys for d in head["docs"])
    _assert_stash_texts_match(tmp_path / "head", expand_inputs(corpus), head["docs"])


@pytest.mark.slow
def test_compact_head_with_two_worker_processes(corpus, tmp_path):
    """Workers in separate processes (their own str hashes, their own bundles): same result."""
    whole = _reference(corpus, tmp_path / "ref", True, True)
    head = _compact(corpus, tmp_path / "head", True, True, flags=TWO_WORKERS, partitions=4, flush_records=5)
    for key in ("docs", "dedup", "dead", "counters"):
        assert head[key] == whole[key], key


def test_every_shuffle_of_the_head_carries_blobs(corpus, tmp_path):
    """Each GroupByKey inside CompactHead (those shuffling the input file list aside) is fed (int, bytes)
    pairs only: a DoFn checks every element that reaches one, so no per-document dict crosses
    a shuffle."""
    files = expand_inputs(corpus)
    p = _pipeline()
    head = p | "Head" >> CompactHead(files, IngestConfig(), ST.Stash(str(tmp_path), files), True, True,
                                     partitions=3, flush_records=4)
    head["chunks"] | "ChunkShuffle" >> beam.GroupByKey()  # where the consumer groups by chunk

    class Shuffles(beam.pipeline.PipelineVisitor):
        def __init__(self):
            self.inputs = []

        def visit_transform(self, node):
            files_only = "/ListFiles/" in node.full_label or "/SpreadFiles/" in node.full_label
            if isinstance(node.transform, beam.GroupByKey) and not files_only:
                self.inputs.append((node.full_label, node.inputs[0]))

    shuffles = Shuffles()
    p.visit(shuffles)
    assert sorted(label for label, _ in shuffles.inputs) == [
        "ChunkShuffle", "Head/GroupByHash", "Head/GroupByIdRoot"]

    def check(item, label):
        key, blob = item
        assert isinstance(key, int) and isinstance(blob, bytes), (label, type(key), type(blob))
        counters.inc(f"test.blobs.{label}")
        counters.inc(f"test.records.{label}", len(unpack(blob)))

    for n, (label, pcoll) in enumerate(shuffles.inputs):
        pcoll | f"Check{n}" >> beam.Map(check, label.replace("/", "."))
    result = p.run()
    result.wait_until_finish()
    seen = counters.query(result)
    read = seen[counters.INPUT] - sum(v for k, v in seen.items() if k.startswith(counters.DEAD_LETTER_PREFIX))
    for label, _ in shuffles.inputs:
        name = label.replace("/", ".")
        removed = seen["removed.exact"] if name == "ChunkShuffle" else 0
        assert seen[f"test.records.{name}"] == read - removed, name  # every document, packed
        assert seen[f"test.blobs.{name}"] < seen[f"test.records.{name}"], name


def test_root_id_strips_every_numeric_suffix_as_split_suffix_does():
    for doc_id in ["a", "a#1", "a#3#2", "a#b#2", "#5", "#", "a#", "a#1x", "x##3", "a#1#", "7", "a#٣", "#1#2"]:
        expected = doc_id
        while (split := split_suffix(expected)) is not None:
            expected = split[0]
        assert root_id(doc_id) == expected, doc_id
    assert root_id("x" + "#1" * 200_000) == "x"  # linear, not a regex per suffix


def _outputs(fn, blobs_by_partition):
    """Every record (or tagged row) a partition DoFn emits, blobs unpacked, order-free."""
    out = []
    for partition, blobs in blobs_by_partition.items():
        for item in fn.process((partition, blobs)):
            if isinstance(item, beam.pvalue.TaggedOutput):
                out.append(("row", json.dumps(item.value, sort_keys=True)))
            else:
                key, blob = item
                out += [(key, tuple(r)) for r in unpack(blob)]
    return sorted(out, key=repr)


def test_partition_steps_decide_the_same_whatever_the_blob_order_and_split():
    """The runner hands a partition's blobs in any order and split (bundling, workers): the
    renaming follows locators, and the survivors and rows are the same."""
    import random

    from curate.pipelines.compact_head import _KeepSmallestId, _UniqueIds
    from curate.pipelines.stash_stages import pack

    digest = [bytes([i]) * 16 for i in range(4)]
    records = [("a", ST.locator(f, s), digest[(f + s) % 4], None) for f in range(3) for s in range(5)]
    records += [("a#2", ST.locator(1, 9), digest[0], None), ("b", ST.locator(0, 9), digest[1], b"k")]
    rng = random.Random(3)
    unique_ids, keep = _UniqueIds(4, 3, exact_dedup=True), _KeepSmallestId(3)
    results = []
    for trial in range(6):
        shuffled = rng.sample(records, len(records))
        cuts = sorted(rng.sample(range(1, len(records)), trial))
        blobs = [pack(shuffled[i:j]) for i, j in zip([0, *cuts], [*cuts, len(records)])]
        by_hash = {}
        for key, record in _outputs(unique_ids, {0: blobs}):
            by_hash.setdefault(key, []).append(pack([record]))
        for blobs_of_hash in by_hash.values():
            rng.shuffle(blobs_of_hash)
        renamed = {record[0]: record[1] for _, record in _outputs(unique_ids, {0: blobs})}
        results.append((renamed, _outputs(keep, by_hash)))
    # the 2nd..15th "a" by locator: a#3 .. a#16 (a#2 is an input id)
    first = ST.locator(0, 0)
    assert results[0][0]["a"] == first
    assert [results[0][0][f"a#{k}"] for k in range(3, 17)] == sorted(r[1] for r in records[1:15])
    assert all(result == results[0] for result in results)

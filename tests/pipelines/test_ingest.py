"""Record validation and input discovery (no pipeline run)."""
import gzip
import json

import pytest

from curate.pipelines import records as R
from curate.pipelines.inputs import expand_inputs, fingerprint
from curate.pipelines.pooling import QuantileCutsFn
from curate.pools.bucketing import rank_key


def _doc(obj, **kw):
    args = dict(id_field="id", text_field="text", max_text_bytes=100, source="s", order=("s", 0, 1))
    args.update(kw)
    return R.to_document(obj, **args)


@pytest.mark.parametrize("obj,reason", [
    ([1, 2], R.NOT_AN_OBJECT),
    ({"id": "a"}, R.MISSING_TEXT),
    ({"id": "a", "text": None}, R.NULL_TEXT),
    ({"id": "a", "text": 3.5}, R.TEXT_NOT_STRING),
    ({"id": "a", "text": "  \n "}, R.EMPTY_TEXT),
    ({"id": "a", "text": "x" * 101}, R.TEXT_TOO_LARGE),
    ({"id": "a", "text": "bad \ud800"}, R.INVALID_UTF8),
    ({"id": {"x": 1}, "text": "fine"}, R.BAD_ID),
    ({"id": True, "text": "fine"}, R.BAD_ID),
    ({"id": "\ud800x", "text": "fine"}, R.BAD_ID),  # used to crash the run in Beam's size estimate
])
def test_bad_records_raise_with_reason(obj, reason):
    with pytest.raises(R.RecordError) as err:
        _doc(obj)
    assert err.value.reason == reason


def test_ids_int_stringified_missing_ids_content_derived():
    assert _doc({"id": 7, "text": "t"})["id"] == "7"
    a, b = _doc({"text": "same"}), _doc({"id": None, "text": "same"})
    assert a["id"] == b["id"] and a["id"].startswith("h")
    assert _doc({"key": "k1", "body": "t"}, id_field="key", text_field="body")["id"] == "k1"


def test_dead_letter_truncates_and_escapes():
    d = R.dead_letter(source="f", reason=R.INVALID_UTF8, raw=b"ab\xffcd" * 10, line=3, max_raw_chars=8)
    assert d["raw"] == "ab\\xffcd" and d["raw_truncated"] and d["line"] == 3
    assert R.dead_letter(source="f", reason="x", raw={"t": "\ud800"})["raw"].encode("utf-8")


def test_expand_inputs_globs_sorted_and_missing_raises(tmp_path):
    for name in ("b.jsonl.gz", "a.jsonl", "c.parquet"):
        (tmp_path / name).write_bytes(b"")
    files = expand_inputs([str(tmp_path / "*.json*"), str(tmp_path / "c.parquet"), str(tmp_path / "a.jsonl")])
    assert [(f.path.rsplit("/", 1)[1], f.kind) for f in files] == [
        ("a.jsonl", "jsonl"), ("b.jsonl.gz", "jsonl"), ("c.parquet", "parquet")]
    with pytest.raises(FileNotFoundError, match="input not found"):
        expand_inputs([str(tmp_path / "nope*.jsonl")])
    with pytest.raises(ValueError, match="not a saved HF dataset"):
        expand_inputs([str(tmp_path)])
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(ValueError, match="unknown input format"):
        expand_inputs([str(tmp_path / "x.txt")])


def test_fingerprint_changes_with_content(tmp_path):
    p = tmp_path / "f.jsonl.gz"
    p.write_bytes(gzip.compress(json.dumps({"text": "a"}).encode()))
    fp1 = fingerprint(str(p))
    p.write_bytes(gzip.compress(json.dumps({"text": "b"}).encode()))
    fp2 = fingerprint(str(p))
    assert fp1["sha256_first_mb"] != fp2["sha256_first_mb"] and fp1["size"] > 0


def test_quantile_combine_switches_to_approximate_past_the_limit():
    fn = QuantileCutsFn(num_pools=4, exact_max_docs=50)
    keys = [rank_key(i / 200, f"d{i:03d}") for i in range(200)]
    accs = []
    for chunk in (keys[:30], keys[30:60], keys[60:]):
        acc = fn.create_accumulator()
        for k in chunk:
            acc = fn.add_input(acc, k)
        accs.append(acc)
    assert accs[0][0] == "exact" and accs[2][0] == "approx"
    cuts, mode = fn.extract_output(fn.merge_accumulators(accs))
    assert mode == "approximate"
    pools = [cuts.assign(-k[0], k[1]) for k in keys]
    assert all(abs(pools.count(p) - 50) <= 4 for p in range(4))
    small = QuantileCutsFn(num_pools=4)
    acc = small.merge_accumulators([small.add_input(small.create_accumulator(), k) for k in keys])
    cuts, mode = small.extract_output(acc)
    assert mode == "exact" and [sum(cuts.assign(-k[0], k[1]) == p for k in keys) for p in range(4)] == [50] * 4


def _read(path, kind, **kw):
    """Run the ReadRecords DoFn directly (no pipeline): documents and dead letters."""
    from apache_beam.pvalue import TaggedOutput

    from curate.pipelines.ingest import ReadRecords
    from curate.pipelines.inputs import InputFile

    fn = ReadRecords(kw.get("id_field", "id"), kw.get("text_field", "text"), 1000, 4000, 100)
    docs, dead = [], []
    for out in fn.process(InputFile(source=str(path), path=str(path), kind=kind)):
        (dead.append(out.value) if isinstance(out, TaggedOutput) else docs.append(out))
    return docs, dead


def test_read_parquet_rows_and_corrupt_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = tmp_path / "g.parquet"
    pq.write_table(pa.table({"key": ["a", "b", None], "body": ["one", None, "three"]}), good)
    docs, dead = _read(good, "parquet", id_field="key", text_field="body")
    assert [(d["id"], d["text"]) for d in docs][0] == ("a", "one")
    assert docs[1]["id"].startswith("h")  # null id -> content id
    assert [(d["row"], d["reason"]) for d in dead] == [(1, "null_text")]
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(good.read_bytes()[:40])
    docs, dead = _read(bad, "parquet")
    assert not docs and [d["reason"] for d in dead] == ["unreadable_file"]


def test_read_gzip_truncated_keeps_head(tmp_path):
    lines = "".join(json.dumps({"id": f"d{i}", "text": f"text number {i} " * 20}) + "\n" for i in range(400))
    payload = gzip.compress(lines.encode())
    path = tmp_path / "t.jsonl.gz"
    path.write_bytes(payload[: int(len(payload) * 0.8)])
    docs, dead = _read(path, "jsonl")
    assert 0 < len(docs) < 400
    assert [d["reason"] for d in dead] == ["truncated_file"] and dead[0]["line"] == len(docs) + 1
    assert [d["id"] for d in docs] == [f"d{i}" for i in range(len(docs))]


def test_deeply_nested_json_is_one_dead_letter_and_reading_continues(tmp_path):
    """A line nested deeper than the parser goes raised RecursionError and lost the rest of the
    file while the run reported 'reconciled' (the reliability issue's item 2)."""
    from apache_beam.pvalue import TaggedOutput

    from curate.pipelines.ingest import ReadRecords
    from curate.pipelines.inputs import InputFile

    lines = [json.dumps({"id": f"d{i}", "text": f"doc {i}"}) for i in range(11)]
    lines[3] = "[" * 200_000 + "]" * 200_000
    path = tmp_path / "n.jsonl"
    path.write_text("\n".join(lines) + "\n")
    fn = ReadRecords("id", "text", 10_000, 10**7, 100)
    docs, dead = [], []
    for out in fn.process(InputFile(source=str(path), path=str(path), kind="jsonl")):
        (dead.append(out.value) if isinstance(out, TaggedOutput) else docs.append(out))
    assert len(docs) == 10 and [(d["line"], d["reason"]) for d in dead] == [(4, "malformed_json")]
    assert "nested too deeply" in dead[0]["detail"]


def test_a_parquet_value_that_cannot_be_converted_costs_its_row_not_the_batch(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = pa.array([0, 1, 2**62, 3, 4], type=pa.timestamp("ms"))  # year far beyond 9999 at row 2
    path = tmp_path / "ts.parquet"
    pq.write_table(pa.table({"id": ids, "text": [f"text {i}" for i in range(5)]}), path)
    docs, dead = _read(path, "parquet")
    assert [(d["row"], d["reason"]) for d in dead if d["reason"] == "malformed_row"] == [(2, "malformed_row")]
    assert len(docs) + len(dead) == 5  # every row accounted for, the others as any row would be
    assert {d["row"] for d in dead} | {int(d["_order"][2]) for d in docs} == set(range(5))


def _check_ingested_ids(tmp_path, ids, expected: dict, renamed: int):
    """Run IngestAndValidate over one JSONL file with these ids (text n for the n-th record);
    its documents must be exactly `expected` ({final id: text}), ids unique."""
    import apache_beam as beam
    from apache_beam.testing.util import BeamAssertException, assert_that

    from curate.pipelines.ingest import IngestAndValidate
    from curate.pipelines.inputs import InputFile
    from tests.pipelines.stage_helpers import fnapi_pipeline, run_counting

    def check(actual):
        if len(actual) != len(ids) or dict(actual) != expected:  # every record, ids unique
            raise BeamAssertException(f"documents {sorted(actual)} != {sorted(expected.items())}")

    path = tmp_path / "ids.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": f"text {n}"}) + "\n" for n, i in enumerate(ids)))
    p = fnapi_pipeline()
    out = p | IngestAndValidate([InputFile(source=str(path), path=str(path), kind="jsonl")])
    assert_that(out["documents"] | beam.Map(lambda d: (d["id"], d["text"])), check)
    assert run_counting(p).get("renamed_duplicate_ids", 0) == renamed


def test_renamed_duplicate_ids_never_collide_with_input_ids(tmp_path):
    """Ids dup, dup, dup#1 gave dup#1 twice (the reliability issue's item 3): a renamed copy
    takes a suffix above every dup#k in the input."""
    _check_ingested_ids(tmp_path, ["dup", "dup", "dup#1"],
                        {"dup": "text 0", "dup#2": "text 1", "dup#1": "text 2"}, renamed=1)
    huge = "h#" + "9" * 5000  # a suffix too long for int()
    _check_ingested_ids(tmp_path, [
        "dup#1", "dup", "dup#01", "dup", "dup#1", "dup#3", "dup", "7", 7, "a#b", "a#b", huge, "h", "h"], {
        "dup#1": "text 0", "dup": "text 1", "dup#01": "text 2", "dup#4": "text 3",
        "dup#1#1": "text 4",  # dup#1's own copy
        "dup#3": "text 5", "dup#5": "text 6",
        "7": "text 7", "7#1": "text 8",  # int 7 is id "7"
        "a#b": "text 9", "a#b#1": "text 10",
        huge: "text 11", "h": "text 12", "h#1" + "0" * 4999 + "1": "text 13",  # 10**5000 + 1
    }, renamed=6)

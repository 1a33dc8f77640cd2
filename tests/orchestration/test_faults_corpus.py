"""Fault test: a corpus with malformed records of every kind goes through `curate run`
without a crash, and every planted record is accounted for with exact, reconciled counts."""
from __future__ import annotations

import gzip
import json
import random
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.orchestration.curate_runs import pool_rows, random_text, run_cli, write_jsonl


def _complete_lines_in_prefix(gz_bytes: bytes) -> int:
    """How many whole lines a truncated gzip stream still yields (independent of curate)."""
    data = zlib.decompressobj(31).decompress(gz_bytes)
    return data.count(b"\n")


def _plant(folder: Path) -> dict:
    """Write the corpus; return what each planted kind must produce."""
    rng = random.Random(6)
    folder.mkdir()
    good = [{"id": f"g{i}", "text": random_text(rng)} for i in range(40)]
    same_id = [{"id": "dup", "text": random_text(rng)} for _ in range(3)]  # 1 keeps, 2 renamed
    exact = [{"id": f"x{i}", "text": good[i]["text"]} for i in range(2)]  # exact copies of g0, g1
    write_jsonl(folder / "good.jsonl", good + same_id + exact)

    bad_lines = [
        b'{"id": "j1", "text": "unterminated',            # malformed_json x3
        b'{"id": "j2" "text": "missing colon"}',
        b'not json at all',
        b'{"id": "u1", "text": "caf\xe9 latin-1"}',       # invalid_utf8 x2 (bytes)
        b'{"id": "u2", "text": "\xff\xfe"}',
        b'{"id": "s1", "text": "lone surrogate \\ud800 here"}',  # invalid_utf8 (JSON escape)
        b'{"id": "m1"}',                                    # missing_text x2
        b'{"id": "m2", "body": "text under another name"}',
        b'{"id": "n1", "text": null}',                      # null_text x2
        b'{"id": "n2", "text": null, "extra": 1}',
        b'{"id": "t1", "text": 123}',                       # text_not_string x3
        b'{"id": "t2", "text": ["a", "list"]}',
        b'{"id": "t3", "text": {"nested": "object"}}',
        b'[1, 2, 3]',                                       # not_an_object
        b'{"id": "e1", "text": "   "}',                     # empty_text
        b'{"id": ["bad"], "text": "an id that is a list"}',  # bad_id x2
        b'{"id": "\\ud800x", "text": "an id with a lone surrogate"}',
        b'',                                                # blank line: not a record
    ]
    (folder / "bad.jsonl").write_bytes(b"\n".join(bad_lines) + b"\n")

    (folder / "empty.jsonl").write_bytes(b"")
    (folder / "empty_member.jsonl.gz").write_bytes(gzip.compress(b""))

    truncated_docs = [{"id": f"tr{i}", "text": random_text(rng)} for i in range(60)]
    full = gzip.compress("".join(json.dumps(d) + "\n" for d in truncated_docs).encode(), mtime=0)
    cut = full[: len(full) // 2]
    (folder / "truncated.jsonl.gz").write_bytes(cut)
    survivors = _complete_lines_in_prefix(cut)
    assert 0 < survivors < 60

    # one 50 MB document: above the record limit, dead-lettered, not loaded into a pool
    with open(folder / "huge.jsonl", "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "huge", "text": "word " * 10_000_000}) + "\n")
        fh.write(json.dumps({"id": "after-huge", "text": random_text(rng)}) + "\n")

    pq.write_table(pa.table({"foo": [1, 2, 3], "bar": ["a", "b", "c"]}), folder / "wrong_schema.parquet")
    pq.write_table(pa.table({"id": ["p0", "p1", "p2", "g3"],  # g3 clashes with good.jsonl's id
                             "text": [random_text(rng) for _ in range(4)]}), folder / "good.parquet")
    (folder / "corrupt.parquet").write_bytes(b"PAR1 this is not parquet at all")

    dead = {"malformed_json": 3, "invalid_utf8": 3, "missing_text": 2 + 3, "null_text": 2,
            "text_not_string": 3, "not_an_object": 1, "empty_text": 1, "bad_id": 2,
            "record_too_large": 1, "truncated_file": 1, "unreadable_file": 1}
    kept_ids = ({d["id"] for d in good} | {"dup", "dup#1", "dup#2"}
                | {f"tr{i}" for i in range(survivors)} | {"after-huge", "p0", "p1", "p2"})
    # g3 from good.parquet sorts after good.jsonl by source, so it becomes g3#1
    kept_ids |= {"g3#1"}
    return {"dead": dead, "kept_ids": kept_ids, "removed": {"exact": 2}, "renamed": 3}


def test_malformed_corpus_is_fully_accounted_for(tmp_path):
    expect = _plant(tmp_path / "corpus")
    out = tmp_path / "run"
    # corrupt.parquet cannot be read at all, which fails a run unless allowed (see
    # test_remote_safe_paths): allowed here, so the rest is published and every record accounted
    r = run_cli("run", "--input", tmp_path / "corpus" / "*", "--output", out, "--no-catalog",
                "--cache-dir", "none", "--json", "--pools", "2", "--allow-unreadable")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    summary = json.loads(r.stdout)
    counts = summary["counts"]
    kept = len(expect["kept_ids"])
    assert counts["dead_letter"] == expect["dead"]
    assert counts["removed"] == expect["removed"]
    assert counts["filtered"] == {}
    assert counts["kept"] == kept
    assert counts["renamed_duplicate_ids"] == expect["renamed"]
    assert counts["input_records"] == kept + 2 + sum(expect["dead"].values())
    assert summary["reconciliation"]["holds"]

    # what is on disk matches, record by record
    assert {i for i, _ in pool_rows(out)} == expect["kept_ids"]
    assert len(pool_rows(out)) == kept
    dead_rows = [json.loads(line) for p in (out / "dead_letter").glob("*.jsonl")
                 for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    by_reason: dict[str, int] = {}
    for row in dead_rows:
        by_reason[row["reason"]] = by_reason.get(row["reason"], 0) + 1
    assert by_reason == expect["dead"]
    huge = next(row for row in dead_rows if row["reason"] == "record_too_large")
    assert huge["raw_truncated"] and len(huge["raw"]) <= 10_000  # the 50 MB text is not copied
    removed = [row for p in (out / "dedup").glob("*.parquet") for row in pq.read_table(p).to_pylist()]
    assert sorted((row["removed_id"], row["kept_id"]) for row in removed) == [("x0", "g0"), ("x1", "g1")]
    assert (out / "_SUCCESS").exists()

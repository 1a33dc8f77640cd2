"""Fault test (the reliability issue's item 3): a renamed duplicate id must not collide with a
real one. Ids `dup`, `dup`, `dup#1` gave `dup#1` twice; with the renamed copy a near duplicate
of another document, removing it by id also removed the innocent real `dup#1`, and the run
refused to publish (rows written != rows counted)."""
from __future__ import annotations

import json
import random

import pyarrow.parquet as pq

from tests.orchestration.curate_runs import random_text, run_cli, table_rows, write_jsonl


def test_duplicate_ids_beside_a_real_renamed_looking_id_lose_nothing(tmp_path):
    rng = random.Random(3)
    others = [{"id": f"a{i}", "text": random_text(rng)} for i in range(20)]
    words = others[0]["text"].split()
    words[30] = "substituted"  # one word of 60: word-bigram Jaccard ~0.93 to a0
    near_copy_of_a0 = " ".join(words)
    records = others + [
        {"id": "dup", "text": random_text(rng)},
        {"id": "dup", "text": near_copy_of_a0},  # renamed; then removed as a near dup of a0
        {"id": "dup#1", "text": random_text(rng)},  # a real id the old renaming produced too
    ]
    corpus = tmp_path / "corpus.jsonl"
    write_jsonl(corpus, records)
    out = tmp_path / "run"
    r = run_cli("run", "--input", corpus, "--output", out, "--no-catalog", "--cache-dir", "none",
                "--json", "--pools", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["reconciliation"]["holds"] and (out / "_SUCCESS").exists()
    counts = summary["counts"]
    assert counts["renamed_duplicate_ids"] == 1
    assert counts["removed"] == {"near": 1} and counts["kept"] == len(records) - 1

    kept = {}
    for part in sorted((out / "pools").glob("pool=*/*.parquet")):
        for row in pq.read_table(part, columns=["id", "text"]).to_pylist():
            assert row["id"] not in kept, f"id {row['id']} written twice"
            kept[row["id"]] = row["text"]
    removed = table_rows(out, "dedup", "removed_id")
    assert [(d["removed_id"], d["kept_id"], d["method"]) for d in removed] == [("dup#2", "a0", "near")]
    # every input text is either kept or the one near duplicate, and the real dup#1 is kept
    # with its own text
    assert sorted(kept.values()) == sorted(rec["text"] for rec in records if rec["text"] != near_copy_of_a0)
    assert kept["dup#1"] == records[-1]["text"] and kept["dup"] == records[-3]["text"]

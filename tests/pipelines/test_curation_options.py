"""Pipeline options end to end on a small corpus: field mapping, duplicate ids, explicit cut
points, a keep/drop rule, and stage toggles (near dedup off)."""
from __future__ import annotations

import gzip
import json

import duckdb
import pytest

from curate.orchestration.config import resolve_config
from curate.orchestration.runner import run_job
from curate.scorers.heuristics import HeuristicScorer
from curate.scorers.text import normalise_text


@pytest.fixture(scope="module")
def small_run(corpora_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("opts")
    with gzip.open(corpora_dir / "c4_sample_a.jsonl.gz", "rt") as fh:
        texts = [json.loads(line)["text"] for _, line in zip(range(40), fh)]
    texts += [f"Short note number {i} about nothing much." for i in range(6)]  # fail gopher_quality
    a, b = tmp / "a.jsonl", tmp / "b.jsonl"
    a.write_text("".join(json.dumps({"key": f"k{i:02d}", "body": t}) + "\n" for i, t in enumerate(texts[:30])))
    # same key "k00" again in another file, with a different text: must be renamed, not lost
    b.write_text("".join(json.dumps({"key": "k00" if i == 30 else f"k{i:02d}", "body": t}) + "\n"
                         for i, t in zip(range(30, 60), [texts[0] + " Extra ending."] + texts[30:])))
    (tmp / "cfg.yaml").write_text(
        "pools:\n  cut_points: [0.9, 0.6]\n"
        "filter:\n  drop_failed: [gopher_quality]\n"
        "near_dedup:\n  enabled: false\n")
    config = resolve_config(str(tmp / "cfg.yaml"), id_field="key", text_field="body")
    out = tmp / "run"
    manifest = run_job([str(a), str(b)], str(out), config, ["--runner=FnApiRunner"])
    return texts, manifest, out


def test_rule_drops_are_counted_per_reason(small_run):
    texts, manifest, out = small_run
    scorer = HeuristicScorer()
    # k00's second copy has different text, so all 47 records are distinct documents
    all_texts = texts[:30] + [texts[0] + " Extra ending."] + texts[30:]
    failing = sum(not scorer.score(normalise_text(t)).passed["gopher_quality"] for t in all_texts)
    assert failing >= 6
    assert manifest["counts"]["filtered"] == {"gopher_quality": failing}
    filtered = duckdb.sql(f"SELECT reason, count(*) FROM read_parquet('{out}/filtered/*.parquet') GROUP BY 1").fetchall()
    assert filtered == [("gopher_quality", failing)]
    assert manifest["reconciliation"]["holds"]
    assert manifest["counts"]["removed"] == {}  # near dedup off, no exact duplicates


def test_explicit_cut_points_and_renamed_duplicate_id(small_run):
    _, manifest, out = small_run
    rows = duckdb.sql(f"SELECT id, pool, score FROM read_parquet('{out}/pools/*/*.parquet', "
                      "hive_partitioning=false)").fetchall()
    assert manifest["pools"]["kind"] == "score" and manifest["pools"]["num_pools"] == 3
    for _, pool, score in rows:
        assert pool == (0 if score >= 0.9 else 1 if score >= 0.6 else 2)
    ids = {r[0] for r in rows}
    assert manifest["counts"]["renamed_duplicate_ids"] == 1
    filtered = {r[0] for r in duckdb.sql(f"SELECT id FROM read_parquet('{out}/filtered/*.parquet')").fetchall()}
    assert "k00" in ids | filtered and "k00#1" in ids | filtered  # b.jsonl's k00 was renamed
    stats = duckdb.sql(f"SELECT pool, docs FROM read_parquet('{out}/stats.parquet') ORDER BY pool").fetchall()
    assert [p for p, _ in stats] == [0, 1, 2] and sum(d for _, d in stats) == len(rows)

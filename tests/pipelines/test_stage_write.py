"""WriteRun alone, into a tmp_path: pool Parquet files with exactly the schema's columns
(internal fields dropped), dedup / filtered / dead-letter rows, stats per pool (empty pools
included), the cut points, optional embeddings and stage info; `count_written` agrees."""
import json
import math
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.pipelines.writing import WriteRun, count_written
from curate.pools import schema as S
from curate.pools.bucketing import score_cuts
from tests.pipelines.stage_helpers import fnapi_pipeline

FEATURES = ["f_word_count", "f_stop_words"]
EXTRA = (("heuristic_score", "float64"),)


def pooled(doc_id: str, pool: int, score: float, source: str = "web") -> dict:
    text = f"document {doc_id} has a few words"
    return {"id": doc_id, "text": text, "source": source, "_order": (source, 0, 0),
            "_norm": text, "text_hash": f"hash-{doc_id}", "chars": len(text), "tokens": 9,
            "score": score, "failed_rules": "" if score > 0.5 else "c4", "reasons": "[]",
            "f_word_count": 7.0, "f_stop_words": 2.0, "heuristic_score": score, "pool": pool}


DOCS = [pooled("a", 0, 0.9), pooled("b", 0, 0.8, source="books"), pooled("c", 2, 0.2)]  # pool 1 empty
DEDUP = [{"removed_id": "x", "kept_id": "a", "method": "exact", "similarity": 1.0},
         {"removed_id": "y", "kept_id": "b", "method": "near", "similarity": 0.85}]
FILTERED = [{"id": "z", "source": "web", "reason": "min_score", "score": 0.05}]
DEAD = [{"source": "in.jsonl", "line": 3, "row": None, "reason": "malformed_json",
         "detail": "Expecting value", "raw": "{oops", "raw_truncated": False}]
EMBEDDINGS = [{"id": "a", "embedding": [0.5, -0.25]}, {"id": "b", "embedding": [1.0, 0.0]},
              {"id": "x", "embedding": [0.0, 1.0]}]  # a removed duplicate keeps its vector


def parquet_rows(folder: Path) -> tuple[list[dict], set]:
    """Rows of every Parquet file in `folder` and the set of column-name lists seen."""
    rows, columns = [], set()
    for path in sorted(folder.glob("*.parquet")):
        table = pq.read_table(path)
        columns.add(tuple(table.column_names))
        rows += table.to_pylist()
    return rows, columns


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("staging")
    p = fnapi_pipeline()
    docs = p | "Docs" >> beam.Create(DOCS)
    cuts = p | "Cuts" >> beam.Create([(score_cuts([0.7, 0.5]), "explicit")])
    info = [p | "Info" >> beam.Create([("clusters", {"n": 2})])]
    docs | WriteRun(str(root), 3, FEATURES, p | "Dedup" >> beam.Create(DEDUP),
                    p | "Filtered" >> beam.Create(FILTERED), p | "Dead" >> beam.Create(DEAD), cuts,
                    extra_columns=EXTRA, embeddings=p | "Emb" >> beam.Create(EMBEDDINGS),
                    embedding_dtype="float16", stage_info=info)
    p.run().wait_until_finish()
    return root


def test_pool_files_hold_public_columns_only(run_dir):
    schema = S.document_schema([f[2:] for f in FEATURES], EXTRA)
    expected_columns = ("id", "text", "source", "text_hash", "chars", "tokens", "score", "failed_rules",
                        "reasons", "heuristic_score", "f_word_count", "f_stop_words", "pool")
    assert tuple(schema.names) == expected_columns
    for k, ids in [(0, ["a", "b"]), (1, []), (2, ["c"])]:
        rows, columns = parquet_rows(run_dir / "pools" / f"pool={k}")
        assert sorted(r["id"] for r in rows) == ids
        assert columns <= {expected_columns}  # no `_norm`, no `_order`
        for row in rows:
            doc = next(d for d in DOCS if d["id"] == row["id"])
            assert row == {c: doc[c] for c in expected_columns}


def test_dedup_filtered_and_dead_letter_rows(run_dir):
    dedup, columns = parquet_rows(run_dir / "dedup")
    assert sorted(dedup, key=lambda r: r["removed_id"]) == DEDUP
    assert columns == {tuple(S.dedup_schema().names)}
    filtered, columns = parquet_rows(run_dir / "filtered")
    assert filtered == FILTERED and columns == {tuple(S.filtered_schema().names)}
    lines = [line for f in sorted((run_dir / "dead_letter").glob("*.jsonl"))
             for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert [json.loads(line) for line in lines] == DEAD


def test_stats_have_one_row_per_pool_empty_ones_included(run_dir):
    stats = pq.read_table(run_dir / "stats.parquet")
    assert stats.schema.equals(S.stats_schema())
    rows = stats.to_pylist()
    assert [r["pool"] for r in rows] == [0, 1, 2]
    assert [r["docs"] for r in rows] == [2, 0, 1]
    assert rows[0]["chars"] == DOCS[0]["chars"] + DOCS[1]["chars"] and rows[0]["tokens"] == 18
    assert rows[0]["score_min"] == pytest.approx(0.8) and rows[0]["score_max"] == pytest.approx(0.9)
    assert rows[0]["score_mean"] == pytest.approx(0.85)
    assert json.loads(rows[0]["source_share"]) == {"books": 0.5, "web": 0.5}
    assert rows[1]["score_mean"] is None and json.loads(rows[1]["source_share"]) == {}
    assert rows[2]["score_min"] == pytest.approx(0.2)


def test_cut_points_embeddings_and_stage_info(run_dir):
    cuts = json.loads((run_dir / "_pool_cuts.json").read_text())
    assert cuts == {"mode": "explicit", "kind": "score", "num_pools": 3, "cuts": [0.7, 0.5]}
    embeddings, columns = parquet_rows(run_dir / "embeddings")
    assert columns == {("id", "embedding")}
    table = pq.read_table(sorted((run_dir / "embeddings").glob("*.parquet"))[0])
    assert table.schema.field("embedding").type == pa.list_(pa.float16())
    got = {r["id"]: r["embedding"] for r in embeddings}
    assert sorted(got) == ["a", "b", "x"]
    for e in EMBEDDINGS:  # these values are exact in float16
        assert got[e["id"]] == e["embedding"] and all(math.isfinite(v) for v in got[e["id"]])
    assert json.loads((run_dir / "_stage_info.json").read_text()) == {"clusters": {"n": 2}}


def test_count_written_matches_what_was_written(run_dir):
    assert count_written(str(run_dir), 3) == {
        "pools": {0: 2, 1: 0, 2: 1}, "dedup": 2, "filtered": 1, "dead_letter": 1, "embeddings": 3}

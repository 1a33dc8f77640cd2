"""The workspace catalog: registration, views over run files, run lookup, laws/plans/observations."""
from __future__ import annotations

import json
import shutil

import duckdb
import pyarrow.parquet as pq
import pytest

from curate.pools.catalog import Catalog, CatalogError, RunFiles, workspace_dir
from tests.pools.runfixture import make_run, publish_manifest


@pytest.fixture()
def two_runs(tmp_path):
    ma, docs_a, dups_a = make_run(tmp_path / "runs" / "alpha", n=90, k=3, seed=1)
    mb, docs_b, dups_b = make_run(tmp_path / "runs" / "beta", n=60, k=2, seed=2, dedup_format="jsonl")
    cat = Catalog(tmp_path / "ws")
    ids = [cat.register_run(tmp_path / "runs" / "alpha"), cat.register_run(tmp_path / "runs" / "beta")]
    return cat, ids, {"alpha": (ma, docs_a, dups_a), "beta": (mb, docs_b, dups_b)}


def test_register_lists_runs_with_manifest_fields(two_runs, tmp_path):
    cat, ids, fx = two_runs
    assert ids == ["alpha", "beta"]
    runs = {r["id"]: r for r in cat.runs()}
    assert set(runs) == {"alpha", "beta"}
    alpha = runs["alpha"]
    assert alpha["status"] == "complete"
    assert alpha["output_dir"] == str((tmp_path / "runs" / "alpha").resolve())
    assert alpha["counts"] == fx["alpha"][0]["counts"]
    assert alpha["config"] == fx["alpha"][0]["config"]
    assert alpha["input_fingerprints"] == fx["alpha"][0]["inputs"]
    assert alpha["time"].isoformat() == "2026-01-02T03:04:05"


def test_views_span_all_runs_with_exact_counts(two_runs):
    cat, _, fx = two_runs
    rows = dict(cat.query("SELECT run_id, count(*) FROM docs GROUP BY run_id").rows)
    assert rows == {"alpha": 90, "beta": 60}
    dups = cat.query("SELECT run_id, method, count(*) FROM duplicates GROUP BY ALL ORDER BY ALL").rows
    expected = sorted(
        (run, m, sum(1 for d in fx[run][2] if d["method"] == m)) for run in fx for m in ("exact", "near")
    )
    assert dups == expected
    dead = dict(cat.query("SELECT run_id, count(*) FROM dead_letter GROUP BY ALL").rows)
    assert dead == {"alpha": 4, "beta": 4}
    filtered = dict(cat.query("SELECT run_id, count(*) FROM filtered GROUP BY ALL").rows)
    assert filtered == {"alpha": 5, "beta": 5}
    stats = cat.query("SELECT run_id, pool, docs FROM pool_stats ORDER BY ALL").rows
    assert stats == [("alpha", 0, 30), ("alpha", 1, 30), ("alpha", 2, 30), ("beta", 0, 30), ("beta", 1, 30)]


def test_pools_view_matches_the_documents(two_runs):
    cat, _, fx = two_runs
    docs = fx["alpha"][1]
    got = cat.query("SELECT pool, docs, chars, tokens, score_mean FROM pools WHERE run_id = 'alpha' ORDER BY pool").rows
    for pool, n, chars, tokens, mean in got:
        members = [d for d in docs if d["pool"] == pool]
        assert n == len(members)
        assert chars == sum(len(d["text"]) for d in members)
        assert tokens == sum(d["tokens"] for d in members)
        assert mean == pytest.approx(sum(d["score"] for d in members) / len(members))


def test_hive_pool_partition_agrees_with_the_file_column(two_runs):
    cat, _, _ = two_runs
    (bad,) = cat.query("SELECT count(*) FROM docs WHERE pool IS NULL").rows[0]
    assert bad == 0


def test_run_option_restricts_every_view(two_runs):
    cat, _, _ = two_runs
    assert cat.query("SELECT DISTINCT run_id FROM docs", run="beta").rows == [("beta",)]
    assert cat.query("SELECT DISTINCT run_id FROM duplicates", run="beta").rows == [("beta",)]
    assert cat.query("SELECT id FROM runs", run="beta").rows == [("beta",)]
    assert cat.query("SELECT count(*) FROM pool_stats", run="bet").rows == [(2,)]  # unique prefix


def test_reregistering_is_idempotent(two_runs, tmp_path):
    cat, _, _ = two_runs
    again = cat.register_run(tmp_path / "runs" / "alpha")
    assert again == "alpha"
    assert [r["id"] for r in cat.runs()] == ["alpha", "beta"]
    assert cat.query("SELECT count(*) FROM docs WHERE run_id = 'alpha'").rows == [(90,)]


def test_same_directory_name_elsewhere_gets_a_distinct_id(two_runs, tmp_path):
    cat, _, _ = two_runs
    make_run(tmp_path / "other" / "alpha", n=30, seed=5)
    new_id = cat.register_run(tmp_path / "other" / "alpha")
    assert new_id != "alpha" and new_id.startswith("alpha-")
    assert len(cat.runs()) == 3
    with pytest.raises(CatalogError, match="ambiguous"):
        cat.resolve_run("alph")
    assert cat.resolve_run(str(tmp_path / "other" / "alpha"))["id"] == new_id


def test_manifest_run_id_and_explicit_id(tmp_path):
    make_run(tmp_path / "r1", n=20, seed=3, run_id="from-manifest")
    make_run(tmp_path / "r2", n=20, seed=4)
    cat = Catalog(tmp_path / "ws")
    assert cat.register_run(tmp_path / "r1") == "from-manifest"
    assert cat.register_run(tmp_path / "r2", run_id="chosen") == "chosen"
    with pytest.raises(CatalogError, match="already used"):
        cat.register_run(tmp_path / "r1", run_id="chosen")


def test_errors_are_clear(tmp_path):
    cat = Catalog(tmp_path / "ws")
    assert cat.runs() == []
    with pytest.raises(CatalogError, match="no catalog"):
        cat.query("SELECT 1")
    (tmp_path / "notarun").mkdir()
    with pytest.raises(CatalogError, match="no manifest.json"):
        cat.register_run(tmp_path / "notarun")
    with pytest.raises(CatalogError, match="does not exist"):
        cat.register_run(tmp_path / "missing")
    make_run(tmp_path / "r", n=10, seed=1)
    cat.register_run(tmp_path / "r")
    with pytest.raises(CatalogError, match="unknown run 'zzz'"):
        cat.query("SELECT 1", run="zzz")


def test_a_deleted_run_directory_does_not_break_queries(two_runs, tmp_path):
    cat, _, _ = two_runs
    shutil.rmtree(tmp_path / "runs" / "beta")
    assert dict(cat.query("SELECT run_id, count(*) FROM docs GROUP BY 1").rows) == {"alpha": 90}
    cat.register_run(tmp_path / "runs" / "alpha")  # rebuilding persistent views skips the gone files
    assert cat.remove_run("beta") == "beta"
    assert [r["id"] for r in cat.runs()] == ["alpha"]


def test_persistent_views_are_usable_with_plain_duckdb(two_runs):
    cat, _, _ = two_runs
    con = duckdb.connect(str(cat.path), read_only=True)
    try:
        views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        assert {"docs", "pools", "pool_stats", "duplicates", "dead_letter", "filtered"} <= views
        assert con.execute("SELECT count(*) FROM docs").fetchone()[0] == 150
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        assert {"runs", "observations", "laws", "plans"} <= tables
    finally:
        con.close()


def test_empty_catalog_views_have_columns(tmp_path):
    run = tmp_path / "empty"
    run.mkdir()
    publish_manifest(run, {"counts": {"input_records": 0, "kept": 0}})
    cat = Catalog(tmp_path / "ws")
    cat.register_run(run)
    for view in ("docs", "pools", "pool_stats", "duplicates", "dead_letter", "filtered"):
        result = cat.query(f"SELECT * FROM {view}")
        assert result.rows == [] and "run_id" in result.columns


def test_run_files_skip_markers_and_temp_files(tmp_path):
    make_run(tmp_path / "r", n=12, seed=0)
    (tmp_path / "r" / "pools" / "pool=0" / "_SUCCESS").write_text("")
    (tmp_path / "r" / "pools" / "pool=0" / ".part.parquet.tmp").write_text("x")
    tmpdir = tmp_path / "r" / "dedup" / "_temp"
    tmpdir.mkdir()
    pq.write_table(pq.read_table(tmp_path / "r" / "dedup" / "part-00000.parquet"), tmpdir / "leftover.parquet")
    files = RunFiles.scan(tmp_path / "r")
    assert len(files.pools) == 3 and len(files.duplicates) == 1


def test_workspace_resolution(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CURATE_WORKSPACE", raising=False)
    assert workspace_dir() == tmp_path / "curate-workspace"
    monkeypatch.setenv("CURATE_WORKSPACE", str(tmp_path / "env-ws"))
    assert workspace_dir() == tmp_path / "env-ws"
    assert workspace_dir(tmp_path / "arg") == tmp_path / "arg"


def test_laws_plans_and_observations_are_registered(tmp_path):
    cat = Catalog(tmp_path / "ws")
    law = tmp_path / "law.json"
    law.write_text(json.dumps({"format": "curate-law/1", "kind": "qqt", "unit": "documents",
                               "params": {"a": 1.0, "d": 0.5}, "pools": [{"name": "pool0", "size": 10}]}))
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"budget": 1e8, "unit": "tokens", "pools": [{"pool": "pool0", "epochs": 2}]}))
    assert cat.register_law(law) == "law"
    assert cat.register_plan(plan) == "plan"
    n = cat.register_observations(
        [{"pool": "pool0", "samples_seen": 100.0, "unique_samples": 50.0, "metric": 3.2, "run_id": "p1", "step": 1},
         {"pool": "pool0", "samples_seen": 200.0, "unique_samples": 50.0, "metric": 3.0, "run_id": "p1", "step": 2}],
        source="probe-1")
    assert n == 2
    cat.register_observations([{"pool": "pool0", "samples_seen": 1.0, "unique_samples": 1.0, "metric": 4.0}],
                              source="probe-1")  # same source replaces
    assert cat.query("SELECT kind, unit, params->>'$.d' FROM laws").rows == [("qqt", "documents", "0.5")]
    assert cat.query("SELECT budget, unit FROM plans").rows == [(1e8, "tokens")]
    assert cat.query("SELECT count(*), max(metric) FROM observations").rows == [(1, 4.0)]


def test_a_directory_keeps_one_row_when_its_id_changes(tmp_path):
    make_run(tmp_path / "r", n=10, seed=1)
    cat = Catalog(tmp_path / "ws")
    assert cat.register_run(tmp_path / "r") == "r"
    assert cat.register_run(tmp_path / "r", run_id="renamed") == "renamed"
    assert cat.register_run(tmp_path / "r") == "renamed"  # keeps the id it has
    assert [r["id"] for r in cat.runs()] == ["renamed"]
    assert cat.query("SELECT DISTINCT run_id FROM docs").rows == [("renamed",)]


def test_a_failed_write_rolls_back_everything(tmp_path, monkeypatch):
    import curate.pools.catalog as catalog_module
    make_run(tmp_path / "a", n=10, seed=1)
    make_run(tmp_path / "b", n=10, seed=2)
    cat = Catalog(tmp_path / "ws")
    cat.register_run(tmp_path / "a")

    def broken(con, scans, *, temporary):
        raise RuntimeError("disk full while building views")

    monkeypatch.setattr(catalog_module, "create_views", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        cat.register_run(tmp_path / "b")
    monkeypatch.undo()
    assert [r["id"] for r in cat.runs()] == ["a"]
    assert cat.query("SELECT count(*) FROM docs").rows == [(10,)]


def test_a_catalog_from_before_manifest_hashes_still_serves_and_upgrades(tmp_path):
    """Catalogs written before the runs table recorded the manifest's SHA-256 keep working:
    their runs are served while published, and the next write adds the column."""
    make_run(tmp_path / "r", n=20, seed=1)
    cat = Catalog(tmp_path / "ws")
    cat.register_run(tmp_path / "r")
    con = duckdb.connect(str(cat.path))
    try:  # the old schema: the same table without manifest_sha256
        con.execute("DROP VIEW IF EXISTS pools")
        for view in ("docs", "pool_stats", "duplicates", "dead_letter", "filtered", "embeddings"):
            con.execute(f"DROP VIEW IF EXISTS {view}")
        con.execute("ALTER TABLE runs DROP COLUMN manifest_sha256")
    finally:
        con.close()
    assert cat.runs()[0]["manifest_sha256"] is None and cat.runs()[0]["status"] == "complete"
    assert cat.query("SELECT count(*) FROM docs").rows == [(20,)]
    make_run(tmp_path / "r2", n=10, seed=2)
    cat.register_run(tmp_path / "r2")
    assert {r["id"]: r["manifest_sha256"] is not None for r in cat.runs()} == {"r": False, "r2": True}
    assert cat.query("SELECT count(*) FROM docs").rows == [(30,)]

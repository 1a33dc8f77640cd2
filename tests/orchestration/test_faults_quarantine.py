"""Fault test: one bad run never breaks the workspace (the reliability issue's ninth failure).

A corrupt Parquet file in a registered run, or a manifest with `counts: [1, 2]`, made every
workspace query and `curate runs` fail. Now such a run is quarantined: status `corrupt` with a
warning naming the file, left out of queries that go on serving the other runs; `register`
refuses a malformed manifest; `curate runs --check` decodes every file and exits 1;
`curate unregister` drops a run from the catalog without touching its files.
"""
from __future__ import annotations

import json

import duckdb
import pytest

from curate.orchestration.cli import main
from curate.pools import rundir
from curate.pools.catalog import Catalog
from tests.pools.runfixture import make_run, publish_manifest


@pytest.fixture()
def workspace(tmp_path):
    """Two registered synthetic runs, alpha (90 docs) and beta (300 docs)."""
    make_run(tmp_path / "alpha", n=90, k=3, seed=1)
    make_run(tmp_path / "beta", n=300, k=2, seed=2)
    ws = tmp_path / "ws"
    catalog = Catalog(ws)
    catalog.register_run(tmp_path / "alpha")
    catalog.register_run(tmp_path / "beta")
    return ws


def _cli(capsys, *argv):
    code = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return code, out, err


def _docs_per_run(capsys, ws):
    code, out, err = _cli(capsys, "query", "SELECT run_id, count(*) AS n, sum(length(text)) AS chars "
                          "FROM docs GROUP BY run_id ORDER BY run_id", "--format", "json", "--workspace", ws)
    assert code == 0, err
    return {row["run_id"]: row["n"] for row in json.loads(out)}, err


def _first_pool_file(run):
    return sorted((run / "pools").rglob("*.parquet"))[0]


def _files(run):
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_a_truncated_parquet_file_quarantines_its_run_only(workspace, tmp_path, capsys):
    damaged = _first_pool_file(tmp_path / "beta")
    damaged.write_bytes(damaged.read_bytes()[:100])  # a copy cut short

    docs, err = _docs_per_run(capsys, workspace)
    assert docs == {"alpha": 90}
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "run beta is left out" in lines[0] and str(damaged) in lines[0]

    code, out, err = _cli(capsys, "runs", "--workspace", workspace)
    assert code == 0
    assert "corrupt" in out and "run beta is corrupt" in err and str(damaged) in err and "Traceback" not in err
    code, out, _ = _cli(capsys, "runs", "--json", "--workspace", workspace)
    assert code == 0  # without --check a listing, not a verdict
    assert {r["id"]: r["status"] for r in json.loads(out)} == {"alpha": "complete", "beta": "corrupt"}

    code, out, err = _cli(capsys, "runs", "--check", "--workspace", workspace)
    assert code == 1
    assert "1 of 2 runs whole" in out and str(damaged) in out

    # the run itself is refused by name, with the reason, not served empty
    code, _, err = _cli(capsys, "query", "SELECT count(*) FROM docs", "--run", "beta", "--workspace", workspace)
    assert code == 2 and err.count("\n") == 1 and "run beta cannot be queried" in err and str(damaged) in err


def test_damage_inside_the_data_pages_is_found_by_the_query_and_by_check(workspace, tmp_path, capsys):
    damaged = _first_pool_file(tmp_path / "beta")
    data = bytearray(damaged.read_bytes())
    data[8:len(data) // 3] = b"\xab" * (len(data) // 3 - 8)  # footer and magic bytes intact
    damaged.write_bytes(bytes(data))
    with pytest.raises(duckdb.Error):  # what every workspace query hit before
        duckdb.connect().execute(f"SELECT * FROM read_parquet('{damaged}')").fetchall()

    docs, err = _docs_per_run(capsys, workspace)
    assert docs == {"alpha": 90}
    assert "run beta is left out" in err and str(damaged) in err

    code, out, _ = _cli(capsys, "runs", "--check", "--json", "--workspace", workspace)
    assert code == 1
    runs = {r["id"]: r for r in json.loads(out)}
    assert runs["alpha"]["status"] == "complete" and runs["alpha"]["problem"] is None
    assert runs["beta"]["status"] == "corrupt" and str(damaged) in runs["beta"]["problem"]


def test_a_deleted_part_file_is_found_by_check(workspace, tmp_path, capsys):
    _first_pool_file(tmp_path / "beta").unlink()
    code, out, _ = _cli(capsys, "runs", "--check", "--workspace", workspace)
    assert code == 1
    assert "the manifest counts 300" in out and str(tmp_path / "beta" / "pools") in out


@pytest.mark.parametrize("counts, why", [
    ([1, 2], "counts is a list, not an object of counts"),
    ({"kept": "90"}, "counts.kept is '90', not a count"),
    ({"removed": {"near": -1}}, "counts.removed.near is -1, not a count"),
])
def test_register_validates_the_manifest_types(tmp_path, capsys, counts, why):
    manifest, _, _ = make_run(tmp_path / "foreign", n=20, seed=3)
    publish_manifest(tmp_path / "foreign", {**manifest, "counts": counts})  # published, but not curate's
    code, _, err = _cli(capsys, "register", tmp_path / "foreign", "--workspace", tmp_path / "ws")
    assert code == 2 and err.count("\n") == 1
    assert "is not a curate run manifest" in err and why in err
    assert Catalog(tmp_path / "ws").runs() == []
    code, _, err = _cli(capsys, "stats", tmp_path / "foreign")  # every reader says the same
    assert code == 2 and why in err and err.count("\n") == 1


def test_a_malformed_registered_row_does_not_break_runs_or_queries(workspace, tmp_path, capsys):
    """A row registered before register validated manifests (simulated by writing it)."""
    catalog = Catalog(workspace)
    con = duckdb.connect(str(catalog.path))
    try:
        con.execute("UPDATE runs SET counts = '[1, 2]' WHERE id = 'beta'")
    finally:
        con.close()
    code, out, err = _cli(capsys, "runs", "--workspace", workspace)
    assert code == 0 and "Traceback" not in err
    assert "run beta is corrupt" in err and "counts is a list" in err
    docs, err = _docs_per_run(capsys, workspace)
    assert docs == {"alpha": 90} and "run beta is left out" in err


def test_unregister_removes_the_run_from_the_catalog_only(workspace, tmp_path, capsys):
    before = _files(tmp_path / "beta")
    damaged = _first_pool_file(tmp_path / "beta")
    damaged.write_bytes(b"not parquet at all")
    before = _files(tmp_path / "beta")
    code, out, err = _cli(capsys, "unregister", "bet", "--workspace", workspace)  # a unique prefix
    assert code == 0, err
    assert "unregistered run beta" in out and "untouched" in out
    assert _files(tmp_path / "beta") == before  # nothing deleted or changed
    assert [r["id"] for r in Catalog(workspace).runs()] == ["alpha"]
    docs, err = _docs_per_run(capsys, workspace)
    assert docs == {"alpha": 90} and err == ""
    code, out, _ = _cli(capsys, "runs", "--check", "--workspace", workspace)
    assert code == 0 and "1 of 1 runs whole" in out

    code, _, err = _cli(capsys, "unregister", "beta", "--workspace", workspace)
    assert code == 2 and err.count("\n") == 1 and "unknown run 'beta'" in err
    code, _, err = _cli(capsys, "unregister", "x", "--workspace", tmp_path / "empty-ws")
    assert code == 2 and "no catalog" in err


def test_unregister_works_on_a_run_whose_directory_is_gone(workspace, tmp_path, capsys):
    import shutil

    shutil.rmtree(tmp_path / "beta")
    code, out, err = _cli(capsys, "runs", "--workspace", workspace)
    assert code == 0 and "run beta is missing" in err
    code, _, _ = _cli(capsys, "unregister", "beta", "--workspace", workspace)
    assert code == 0
    assert [r["id"] for r in Catalog(workspace).runs()] == ["alpha"]


def test_a_run_replaced_after_registration_is_stale_until_registered_again(workspace, tmp_path, capsys):
    manifest = json.loads((tmp_path / "beta" / rundir.MANIFEST).read_text())
    publish_manifest(tmp_path / "beta", {**manifest, "created_utc": "2026-02-03T00:00:00+00:00"})
    code, out, err = _cli(capsys, "runs", "--workspace", workspace)
    assert "run beta is stale" in err and "curate register" in err
    docs, err = _docs_per_run(capsys, workspace)
    assert docs == {"alpha": 90}
    assert _cli(capsys, "register", tmp_path / "beta", "--workspace", workspace)[0] == 0
    docs, err = _docs_per_run(capsys, workspace)
    assert docs == {"alpha": 90, "beta": 300} and err == ""

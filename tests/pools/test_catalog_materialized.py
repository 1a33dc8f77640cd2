"""Training sets from `curate materialize` in the workspace catalog: the `materialized` view
(which plan, which run, which files), served only while the set is whole, and the commands
that show it (`curate materialize --workspace`, `runs`, `query`, `register`, `unregister`).
Real sets written by the real pipeline (FnApiRunner), a real DuckDB catalog."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from curate.orchestration.cli import main
from curate.orchestration.materialize_job import MaterializeSettings, materialize
from curate.pools.catalog import Catalog, CatalogError
from tests.pipelines.materialize_fixtures import make_run, write_plan


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("run"))


def _plan(path: Path, epochs: float = 2.0) -> Path:
    return write_plan(path, "samples", {"pool0": (40, 20, epochs), "pool1": (30, 30, 1.0)})


@pytest.fixture()
def trained(run_dir, tmp_path):
    """A published training set, registered."""
    out = tmp_path / "train"
    manifest = materialize(str(_plan(tmp_path / "plan.json")), str(run_dir), str(out),
                           MaterializeSettings(shards=2)).manifest
    cat = Catalog(tmp_path / "ws")
    return cat, cat.register_materialized(out), out, manifest


def _served(cat: Catalog):
    result = cat.query("SELECT * FROM materialized")
    return result.records(), result.warnings


def test_the_view_says_which_plan_which_run_which_files(trained, run_dir, tmp_path):
    cat, set_id, out, manifest = trained
    assert set_id == "train"
    (row,), warnings = _served(cat)
    assert warnings == []
    assert (row["plan_path"], row["plan_sha256"]) == (str((tmp_path / "plan.json").resolve()), manifest["plan"]["sha256"])
    assert (row["run_path"], row["run_fingerprint"]) == (str(run_dir.resolve()), manifest["run"]["fingerprint"])
    assert row["output_dir"] == str(out.resolve()) and row["format"] == "parquet" and row["unit"] == "docs"
    assert row["units_written"] == manifest["total"]["units_written"] == 70 and row["plan_units"] == 70.0
    assert row["reconciled"] is True and row["rows_written"] == 70
    files = json.loads(row["files"])
    assert [(f["file"], f["rows"], f["bytes"], f["sha256"]) for f in files] == [
        (f["file"], f["rows"], f["bytes"], f["sha256"]) for f in manifest["files"]]
    assert sum(f["rows"] for f in files) == 70
    # idempotent: the same directory keeps its id and its one row
    assert cat.register_materialized(out) == "train" and len(_served(cat)[0]) == 1
    (listed,) = cat.materialized_sets()
    assert (listed["status"], listed["problem"]) == ("complete", None)


def test_a_set_that_is_not_whole_is_left_out_with_a_warning(trained, run_dir, tmp_path):
    cat, _, out, manifest = trained
    first = out / manifest["files"][0]["file"]
    saved = first.read_bytes()
    first.unlink()
    rows, warnings = _served(cat)
    assert rows == [] and len(warnings) == 1
    assert warnings[0].startswith("training set train is left out: ") and first.name in warnings[0]
    assert cat.materialized_sets()[0]["status"] == "corrupt"
    # same size, other bytes: only the deep check (SHA-256) sees it
    first.write_bytes(bytes(reversed(saved)))
    assert _served(cat)[0] != [] and cat.materialized_sets()[0]["status"] == "complete"
    (checked,) = cat.materialized_sets(check=True)
    assert checked["status"] == "corrupt" and "SHA-256" in checked["problem"]
    first.write_bytes(saved)
    # another set published over it: stale until registered again, then the new plan is served
    materialize(str(_plan(tmp_path / "plan2.json", 3.0)), str(run_dir), str(out), MaterializeSettings(shards=2),
                overwrite=True)
    assert _served(cat)[0] == [] and cat.materialized_sets()[0]["status"] == "stale"
    cat.register_materialized(out)
    (row,), _ = _served(cat)
    assert row["plan_path"].endswith("plan2.json") and row["units_written"] == 90
    shutil.rmtree(out)
    assert _served(cat)[0] == [] and cat.materialized_sets()[0]["status"] == "missing"
    assert cat.remove_materialized("train") == "train" and cat.materialized_sets() == []


def test_only_a_published_whole_training_set_is_registered(trained, run_dir, tmp_path):
    cat, _, out, manifest = trained
    with pytest.raises(CatalogError, match="not a `curate materialize` output"):
        cat.register_materialized(run_dir)  # a run directory is not a training set
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / manifest["files"][1]["file"]).unlink()
    with pytest.raises(CatalogError, match="is not registered: .*No such file"):
        cat.register_materialized(copy)
    (copy / "_SUCCESS").unlink()
    with pytest.raises(CatalogError, match="no published training set"):
        cat.register_materialized(copy)
    assert [s["id"] for s in cat.materialized_sets()] == ["train"]


def test_a_catalog_from_before_the_table_serves_an_empty_view(trained):
    cat, _, _, _ = trained
    con = duckdb.connect(str(cat.path))
    con.execute("DROP VIEW materialized")
    con.execute("DROP TABLE materialized_sets")
    con.close()
    result = cat.query("SELECT id, reconciled FROM materialized")
    assert result.rows == [] and result.types == ["VARCHAR", "BOOLEAN"]
    assert cat.materialized_sets() == []


def test_commands_register_list_query_and_unregister(run_dir, tmp_path, capsys):
    ws, out = tmp_path / "ws", tmp_path / "train"
    plan = _plan(tmp_path / "plan.json")
    assert main(["register", str(run_dir), "--workspace", str(ws), "--id", "base"]) == 0
    capsys.readouterr()
    assert main(["materialize", str(plan), "--run", str(run_dir), "--output", str(out), "--shards", "2",
                 "--quiet", "--json", "--workspace", str(ws)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["catalog_id"] == "train" and summary["catalog_warning"] is None
    assert main(["runs", "--workspace", str(ws)]) == 0
    listing = capsys.readouterr().out
    sets = listing.split("training sets (curate materialize):")[1]
    assert any(line.split()[:7] == ["train", "complete", "parquet", "docs", "70", "70", "True"]
               for line in sets.splitlines() if line.strip())
    assert main(["query", "SELECT id, unit, rows_written FROM materialized", "--run", "base",
                 "--format", "json", "--workspace", str(ws)]) == 0
    assert json.loads(capsys.readouterr().out) == [{"id": "train", "unit": "docs", "rows_written": 70}]
    assert main(["unregister", "train", "--workspace", str(ws)]) == 0
    assert "unregistered training set train" in capsys.readouterr().out
    assert main(["register", str(out), "--workspace", str(ws)]) == 0
    assert "registered training set train" in capsys.readouterr().out
    assert main(["runs", "--check", "--workspace", str(ws)]) == 0
    assert "1 of 1 training sets whole" in capsys.readouterr().out

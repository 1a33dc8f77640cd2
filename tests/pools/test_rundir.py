"""The run-directory contract: one reader, and an unfinished run refused the same way by every command."""
from __future__ import annotations

import json

import duckdb
import pytest

from curate.pools import rundir
from curate.pools.rundir import RunDir, RunDirError
from tests.pools.runfixture import make_run, publish_manifest


def test_published_run_reads_manifest_stats_and_files(tmp_path):
    manifest, docs, duplicates = make_run(tmp_path / "r", n=40, k=3, seed=2)
    run = RunDir(tmp_path / "r")
    assert run.manifest == manifest and run.marker["fingerprint"] == "fixture"
    assert [row["pool"] for row in run.stats()] == [0, 1, 2]
    assert sum(row["docs"] for row in run.stats()) == len(docs)
    con = duckdb.connect()
    assert con.execute(f"SELECT count(*) FROM ({run.select('docs')})").fetchone()[0] == len(docs)
    assert con.execute(f"SELECT count(*) FROM ({run.select('duplicates')})").fetchone()[0] == len(duplicates)
    # a view without files is empty but typed, also for an explicit projection
    assert con.execute(f"SELECT * FROM ({run.select('embeddings')})").fetchall() == []
    rel = con.execute(f"SELECT * FROM ({run.select('embeddings', 'id, embedding AS vector')})")
    assert [d[0] for d in rel.description] == ["id", "vector"] and rel.fetchall() == []
    with pytest.raises(ValueError, match="unknown run view"):
        run.select("nope")


@pytest.mark.parametrize("damage, message", [
    ("missing", "does not exist"),
    ("empty", "no manifest.json"),
    ("half", "no manifest.json: the run did not finish"),  # stats published, manifest not yet
    ("no_marker", "marker is missing or does not match"),
    ("edited", "marker is missing or does not match"),
])
def test_unfinished_runs_are_refused(tmp_path, damage, message):
    path = tmp_path / "r"
    if damage != "missing":
        manifest, _, _ = make_run(path, n=20, k=2, seed=1)
        if damage == "empty":
            for f in sorted(path.rglob("*"), reverse=True):
                f.unlink() if f.is_file() else f.rmdir()
        elif damage == "half":
            (path / rundir.MANIFEST).unlink()
            (path / rundir.SUCCESS).unlink()
        elif damage == "no_marker":
            (path / rundir.SUCCESS).unlink()
        elif damage == "edited":
            (path / rundir.MANIFEST).write_text(json.dumps({**manifest, "counts": {}}))
    with pytest.raises(RunDirError, match=message):
        RunDir(path)


def test_every_reader_refuses_an_unfinished_run_with_the_same_line(tmp_path, capsys):
    from curate.orchestration.cli import main

    make_run(tmp_path / "ok", n=20, k=2, seed=1)
    make_run(tmp_path / "r", n=20, k=2, seed=1)
    (tmp_path / "r" / rundir.SUCCESS).unlink()  # killed between stats.parquet and the marker
    ws = ["--workspace", str(tmp_path / "ws")]
    errors = {}
    for name, argv in {
        "stats": ["stats", str(tmp_path / "r")],
        "report": ["report", str(tmp_path / "r"), "-o", str(tmp_path / "x.html")],
        "register": ["register", str(tmp_path / "r"), *ws],
        "diff": ["diff", str(tmp_path / "ok"), str(tmp_path / "r"), *ws],
    }.items():
        assert main(argv) == 2, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1, (name, err)
        errors[name] = err.split("error: ", 1)[1]
    assert len(set(errors.values())) == 1, errors
    assert "marker is missing or does not match manifest.json" in errors["stats"]


def test_catalog_views_hide_a_run_while_it_is_not_published(tmp_path):
    from curate.pools.catalog import Catalog

    _, docs, _ = make_run(tmp_path / "r", n=30, k=2, seed=5)
    catalog = Catalog(tmp_path / "ws")
    catalog.register_run(tmp_path / "r")
    assert catalog.query("SELECT count(*) FROM docs").rows == [(len(docs),)]
    manifest = json.loads((tmp_path / "r" / rundir.MANIFEST).read_text())
    (tmp_path / "r" / rundir.SUCCESS).unlink()  # being replaced: not a run until re-published
    assert catalog.query("SELECT count(*) FROM docs").rows == [(0,)]
    publish_manifest(tmp_path / "r", manifest)
    assert catalog.query("SELECT count(*) FROM docs").rows == [(len(docs),)]

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


def test_readers_of_plan_and_probe_refuse_the_same_way(tmp_path):
    """plan --pools-from and probe/validate (load_pools) go through RunDir too."""
    from curate.orchestration.commands.plan import read_run_pools
    from curate.probe.errors import ProbeError
    from curate.probe.run_pools import load_pools

    make_run(tmp_path / "r", n=20, k=2, seed=1)
    assert set(read_run_pools(tmp_path / "r", "docs")) == {"pool0", "pool1"}
    (tmp_path / "r" / rundir.SUCCESS).unlink()
    with pytest.raises(RunDirError, match="marker is missing or does not match") as plan_err:
        read_run_pools(tmp_path / "r", "docs")
    with pytest.raises(ProbeError) as probe_err:
        load_pools(tmp_path / "r")
    assert str(probe_err.value) == str(plan_err.value)


@pytest.mark.parametrize("manifest, why", [
    ({"counts": {"kept": 3, "removed": {"exact": 1}}, "config": {}, "inputs": [{}]}, None),
    ([1, 2], "the manifest is a list, not an object"),
    ({"config": {}}, "it has no counts"),
    ({"counts": [1, 2]}, "counts is a list, not an object of counts"),
    ({"counts": {"kept": True}}, "counts.kept is True, not a count"),
    ({"counts": {"kept": 1.5}}, "counts.kept is 1.5, not a count"),
    ({"counts": {"dead_letter": {"bad_json": None}}}, "counts.dead_letter.bad_json is None, not a count"),
    ({"counts": {}, "config": "pools: 3"}, "config is a string, not an object"),
    ({"counts": {}, "inputs": ["a.jsonl"]}, "inputs holds an entry that is not an object"),
    ({"counts": {}, "semantic_dedup": None}, None),
])
def test_manifest_types_are_checked(manifest, why):
    problem = rundir.manifest_problem(manifest)
    assert problem == why if why is None else problem.startswith(why)


def test_file_problems_name_what_is_wrong(tmp_path):
    make_run(tmp_path / "r", n=200, k=1, seed=3, n_dead=3)
    run = RunDir(tmp_path / "r")
    assert run.problem() is None and run.problem(deep=True) is None
    pool_file = run.files.pools[0]
    original = open(pool_file, "rb").read()
    with open(pool_file, "r+b") as fh:  # damage inside the pages, footer intact: only deep sees it
        fh.seek(8)
        fh.write(b"\xab" * (len(original) // 3))
    assert rundir.file_problem(pool_file) is None
    assert rundir.file_problem(pool_file, deep=True).startswith("unreadable: ")
    assert run.problem(deep=True).startswith(f"{pool_file}: unreadable: ")
    open(pool_file, "wb").write(original[: len(original) // 2])
    assert rundir.file_problem(pool_file) == "not a Parquet file (truncated or overwritten)"
    dead = run.files.dead_letter[0]
    open(dead, "wb").write(b"plain text, not gzip")
    assert rundir.file_problem(dead) == "not a gzip file"
    jsonl = tmp_path / "x.jsonl"
    jsonl.write_text('{"a": 1}\n[2]\n')
    assert rundir.file_problem(jsonl) is None  # quick: JSON lines are only parsed by deep
    assert rundir.file_problem(jsonl, deep=True) == "unreadable: line 2 is not a JSON object"
    assert rundir.file_problem(tmp_path / "gone.parquet") == "No such file or directory"

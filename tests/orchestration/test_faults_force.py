"""Fault test: an interrupted `--force`/`--overwrite` never destroys the good run, and the catalog
never serves half of one (the reliability issue's fourth failure: killed mid-publish over a
registered run, `curate query` returned half the documents while `curate runs` said complete).

The new run is completed beside the old one and the two directories are swapped in one rename
(pipelines/publish.py). Each test kills the publish at one step the way test_resume_runs does
(an exception raised from inside publish, so nothing after it runs), then checks what readers
see and that the next run repairs everything without deleting anything that is not curate's.
"""
from __future__ import annotations

import errno
import json
import os
import subprocess
import time

import pytest

from curate.orchestration.cli import main
from curate.orchestration.config import resolve_config
from curate.orchestration.runner import execute_job
from tests.crash import crash_on_call
from curate.pipelines import publish
from curate.pools import rundir
from curate.pools.catalog import Catalog
from tests.orchestration.curate_runs import cli_env, curate_cmd, pool_rows, synthetic_corpus

BEAM = ["--runner=FnApiRunner"]
N_DOCS = 120  # documents kept from the corpus below (its exact copies removed)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return synthetic_corpus(tmp_path_factory.mktemp("corpus"), n=N_DOCS, seed=7, n_exact=4)


@pytest.fixture()
def registered(corpus, tmp_path):
    """A published, registered 2-pool run, with a file of the user's in its directory."""
    out, ws = tmp_path / "run", tmp_path / "ws"
    execute_job([str(corpus)], str(out), resolve_config(pools=2), BEAM)
    Catalog(ws).register_run(out)
    (out / "notes.txt").write_text("mine")
    return out, ws


def _served(ws):
    """(docs, pools) that `curate query` serves, or None when it leaves the run out (and says so)."""
    result = Catalog(ws).query("SELECT count(*) AS n, count(DISTINCT pool) AS pools FROM docs")
    (n, pools), = result.rows
    if result.warnings:
        assert (n, pools) == (0, 0) and "run run is left out" in result.warnings[0]
        return None
    return n, pools


def _assert_runs_agree_with_query(ws, out):
    """`curate runs` says complete, with the old run's counts, exactly when query serves it."""
    (run,) = Catalog(ws).runs()
    served = _served(ws)
    if served is None:
        assert run["status"] in ("stale", "unpublished"), run
    else:
        assert served == (N_DOCS, 2)  # the whole old run, never part of it
        assert run["status"] == "complete" and run["problem"] is None
        assert run["counts"] == json.loads((out / "manifest.json").read_text())["counts"]
    return served


def _kill(exc_type=KeyboardInterrupt):
    def crash(*args, **kwargs):
        raise exc_type("simulated kill during publish")
    return crash


# (name, attribute of pipelines.publish, replacement): one kill per step of the swap
CRASH_POINTS = {
    "staged run completed in staging": ("_write_local", lambda: crash_on_call(publish._write_local, 4)),
    "staged run moved beside": ("exchange_paths", lambda: _kill()),
    "swapped, old run not tidied": ("tidy_swap_folder", lambda: _kill()),
    "tidying the old run": ("_remove", lambda: crash_on_call(publish._remove, 2)),
}


@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_force_killed_mid_publish_keeps_a_whole_run_served(corpus, registered, monkeypatch, point):
    out, ws = registered
    assert _served(ws) == (N_DOCS, 2)
    name, make = CRASH_POINTS[point]
    monkeypatch.setattr(publish, name, make())
    with pytest.raises(KeyboardInterrupt):
        execute_job([str(corpus)], str(out), resolve_config(pools=3), BEAM, overwrite=True)
    monkeypatch.undo()

    assert publish.is_published(str(out))  # the old run or the new one, whole: never neither
    rundir.RunDir(out)
    served = _assert_runs_agree_with_query(ws, out)
    swapped = {p for _, p in pool_rows(out)} == {0, 1, 2}
    assert (served is None) == swapped  # the new run is not served before it is registered
    notes = [p for p in [out / "notes.txt", *(s / "notes.txt" for s in rundir.swap_siblings(out))] if p.exists()]
    assert [p.read_text() for p in notes] == ["mine"]  # the user's file is in one place, intact

    # the next run into the directory finishes the interrupted swap and publishes
    result = execute_job([str(corpus)], str(out), resolve_config(pools=3), BEAM, overwrite=True)
    assert not result.reused and publish.is_published(str(out))
    assert rundir.swap_siblings(out) == [] and not list(out.glob("_staging-*"))
    assert not (out / rundir.PUBLISHING).exists()
    assert (out / "notes.txt").read_text() == "mine"
    assert {p for _, p in pool_rows(out)} == {0, 1, 2} and len(pool_rows(out)) == N_DOCS
    assert main(["register", str(out), "--workspace", str(ws)]) == 0
    assert _served(ws) == (N_DOCS, 3)
    assert Catalog(ws).runs()[0]["status"] == "complete"


def test_the_old_run_is_served_until_the_swap_and_the_lock_survives_it(corpus, registered, monkeypatch):
    out, ws = registered
    lock_inode = os.stat(out / rundir.LOCK).st_ino
    seen = []

    def exchange_when_the_new_run_is_complete(a, b):
        beside = rundir.RunDir(a)  # the staged run is complete before it replaces anything
        assert beside.manifest["config"]["pools"]["num_pools"] == 3
        seen.append(_served(ws))  # ...and at that moment the old run is still whole and served
        real_exchange(a, b)

    real_exchange = publish.exchange_paths
    monkeypatch.setattr(publish, "exchange_paths", exchange_when_the_new_run_is_complete)
    execute_job([str(corpus)], str(out), resolve_config(pools=3), BEAM, overwrite=True)
    assert seen == [(N_DOCS, 2)]
    assert os.stat(out / rundir.LOCK).st_ino == lock_inode  # the lock held was DIR's all along
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["_SUCCESS", "_curate.lock", "dead_letter", "dedup", "filtered", "manifest.json", "notes.txt", "pools",
         "stats.parquet"])
    assert rundir.swap_siblings(out) == []
    # published but not yet registered: query and runs agree that the registered run is gone
    assert _served(ws) is None and Catalog(ws).runs()[0]["status"] == "stale"


def test_without_an_atomic_exchange_publish_falls_back_to_in_place(corpus, registered, monkeypatch):
    out, ws = registered
    monkeypatch.setattr(publish, "exchange_paths", _kill(lambda msg: OSError(errno.EINVAL, msg)))
    execute_job([str(corpus)], str(out), resolve_config(pools=3), BEAM, overwrite=True)
    assert publish.is_published(str(out)) and {p for _, p in pool_rows(out)} == {0, 1, 2}
    assert rundir.swap_siblings(out) == [] and not list(out.glob("_staging-*"))
    assert (out / "notes.txt").read_text() == "mine" and not (out / rundir.PUBLISHING).exists()


def test_an_in_place_publish_killed_over_a_registered_run_is_left_out_not_served_in_part(
        corpus, registered, monkeypatch):
    """Where no swap is possible (object stores, filesystems without an exchange) the old run is
    unpublished before the new one moves in: killed there, query and runs agree it is gone."""
    out, ws = registered
    monkeypatch.setattr(publish, "exchange_paths", _kill(lambda msg: OSError(errno.EINVAL, msg)))
    monkeypatch.setattr(publish, "_move", crash_on_call(publish._move, 2))  # pools moved, then killed
    with pytest.raises(KeyboardInterrupt):
        execute_job([str(corpus)], str(out), resolve_config(pools=3), BEAM, overwrite=True)
    monkeypatch.undo()
    assert list((out / "pools").rglob("*.parquet")) and not publish.is_published(str(out))
    assert _served(ws) is None
    (run,) = Catalog(ws).runs()
    assert run["status"] == "unpublished" and "holds no published run" in run["problem"]
    execute_job([str(corpus)], str(out), resolve_config(pools=3), BEAM, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine" and len(pool_rows(out)) == N_DOCS


def test_a_symlinked_output_keeps_its_link(corpus, tmp_path):
    real, link = tmp_path / "real", tmp_path / "link"
    execute_job([str(corpus)], str(real), resolve_config(pools=2), BEAM)
    link.symlink_to(real)
    execute_job([str(corpus)], str(link), resolve_config(pools=3), BEAM, overwrite=True)
    assert link.is_symlink() and os.path.realpath(link) == str(real)
    assert {p for _, p in pool_rows(real)} == {0, 1, 2} and rundir.swap_siblings(real) == []


def test_a_foreign_folder_with_the_swap_name_is_never_touched(corpus, registered):
    out, _ = registered
    foreign = rundir.swap_sibling(out, "0123456789ab")
    (foreign / "pools").mkdir(parents=True)
    (foreign / "pools" / "keep.txt").write_text("someone else's")
    execute_job([str(corpus)], str(out), resolve_config(pools=3), BEAM, overwrite=True)
    assert (foreign / "pools" / "keep.txt").read_text() == "someone else's"


@pytest.mark.slow
def test_queries_during_a_real_overwrite_see_one_whole_run(corpus, registered):
    """A real `curate run --overwrite` in another process while this one queries the catalog
    as fast as it can: every answer is the whole old run, the whole new run, or the run left
    out with a warning (registered run no longer published as registered)."""
    out, ws = registered
    proc = subprocess.Popen(curate_cmd("run", "--input", corpus, "--output", out, "--pools", "3", "--overwrite",
                                       "--quiet", "--workspace", ws),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    seen = set()
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        seen.add(_served(ws))
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-2000:]
    seen.add(_served(ws))
    assert seen <= {(N_DOCS, 2), (N_DOCS, 3), None}, seen
    assert (N_DOCS, 2) in seen and _served(ws) == (N_DOCS, 3)
    assert (out / "notes.txt").read_text() == "mine"

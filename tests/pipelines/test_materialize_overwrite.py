"""Fault test: `curate materialize --overwrite` killed while replacing a published training set
leaves the old set whole (or the new one, whole), never neither and never a mix, and the next
run finishes the swap. The kill is an exception raised inside one step of the swap
(pipelines/publish.py), as in tests/orchestration/test_faults_force.py."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from curate.orchestration.materialize_job import MaterializeSettings, materialize
from curate.pipelines import publish
from curate.pools import rundir
from tests.pipelines.materialize_fixtures import make_run, write_plan
from tests.crash import crash_on_call

SETTINGS = MaterializeSettings(shards=2)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("run"))


def _plan(path: Path, epochs: float) -> Path:
    return write_plan(path, "samples", {"pool0": (40, 20, epochs), "pool1": (30, 30, 1.0)})


def _whole_set(out: Path) -> dict:
    """The published manifest, after checking every file it lists has its recorded bytes."""
    assert publish.is_published(str(out))
    manifest = json.loads((out / "manifest.json").read_text())
    for f in manifest["files"]:
        data = (out / f["file"]).read_bytes()
        assert len(data) == f["bytes"] and hashlib.sha256(data).hexdigest() == f["sha256"], f["file"]
    listed = {f["file"] for f in manifest["files"]}
    assert {f"data/{p.name}" for p in (out / "data").iterdir()} == listed  # nothing of another set
    return manifest


@pytest.fixture()
def published(run_dir, tmp_path):
    out = tmp_path / "train"
    old = materialize(str(_plan(tmp_path / "old.json", 2.0)), str(run_dir), str(out), SETTINGS).manifest
    return out, old


def _kill(*args, **kwargs):
    raise KeyboardInterrupt("simulated kill during publish")


# one kill per step of the swap (module doc of pipelines/publish.py)
CRASH_POINTS = {
    "new set completed in staging": ("_write_local", lambda: crash_on_call(publish._write_local, 4)),
    "new set moved beside": ("exchange_paths", lambda: _kill),
    "swapped, old set not tidied": ("tidy_swap_folder", lambda: _kill),
    "tidying the old set": ("_remove", lambda: crash_on_call(publish._remove, 2)),
}


@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_overwrite_killed_mid_publish_leaves_one_whole_set(run_dir, tmp_path, published, monkeypatch, point):
    out, old = published
    new_plan = _plan(tmp_path / "new.json", 3.0)
    name, make = CRASH_POINTS[point]
    monkeypatch.setattr(publish, name, make())
    with pytest.raises(KeyboardInterrupt):
        materialize(str(new_plan), str(run_dir), str(out), SETTINGS, overwrite=True)
    monkeypatch.undo()

    seen = _whole_set(out)  # the old set or the new one, whole
    swapped = point in ("swapped, old set not tidied", "tidying the old set")
    assert seen["fingerprint"] != old["fingerprint"] if swapped else seen == old

    again = materialize(str(new_plan), str(run_dir), str(out), SETTINGS, overwrite=True)
    assert again.reused == swapped  # a completed swap is the new set: reused, not redone
    new = _whole_set(out)
    assert new["plan"]["sha256"] != old["plan"]["sha256"] and new["reconciliation"]["holds"]
    assert rundir.swap_siblings(out) == [] and not list(out.glob("_staging-*"))
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "_curate.lock", "data", "manifest.json"]


def test_the_old_set_stays_readable_until_the_new_one_is_complete(run_dir, tmp_path, published, monkeypatch):
    out, old = published
    lock_inode = os.stat(out / rundir.LOCK).st_ino
    seen = []

    def exchange_when_complete(a, b):
        staged = json.loads((Path(a) / "manifest.json").read_text())
        assert staged["plan"]["sha256"] != old["plan"]["sha256"]  # the new set, complete, beside
        for f in staged["files"]:
            assert (Path(a) / f["file"]).stat().st_size == f["bytes"]
        seen.append(_whole_set(out))  # ...while OUT still holds the old set, whole
        real_exchange(a, b)

    real_exchange = publish.exchange_paths
    monkeypatch.setattr(publish, "exchange_paths", exchange_when_complete)
    result = materialize(str(_plan(tmp_path / "new.json", 3.0)), str(run_dir), str(out), SETTINGS, overwrite=True)
    assert seen == [old] and _whole_set(out) == result.manifest
    assert os.stat(out / rundir.LOCK).st_ino == lock_inode  # the lock held was OUT's all along
    assert rundir.swap_siblings(out) == []
    # --force over the same set goes through the same swap and writes the same bytes
    forced = materialize(str(_plan(tmp_path / "new.json", 3.0)), str(run_dir), str(out), SETTINGS, force=True)
    assert not forced.reused and len(seen) == 2 and forced.manifest["files"] == result.manifest["files"]

"""Idempotent, resumable runs (in process): fingerprint reuse, --force rewrites identically,
config changes re-run with MinHash signatures from the cache, an interrupted publish is
invisible and repaired by the next run, stale staging is removed, one writer per directory."""
from __future__ import annotations

import copy
import json

import pytest

from curate.orchestration.config import resolve_config
from curate.orchestration.errors import CurateError
from curate.orchestration.run_lock import RunLock
from curate.orchestration.runner import execute_job
from curate.pipelines import publish
from tests.orchestration.curate_runs import pool_rows, synthetic_corpus, table_rows

BEAM = ["--runner=FnApiRunner"]


def _files(run_dir):
    return {p.relative_to(run_dir).as_posix(): p.read_bytes()
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.suffix in (".parquet", ".jsonl")}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return synthetic_corpus(tmp_path_factory.mktemp("corpus"), n=120, seed=11, n_exact=5)


def test_reuse_force_and_stage_cache(corpus, tmp_path):
    out, cache = tmp_path / "run", str(tmp_path / "cache")
    config = resolve_config(pools=2)
    first = execute_job([str(corpus)], str(out), config, BEAM, cache_dir=cache)
    assert not first.reused
    sig = first.manifest["near_dedup"]["signature_cache"]
    assert (sig["hits"], sig["misses"]) == (0, 120)  # 125 docs, 5 exact copies removed first
    marker = json.loads((out / "_SUCCESS").read_text())
    assert marker["fingerprint"] == first.manifest["fingerprint"]["run"] == first.fingerprint["run"]
    files_before = _files(out)

    again = execute_job([str(corpus)], str(out), config, BEAM, cache_dir=cache)
    assert again.reused and again.manifest == first.manifest
    assert _files(out) == files_before  # untouched

    forced = execute_job([str(corpus)], str(out), config, BEAM, cache_dir=cache, force=True)
    assert not forced.reused
    assert forced.manifest["near_dedup"]["signature_cache"]["hits"] == 120
    assert forced.manifest["counts"] == first.manifest["counts"]
    after = _files(out)
    assert sorted(after) == sorted(files_before)
    for sub, key in (("pools", "id"), ("dedup", "removed_id")):
        assert table_rows(out, sub, key) == _rows_before(files_before, sub, key)
    assert after == files_before  # byte-identical files

    # a config change that does not touch signatures: re-runs, every signature from the cache
    three = resolve_config(pools=3)
    with pytest.raises(CurateError, match="another config or inputs"):
        execute_job([str(corpus)], str(out), three, BEAM, cache_dir=cache)
    changed = execute_job([str(corpus)], str(out), three, BEAM, cache_dir=cache, overwrite=True)
    assert not changed.reused
    assert changed.manifest["near_dedup"]["signature_cache"] == {"dir": cache, "hits": 120, "misses": 0}
    assert sorted(changed.manifest["written_rows"]["per_pool"]) == ["0", "1", "2"]
    assert {i for i, _ in pool_rows(out)} == {i for i, _ in _pool_ids(files_before)}

    # a changed input is a different run
    with open(corpus, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "new", "text": "a brand new document about something else"}) + "\n")
    try:
        with pytest.raises(CurateError, match="another config or inputs"):
            execute_job([str(corpus)], str(out), three, BEAM, cache_dir=cache)
    finally:
        lines = corpus.read_text(encoding="utf-8").splitlines(keepends=True)[:-1]
        corpus.write_text("".join(lines), encoding="utf-8")


def _rows_before(files: dict, prefix: str, key: str = "id") -> list[dict]:
    import io

    import pyarrow.parquet as pq

    rows = []
    for name, data in files.items():
        if name.startswith(prefix + "/") and name.endswith(".parquet"):
            rows += pq.read_table(io.BytesIO(data)).to_pylist()
    return sorted(rows, key=lambda r: str(r[key]))


def _pool_ids(files: dict):
    return [(r["id"], None) for r in _rows_before(files, "pools")]


def test_interrupted_publish_is_invisible_and_repaired(corpus, tmp_path, monkeypatch):
    out = tmp_path / "run"
    config = resolve_config(pools=2)
    (out / "_staging-0123456789ab").mkdir(parents=True)  # left by a killed run
    (out / "_staging-0123456789ab" / "junk.parquet").write_bytes(b"partial")

    real_move = publish._move
    calls = []

    def crash_after_pools(staging, run_dir, files):
        calls.append(files)
        if len(calls) > 1:  # pools moved, then the process "dies" before anything else
            raise KeyboardInterrupt("simulated kill during publish")
        return real_move(staging, run_dir, files)

    monkeypatch.setattr(publish, "_move", crash_after_pools)
    with pytest.raises(KeyboardInterrupt):
        execute_job([str(corpus)], str(out), config, BEAM)
    monkeypatch.setattr(publish, "_move", real_move)
    assert list((out / "pools").rglob("*.parquet"))  # partial data exists on disk...
    assert not publish.is_published(str(out))  # ...but no marker, no manifest: not a run
    assert not (out / "manifest.json").exists()
    assert not (out / "_staging-0123456789ab").exists()  # stale staging was cleaned at start
    assert publish.is_own_leftover(str(out))  # _PUBLISHING says the leftovers are curate's

    result = execute_job([str(corpus)], str(out), config, BEAM)  # no --overwrite needed
    assert not result.reused and publish.is_published(str(out))
    assert not publish.is_own_leftover(str(out))  # the claim is removed once the manifest is in
    reference = execute_job([str(corpus)], str(tmp_path / "reference"), config, BEAM)
    assert pool_rows(out) == pool_rows(tmp_path / "reference")
    assert reference.manifest["counts"] == result.manifest["counts"]
    assert not list(out.glob("_staging-*"))


def test_second_writer_is_refused_with_one_line_error(corpus, tmp_path):
    out = tmp_path / "run"
    with RunLock(str(out)):
        with pytest.raises(CurateError) as err:
            execute_job([str(corpus)], str(out), resolve_config(), BEAM)
    message = str(err.value)
    assert "being written by another curate run" in message and "\n" not in message
    assert not list(out.glob("_staging-*"))


def test_marker_must_match_manifest(tmp_path):
    from curate.pools import rundir

    run = tmp_path / "run"
    run.mkdir()
    manifest = json.dumps({"counts": {}}).encode()
    (run / "manifest.json").write_bytes(manifest)
    (run / "_SUCCESS").write_text(json.dumps({"manifest_sha256": rundir.manifest_digest(manifest),
                                              "fingerprint": "x"}))
    assert publish.is_published(str(run))
    assert rundir.RunDir(run).marker["fingerprint"] == "x"  # the reader agrees with the writer
    (run / "manifest.json").write_bytes(manifest + b" ")  # edited or half-replaced manifest
    assert not publish.is_published(str(run))
    with pytest.raises(rundir.RunDirError, match="marker is missing or does not match"):
        rundir.RunDir(run)
    (run / "_SUCCESS").write_text("{not json")
    assert not publish.is_published(str(run))
    assert copy.deepcopy(publish.read_marker(str(run))) is None


def test_catalog_failure_is_a_warning_not_an_error(tmp_path):
    import argparse

    from curate.orchestration.commands.run import _register

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the workspace should be")
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"counts": {}}))
    args = argparse.Namespace(no_catalog=False, workspace=str(blocker))
    run_id, warning = _register(args, str(run))
    assert run_id is None and "could not be registered" in warning and "curate register" in warning
    assert "\n" not in warning
    assert _register(argparse.Namespace(no_catalog=True, workspace=None), str(run)) == (None, None)


def test_stats_refuses_a_run_interrupted_while_publishing(tmp_path, capsys):
    """stats.parquet is published before manifest.json: without the manifest, no table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate.orchestration.cli import main

    run = tmp_path / "half"
    run.mkdir()
    pq.write_table(pa.table({"pool": [0], "docs": [1]}), run / "stats.parquet")
    assert main(["stats", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did not finish" in err

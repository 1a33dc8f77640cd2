"""Fault test: `curate run` killed with SIGKILL at seeded random moments leaves nothing a
reader could take for a run, and the next run into the same directory completes with
exactly the result of an uninterrupted run."""
from __future__ import annotations

import random
import subprocess
import time

import pyarrow.parquet as pq
import pytest

from curate.pools.catalog import Catalog, CatalogError
from tests.orchestration.curate_runs import (cli_env, curate_cmd, pool_rows, run_cli, synthetic_corpus,
                                             table_rows)


def _assert_nothing_partial(run_dir, clean_rows, workspace):
    """Unpublished: no manifest (catalog and reports refuse the directory); a stats.parquet
    may only be there once every pool file is (it is moved after them)."""
    from curate.pipelines.publish import is_published

    if is_published(str(run_dir)):
        assert pool_rows(run_dir) == clean_rows
        return "published"
    assert not (run_dir / "manifest.json").exists()
    if (run_dir / "stats.parquet").exists():
        assert pool_rows(run_dir) == clean_rows
    with pytest.raises(CatalogError, match="no manifest.json"):
        Catalog(workspace).register_run(run_dir)
    return "unpublished"


def test_sigkill_at_random_points_then_rerun_equals_clean_run(tmp_path):
    corpus = synthetic_corpus(tmp_path / "corpus", n=300, seed=3)
    ws = tmp_path / "ws"
    common = ["--input", corpus, "--no-catalog", "--quiet", "--pools", "3"]

    started = time.monotonic()
    r = run_cli("run", *common, "--output", tmp_path / "clean", "--cache-dir", tmp_path / "cache-clean")
    assert r.returncode == 0, r.stderr[-2000:]
    clean_s = time.monotonic() - started
    clean_rows = pool_rows(tmp_path / "clean")
    assert len(clean_rows) == 300

    killed_dir = tmp_path / "killed"
    rng = random.Random(20240607)
    outcomes = []
    for k in range(3):  # one seeded random moment in each third of a clean run's duration
        delay = rng.uniform(0.1 + 0.33 * k, 0.43 + 0.33 * k) * clean_s
        proc = subprocess.Popen(curate_cmd("run", *common, "--output", killed_dir, "--cache-dir",
                                           tmp_path / "cache-killed", "--overwrite"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cli_env())
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.kill()  # SIGKILL: no cleanup handlers run
            proc.wait()
        state = _assert_nothing_partial(killed_dir, clean_rows, ws) if killed_dir.exists() else "absent"
        outcomes.append((round(delay, 1), state))
    print("kill delays and states:", outcomes, "clean run", round(clean_s, 1), "s")
    assert any(state != "published" for _, state in outcomes), outcomes  # some kill landed mid-run

    r = run_cli("run", *common, "--output", killed_dir, "--cache-dir", tmp_path / "cache-killed", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert pool_rows(killed_dir) == clean_rows
    assert table_rows(killed_dir, "dedup", "removed_id") == table_rows(tmp_path / "clean", "dedup", "removed_id")
    assert pq.read_table(killed_dir / "stats.parquet").to_pylist() == \
        pq.read_table(tmp_path / "clean" / "stats.parquet").to_pylist()
    assert not list(killed_dir.glob("_staging-*"))  # stale staging of the killed runs is gone
    assert (killed_dir / "_SUCCESS").exists()

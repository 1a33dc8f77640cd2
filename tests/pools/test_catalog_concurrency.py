"""Several processes using one workspace catalog: writers wait or are refused cleanly, a killed
writer leaves no half-registered run, and the catalog stays consistent."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from curate.pools.catalog import Catalog, CatalogBusyError
from tests.pools.runfixture import make_run

ROOT = Path(__file__).resolve().parents[2]


def _child(code: str) -> subprocess.Popen:
    """A Python child process running `code`; it prints 'ready' once it holds what it should."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def _wait_ready(proc: subprocess.Popen) -> None:
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.stderr.read()


def _register_many(workspace: str, run_dirs: list[str]) -> list[str]:
    cat = Catalog(workspace, lock_timeout=60)
    return [cat.register_run(d) for d in run_dirs]


def test_concurrent_writers_all_succeed_and_the_catalog_is_consistent(tmp_path):
    run_dirs = []
    for i in range(8):
        make_run(tmp_path / f"run{i}", n=10, seed=i, id_prefix=f"r{i}")
        run_dirs.append(str(tmp_path / f"run{i}"))
    ws = str(tmp_path / "ws")
    with ProcessPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(_register_many, [ws] * 4, [run_dirs[i::4] for i in range(4)]))
    ids = sorted(i for batch in results for i in batch)
    assert ids == sorted(f"run{i}" for i in range(8))
    cat = Catalog(ws)
    assert sorted(r["id"] for r in cat.runs()) == ids
    # the views were rebuilt by whichever writer came last and cover every run
    assert cat.query("SELECT count(DISTINCT run_id), count(*) FROM docs").rows == [(8, 80)]


def test_a_second_writer_is_refused_after_the_timeout(tmp_path):
    make_run(tmp_path / "run", n=10, seed=0)
    holder = _child(f"""
        import time
        from curate.pools.catalog import Catalog
        with Catalog({str(tmp_path / 'ws')!r})._write_lock():
            print("ready", flush=True)
            time.sleep(30)
    """)
    try:
        _wait_ready(holder)
        cat = Catalog(tmp_path / "ws", lock_timeout=0.5)
        start = time.monotonic()
        with pytest.raises(CatalogBusyError) as info:
            cat.register_run(tmp_path / "run")
        assert time.monotonic() - start < 5
        message = str(info.value)
        assert "being written by another process" in message and f"pid {holder.pid}" in message
        assert "\n" not in message
    finally:
        holder.kill()
        holder.wait()
    # the lock dies with its holder: registration now works
    assert Catalog(tmp_path / "ws", lock_timeout=5).register_run(tmp_path / "run") == "run"


def test_a_waiting_writer_proceeds_when_the_lock_is_released(tmp_path):
    make_run(tmp_path / "run", n=10, seed=0)
    holder = _child(f"""
        import time
        from curate.pools.catalog import Catalog
        with Catalog({str(tmp_path / 'ws')!r})._write_lock():
            print("ready", flush=True)
            time.sleep(1.0)
    """)
    try:
        _wait_ready(holder)
        assert Catalog(tmp_path / "ws", lock_timeout=30).register_run(tmp_path / "run") == "run"
    finally:
        holder.wait()


def test_a_writer_killed_mid_transaction_leaves_no_trace(tmp_path):
    make_run(tmp_path / "good", n=10, seed=0)
    make_run(tmp_path / "doomed", n=10, seed=1)
    cat = Catalog(tmp_path / "ws")
    cat.register_run(tmp_path / "good")
    writer = _child(f"""
        import time
        from curate.pools.catalog import Catalog
        cat = Catalog({str(tmp_path / 'ws')!r})
        with cat._transaction() as con:
            con.execute("INSERT INTO runs (id, status, output_dir) VALUES ('doomed', 'complete', {str(tmp_path / 'doomed')!r})")
            cat._rebuild_views(con)
            print("ready", flush=True)
            time.sleep(60)
    """)
    _wait_ready(writer)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert [r["id"] for r in cat.runs()] == ["good"]
    assert cat.query("SELECT count(*) FROM docs").rows == [(10,)]
    assert cat.register_run(tmp_path / "doomed") == "doomed"
    assert sorted(r["id"] for r in cat.runs()) == ["doomed", "good"]


def test_readers_wait_for_a_writer_holding_the_database(tmp_path):
    make_run(tmp_path / "run", n=10, seed=0)
    cat = Catalog(tmp_path / "ws")
    cat.register_run(tmp_path / "run")
    holder = _child(f"""
        import time, duckdb
        con = duckdb.connect({str(cat.path)!r})
        print("ready", flush=True)
        time.sleep(1.0)
        con.close()
    """)
    try:
        _wait_ready(holder)
        with pytest.raises(CatalogBusyError, match="locked by another process"):
            Catalog(tmp_path / "ws", lock_timeout=0.2).query("SELECT 1")
        assert Catalog(tmp_path / "ws", lock_timeout=30).query("SELECT count(*) FROM docs").rows == [(10,)]
    finally:
        holder.wait()


def test_a_writer_waits_for_a_long_reader(tmp_path):
    make_run(tmp_path / "a", n=10, seed=0)
    make_run(tmp_path / "b", n=10, seed=1)
    cat = Catalog(tmp_path / "ws")
    cat.register_run(tmp_path / "a")
    reader = _child(f"""
        import time
        from curate.pools.catalog import Catalog
        con = Catalog({str(tmp_path / 'ws')!r}).sandbox()
        print("ready", flush=True)
        time.sleep(1.0)
        con.close()
    """)
    try:
        _wait_ready(reader)
        assert Catalog(tmp_path / "ws", lock_timeout=30).register_run(tmp_path / "b") == "b"
    finally:
        reader.wait()

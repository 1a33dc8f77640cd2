"""A damaged workspace catalog file is one line naming it, never DuckDB's traceback."""
from __future__ import annotations

import os
import subprocess
import sys


def _curate(*args, cwd):
    return subprocess.run([sys.executable, "-m", "curate.orchestration.cli", *args], cwd=cwd,
                          capture_output=True, text=True, env={**os.environ, "CURATE_DEBUG": ""})


def test_a_catalog_file_that_is_not_duckdb_is_one_line(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "catalog.duckdb").write_bytes(bytes(range(256)) * 80)
    for args in (("runs",), ("query", "select 1")):
        res = _curate(*args, "--workspace", str(ws), cwd=tmp_path)
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in res.stderr
        assert "catalog.duckdb cannot be opened" in lines[0]

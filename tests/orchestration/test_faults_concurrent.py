"""Fault test: runs writing to the same workspace at once. Two into the same output directory:
one completes, the other is refused with a one-line error (or reuses the finished run); a
third into another directory completes; the catalog ends up with exactly the two runs."""
from __future__ import annotations

import json
import subprocess
import time

from curate.pools.catalog import Catalog
from tests.orchestration.curate_runs import cli_env, curate_cmd, pool_rows, run_cli, synthetic_corpus


def _start(*args, workspace):
    return subprocess.Popen(curate_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=cli_env(workspace))


def test_concurrent_runs_into_one_workspace(tmp_path):
    corpus = synthetic_corpus(tmp_path / "corpus", n=150, seed=5)
    ws = tmp_path / "ws"
    out1, out2 = tmp_path / "out1", tmp_path / "out2"
    common = ["--input", corpus, "--quiet", "--json", "--pools", "2"]

    first = _start("run", *common, "--output", out1, workspace=ws)
    deadline = time.monotonic() + 60
    while not list(out1.glob("_staging-*")) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)  # wait until the first run holds the lock and is writing
    same_dir = _start("run", *common, "--output", out1, workspace=ws)
    other_dir = _start("run", *common, "--output", out2, "--pools", "3", workspace=ws)
    results = {}
    for name, proc in (("first", first), ("same_dir", same_dir), ("other_dir", other_dir)):
        stdout, stderr = proc.communicate(timeout=300)
        results[name] = (proc.returncode, stdout, stderr)

    assert results["first"][0] == 0, results["first"][2][-2000:]
    assert results["other_dir"][0] == 0, results["other_dir"][2][-2000:]
    code, stdout, stderr = results["same_dir"]
    if code == 0:  # it only got the lock after the first finished: then it must reuse
        assert json.loads(stdout)["reused"] is True
    else:
        assert code == 2
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "being written by another curate run" in lines[0], stderr
        assert "Traceback" not in stderr

    runs = {r["output_dir"]: r for r in Catalog(ws).runs()}
    assert set(runs) == {str(out1.resolve()), str(out2.resolve())}
    for out in (out1, out2):
        manifest = json.loads((out / "manifest.json").read_text())
        row = runs[str(out.resolve())]
        assert row["status"] == "complete"
        counts = row["counts"] if isinstance(row["counts"], dict) else json.loads(row["counts"])
        assert counts == manifest["counts"]
        assert Catalog(ws).query(f"SELECT count(*) AS n FROM docs WHERE run_id = '{row['id']}'").records()[0]["n"] \
            == len(pool_rows(out)) == 150

    # the refused run, retried, recognises the finished result
    again = run_cli("run", *common, "--output", out1, workspace=ws)
    assert again.returncode == 0 and json.loads(again.stdout)["reused"] is True

"""Progress reporting: worker records -> summed snapshot -> rendered line / JSON lines; and
`curate run` under multi_processing keeps worker INFO logs off stderr."""
from __future__ import annotations

import io
import json

from curate.orchestration.progress import ProgressMonitor, choose_mode, render, snapshot
from curate.pipelines.progress import ProgressReader, ProgressWriter
from tests.orchestration.curate_runs import pool_rows, run_cli, synthetic_corpus


def test_writers_are_summed_across_workers(tmp_path):
    folder = str(tmp_path / "_progress")
    a, b = ProgressWriter(folder, "read"), ProgressWriter(folder, "read")
    a.add(100, 5000)
    b.add(50, 2500)
    a.flush()
    b.flush()
    ProgressWriter(folder, "minhash").add(30)
    state = ProgressReader(folder).poll()
    assert state["read"] == {"records": 150, "bytes": 7500, "workers": 2}
    assert state["minhash"]["records"] == 30
    (tmp_path / "_progress" / "read-garbage.json").write_text("{half-writ")  # rewritten mid-read
    assert ProgressReader(folder).poll()["read"]["records"] == 150


def test_snapshot_rate_eta_and_rendering():
    snap = snapshot({"read": {"records": 300, "bytes": 250}}, elapsed=10.0, total_bytes=1000)
    assert snap["read_rate_per_s"] == 30.0
    assert snap["read_fraction"] == 0.25
    assert snap["read_eta_s"] == 30.0  # 10 s for a quarter: 30 s to go
    line = render(snap)
    assert "300 records" in line and "25%" in line and "30/s" in line and "ETA 0:30" in line
    assert snapshot({}, 0.0, 0)["read_eta_s"] is None  # nothing known yet: no made-up ETA


def test_embedding_progress_rate_and_eta():
    state = {"read": {"records": 1000, "bytes": 1000}, "minhash": {"records": 900},
             "embed": {"records": 300}}
    snap = snapshot(state, elapsed=100.0, total_bytes=1000, embed_elapsed=10.0, embed_base=100)
    assert snap["stage"] == "embed" and snap["docs_embedded"] == 300
    assert snap["embed_rate_per_s"] == 20.0 and snap["embed_eta_s"] == 30.0  # 200 in 10 s; 600 left
    line = render(snap)
    assert "embedded 300 of <= 900 docs at 20.0/s, ETA <= 0:30" in line
    early = snapshot(state, 100.0, 1000, embed_elapsed=0.5, embed_base=300)
    assert early["embed_rate_per_s"] is None and "ETA <= ?" in render(early)  # no made-up rate
    assert "docs_embedded" not in snapshot({"minhash": {"records": 5}}, 1.0, 0)


def test_modes():
    assert choose_mode(True, True) == "quiet"
    assert choose_mode(False, True) == "json"
    assert choose_mode(False, False, io.StringIO()) == "lines"


def test_monitor_json_lines(tmp_path):
    folder = str(tmp_path / "_progress")
    stream = io.StringIO()
    monitor = ProgressMonitor("json", total_bytes=100, stream=stream, interval_s=0.05)
    with monitor.watch(folder):
        w = ProgressWriter(folder, "read")
        w.add(10, 100)
        w.flush()
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert events and events[-1]["records_read"] == 10 and events[-1]["read_fraction"] == 1.0


def test_run_progress_json_and_quiet_multiprocessing_workers(tmp_path):
    corpus = synthetic_corpus(tmp_path / "corpus", n=60, seed=2, n_exact=0)
    out = tmp_path / "run"
    r = run_cli("run", "--input", corpus, "--output", out, "--no-catalog", "--json", "--cache-dir", "none",
                "--direct_num_workers=2", "--direct_running_mode=multi_processing")
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines, "no progress at all"
    events = [json.loads(line) for line in lines]  # every stderr line is a JSON progress record
    assert events[-1]["records_read"] == 60 and events[-1]["docs_signed"] == 60
    assert json.loads(r.stdout)["counts"]["kept"] == 60 == len(pool_rows(out))

    quiet = run_cli("run", "--input", corpus, "--output", out, "--no-catalog", "--quiet", "--force",
                    "--cache-dir", "none", "--direct_num_workers=2", "--direct_running_mode=multi_processing")
    assert quiet.returncode == 0 and quiet.stderr.strip() == "", quiet.stderr[-2000:]

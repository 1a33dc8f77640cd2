"""Progress of `curate materialize` covers the write stage: rows written of the rows expected."""
from __future__ import annotations

import io
import json

from curate.orchestration.materialize_job import MaterializeSettings, materialize
from curate.orchestration.progress import ProgressMonitor, render, snapshot
from tests.pipelines.materialize_fixtures import make_run, pool_bytes, write_plan


def test_snapshot_and_line_report_rows_written():
    snap = snapshot({"read": {"records": 90, "bytes": 10}, "write": {"records": 50}}, 2.0, 10, total_rows=200)
    assert (snap["stage"], snap["rows_written"], snap["rows_total"]) == ("write", 50, 200)
    assert render(snap).endswith("; wrote 50 of ~200 rows")
    assert "rows_written" not in snapshot({"read": {"records": 5, "bytes": 1}}, 1.0, 10)  # curate run: as before


def test_materialize_reports_the_rows_it_writes(tmp_path):
    run = make_run(tmp_path / "run")
    stream = io.StringIO()
    calls = []

    def progress(total_bytes, total_rows):
        calls.append((total_bytes, total_rows))
        monitor = ProgressMonitor("json", total_bytes, stream=stream, interval_s=0.05, total_rows=total_rows)
        return lambda folder, _stream: monitor.watch(folder)

    docs_plan = write_plan(tmp_path / "docs.json", "samples", {"pool0": (40, 20, 2.5), "pool1": (30, 30, 1.0)})
    manifest = materialize(str(docs_plan), str(run), str(tmp_path / "out"), MaterializeSettings(shards=3),
                           progress=progress).manifest
    last = json.loads(stream.getvalue().splitlines()[-1])
    assert last["rows_written"] == manifest["reconciliation"]["rows_written"] == 80
    assert calls[0][1] == last["rows_total"] == 80  # a plan in documents: the rows are known
    # a plan in bytes: rows estimated from each pool's mean document size
    have = pool_bytes(run)
    bytes_plan = write_plan(tmp_path / "bytes.json", "tokens", {"pool0": (have["pool0"], have["pool0"], 2.0)})
    materialize(str(bytes_plan), str(run), str(tmp_path / "out2"), MaterializeSettings(), progress=progress)
    assert calls[1][1] == 80  # 40 documents, twice

"""`curate materialize` through the CLI: the summary, --json, and one-line errors (exit 2)."""
from __future__ import annotations

import json

from tests.orchestration.curate_runs import run_cli
from tests.pipelines.materialize_fixtures import make_run, write_plan


def test_cli_materialize_summary_json_and_errors(tmp_path):
    run = make_run(tmp_path / "run")
    plan = write_plan(tmp_path / "plan.json", "samples", {"pool0": (40, 20, 2.5), "pool1": (30, 30, 1.0)})
    out = tmp_path / "train"
    done = run_cli("materialize", plan, "--run", run, "--output", out, "--shards", "2", "--quiet")
    assert done.returncode == 0, done.stderr
    assert f"training set: {out}/data" in done.stdout and "reconciled: yes" in done.stdout
    again = run_cli("materialize", plan, "--run", run, "--output", out, "--shards", "2", "--json", "--quiet")
    summary = json.loads(again.stdout)
    assert summary["reused"] is True and summary["reconciliation"]["rows_written"] == 80
    bad = run_cli("materialize", plan, "--run", run, "--output", tmp_path / "t2", "--format", "tokens")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "needs --tokenizer" in bad.stderr
    typo = run_cli("materialize", plan, "--run", run, "--output", tmp_path / "t3", "--direct_num_wrkers=2")
    assert typo.returncode == 2 and "unrecognized arguments" in typo.stderr

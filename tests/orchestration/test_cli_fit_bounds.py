"""`curate fit --bound` reproduces the published data-constrained refit from the command line."""
from __future__ import annotations

import json

import pytest

from curate.orchestration.cli import main

COLUMNS = "samples_seen=tokens,unique_samples=unique_tokens,metric=val_loss,run_id=run"


def test_bounded_refit_reproduces_published_decay_constants(tmp_path, capsys, reference_dir):
    from curate.laws.data_constrained import PUBLISHED

    fixes = [f"--fix={k}={PUBLISHED[k]!r}" for k in ("E", "A", "B", "alpha", "beta")]
    out = tmp_path / "dc.json"
    code = main(["fit", str(reference_dir / "datablations_runs_fit182.csv"), "--law",
                 "data-constrained", *fixes, "--no-cv", "--columns", COLUMNS,
                 "--bound", "R_D_star=0.01:20", "--bound", "R_N_star=0.01:20", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    law = json.loads(out.read_text())
    assert law["params"]["R_D_star"] == pytest.approx(15.39, rel=5e-3)
    assert law["params"]["R_N_star"] == pytest.approx(5.31, rel=5e-3)
    assert law["fit"]["objective"] <= 0.01583
    assert round(law["fit"]["r2"], 3) == 0.772


@pytest.mark.parametrize("bound, message", [
    ("R_D_star=20:1", "needs LO < HI"),
    ("R_D_star", "expected NAME=LO:HI"),
    ("E=0:3", "not free"),
])
def test_bad_bounds_are_one_line_errors(tmp_path, capsys, reference_dir, bound, message):
    from curate.laws.data_constrained import PUBLISHED

    fixes = [f"--fix={k}={PUBLISHED[k]!r}" for k in ("E", "A", "B", "alpha", "beta")]
    code = main(["fit", str(reference_dir / "datablations_runs_fit182.csv"), "--law",
                 "data-constrained", *fixes, "--no-cv", "--columns", COLUMNS,
                 "--bound", bound, "-o", str(tmp_path / "x.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err
    assert main(["fit", str(reference_dir / "datablations_runs_fit182.csv"), "--law", "qqt",
                 "--bound", "a=0:1", "-o", str(tmp_path / "y.json")]) == 2
    assert "--bound applies to" in capsys.readouterr().err

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


def _no_decay_csv(path):
    """Two pools up to 10 passes: "fresh" never decays (true tau 1e7), "decay" has tau 4."""
    import csv

    from curate.laws.qqt import QQTLaw

    truth = QQTLaw(0.025, 0.1, ["fresh", "decay"], b=[-0.16, -0.13], tau=[1e7, 4.0],
                   sizes=[12.8e6, 12.8e6])
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["pool", "samples_seen", "unique_samples", "metric"])
        for pool in truth.pools:
            for n in (3.2e6, 6.4e6, 12.8e6, 25.6e6, 64e6, 128e6):
                w.writerow([pool, n, min(n, 12.8e6), truth.predict(n, pool=pool)])
    return path


def test_fit_flags_a_half_life_at_its_bound_in_table_stderr_json_and_law_file(tmp_path, capsys):
    obs = _no_decay_csv(tmp_path / "obs.csv")
    out = tmp_path / "law.json"
    code = main(["fit", str(obs), "--law", "qqt", "--fix", "d=0.1", "--no-cv", "--bootstrap",
                 "20", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    warnings = [line for line in captured.err.splitlines() if "bound" in line]
    assert len(warnings) == 1, captured.err  # one line per flagged parameter, tau[decay] clean
    assert warnings[0].startswith("curate fit: warning: tau[fresh] = 1e4 is at the upper "
                                  "bound 1e4 of the fit: no decay with repetition was measured")
    assert "of bootstrap draws at the bound" in warnings[0]
    row = next(line for line in captured.out.splitlines() if line.strip().startswith("tau[fresh]"))
    assert "<- at upper bound 10000 (" in row and "% of draws)" in row
    assert not any("<-" in line for line in captured.out.splitlines()
                   if line.strip().startswith("tau[decay]"))
    assert "epochs in the fit data: at most 10 (by pool: fresh 10, decay 10)" in captured.out
    law = json.loads(out.read_text())
    flag = law["fit"]["at_bound"]["tau[fresh]"]
    assert flag["bound"] == 1e4 and flag["side"] == "upper" and flag["value_at_bound"] is True
    assert 0 < flag["draw_share"] <= 1 and flag["interval_reaches"] is True
    assert law["fit"]["max_epochs"] == 10.0
    assert law["fit"]["max_epochs_by_pool"] == {"fresh": 10.0, "decay": 10.0}
    # --json prints the same law file, flags included; warnings still go to stderr
    assert main(["fit", str(obs), "--law", "qqt", "--fix", "d=0.1", "--no-cv", "--bootstrap",
                 "20", "-o", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["fit"]["at_bound"] == law["fit"]["at_bound"]
    assert "tau[fresh] = 1e4 is at the upper bound" in captured.err

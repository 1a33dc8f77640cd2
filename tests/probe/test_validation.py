"""Probe validation: the QQT law fitted on single-pool rows predicts held-out mixtures."""
from __future__ import annotations

import pytest

from curate.laws.qqt import QQTLaw
from curate.probe.validation import fit_single_pool_law, predict_row, validate, validation_report


def _synthetic_rows(law: QQTLaw, U: int) -> tuple[list[dict], list[dict]]:
    """Rows a probe would write if the loss followed `law` exactly."""
    fit, hold = [], []
    for p in law.pools:
        for m in (0.25, 0.5, 1, 1.5, 2, 3, 4, 6, 8):
            fit.append({"pool": p, "samples_seen": int(m * U), "unique_samples": int(min(m, 1) * U),
                        "metric": float(law.predict(m * U, p, size=U)), "run_id": p, "role": "fit"})
    label = "pool0=0.5;pool1=0.5"
    for m in (0.5, 1, 2, 4, 8):
        hold.append({"pool": label, "samples_seen": int(m * U),
                     "unique_samples": int(2 * min(m / 2, 1) * U),
                     "metric": float(law.predict_mixture({"pool0": 0.5, "pool1": 0.5}, m * U)),
                     "run_id": "mix", "role": "holdout-mixture"})
    return fit, hold


TRUTH = QQTLaw(a=3.0, d=1.5, pools=["pool0", "pool1", "pool2"], b=[-0.25, -0.18, -0.1],
               tau=[4.0, 2.0, 8.0], sizes=[65536] * 3, unit="tokens")


def test_validation_recovers_a_known_law():
    fit_rows, hold_rows = _synthetic_rows(TRUTH, 65536)
    law = fit_single_pool_law(fit_rows)
    assert law.b[0] < law.b[1] < law.b[2] < 0  # utility ranking recovered
    result = validate(fit_rows, hold_rows)
    assert result["mare_fit"] < 0.01
    assert result["mare_holdout_mixture"] < 0.02
    assert predict_row(law, hold_rows[-1]) == pytest.approx(hold_rows[-1]["metric"], rel=0.01)


def test_validation_report_is_plain_values_with_nan_as_none():
    fit_rows, hold_rows = _synthetic_rows(TRUTH, 65536)
    # a held-out point below any plausible floor has no reducible loss: its error is None
    hold_rows.append({**hold_rows[-1], "metric": 0.1, "run_id": "below"})
    report = validation_report(fit_rows, hold_rows)
    assert set(report["b"]) == set(report["tau"]) == {"pool0", "pool1", "pool2"}
    assert all(isinstance(v, float) for v in report["b"].values())
    below = [x for x in report["details"] if x["run_id"] == "below"]
    assert below[0]["rel_err_reducible"] is None and report["below_floor"] >= 1
    assert report["mare_holdout_mixture"] is not None

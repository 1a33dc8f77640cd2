"""curate fit: the QQT forms, their default, and the held-out comparison table."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.laws.qqt import QQTLaw
from curate.orchestration.cli import main

POOLS = ["pool0", "pool1", "pool2"]
TRUE = QQTLaw({"pool0": 0.05, "pool1": 0.02, "pool2": 0.008}, 0.6, POOLS, b=-0.18,
              tau={"pool0": 4.0, "pool1": 9.0, "pool2": 20.0}, sizes={p: 2e5 for p in POOLS},
              variant="multiplier")


def _write(path, probe: bool):
    rng = np.random.default_rng(0)
    rows = {"pool": [], "samples_seen": [], "unique_samples": [], "metric": []}
    for p in POOLS:
        for k in (0.25, 0.5, 1.0, 2.0, 4.0, 8.0):
            rows["pool"].append(p)
            rows["samples_seen"].append(k * 2e5)
            rows["unique_samples"].append(min(k, 1.0) * 2e5)
            rows["metric"].append(TRUE.predict(k * 2e5, pool=p) * np.exp(0.005 * rng.normal()))
    table = pa.table(rows)
    if probe:
        meta = {"unit": "tokens", "pool_bytes": {p: 3e6 for p in POOLS}}
        table = table.replace_schema_metadata({b"curate.probe": json.dumps(meta).encode()})
    pq.write_table(table, path)
    return path


def test_probe_observations_get_the_multiplier_form_and_a_comparison(tmp_path, capsys):
    obs = _write(tmp_path / "obs.parquet", probe=True)
    assert main(["fit", str(obs), "-o", str(tmp_path / "law.json"), "--workspace", str(tmp_path / "ws")]) == 0
    out = capsys.readouterr().out
    law = json.loads((tmp_path / "law.json").read_text())
    assert law["variant"] == "multiplier" and "a[pool0]" in law["params"] and "b" in law["params"]
    table = law["fit"]["model_selection"]["candidates"]
    assert [r["variant"] for r in table] == ["multiplier", "utility", "data"]
    assert [r["chosen"] for r in table] == [True, False, False]
    assert all(r["holdout_largest_error"] is not None for r in table)
    assert "forms compared" in out and "<- used" in out
    assert all(r["heldout_runs_error"] is None for r in table)  # no held-out runs given


def test_held_out_runs_beside_probe_output_decide_auto(tmp_path, capsys):
    obs = _write(tmp_path / "obs.parquet", probe=True)
    # the probe's OBS.holdout.parquet: a mixture and a larger budget
    held = {"pool": ["pool0=0.5;pool1=0.5", "pool2"], "samples_seen": [8e5, 1e6],
            "unique_samples": [4e5, 4e5]}
    held["metric"] = [TRUE.predict_mixture({"pool0": .5, "pool1": .5}, 8e5, sizes={"pool0": 2e5, "pool1": 2e5}),
                      TRUE.predict(1e6, pool="pool2", size=4e5)]
    pq.write_table(pa.table(held), tmp_path / "obs.holdout.parquet")
    assert main(["fit", str(obs), "--variant", "auto", "-o", str(tmp_path / "law.json"),
                 "--workspace", str(tmp_path / "ws")]) == 0
    law = json.loads((tmp_path / "law.json").read_text())
    sel = law["fit"]["model_selection"]
    assert sel["heldout_runs"] == 2 and sel["by"].startswith("held-out runs")
    errors = {r["variant"]: r["heldout_runs_error"] for r in sel["candidates"]}
    assert law["variant"] == min(errors, key=errors.get)
    assert errors["multiplier"] < 0.02  # the true form predicts the held-out runs
    assert "held-out runs" in capsys.readouterr().out


def test_auto_picks_the_smallest_held_out_error_and_plain_data_keeps_the_paper_form(tmp_path, capsys):
    obs = _write(tmp_path / "obs.parquet", probe=False)
    assert main(["fit", str(obs), "--variant", "auto", "-o", str(tmp_path / "auto.json"),
                 "--workspace", str(tmp_path / "ws")]) == 0
    law = json.loads((tmp_path / "auto.json").read_text())
    table = law["fit"]["model_selection"]["candidates"]
    best = min(table, key=lambda r: r["holdout_largest_error"])
    assert law["variant"] == best["variant"] and best["chosen"]
    assert main(["fit", str(obs), "--no-cv", "-o", str(tmp_path / "plain.json"),
                 "--workspace", str(tmp_path / "ws")]) == 0
    plain = json.loads((tmp_path / "plain.json").read_text())
    assert plain["variant"] == "utility" and "model_selection" not in plain["fit"]
    capsys.readouterr()
    assert main(["fit", str(obs), "--variant", "auto", "--no-cv", "-o", str(tmp_path / "x.json")]) == 2
    assert "--variant auto compares held-out errors" in capsys.readouterr().err


def test_a_probe_law_takes_run_pool_sizes_in_bytes_not_word_tokens(tmp_path):
    """Probe tokens are UTF-8 bytes: `plan --pools-from` must read the run's chars column, not
    its whitespace-token estimate (5x smaller on the demo)."""
    from curate.laws.lawfile import law_from_dict
    from curate.laws.planning import size_column

    obs = _write(tmp_path / "obs.parquet", probe=True)
    assert main(["fit", str(obs), "--no-cv", "-o", str(tmp_path / "law.json")]) == 0
    law = law_from_dict(json.loads((tmp_path / "law.json").read_text()))
    assert law.fit_info["token_unit"] == "bytes" and size_column(law) == "chars"
    plain = _write(tmp_path / "plain.parquet", probe=False)
    assert main(["fit", str(plain), "--no-cv", "-o", str(tmp_path / "plain.json")]) == 0
    assert size_column(law_from_dict(json.loads((tmp_path / "plain.json").read_text()))) == "docs"

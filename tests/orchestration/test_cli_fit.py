"""`curate fit` and `curate predict`: files in, law files out, one-line errors."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from curate.laws.lawfile import law_to_dict
from curate.laws.qqt import QQTLaw
from curate.orchestration.cli import main

TRUTH = QQTLaw(0.025, 0.1, ["top10", "top20"], b=[-0.16, -0.125], tau=[6.727, 8.545],
               sizes=[12.8e6, 12.8e6])
SAMPLES = (3.2e6, 6.4e6, 12.8e6, 25.6e6, 64e6, 128e6)


def _rows(seed=0, sigma=0.005):
    rng = np.random.default_rng(seed)
    rows = []
    for pool in TRUTH.pools:
        for n in SAMPLES:
            rows.append({"run": f"{pool}-{n:g}", "pool": pool, "tokens": n,
                         "unique_samples": min(n, 12.8e6),
                         "metric": TRUTH.predict(n, pool=pool) * np.exp(sigma * rng.standard_normal())})
    rows.append({"run": "mix", "pool": "top10=1;top20=1", "tokens": 64e6, "unique_samples": 25.6e6,
                 "metric": TRUTH.predict_mixture({"top10": 1, "top20": 1}, 64e6)})
    return rows


def _write_csv(path: Path, rows, fields=None):
    fields = fields or list(rows[0])
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return path


def _run_cli(*args):
    """The real entry point in a subprocess: (exit code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "curate.orchestration.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def _run_main(capsys, *args):
    """The dispatcher in-process (same error handling, no interpreter start-up)."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_fit_qqt_csv_writes_law_plot_and_predicts(tmp_path, capsys):
    obs = _write_csv(tmp_path / "obs.csv", _rows())
    law_path, plot = tmp_path / "law.json", tmp_path / "fit.png"
    code = main(["fit", str(obs), "--law", "qqt", "--fix", "d=0.1", "--bootstrap", "30",
                 "--columns", "samples_seen=tokens,run_id=run", "--seed", "3",
                 "-o", str(law_path), "--plot", str(plot)])
    assert code == 0
    out = capsys.readouterr().out
    assert "b[top10]" in out and "90% interval" in out and "fixed" in out and "R^2" in out
    law = json.loads(law_path.read_text())
    assert law["format"] == "curate-law/1" and law["kind"] == "qqt" and law["unit"] == "samples"
    assert law["fixed"] == ["d"] and law["params"]["d"] == 0.1
    assert law["params"]["b[top10]"] == pytest.approx(-0.16, rel=0.05)
    assert law["pools"] == [{"name": "top10", "size": 12800000, "gap": 12800000},
                            {"name": "top20", "size": 12800000, "gap": 12800000}]
    assert law["fit"]["n_obs"] == 13 and law["fit"]["r2"] > 0.98
    assert law["fit"]["loo_error"] < 0.02 and law["fit"]["samples_range"] == [3.2e6, 128e6]
    assert len(law["bootstrap"]["draws"]) == 30 and "b[top20]" in law["bootstrap"]["intervals"]
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"

    assert main(["predict", "--law", str(law_path), "--pool", "top10", "--samples", "3.2e7,1.28e8",
                 "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert pred["pool"] == "top10" and len(pred["prediction"]) == 2
    for p, (lo, hi), n in zip(pred["prediction"], pred["interval"], (3.2e7, 1.28e8)):
        assert lo <= p <= hi
        assert p == pytest.approx(TRUTH.predict(n, pool="top10"), rel=0.02)
    assert main(["predict", "--law", str(law_path), "--mixture", "top10=0.5,top20=0.5",
                 "--samples", "6.4e8"]) == 0
    text = capsys.readouterr().out
    assert "mixture top10=0.5, top20=0.5" in text and "90% interval" in text


def test_fit_json_output_parquet_and_duckdb_inputs(tmp_path, capsys):
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _rows(seed=1)
    arrow_rows = pa.table({k: [r[k] for r in rows] for k in rows[0]})
    pq.write_table(arrow_rows, tmp_path / "obs.parquet")
    db = tmp_path / "cat.duckdb"
    con = duckdb.connect(str(db))
    con.register("arrow_rows", arrow_rows)
    con.execute("CREATE TABLE probe_runs AS SELECT * FROM arrow_rows")
    con.close()
    results = []
    for spec in (tmp_path / "obs.parquet", f"{db}:probe_runs"):
        out = tmp_path / "law.json"
        assert main(["fit", str(spec), "--law", "qqt", "--fix", "d=0.1", "--no-cv", "--json",
                     "--columns", "samples_seen=tokens", "--unit", "documents", "-o", str(out)]) == 0
        printed = json.loads(capsys.readouterr().out)
        assert printed == json.loads(out.read_text())
        assert printed["unit"] == "documents" and printed["fit"]["loo_error"] is None
        results.append(printed["params"])
    assert results[0] == pytest.approx(results[1], rel=1e-9)


def test_fit_data_variant_and_pool_size_override(tmp_path, capsys):
    rows = _rows(seed=2)
    obs = _write_csv(tmp_path / "obs.csv", rows)
    out = tmp_path / "law.json"
    assert main(["fit", str(obs), "--variant", "data", "--fix", "d=0.1", "--no-cv",
                 "--columns", "samples_seen=tokens", "--pool-size", "top10=2e7", "-o", str(out)]) == 0
    law = json.loads(out.read_text())
    assert law["variant"] == "data"
    assert {p["name"]: p["size"] for p in law["pools"]} == {"top10": 20000000, "top20": 12800000}


@pytest.mark.parametrize("mutate, message", [
    (lambda rows: rows[3].update(metric="nan"), "row 4: metric is NaN"),
    (lambda rows: rows[1].update(unique_samples=1e9), "row 2: unique_samples"),
    (lambda rows: rows[2].update(tokens=-5), "row 3: samples_seen must be positive"),
    (lambda rows: rows.append(dict(rows[0])), "row 14: duplicate of row 1"),
    (lambda rows: rows[12].update(pool="top10=1;top20"), "row 13: bad mixture syntax"),
    (lambda rows: rows[12].update(pool="top10=0;top20=0"), "row 13: .*sum to more than 0"),
    (lambda rows: rows[5].update(metric="abc"), "row 6: metric must be a number"),
    (lambda rows: rows[5].update(metric=""), "row 6: metric is missing"),
    (lambda rows: rows.__delitem__(slice(2, None)), "too few points for the qqt law"),
])
def test_bad_observation_files_give_one_line_errors(tmp_path, capsys, mutate, message):
    rows = _rows()
    mutate(rows)
    obs = _write_csv(tmp_path / "obs.csv", rows)
    code, out, err = _run_main(capsys, "fit", obs, "--fix", "d=0.1", "--columns", "samples_seen=tokens",
                              "-o", tmp_path / "law.json")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("curate fit: error: ") and "Traceback" not in err
    import re
    assert re.search(message, err), err
    assert not (tmp_path / "law.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--columns", "samples_seen=nope"], "column 'nope' (for samples_seen) not found"),
    (["--columns", "bogus=tokens"], "unknown column 'bogus'"),
    (["--columns", "samples_seen=tokens", "--fix", "c=1"], "unknown QQT parameter"),
    (["--columns", "samples_seen=tokens", "--fix", "d"], "expected NAME=VALUE"),
    (["--columns", "samples_seen=tokens", "--fix", "d=x"], "not a number"),
    (["--columns", "samples_seen=tokens", "--pool-size", "zzz=5"], "absent from the observations"),
    ([], "lack column"),
])
def test_bad_options_give_one_line_errors(tmp_path, capsys, args, message):
    obs = _write_csv(tmp_path / "obs.csv", _rows())
    code, _, err = _run_main(capsys, "fit", obs, "-o", tmp_path / "law.json", *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_errors_in_a_real_process_are_one_line_without_traceback(tmp_path):
    rows = _rows()
    rows[3]["metric"] = "inf"
    obs = _write_csv(tmp_path / "obs.csv", rows)
    code, out, err = _run_cli("fit", obs, "--columns", "samples_seen=tokens", "-o", tmp_path / "l.json")
    assert (code, out) == (2, "")
    assert err == f"curate fit: error: {obs}: row 4: metric is infinite\n"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "curate-law/1", "kind": "qqt", "params": {"a": 1}}))
    code, _, err = _run_cli("predict", "--law", bad, "--pool", "x", "--samples", "1e6")
    assert code == 2 and err.startswith("curate predict: error: law file: field 'pools'")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_missing_files_and_bad_law_files(tmp_path, capsys):
    code, _, err = _run_main(capsys, "fit", tmp_path / "none.csv", "-o", tmp_path / "l.json")
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run_main(capsys, "fit", f"{tmp_path / 'none.duckdb'}:t", "-o", tmp_path / "l.json")
    assert code == 2 and "does not exist" in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "curate-law/1", "kind": "qqt", "params": {"a": 1}}))
    code, _, err = _run_main(capsys, "predict", "--law", bad, "--pool", "x", "--samples", "1e6")
    assert code == 2 and "law file: field 'pools'" in err and len(err.strip().splitlines()) == 1
    bad.write_text("{not json")
    code, _, err = _run_main(capsys, "predict", "--law", bad, "--pool", "x", "--samples", "1e6")
    assert code == 2 and "not valid JSON" in err
    code, _, err = _run_main(capsys, "predict", "--law", tmp_path / "nope.json", "--pool", "x",
                             "--samples", "1e6")
    assert code == 2 and "does not exist" in err


def test_predict_errors(tmp_path, capsys):
    law_path = tmp_path / "law.json"
    law_path.write_text(json.dumps(law_to_dict(TRUTH)))
    for args, message in ((["--pool", "nope"], "unknown pool 'nope'"),
                          (["--mixture", "top10=1,zz=1"], "unknown pool(s) ['zz']"),
                          (["--mixture", "top10=0,top20=0"], "sum to more than 0"),
                          ([], "needs --pool NAME or --mixture"),
                          (["--pool", "top10", "--params", "1e9"], "--params does not apply")):
        assert main(["predict", "--law", str(law_path), "--samples", "1e7", *args]) == 2
        assert message in capsys.readouterr().err
    assert main(["predict", "--law", str(law_path), "--pool", "top10", "--samples", "-1"]) == 2
    # a published law without bootstrap draws predicts exactly, with no interval
    assert main(["predict", "--law", str(law_path), "--pool", "top10", "--samples", "6.4e7",
                 "--unique", "6.4e6", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["interval"] is None
    assert out["prediction"][0] == TRUTH.predict(6.4e7, pool="top10", size=6.4e6)


def test_fit_and_predict_data_constrained_law(tmp_path, capsys, reference_dir):
    """Refit R*_D, R*_N on the released runs through the CLI (other constants fixed)."""
    dc = pytest.importorskip("curate.laws.data_constrained")
    pub = dc.PUBLISHED
    fixes = [f"--fix={k}={pub[k]!r}" for k in ("E", "A", "B", "alpha", "beta")]
    out = tmp_path / "dc.json"
    code = main(["fit", str(reference_dir / "datablations_runs_fit182.csv"), "--law",
                 "data-constrained", *fixes, "--no-cv",
                 "--columns", "samples_seen=tokens,unique_samples=unique_tokens,metric=val_loss,run_id=run",
                 "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    law = json.loads(out.read_text())
    assert law["kind"] == "data-constrained" and law["unit"] == "tokens"
    assert sorted(law["fixed"]) == ["A", "B", "E", "alpha", "beta"]
    assert law["fit"]["n_obs"] == 182
    # the CLI is plumbing around laws-B's estimator: same numbers as calling it directly
    rows = list(csv.DictReader((reference_dir / "datablations_runs_fit182.csv").open()))
    N, D, U, y = (np.array([float(r[k]) for r in rows])
                  for k in ("params", "tokens", "unique_tokens", "val_loss"))
    direct = dc.DataConstrainedLaw(**pub).fit(N, D, U, y, fix=["E", "A", "B", "alpha", "beta"])
    assert law["params"] == pytest.approx(direct.to_params(), rel=1e-9)
    assert law["fit"]["objective"] == pytest.approx(direct.objective_, rel=1e-9)
    resid = y - direct.predict(N, D, U)
    assert law["fit"]["r2"] == pytest.approx(1 - np.sum(resid ** 2) / np.sum((y - y.mean()) ** 2))
    # the published law predicts the published value through `curate predict`
    pub_law = tmp_path / "pub.json"
    pub_law.write_text(json.dumps({"format": "curate-law/1", "kind": "data-constrained",
                                   "unit": "tokens", "params": dict(pub)}))
    assert main(["predict", "--law", str(pub_law), "--params", "8.67e9", "--samples", "178e9",
                 "--unique", "25e9", "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert pred["prediction"][0] == pytest.approx(2.2269634075087867, rel=1e-9)
    assert main(["predict", "--law", str(pub_law), "--samples", "1e9"]) == 2
    assert "needs --params" in capsys.readouterr().err


def test_observation_loading_details(tmp_path):
    from curate.probe.observations_io import ObservationsError
    from curate.probe.observations_io import load_observations, parse_column_map, read_table

    assert parse_column_map("samples_seen=tokens, metric=val_loss") == \
        {"samples_seen": "tokens", "metric": "val_loss"}
    for bad, message in (("samples_seen", "expected canonical=source"),
                         ("metric=a,metric=b", "mapped twice"), ("metric=", "empty source")):
        with pytest.raises(ObservationsError, match=message):
            parse_column_map(bad)
    # a tab-separated file, numbers kept as text until validated, pool names like "3" kept
    tsv = tmp_path / "obs.tsv"
    tsv.write_text("pool\tsamples_seen\tunique_samples\tmetric\n3\t10\t10\t0.5\n3\t20\t10\t0.4\n")
    table = read_table(str(tsv))
    assert table["pool"] == ["3", "3"] and table["metric"] == ["0.5", "0.4"]
    obs = load_observations(str(tsv), law="qqt")
    assert obs.pool == ["3", "3"] and obs.unique_samples.tolist() == [10, 10]
    # renaming onto a column that already exists is ambiguous
    rows = _write_csv(tmp_path / "obs.csv", _rows())
    with pytest.raises(ObservationsError, match="already has a 'unique_samples' column"):
        load_observations(str(rows), {"unique_samples": "tokens"}, law="qqt")
    # DuckDB: a missing table is named; a database without a table name asks for one
    import duckdb

    db = tmp_path / "c.duckdb"
    duckdb.connect(str(db)).close()
    with pytest.raises(ObservationsError, match="cannot read table 'runs'"):
        read_table(f"{db}:runs")
    with pytest.raises(ObservationsError, match="name the table"):
        read_table(str(db))
    with pytest.raises(ObservationsError, match="unknown observations format"):
        read_table(str(_write_csv(tmp_path / "obs.txt", _rows())))

"""`curate probe`: argument parsing, the files it writes, validation output, catalog registration
and errors (the probe library itself is tested in tests/probe/)."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from curate.orchestration.cli import main
from curate.orchestration.commands.probe import parse_duration
from curate.probe.outputs import holdout_path

from tests.probe.probe_run import write_probe_run


@pytest.fixture(scope="module")
def run_dir(corpora_dir, tmp_path_factory):
    return write_probe_run(corpora_dir, tmp_path_factory.mktemp("probe_run"))


def test_parse_duration():
    assert parse_duration("10m") == 600 and parse_duration("90s") == 90
    assert parse_duration("1.5h") == 5400 and parse_duration("45") == 45
    with pytest.raises(ValueError):
        parse_duration("ten minutes")


def test_cli_writes_observations_and_validates(run_dir, tmp_path, capsys):
    out = tmp_path / "obs.parquet"
    workspace = tmp_path / "ws"
    rc = main(["probe", str(run_dir), "-o", str(out), "--proxy", "xs", "--unique-tokens", "4096",
               "--no-controls", "--seeds", "1", "--target", "pools",
               "--workers", "1", "--quiet", "--validate", "--json", "--workspace", str(workspace)])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    table = pq.read_table(out)
    assert {"pool", "samples_seen", "unique_samples", "metric", "params", "run_id",
            "step"} <= set(table.column_names)
    assert set(table.column("pool").to_pylist()) == {"pool0", "pool1", "pool2"}
    # xs: 512 tokens a step, warm-up 8, so U = 8 steps and points before step 16 (2U) are
    # dropped: 2, 3, 4, 6, 8 x U per pool
    assert table.num_rows == summary["rows"] == 15
    meta = json.loads(table.schema.metadata[b"curate.probe"])
    assert meta["unit"] == "tokens" and meta["design"]["unique_tokens"] == 4096
    seen = np.array(table.column("samples_seen").to_pylist())
    assert sorted(set(seen.tolist())) == [k * 4096 for k in (2, 3, 4, 6, 8)]
    held = pq.read_table(holdout_path(out))
    assert held.num_rows == summary["holdout_rows"] == 5 + 5 + 7  # 2 mixtures, large run (2U)
    assert set(held.column("role").to_pylist()) == {"holdout-mixture", "holdout-large"}
    v = summary["validation"]
    assert set(v["b"]) == {"pool0", "pool1", "pool2"}
    for key in ("mare_holdout_mixture", "mare_holdout_large", "mare_holdout"):
        assert np.isfinite(v[key])  # measured and printed, not asserted against a target
    import duckdb
    con = duckdb.connect(str(workspace / "catalog.duckdb"), read_only=True)
    counts = dict(con.execute("SELECT source, count(*) FROM observations GROUP BY source").fetchall())
    con.close()
    assert counts == {str(out.resolve()): 15, str(holdout_path(out).resolve()): 17}


def test_cli_rejects_a_directory_without_pools(tmp_path, capsys):
    rc = main(["probe", str(tmp_path), "-o", str(tmp_path / "o.parquet"), "--quiet", "--target", "pools"])
    assert rc == 2
    assert "is not a curate run directory: no manifest.json" in capsys.readouterr().err


def test_cli_default_design_identifies_gamma_and_is_printed(run_dir, tmp_path, capsys):
    """The default design: 2 seeds here (3 by default), U and U/4 subsets, fresh-data runs; the
    design is printed on stderr and stored; `curate fit` on it fits gamma."""
    out = tmp_path / "obs.parquet"
    rc = main(["probe", str(run_dir), "-o", str(out), "--proxy", "xs", "--unique-tokens", "2048",
               "--seeds", "2", "--no-holdout", "--workers", "1", "--json", "--target", "pools"])
    assert rc == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert "design: 18 runs (18 fit runs over seeds 0, 1)" in captured.err
    ds = summary["design_summary"]
    assert ds["seeds"] == [0, 1] and ds["fit_runs"] == 18
    assert ds["subset_tokens"] == {"main": 2048, "small": 512, "fresh": 16384}
    meta = json.loads(pq.read_table(out).schema.metadata[b"curate.probe"])
    assert meta["design"]["seeds"] == 2 and meta["design"]["small_factor"] == 4
    assert meta["design_summary"] == ds
    table = pq.read_table(out).to_pydict()
    assert len(set(table["run_id"])) == 18
    law_path = tmp_path / "law.json"
    assert main(["fit", str(out), "--law", "qqt", "--variant", "multiplier", "--no-cv",
                 "-o", str(law_path)]) == 0
    law = json.loads(law_path.read_text())
    assert law["fit"]["gamma"]["fitted"] is True
    assert 0.0 <= law["gamma"] == law["fit"]["gamma"]["value"] <= 3.0


def test_cli_rejects_zero_seeds(run_dir, tmp_path, capsys):
    rc = main(["probe", str(run_dir), "-o", str(tmp_path / "o.parquet"), "--seeds", "0", "--quiet",
               "--target", "pools"])
    assert rc == 2 and "--seeds must be >= 1" in capsys.readouterr().err


def test_cli_asks_for_a_target(run_dir, tmp_path, capsys):
    """No silent default: the pools' own mix measures transfer to this corpus, not quality."""
    rc = main(["probe", str(run_dir), "-o", str(tmp_path / "o.parquet"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "give --target FILE" in err and "--target pools" in err
    assert not (tmp_path / "o.parquet").exists()

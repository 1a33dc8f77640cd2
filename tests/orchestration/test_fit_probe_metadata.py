"""`curate fit` on `curate probe` output takes the unit and full-pool sizes from its metadata."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.laws.qqt import QQTLaw
from curate.orchestration.cli import main

U = 50_000  # the probe's unique-token subset per pool
FULL = {"pool0": 9.0e6, "pool1": 2.5e6}  # the real pools, in bytes


def _probe_like_parquet(path):
    truth = QQTLaw(0.02, 0.5, list(FULL), b=[-0.15, -0.12], tau=[3.0, 6.0], sizes=[U, U])
    rng = np.random.default_rng(0)
    rows = {"pool": [], "samples_seen": [], "unique_samples": [], "metric": [], "run_id": [], "step": []}
    for pool in FULL:
        for step, mult in enumerate((0.25, 0.5, 1, 2, 3, 4, 6, 8)):
            n = mult * U
            rows["pool"].append(pool)
            rows["samples_seen"].append(int(n))
            rows["unique_samples"].append(int(min(n, U)))
            rows["metric"].append(truth.predict(n, pool=pool) * np.exp(0.002 * rng.standard_normal()))
            rows["run_id"].append(pool)
            rows["step"].append(step)
    meta = {"unit": "tokens", "pool_bytes": FULL}
    table = pa.Table.from_pydict(rows).replace_schema_metadata({"curate.probe": json.dumps(meta)})
    pq.write_table(table, path)


def test_fit_reads_unit_and_pool_sizes_from_probe_metadata(tmp_path, capsys):
    obs = tmp_path / "obs.parquet"
    _probe_like_parquet(obs)
    law_path = tmp_path / "law.json"
    assert main(["fit", str(obs), "--law", "qqt", "-o", str(law_path), "--no-cv"]) == 0
    law = json.loads(law_path.read_text())
    assert law["unit"] == "tokens"
    assert {p["name"]: p["size"] for p in law["pools"]} == FULL
    # Repetition was measured on the U-token subsets: the single-pool rows must have been fitted
    # with U as the pool size, so the fitted half-lives are finite and near the truth.
    assert 1.5 < law["params"]["tau[pool0]"] < 6.0

    capsys.readouterr()
    # An explicit --pool-size / --unit still wins over the metadata.
    assert main(["fit", str(obs), "--law", "qqt", "-o", str(law_path), "--no-cv",
                 "--unit", "samples", "--pool-size", "pool0=1e7", "--pool-size", "pool1=1e6"]) == 0
    law = json.loads(law_path.read_text())
    assert law["unit"] == "samples"
    assert {p["name"]: p["size"] for p in law["pools"]} == {"pool0": 1e7, "pool1": 1e6}


def test_fit_and_plan_register_their_files_in_the_workspace_catalog(tmp_path, capsys):
    from curate.pools.catalog import Catalog

    obs = tmp_path / "obs.parquet"
    _probe_like_parquet(obs)
    ws = tmp_path / "ws"
    law_path, plan_path = tmp_path / "law.json", tmp_path / "plan.json"
    assert main(["fit", str(obs), "--law", "qqt", "-o", str(law_path), "--no-cv",
                 "--workspace", str(ws)]) == 0
    assert main(["plan", "--law", str(law_path), "--budget", "2e7", "-o", str(plan_path),
                 "--workspace", str(ws)]) == 0
    capsys.readouterr()
    catalog = Catalog(ws)
    laws = catalog.query("SELECT id, kind, unit FROM laws").rows
    plans = catalog.query("SELECT id, unit FROM plans").rows
    assert [tuple(r) for r in laws] == [("law", "qqt", "tokens")]
    assert len(plans) == 1 and plans[0][0] == "plan"

"""`curate plan`: law files in, plan table / JSON / plan file / plot out, one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from curate.laws.data_constrained import PUBLISHED
from curate.laws.lawfile import law_to_dict
from curate.laws.qqt import QQTLaw
from curate.orchestration.cli import main
from tests.laws.released import tmars_top4

POOL = 12.8e6


@pytest.fixture(scope="module")
def tmars_law(reference_dir) -> QQTLaw:
    """tmars_imagenet1k_utility restricted to the first four (disjoint, ordered) pools."""
    return tmars_top4(reference_dir)


def _write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture()
def qqt_file(tmp_path, tmars_law) -> Path:
    d = law_to_dict(tmars_law)
    d["fit"] = {"samples_range": [6.4e6, 6.4e8]}
    return _write(tmp_path / "law.json", d)


@pytest.fixture()
def dc_file(tmp_path) -> Path:
    return _write(tmp_path / "dc.json", {"format": "curate-law/1", "kind": "data-constrained",
                                         "unit": "tokens", "params": dict(PUBLISHED)})


def _main(capsys, *args):
    code = main(["plan", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_table_output(capsys, qqt_file):
    code, out, err = _main(capsys, "--law", qqt_file, "--budget", "6.4e8")
    assert code == 0, err
    assert "predicted error" in out and "best top-m (top2)" in out
    assert "pool0" in out and "epochs" in out
    # The released parameters carry no measured epoch range: uncapped, and said so (only that).
    assert "epoch caps: none" in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "carries no measured epoch range" in lines[0]


def test_json_plan_file_and_plot(capsys, qqt_file, tmp_path):
    plan_path, png = tmp_path / "out" / "plan.json", tmp_path / "plan.png"
    code, out, _ = _main(capsys, "--law", qqt_file, "--budget", "1.28e8", "--top-m", "--json",
                         "-o", plan_path, "--plot", png)
    assert code == 0
    printed = json.loads(out)
    assert json.loads(plan_path.read_text()) == printed
    plan = printed["plan"]
    assert printed["format"] == "curate-plan/1" and printed["unit"] == "samples"
    assert plan["mixture"] == "top2" and plan["m"] == 2
    assert round(100 * (1 - plan["predicted"]), 2) == 29.60
    rows = {r["pool"]: r for r in plan["pools"]}
    assert rows["pool0"]["weight"] == pytest.approx(0.5)
    assert rows["pool0"]["epochs"] == pytest.approx(5.0)
    assert rows["pool0"]["unique"] == pytest.approx(POOL)
    assert set(plan["baselines"]) == {"best_top_m", "all_once", "best_pool_only"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_reports_switches_and_plots(capsys, qqt_file, tmp_path):
    png = tmp_path / "sweep.png"
    code, out, err = _main(capsys, "--law", qqt_file, "--sweep", "1e7:1e10:31", "--top-m",
                           "--json", "--plot", png)
    assert code == 0
    sweep = json.loads(out)["sweep"]
    assert [(s["from"], s["to"]) for s in sweep["switches"]] == [("top1", "top2"), ("top2", "top3")]
    assert sweep["switches"][0]["budget"] == pytest.approx(101e6, rel=0.01)
    assert sweep["switches"][1]["budget"] == pytest.approx(1.10e9, rel=0.01)
    assert png.stat().st_size > 1000
    assert "far outside the fitted samples range" in err


def test_far_outside_fitted_range_warns(capsys, qqt_file):
    code, _, err = _main(capsys, "--law", qqt_file, "--budget", "1e10")
    assert code == 0
    assert err.startswith("curate plan: warning:") and "extrapolation" in err


def test_constraints_and_pool_sizes(capsys, qqt_file):
    code, out, _ = _main(capsys, "--law", qqt_file, "--budget", "6.4e8", "--json",
                         "--max-share", "pool0=0.3", "--exclude", "pool3", "--max-epochs", "30",
                         "--pool-size", "pool2=6.4e6")
    assert code == 0
    rows = {r["pool"]: r for r in json.loads(out)["plan"]["pools"]}
    assert rows["pool0"]["weight"] <= 0.3 + 1e-9
    assert rows["pool3"]["weight"] == 0.0
    assert rows["pool2"]["size"] == 6.4e6
    assert all(r["epochs"] <= 30 + 1e-6 for r in rows.values())


def test_pools_from_run_stats(capsys, tmp_path, tmars_law):
    from tests.pools.runfixture import publish_manifest

    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    run = tmp_path / "run"
    run.mkdir()
    pq.write_table(pa.table({"pool": [0, 1, 2, 3], "docs": [4000, 6000, 5000, 0],
                             "tokens": [1.2e6, 2.0e6, 1.1e6, 0]}), run / "stats.parquet")
    publish_manifest(run, {"counts": {}})
    d = law_to_dict(tmars_law)
    law = _write(tmp_path / "law.json", d)
    code, out, err = _main(capsys, "--law", law, "--pools-from", run, "--budget", "3e4", "--json")
    assert code == 0, err
    plan = json.loads(out)["plan"]
    assert [r["pool"] for r in plan["pools"]] == ["pool0", "pool1", "pool2"]  # empty pool dropped
    assert [r["size"] for r in plan["pools"]] == [4000, 6000, 5000]
    assert "pool pool3 is empty" in err
    code, out, _ = _main(capsys, "--law", law, "--pools-from", run, "--size-column", "tokens",
                         "--budget", "3e6", "--json")
    assert [r["size"] for r in json.loads(out)["plan"]["pools"]] == [1.2e6, 2.0e6, 1.1e6]
    code, _, err = _main(capsys, "--law", law, "--pools-from", run, "--size-column", "bytes",
                         "--budget", "3e6")
    assert code == 2 and "no 'bytes' column" in err
    (run / "_SUCCESS").unlink()  # an unfinished run is refused, as by every reader
    code, _, err = _main(capsys, "--law", law, "--pools-from", run, "--budget", "3e4")
    assert code == 2 and "is not a finished curate run" in err and err.count("\n") == 1
    # a run with fewer pools than the law: the law's other pools are left out
    pq.write_table(pa.table({"pool": [0, 1], "docs": [4000, 6000], "tokens": [1.2e6, 2.0e6]}),
                   run / "stats.parquet")
    publish_manifest(run, {"counts": {}})
    code, out, err = _main(capsys, "--law", law, "--pools-from", run, "--budget", "3e4", "--json")
    assert code == 0
    assert [r["pool"] for r in json.loads(out)["plan"]["pools"]] == ["pool0", "pool1"]
    assert "pool2, pool3 are not in" in err
    # data-constrained law: pools from the run are unique tokens
    pq.write_table(pa.table({"pool": [0, 1, 2, 3], "docs": [4000, 6000, 5000, 0],
                             "tokens": [1.2e6, 2.0e6, 1.1e6, 0]}), run / "stats.parquet")
    publish_manifest(run, {"counts": {}})
    dc = _write(tmp_path / "dc.json", {"format": "curate-law/1", "kind": "data-constrained",
                                       "params": dict(PUBLISHED)})
    code, out, err = _main(capsys, "--law", dc, "--pools-from", run, "--budget", "1e17", "--json")
    assert code == 0, err
    plan = json.loads(out)["plan"]
    assert [r["size"] for r in plan["pools"]] == [1.2e6, 2.0e6, 1.1e6]
    assert plan["params"] > 0


def test_data_constrained_flops_acceptance(capsys, dc_file):
    code, out, _ = _main(capsys, "--law", dc_file, "--budget", "1e22", "--unit", "flops",
                         "--pool-size", "web=25e9", "--json")
    assert code == 0
    plan = json.loads(out)["plan"]
    assert plan["draws"] == pytest.approx(237.34e9, rel=0.01)
    assert plan["pools"][0]["epochs"] == pytest.approx(9.49, rel=0.01)
    assert plan["params"] == pytest.approx(7.02e9, rel=0.01)


def test_bootstrap_draws_give_robustness(capsys, tmp_path, tmars_law):
    d = law_to_dict(tmars_law)
    draws = []
    for k in range(8):
        p = dict(d["params"])
        p["a"] *= 1 + 0.02 * (k - 3.5) / 3.5
        p["b[pool1]"] *= 1 + 0.05 * ((k * 3) % 8 - 3.5) / 3.5
        draws.append(p)
    d["bootstrap"] = {"level": 0.9, "draws": draws}
    law = _write(tmp_path / "law.json", d)
    code, out, _ = _main(capsys, "--law", law, "--budget", "6.4e8", "--json")
    assert code == 0
    res = json.loads(out)
    rob, plan = res["robustness"], res["plan"]
    assert rob["draws"] == 8 and 0.0 <= rob["stays_optimal"] <= 1.0
    assert plan["interval"][0] < plan["predicted"] < plan["interval"][1]
    code, out, _ = _main(capsys, "--law", law, "--budget", "6.4e8")
    assert "bootstrap interval" in out and "robustness over 8 bootstrap draws" in out


@pytest.mark.parametrize("args,message", [
    (["--budget", "0"], "--budget must be positive"),
    (["--budget", "-3"], "--budget must be positive"),
    ([], "give --budget"),
    (["--budget", "1e8", "--exclude", "pool0", "--exclude", "pool1", "--exclude", "pool2",
      "--exclude", "pool3"], "all pools are excluded"),
    (["--budget", "1e8", "--min-share", "pool0=0.8", "--min-share", "pool1=0.4"], "add up to 1.2"),
    (["--budget", "1e9", "--max-epochs", "2"], "caps"),
    (["--budget", "1e8", "--exclude", "nope"], "unknown pool 'nope'"),
    (["--budget", "1e8", "--pool-size", "pool0"], "NAME=VALUE"),
    (["--budget", "1e8", "--unit", "flops"], "--params"),
    (["--budget", "1e8", "--top-m", "--max-share", "pool0=0.1"], "no top-m mixture"),
    (["--sweep", "1e9:1e7"], "LO < HI"),
])
def test_infeasible_and_bad_requests_are_one_line_errors(capsys, qqt_file, args, message):
    code, out, err = _main(capsys, "--law", qqt_file, *args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("curate plan: error:")
    assert message in err


def test_bad_law_file(capsys, tmp_path):
    code, _, err = _main(capsys, "--law", tmp_path / "missing.json", "--budget", "1e8")
    assert code == 2 and "not found" in err
    bad = _write(tmp_path / "bad.json", {"format": "curate-law/1", "kind": "qqt", "params": {"a": 1}})
    code, _, err = _main(capsys, "--law", bad, "--budget", "1e8")
    assert code == 2 and "law file" in err


def test_qqt_law_in_tokens_takes_a_flops_budget(capsys, tmp_path, tmars_law):
    d = law_to_dict(tmars_law)
    d["unit"] = "tokens"
    law = _write(tmp_path / "law.json", d)
    N = 1e8
    code, out, err = _main(capsys, "--law", law, "--budget", 6 * N * 1.28e8, "--unit", "flops",
                           "--params", N, "--top-m", "--json")
    assert code == 0, err
    plan = json.loads(out)["plan"]
    assert plan["draws"] == pytest.approx(1.28e8) and plan["mixture"] == "top2"
    code, _, err = _main(capsys, "--law", law, "--budget", "1e8", "--unit", "samples")
    assert code == 2 and "--unit tokens" in err


def test_dc_token_budget_needs_params(capsys, dc_file):
    code, _, err = _main(capsys, "--law", dc_file, "--budget", "1e11", "--unit", "tokens",
                         "--pool-size", "web=1e10")
    assert code == 2 and "--params" in err
    code, out, _ = _main(capsys, "--law", dc_file, "--budget", "1e11", "--unit", "tokens",
                         "--params", "1e9", "--pool-size", "web=1e10", "--pool-size", "b=3e10",
                         "--json")
    assert code == 0
    plan = json.loads(out)["plan"]
    assert plan["params"] == 1e9 and plan["draws"] == 1e11


def test_real_entry_point_help():
    proc = subprocess.run([sys.executable, "-m", "curate.orchestration.cli", "plan", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--budget" in proc.stdout and "--pools-from" in proc.stdout


# -- epoch caps, quality, conservative parameters ------------------------------------------------

@pytest.fixture()
def capped_file(tmp_path, tmars_law) -> Path:
    d = law_to_dict(tmars_law)
    d["fit"] = {"samples_range": [6.4e6, 6.4e8], "max_epochs": 16.0}
    return _write(tmp_path / "capped.json", d)


def test_epoch_caps_in_table_json_and_plan_file(capsys, capped_file, tmp_path):
    code, out, err = _main(capsys, "--law", capped_file, "--budget", "6.4e8")
    assert code == 0, err
    assert "cap" in out and "16*" in out  # a binding cap is starred
    assert "epoch caps: from the law's fit data (measured up to 16 epochs)" in out
    assert "binds for" in err
    plan_path = tmp_path / "plan.json"
    code, out, _ = _main(capsys, "--law", capped_file, "--budget", "6.4e8", "--json", "-o", plan_path)
    res = json.loads(out)
    assert json.loads(plan_path.read_text()) == res
    rows = res["plan"]["pools"]
    assert all(r["epochs"] <= 16 * (1 + 1e-9) and r["epoch_cap"] == 16.0 for r in rows)
    assert res["plan"]["cap_binding"] == [r["pool"] for r in rows if r["cap_binding"]]
    assert res["plan"]["cap_binding"]
    assert res["constraints"]["epoch_cap_source"] == "fit data"


def test_max_epochs_flag_overrides_the_cap_with_a_warning(capsys, capped_file):
    code, out, err = _main(capsys, "--law", capped_file, "--budget", "6.4e8", "--max-epochs", "40",
                           "--json")
    assert code == 0
    rows = json.loads(out)["plan"]["pools"]
    assert max(r["epochs"] for r in rows) > 16 and all(r["epochs"] <= 40 + 1e-6 for r in rows)
    assert "--max-epochs 40 exceeds the largest epoch count in the law's fit data (16)" in err
    code, out, err = _main(capsys, "--law", capped_file, "--budget", "6.4e8", "--max-epochs", "inf",
                           "--json")
    assert code == 0 and all(r["epoch_cap"] is None for r in json.loads(out)["plan"]["pools"])
    code, _, err = _main(capsys, "--law", capped_file, "--budget", "1e9")
    assert code == 2 and err.count("\n") == 1 and "give --max-epochs" in err


def test_quality_flag_and_law_file_multipliers(capsys, tmp_path):
    base = {"format": "curate-law/1", "kind": "data-constrained", "params": dict(PUBLISHED),
            "pools": [{"name": "web", "size": 2e10}, {"name": "books", "size": 5e9}]}
    plain = _write(tmp_path / "plain.json", base)
    code, out, _ = _main(capsys, "--law", plain, "--budget", "1e21", "--json")
    w0 = {r["pool"]: r["weight"] for r in json.loads(out)["plan"]["pools"]}
    assert w0["books"] == pytest.approx(0.2, abs=2e-4)  # size-proportional
    code, out, err = _main(capsys, "--law", plain, "--budget", "1e21", "--quality", "books=1.4",
                           "--quality", "web=1", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["quality"] == {"web": 1.0, "books": 1.4}
    assert {r["pool"]: r["weight"] for r in res["plan"]["pools"]}["books"] > 0.22
    code, out, _ = _main(capsys, "--law", plain, "--budget", "1e21", "--quality", "books=1.4")
    assert "quality" in out.splitlines()[2]  # the table shows the multipliers
    rich = _write(tmp_path / "rich.json", {**base, "quality": {"web": 1.0, "books": 1.4}})
    code, out, _ = _main(capsys, "--law", rich, "--budget", "1e21", "--json")
    assert json.loads(out)["quality"] == {"web": 1.0, "books": 1.4}
    code, _, err = _main(capsys, "--law", plain, "--budget", "1e21", "--quality", "nope=2")
    assert code == 2 and err.count("\n") == 1 and "unknown pool 'nope'" in err


def test_quality_with_a_qqt_law_is_a_one_line_error(capsys, qqt_file):
    code, _, err = _main(capsys, "--law", qqt_file, "--budget", "1e8", "--quality", "pool0=2")
    assert code == 2 and err.count("\n") == 1 and "--quality applies to data-constrained" in err


def test_tau_quantile_flag(capsys, qqt_file):
    code, _, _ = _main(capsys, "--law", qqt_file, "--budget", "6.4e8", "--tau-quantile", "none")
    assert code == 0
    with pytest.raises(SystemExit):  # argparse: a quantile must be in [0, 0.5)
        _main(capsys, "--law", qqt_file, "--budget", "6.4e8", "--tau-quantile", "0.9")


def test_probe_law_with_flops_budget_warns_about_model_size(capsys, tmp_path):
    law = _write(tmp_path / "probe.json", {
        "format": "curate-law/1", "kind": "data-constrained", "params": dict(PUBLISHED),
        "pools": [{"name": "web", "size": 2e7}],
        "fit": {"params_range": [1.2e5, 1.2e5], "samples_range": [1e6, 1e8], "max_epochs": 8}})
    code, _, err = _main(capsys, "--law", law, "--budget", "1e17")
    assert code == 0 and "fitted at a single model size (N = 1.2e+05)" in err


def test_help_teaches_the_limits():
    proc = subprocess.run([sys.executable, "-m", "curate.orchestration.cli", "plan", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for flag in ("--quality", "--tau-quantile", "--saturation-eps", "--max-epochs"):
        assert flag in proc.stdout
    assert "largest epoch count" in proc.stdout and "n = s/a" in proc.stdout

"""Issue 17 item 7 (bounded resources from one value) and item 10's NaN part: every case here
ran out of memory or time, or printed a bare NaN, before the change; now it is one line (or
bounded and fast)."""
from __future__ import annotations

import json
import time

import pytest

from curate.orchestration.cli import main


def _one_line_error(capsys, code) -> str:
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("curate "), err
    return err


def test_fit_rejects_one_absurd_samples_seen_row(tmp_path, capsys):
    obs = tmp_path / "obs.csv"
    obs.write_text("pool,samples_seen,unique_samples,metric\n"
                   "p0,1e6,1e6,1.0\np0,2e6,1e6,0.9\np0,4e6,1e6,0.85\np0,8e6,1e6,0.83\n"
                   "p0,1e308,1e6,0.8\n")
    started = time.perf_counter()
    code = main(["fit", str(obs), "-o", str(tmp_path / "law.json")])
    err = _one_line_error(capsys, code)
    assert "row 5: samples_seen 1e+308 is above the maximum 1e+15" in err
    assert time.perf_counter() - started < 10
    assert not (tmp_path / "law.json").exists()


def test_fit_rejects_a_mixture_row_passing_a_tiny_pool_too_often(tmp_path, capsys):
    obs = tmp_path / "obs.csv"
    obs.write_text("pool,samples_seen,unique_samples,metric\n"
                   "p0,1e6,1e6,1.0\np0,2e6,1e6,0.9\np1,1e6,1e6,0.95\np1,4e6,1e6,0.8\n"
                   "p0=1;p1=1,1e9,1e6,0.7\np0=1;p1=1,2e6,2e6,0.9\n")
    code = main(["fit", str(obs), "--pool-size", "p1=1", "--no-cv", "-o", str(tmp_path / "l.json")])
    err = _one_line_error(capsys, code)
    assert "row 5: 5e+08 passes over pool 'p1' (size 1)" in err


def _many_rows_csv(path, rows_per_pool: int):
    """Single-pool runs of two pools at many (samples, subset size) points, on a known law."""
    import numpy as np

    from curate.laws.qqt import QQTLaw

    law = QQTLaw(0.025, 0.1, ["p0", "p1"], b=[-0.16, -0.1], tau=[6.0, 4.0], sizes=[1e6, 1e6])
    rng = np.random.default_rng(0)
    lines = ["pool,samples_seen,unique_samples,metric"]
    for pool in law.pools:
        U = np.round(np.exp(rng.uniform(np.log(2e5), np.log(1e6), rows_per_pool)))
        n = U * np.exp(rng.uniform(0, np.log(16), rows_per_pool))
        y = [law.predict(float(a), pool=pool, size=float(u)) for a, u in zip(n, U)]
        y = np.asarray(y) * np.exp(rng.normal(0, 0.005, rows_per_pool))
        lines += [f"{pool},{a!r},{u!r},{m!r}" for a, u, m in zip(n.tolist(), U.tolist(), y.tolist())]
    path.write_text("\n".join(lines) + "\n")


def test_fit_on_many_rows_cross_validates_k_fold_and_says_so(tmp_path, capsys):
    """Leave-one-out refits once per row (100k rows: hours); above 100 rows it is 10-fold."""
    obs = tmp_path / "obs.csv"
    _many_rows_csv(obs, 100)
    out = tmp_path / "law.json"
    assert main(["fit", str(obs), "--variant", "utility", "--fix", "gamma=1", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    fit = json.loads(out.read_text())["fit"]
    assert fit["cv_method"] == "10-fold" and fit["loo_error"] is None
    assert 0 < fit["cv_error"] < 0.05
    assert "10-fold CV rel. error" in printed


def test_fit_on_few_rows_still_leaves_one_out(tmp_path, capsys):
    obs = tmp_path / "obs.csv"
    _many_rows_csv(obs, 20)
    out = tmp_path / "law.json"
    assert main(["fit", str(obs), "--variant", "utility", "--fix", "gamma=1", "-o", str(out)]) == 0
    fit = json.loads(out.read_text())["fit"]
    assert fit["cv_method"] == "leave-one-out" and fit["loo_error"] == fit["cv_error"]
    assert "leave-one-out rel. error" in capsys.readouterr().out


def test_run_refuses_more_pools_than_the_cap_before_doing_any_work(tmp_path, capsys):
    """`curate run --pools 1000` on 300 documents took 24 GB: one Beam write per pool."""
    corpus = tmp_path / "in.jsonl"
    corpus.write_text("".join(f'{{"id": "d{i}", "text": "document number {i}"}}\n' for i in range(300)))
    out = tmp_path / "out"
    started = time.perf_counter()
    code = main(["run", "--input", str(corpus), "--output", str(out), "--pools", "1000"])
    err = _one_line_error(capsys, code)
    assert "pools.num_pools must be in [1, 100], got 1000" in err
    assert time.perf_counter() - started < 10 and not out.exists()


def _overflowing_law_file(path):
    from curate.laws.lawfile import law_to_dict
    from curate.laws.qqt import QQTLaw

    law = QQTLaw(a=1e-300, d=0.1, pools=["p", "q"], b={"p": -5.0, "q": -0.1},
                 tau={"p": 4.0, "q": 10.0}, sizes={"p": 1e6, "q": 4e6})
    path.write_text(json.dumps(law_to_dict(law)))
    return path


def test_predict_and_plan_refuse_non_finite_predictions_with_one_line(tmp_path, capsys):
    """Issue 17 item 10: predictions printed as a bare NaN / inf (and invalid JSON) with no warning."""
    law = _overflowing_law_file(tmp_path / "law.json")
    code = main(["predict", "--law", str(law), "--pool", "p", "--samples", "1e3", "--json"])
    err = _one_line_error(capsys, code)
    assert "prediction for pool p at 1000 samples is inf" in err
    code = main(["plan", "--law", str(law), "--budget", "1e7", "--max-epochs", "10"])
    err = _one_line_error(capsys, code)
    assert "the law predicts inf for all pools, size-proportional (p=0.2, q=0.8)" in err
    assert main(["predict", "--law", str(law), "--pool", "q", "--samples", "1e3"]) == 0


def test_predict_at_1e14_samples_is_fast(tmp_path, capsys):
    """`curate predict --samples 1e14` looped over every pass (still running at 120 s with a
    bootstrap band); a law with the slowest decay the fit allows, measured at a 100x gap."""
    from curate.laws.lawfile import law_to_dict
    from curate.laws.qqt import QQTLaw

    law = QQTLaw(0.025, 0.1, ["p0", "p1"], b=[-0.16, -0.1], tau=[1e4, 5.0], sizes=[1.4e7, 2e6],
                 gaps=[1.4e5, 2e4])
    data = law_to_dict(law)
    data["bootstrap"] = {"level": 0.9, "draws": [{"tau[p0]": t} for t in (2e3, 5e3, 1e4, 8e3)]}
    path = tmp_path / "law.json"
    path.write_text(json.dumps(data))
    started = time.perf_counter()
    code = main(["predict", "--law", str(path), "--pool", "p0", "--samples", "1e12,1e14", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and time.perf_counter() - started < 10
    assert out["prediction"][1] < out["prediction"][0] and len(out["interval"]) == 2

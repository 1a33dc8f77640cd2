"""Closed-loop replay (`curate validate`): epochs per pool as planned at 1/k scale, determinism
across repeats and worker counts, a verdict that can fail (a plan of random bytes loses to real
text), the capped-plan candidate, and the CLI's one-line errors and light --help."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.orchestration.cli import main
from curate.probe.errors import ProbeError
from curate.probe.replay import (ReplaySettings, parse_scale, plan_candidates, replay_plan,
                                 subsample)
from curate.probe.run_pools import load_pools

from tests.pools.runfixture import publish_manifest
from tests.probe.probe_run import TINY, write_probe_run


def hand_plan(sizes: dict[str, float], draws: float, weights: dict[str, float],
              baselines: dict[str, dict[str, float]], measured_max_epochs: float | None = 8.0,
              cap_source: str = "fit data") -> dict:
    """A curate-plan/1 dict as `curate plan -o` writes it (the fields the replay reads)."""
    rows = [{"pool": p, "weight": weights.get(p, 0.0), "samples": weights.get(p, 0.0) * draws,
             "unique": min(weights.get(p, 0.0) * draws, n), "epochs": weights.get(p, 0.0) * draws / n,
             "size": n, "epoch_cap": measured_max_epochs, "cap_binding": False}
            for p, n in sizes.items()]
    return {"format": "curate-plan/1", "law": None, "kind": "qqt", "unit": "tokens",
            "metric": "loss", "top_m_only": False,
            "constraints": {"min_share": {}, "max_share": {}, "exclude": [], "max_epochs": None,
                            "epoch_caps": {}, "epoch_cap_source": cap_source,
                            "measured_max_epochs": measured_max_epochs},
            "plan": {"budget": draws, "draws": draws, "predicted": 3.0,
                     "mixture": "+".join(p for p, w in weights.items() if w > 0), "pools": rows,
                     "baselines": {k: {"name": k, "m": None, "loss": 3.1 + 0.01 * j,
                                       "feasible": True, "weights": w}
                                   for j, (k, w) in enumerate(baselines.items())}}}


def _bytes(docs) -> float:
    return float(sum(len(t.encode("utf-8")) for _, t in docs))


@pytest.fixture(scope="module")
def run_dir(corpora_dir, tmp_path_factory):
    return write_probe_run(corpora_dir, tmp_path_factory.mktemp("replay_run"))


@pytest.fixture(scope="module")
def pools(run_dir):
    return load_pools(run_dir)


@pytest.fixture(scope="module")
def three_pool_plan(pools):
    sizes = {p: _bytes(d) for p, d in pools.items()}
    tot = sum(sizes.values())
    return hand_plan(sizes, 4e5, {"pool0": 0.5, "pool2": 0.5},
                     {"best_top_m": {"pool0": 1.0}, "all_once": {p: n / tot for p, n in sizes.items()},
                      "best_pool_only": {"pool0": 1.0}})


def test_subsample_is_one_kth_of_the_pool_to_a_window(pools):
    docs = pools["pool1"]
    seqs, used, total = subsample(docs, 16, 32, "salt")
    assert abs(len(seqs) * 32 - total / 16) <= 32
    assert 0 < used < len(docs)
    again, _, _ = subsample(list(reversed(docs)), 16, 32, "salt")  # order-independent, seeded
    assert np.array_equal(seqs, again)
    other, _, _ = subsample(docs, 16, 32, "other salt")
    assert not np.array_equal(seqs, other)


def test_replay_trains_each_pool_for_the_planned_epochs(pools, three_pool_plan):
    rep = replay_plan(three_pool_plan, pools, ReplaySettings(scale=16, seeds=(0, 1), config=TINY))
    assert rep["validates"].startswith("a reduced-scale (1/k) replay")
    keys = [c["key"] for c in rep["candidates"]]
    assert keys == ["plan", "best_top_m", "all_once", "best_pool_only"]
    by_key = {c["key"]: c for c in rep["candidates"]}
    assert by_key["best_pool_only"]["same_as"] == "best_top_m"  # trained once
    assert by_key["best_pool_only"]["losses"] == by_key["best_top_m"]["losses"]
    for c in rep["candidates"]:
        for seed, run_epochs in zip(rep["seeds"], c["replay_epochs"]):
            for p, planned in c["epochs"].items():
                windows = rep["subsets"][str(seed)][p]["windows"]
                # the subset is 1/k of the pool to one context window ...
                pool_bytes = rep["subsets"][str(seed)][p]["pool_bytes"]
                assert abs(windows * TINY.context - pool_bytes / 16) <= TINY.context
                # ... and is trained for the plan's epochs to within one batch of windows
                assert abs(run_epochs[p] - planned) * windows <= TINY.batch_size, (c["key"], p)
        assert len(c["losses"]) == 2 and c["sd"] is not None and 0 < c["mean"] < 6
    # the plan's budget / k, to within the rounding to whole steps and windows
    assert by_key["plan"]["replay_tokens"] == pytest.approx(rep["replay_budget_tokens"], rel=0.05)
    assert rep["verdict"] in ("plan wins", "within noise", "loses")
    assert rep["best_baseline"] in ("best_top_m", "all_once", "best_pool_only")
    assert rep["measured_difference"] == pytest.approx(
        by_key["plan"]["mean"] - by_key[rep["best_baseline"]]["mean"])
    assert rep["predicted_difference"] == pytest.approx(
        3.0 - by_key[rep["best_baseline"]]["predicted"])


def test_replay_is_deterministic_and_independent_of_workers(pools):
    sizes = {p: _bytes(d) for p, d in pools.items()}
    plan = hand_plan(sizes, 1.5e5, {"pool1": 1.0}, {"best_pool_only": {"pool2": 1.0}})
    settings = ReplaySettings(scale=8, seeds=(0, 1), config=TINY)
    first = json.dumps(replay_plan(plan, pools, settings), sort_keys=True)
    again = json.dumps(replay_plan(plan, pools, settings), sort_keys=True)
    assert first == again
    parallel = replay_plan(plan, pools, ReplaySettings(scale=8, seeds=(0, 1), config=TINY, workers=2))
    assert json.dumps(parallel, sort_keys=True) == first
    other = replay_plan(plan, pools, ReplaySettings(scale=8, seeds=(2, 3), config=TINY))
    assert other["candidates"][0]["losses"] != json.loads(first)["candidates"][0]["losses"]


def test_a_plan_of_random_bytes_loses_to_real_text(corpora_dir, tmp_path):
    rng = np.random.default_rng(0)
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?-"))
    news = []
    with gzip.open(corpora_dir / "news_articles.jsonl.gz", "rt", encoding="utf-8") as fh:
        for n, line in zip(range(40), fh):
            news.append((f"news-{n}", json.loads(line)["text"]))
    noise = [(f"noise-{i}", "".join(rng.choice(alphabet, 600))) for i in range(150)]
    for k, docs in enumerate((news, noise)):
        d = tmp_path / "run" / "pools" / f"pool={k}"
        d.mkdir(parents=True)
        pq.write_table(pa.table({"id": [i for i, _ in docs], "text": [t for _, t in docs]}),
                       d / "part-0.parquet")
    publish_manifest(tmp_path / "run", {"counts": {"kept": len(news) + len(noise)}})
    target = tmp_path / "target.jsonl"
    with gzip.open(corpora_dir / "wikipedia_30.jsonl.gz", "rt", encoding="utf-8") as fh:
        target.write_text("".join(line for _, line in zip(range(5), fh)), encoding="utf-8")
    pools = load_pools(tmp_path / "run")
    sizes = {p: _bytes(d) for p, d in pools.items()}
    plan = hand_plan(sizes, 1.2e5, {"pool1": 1.0}, {"best_pool_only": {"pool0": 1.0}})
    texts = [json.loads(line)["text"] for line in target.read_text().splitlines()]
    rep = replay_plan(plan, pools, ReplaySettings(scale=4, seeds=(0, 1), config=TINY), texts)
    plan_row, base = rep["candidates"]
    assert rep["target"]["source"] == "user target file"
    assert rep["verdict"] == "loses" and rep["plan_at_most_best_plus_sd"] is False
    assert plan_row["mean"] > base["mean"] + 0.2  # random characters teach nothing about prose


def test_capped_plan_when_the_plan_went_beyond_the_measured_epochs():
    sizes = {"a": 1000.0, "b": 4000.0, "c": 5000.0}
    plan = hand_plan(sizes, 10_000.0, {"a": 0.6, "b": 0.4}, {"best_pool_only": {"b": 1.0}},
                     measured_max_epochs=2.0, cap_source="--max-epochs")
    cands, got_sizes, notes = plan_candidates(plan, ["a", "b", "c"])
    assert got_sizes == sizes
    capped = cands[-1]
    assert capped.key == "plan_capped" and capped.predicted is None
    assert capped.epochs["a"] == pytest.approx(2.0)  # 6 planned epochs clipped at 2
    assert all(e <= 2.0 + 1e-9 for e in capped.epochs.values())
    assert sum(capped.weights.values()) == pytest.approx(1.0)
    assert set(capped.weights) == {"a", "b"}  # the excess goes to the plan's other pools
    # within the cap: no capped candidate
    plan_ok = hand_plan(sizes, 10_000.0, {"b": 0.5, "c": 0.5}, {}, measured_max_epochs=2.0)
    assert [c.key for c in plan_candidates(plan_ok, ["a", "b", "c"])[0]] == ["plan"]


def test_plan_errors():
    sizes = {"pool0": 100.0, "pool7": 100.0}
    plan = hand_plan(sizes, 100.0, {"pool0": 1.0}, {})
    with pytest.raises(ProbeError, match="pool7 are not pools of the run"):
        plan_candidates(plan, ["pool0", "pool1"])
    with pytest.raises(ProbeError, match="counts samples"):
        plan_candidates(dict(plan, unit="samples"), ["pool0", "pool7"])
    with pytest.raises(ProbeError, match="no single-budget plan"):
        plan_candidates(dict(plan, plan=None), ["pool0", "pool7"])
    assert parse_scale("1/32") == 32 and parse_scale("32") == 32 and parse_scale("0.25") == 4
    for bad in ("0", "1/0", "x", "-2"):
        with pytest.raises(ProbeError):
            parse_scale(bad)


def test_cli_one_line_errors(run_dir, tmp_path, capsys):
    plan = hand_plan({"pool0": 100.0, "pool9": 100.0}, 100.0, {"pool9": 1.0}, {})
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    assert main(["validate", str(path), "--run", str(run_dir), "--scale", "1/4", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pool9" in err and err.startswith("curate validate: error:")
    assert main(["validate", str(tmp_path / "missing.json"), "--run", str(run_dir), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
    assert main(["validate", str(path), "--run", str(run_dir), "--seeds", "1"]) == 2
    assert "--seeds must be >= 2" in capsys.readouterr().err


def test_validate_help_loads_no_torch():
    code = ("import sys\nfrom curate.orchestration.cli import main\n"
            "try:\n    main(['validate', '--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'numpy', 'pyarrow') if m in sys.modules]\n"
            "print('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], check=True).stdout
    assert "not the full-scale loss" in out and "--scale" in out
    assert "HEAVY []" in out


def test_difference_error_is_the_worst_miss_of_a_predicted_difference():
    from curate.probe.replay import _difference_error

    plan = {"mean": 2.40, "predicted": 1.45, "predicted_at_scale": 2.55}
    bases = [{"mean": 2.55, "predicted": 1.55, "predicted_at_scale": 2.66},  # miss |-.15 - -.11| = .04
             {"mean": 3.60, "predicted": 1.41, "predicted_at_scale": None},  # full scale: |-1.2 - .04|
             {"mean": 2.50, "predicted": None, "predicted_at_scale": None}]  # no prediction: skipped
    assert _difference_error(plan, bases) == pytest.approx(1.24)
    assert _difference_error(plan, bases[:1]) == pytest.approx(0.04)
    assert _difference_error(plan, bases[2:]) is None

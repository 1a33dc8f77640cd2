"""Training the probe's runs: observation rows follow the design, determinism across workers and
seeds, and the cool-down branch."""
from __future__ import annotations

import numpy as np
import pytest

from curate.probe.proxy_lm import ProxyConfig
from curate.probe.run_pools import load_pools
from curate.probe.data import prepare_data
from curate.probe.design import identifying_options
from curate.probe.training import effective_design, run_probe

from tests.probe.probe_run import TINY, tiny_design as _design, write_probe_run


@pytest.fixture(scope="module")
def run_dir(corpora_dir, tmp_path_factory):
    return write_probe_run(corpora_dir, tmp_path_factory.mktemp("probe_run"))


def test_probe_rows_follow_the_design(run_dir):
    pools = load_pools(run_dir)
    rows, _ = run_probe(pools, _design(seed=0), quiet=True)
    by_run: dict[str, list[dict]] = {}
    for r in rows:
        by_run.setdefault(r["run_id"], []).append(r)
    assert len(by_run) == 6  # 3 pools, 2 mixtures, 1 larger-budget run
    single = by_run["s0-pool1"]
    assert [r["epochs"] for r in single] == [0.5, 1.0, 2.0, 4.0]
    # distinct tokens seen: n during the first epoch, then the subset size U
    assert [r["unique_samples"] for r in single] == [1024, 2048, 2048, 2048]
    assert all(r["role"] == "fit" for r in single)
    assert all(np.isfinite(r["metric"]) and 0 < r["metric"] < 7 for r in rows)
    mix = by_run["s0-mix1"]
    assert mix[0]["pool"] == "pool0=0.333333;pool1=0.333333;pool2=0.333333"
    assert mix[0]["role"] == "holdout-mixture"
    # each pool of a mixture brings its own U-token subset; points at multiples of U
    assert [r["samples_seen"] for r in mix] == [1024, 2048, 4096, 8192]
    assert mix[0]["unique_samples"] == 1024 and mix[-1]["unique_samples"] == 3 * 2048
    large = by_run["s0-large-pool0"]
    assert large[-1]["unique_samples"] == 4096 and large[-1]["samples_seen"] == 4 * 4096
    assert large[-1]["role"] == "holdout-large"
    # training lowers the target loss from the first to the last point of every run
    assert all(rs[-1]["metric"] < rs[0]["metric"] for rs in by_run.values())


def test_same_seed_gives_identical_observations(run_dir):
    # Beam's RunInference support patches multiprocessing's AutoProxy on import; the parallel
    # probe must still work in a process where that happened (it broke a Manager queue once).
    import apache_beam.utils.multi_process_shared  # noqa: F401

    pools = load_pools(run_dir)
    design = _design(mixtures=[{"pool0": 0.5, "pool2": 0.5}], large_pool=None, multiples=(1.0, 2.0))
    first, _ = run_probe(pools, design, quiet=True, workers=1)
    again, _ = run_probe(pools, design, quiet=True, workers=1)
    parallel, _ = run_probe(pools, design, quiet=True, workers=2)  # one process per run
    other, _ = run_probe(pools, _design(seed=1, mixtures=[], large_pool=None, multiples=(1.0, 2.0)),
                         quiet=True)
    assert first == again == parallel
    assert [r["metric"] for r in first[:6]] != [r["metric"] for r in other[:6]]


def test_cooldown_branch_changes_measurements_not_the_run(run_dir):
    pools = {"pool0": load_pools(run_dir)["pool0"]}
    plain = _design(mixtures=[], large_pool=None, multiples=(1.0, 2.0))
    cooled = _design(config=ProxyConfig(**{**TINY.to_dict(), "cooldown_steps": 3}),
                     mixtures=[], large_pool=None, multiples=(1.0, 2.0))
    a, _ = run_probe(pools, plain, quiet=True)
    b, _ = run_probe(pools, cooled, quiet=True)
    assert [r["samples_seen"] for r in a] == [r["samples_seen"] for r in b]
    assert all(x["metric"] != y["metric"] for x, y in zip(a, b))
    assert all(np.isfinite(y["metric"]) for y in b)


def test_identifying_design_rows(run_dir):
    pools = load_pools(run_dir)
    names = list(pools)
    design = _design(**identifying_options(names, seeds=2), mixtures=[], large_pool=None)
    rows, data = run_probe(pools, design, quiet=True)
    by_run: dict[str, list[dict]] = {}
    for r in rows:
        by_run.setdefault(r["run_id"], []).append(r)
    assert len(by_run) == 2 * 3 * 3 and all(r["role"] == "fit" for r in rows)
    small = by_run["s1-pool1-small"]
    assert {r["unique_samples"] for r in small[1:]} == {512} and small[-1]["epochs"] == 32
    fresh = by_run["s0-pool2-fresh"]
    assert all(r["unique_samples"] == r["samples_seen"] for r in fresh)  # never repeats
    assert fresh[-1]["samples_seen"] == design.fresh_tokens == 32 * 512
    # the fresh run reads the U run's data first, then more of the pool
    assert np.array_equal(data.fresh_subsets["pool0"][:64], data.subsets["pool0"])
    # seeds: other initialisation and order, so other losses at the same points
    a, b = by_run["s0-pool0"], by_run["s1-pool0"]
    assert [r["samples_seen"] for r in a] == [r["samples_seen"] for r in b]
    assert all(x["metric"] != y["metric"] for x, y in zip(a, b))
    # the replicate of seed 0 is the run a one-seed design trains: identical rows
    one, _ = run_probe(pools, _design(mixtures=[], large_pool=None), quiet=True)
    assert [r for r in one if r["run_id"] == "s0-pool0"] == a


def test_pool_too_small_for_its_fresh_run_keeps_its_other_runs(run_dir):
    pools = load_pools(run_dir)
    # a fresh run of 2M tokens: more than any test pool holds
    design = _design(seeds=1, small_factor=4, small_multiples=(1.0, 4000.0),
                     fresh_pools=list(pools), mixtures=[], large_pool=None)
    data = prepare_data(pools, design)
    assert set(data.fresh_short) == set(pools) and not data.fresh_subsets
    eff = effective_design(design, data)
    assert eff.fresh_pools == [] and len(eff.runs(list(pools))) == 6

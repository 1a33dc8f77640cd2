"""Probe design: sizing the proxy and U to a time budget."""
from __future__ import annotations

import pytest

from curate.probe.design import (ProbeDesign, design_for_budget, identifying_options,
                                 proxy_by_name)
from curate.probe.errors import ProbeError

from tests.probe.probe_run import tiny_design


def test_budget_scales_the_design():
    names = ["pool0", "pool1", "pool2", "pool3"]

    timed = []

    def rate(cfg):  # a fixed machine: 2e9 training FLOP/s
        timed.append(cfg)
        return 2e9 / cfg.train_flops_per_step() * cfg.tokens_per_step

    small = design_for_budget(names, 60, rate)
    assert len(timed) <= 2  # models far too large for the budget are never timed
    large = design_for_budget(names, 3600, rate)
    assert large.config.n_params() >= small.config.n_params()
    assert large.unique_tokens > small.unique_tokens
    for design, seconds in ((small, 60), (large, 3600)):
        est = design.total_train_tokens(names) / rate(design.config) * 1.15
        assert est <= seconds * 1.05
        assert design.steps_at(design.unique_tokens)[0] >= 1
    assert design_for_budget(names, 3600, rate, max_pool_tokens=100_000).unique_tokens <= 50_000
    cooled = design_for_budget(names, 3600, rate, cooldown_steps=20)
    assert cooled.config.cooldown_steps == 20
    # cool-down branches cost steps: the same budget buys a smaller U or a smaller model
    assert (cooled.config.n_params() < large.config.n_params()
            or cooled.unique_tokens < large.unique_tokens)


def test_unknown_names_are_probe_errors():
    with pytest.raises(ProbeError, match="unknown proxy size"):
        proxy_by_name("huge")
    with pytest.raises(ProbeError, match="unknown pool"):
        tiny_design(mixtures=[{"pool0": 0.5, "pool9": 0.5}]).runs(["pool0", "pool1", "pool2"])


def test_identifying_design_runs_seeds_subsets_and_fresh_controls():
    names = ["pool0", "pool1", "pool2"]
    d = tiny_design(**identifying_options(names, seeds=3))
    runs = d.runs(names)
    fit = [r for r in runs if r.role == "fit"]
    assert len(fit) == 3 * 3 * 3  # seeds x pools x (U, U/4, fresh)
    assert len({r.run_id for r in runs}) == len(runs)  # every seed a distinct run id
    assert {r.seed for r in fit} == {0, 1, 2}
    by_kind = {k: [r for r in fit if r.subset == k] for k in ("main", "small", "fresh")}
    assert {r.unique_total for r in by_kind["main"]} == {2048}
    assert {r.unique_total for r in by_kind["small"]} == {512}
    # the small subset is repeated up to 32 epochs; the fresh run has as many unique tokens as
    # the longest fit run has tokens (never repeats) and is evaluated up to them
    tps = d.config.tokens_per_step
    small_last = d.eval_steps(by_kind["small"][0])[-1] * tps
    assert small_last == 32 * 512
    fresh = by_kind["fresh"][0]
    longest = max(d.eval_steps(r)[-1] * tps for r in fit)
    assert fresh.unique_total >= longest == d.eval_steps(fresh)[-1] * tps
    # fresh points include the U run's points (same tokens: repeated vs fresh data)
    main_steps = set(d.eval_steps(by_kind["main"][0]))
    assert main_steps <= set(d.eval_steps(fresh))
    # held-out runs: first seed only
    assert [r.run_id for r in runs if r.role != "fit"] == ["s0-mix0", "s0-mix1", "s0-large-pool0"]
    s = d.summary(names)
    assert s["fit_runs"] == 27 and s["seeds"] == [0, 1, 2]
    assert s["subset_tokens"] == {"main": 2048, "small": 512, "fresh": fresh.unique_total}
    assert s["by_kind"]["small"]["max_epochs"] == 32
    assert s["train_tokens"] == d.total_train_tokens(names)
    assert "27 fit runs over seeds 0, 1, 2" in d.describe(names)
    # metadata round trip (lists back to tuples)
    again = ProbeDesign(**{**d.to_dict(), "config": d.config})
    assert again == d


def test_legacy_design_is_unchanged_by_the_new_options():
    names = ["pool0", "pool1", "pool2"]
    d = tiny_design()
    assert [r.run_id for r in d.runs(names)] == ["s0-pool0", "s0-pool1", "s0-pool2", "s0-mix0",
                                                 "s0-mix1", "s0-large-pool0"]
    assert all(r.seed == 0 and r.subset in ("main", "large") for r in d.runs(names))


def test_more_runs_shrink_u_within_the_same_budget():
    names = ["pool0", "pool1", "pool2", "pool3"]

    def rate(cfg):
        return 2e9 / cfg.train_flops_per_step() * cfg.tokens_per_step

    basic = design_for_budget(names, 600, rate)
    ident = design_for_budget(names, 600, rate, options=identifying_options(names))
    assert ident.seeds == 3 and ident.small_factor == 4 and ident.fresh_pools == names
    assert ident.unique_tokens < basic.unique_tokens
    est = ident.total_train_tokens(names) / rate(ident.config) * 1.15
    assert est <= 600 * 1.05


def test_bad_design_options_are_probe_errors():
    with pytest.raises(ProbeError, match="seeds must be"):
        tiny_design(seeds=0)
    with pytest.raises(ProbeError, match="small_factor"):
        tiny_design(small_factor=1)
    with pytest.raises(ProbeError, match="fresh-data run for unknown"):
        tiny_design(fresh_pools=["pool9"]).runs(["pool0"])

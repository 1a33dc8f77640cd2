"""Probe design: sizing the proxy and U to a time budget."""
from __future__ import annotations

import pytest

from curate.probe.design import design_for_budget, proxy_by_name
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

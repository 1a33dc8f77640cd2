"""A replay that trained the plan and measured it losing decides the recommendation."""
from __future__ import annotations

from curate.laws.planning import plan_claim

BASELINES = {
    "best_top_m": {"name": "best top-m (top1)", "loss": 2.10, "feasible": True, "weights": {"a": 1.0}},
    "all_once": {"name": "all pools", "loss": 2.20, "feasible": True, "weights": {"a": .3, "b": .3, "c": .4}},
}
PLAN = {"predicted": 2.0, "budget": 1e9, "mixture": "a+b", "baselines": BASELINES,
        "pools": [{"pool": "a", "weight": 0.6}, {"pool": "b", "weight": 0.4}]}


def _replay(plan_mean, all_mean, sd=0.01, verdict="loses", budget=1e9, mixture="a+b"):
    rows = [{"key": "plan", "mean": plan_mean, "sd": sd, "feasible": True},
            {"key": "best_top_m", "mean": plan_mean + 1.0, "sd": sd, "feasible": True},
            {"key": "all_once", "mean": all_mean, "sd": sd, "feasible": True}]
    return {"plan": {"budget": budget, "mixture": mixture}, "verdict": verdict, "scale_k": 100.0,
            "difference_error": 0.01, "candidates": rows}


def test_a_measured_loss_recommends_the_measured_best_baseline_and_says_what_was_measured():
    claim = plan_claim(PLAN, {}, _replay(2.5, 2.3))
    assert claim["recommended"] == "all_once" and claim["validated"]
    assert abs(claim["measured_difference"] - 0.2) < 1e-12
    assert "measured 2.5000" in claim["why"] and "all pools 2.3000" in claim["why"]
    assert "1/100 scale" in claim["why"]


def test_the_law_decides_when_the_replay_is_of_another_plan_or_within_noise():
    fit = {}
    other_budget = plan_claim(PLAN, fit, _replay(2.5, 2.3, budget=1e8))
    other_mix = plan_claim(PLAN, fit, _replay(2.5, 2.3, mixture="a"))
    noise = plan_claim(PLAN, fit, _replay(2.305, 2.3, verdict="within noise"))
    within_sd = plan_claim(PLAN, fit, _replay(2.305, 2.3, sd=0.01))  # "loses" but within one s.d.
    for claim in (other_budget, other_mix, noise, within_sd):
        assert "measured_difference" not in claim
        assert claim["recommended"] == "plan"  # gain 0.1 > difference_error 0.01

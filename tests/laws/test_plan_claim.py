"""A plan claims a win only beyond the error of what predicted it; otherwise the simpler baseline."""
from __future__ import annotations

from curate.laws.planning import plan_claim

BASELINES = {
    "best_top_m": {"name": "best top-m (top2)", "loss": 2.10, "feasible": True, "weights": {"a": .5, "b": .5}},
    "all_once": {"name": "all pools", "loss": 2.20, "feasible": True, "weights": {"a": .3, "b": .3, "c": .4}},
    "best_pool_only": {"name": "best single pool (a)", "loss": 2.105, "feasible": True, "weights": {"a": 1.0}},
}


def _plan(predicted):
    return {"predicted": predicted, "baselines": BASELINES}


def test_a_gain_beyond_the_held_out_error_recommends_the_plan():
    claim = plan_claim(_plan(2.0), {"holdout_largest_error": 0.01})
    assert claim["recommended"] == "plan" and claim["predicted_gain"] == 2.10 - 2.0
    assert claim["error_bar"] == 0.01 * 2.0 and not claim["validated"]


def test_a_gain_within_the_error_recommends_the_simplest_close_baseline():
    claim = plan_claim(_plan(2.09), {"holdout_largest_error": 0.03})  # bar 0.0627
    assert claim["recommended"] == "best_pool_only"  # one pool, within the bar of the plan
    assert "cannot tell the plan from best single pool (a)" in claim["why"]


def test_the_replay_error_of_differences_wins_over_the_law_and_no_error_is_unvalidated():
    fit = {"holdout_largest_error": 0.5}
    assert plan_claim(_plan(2.0), fit, {"difference_error": 0.02})["recommended"] == "plan"
    assert plan_claim(_plan(2.0), fit, {"difference_error": 0.02})["validated"]
    unvalidated = plan_claim(_plan(2.0), {})
    assert unvalidated["recommended"] == "plan" and unvalidated["validated"] is False
    assert "unvalidated" in unvalidated["why"]


def test_infeasible_baselines_are_not_compared():
    plan = {"predicted": 2.0, "baselines": {k: {**b, "feasible": False} for k, b in BASELINES.items()}}
    assert plan_claim(plan, {"holdout_largest_error": 0.5})["recommended"] == "plan"


def test_a_conservative_parameter_is_held_in_the_draws_so_the_prediction_sits_in_its_band():
    from curate.laws.planning import _draws_as_planned

    draws = [{"d": 0.0, "b": -0.1}, {"d": 0.3, "b": -0.2}]
    held = _draws_as_planned(draws, {"d": {"from": 0.0, "to": 0.25, "quantile": 0.9}})
    assert held == [{"d": 0.25, "b": -0.1}, {"d": 0.25, "b": -0.2}] and draws[0]["d"] == 0.0
    assert _draws_as_planned(draws, None) is draws


def test_a_plan_that_is_a_baseline_claims_nothing_over_it():
    plan = {"predicted": 2.105, "baselines": BASELINES, "pools": [{"pool": "a", "weight": 1.0}]}
    claim = plan_claim(plan, {"holdout_largest_error": 0.01})
    assert claim["recommended"] == "plan" and "baseline itself (best single pool (a))" in claim["why"]

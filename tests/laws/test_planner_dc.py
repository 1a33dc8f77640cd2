"""Planner with the data-constrained LM law: compute-optimal allocation, pooled repetition rule."""
from __future__ import annotations

import numpy as np
import pytest

from curate.laws.data_constrained import PUBLISHED, ChinchillaLaw, DataConstrainedLaw
from curate.laws.planner import Constraints, Infeasible, bootstrap_robustness, plan_mixture
from curate.laws.planner_objectives import DataConstrainedObjective


@pytest.fixture(scope="module")
def law():
    return DataConstrainedLaw(**PUBLISHED)


def test_published_compute_optimal_allocation(law):
    """1e22 FLOPs, 25e9 unique tokens -> ~237.34 B tokens (9.49 epochs), ~7.02 B params."""
    obj = DataConstrainedObjective(law, ["web"], [25e9], unit="flops")
    plan = plan_mixture(obj, 1e22)
    assert plan.draws == pytest.approx(237.34e9, rel=0.01)
    assert plan.epochs[0] == pytest.approx(9.49, rel=0.01)
    assert plan.params == pytest.approx(7.02e9, rel=0.01)
    assert 6 * plan.params * plan.draws == pytest.approx(1e22, rel=1e-9)
    # The reported loss is the published law's own prediction at that allocation ...
    assert plan.loss == pytest.approx(float(law.predict(plan.params, plan.draws, 25e9)), rel=1e-12)
    # ... and no other model size on a fine grid does better.
    Ns = np.geomspace(plan.params / 3, plan.params * 3, 2001)
    grid = law.predict(Ns, 1e22 / (6 * Ns), 25e9)
    assert plan.loss <= grid.min() + 1e-12


def test_one_pool_reduces_to_published_law(law):
    obj = DataConstrainedObjective(law, ["web"], [25e9], unit="tokens", params=6.34e9)
    assert obj.loss_batch([[1.0]], 242e9)[0] == pytest.approx(2.2256440889984477, rel=1e-12)
    obj = DataConstrainedObjective(law, ["web"], [25e9], unit="flops", params=8.67e9)
    assert obj.loss_batch([[1.0]], 6 * 8.67e9 * 178e9)[0] == pytest.approx(2.2269634075087867,
                                                                          rel=1e-12)


def test_equal_quality_pools_are_repeated_equally(law):
    """Per-pool decay is concave and scale-free: the optimum gives every pool the same epochs."""
    U = np.array([5e9, 15e9, 30e9])
    obj = DataConstrainedObjective(law, ["a", "b", "c"], U, unit="flops")
    plan = plan_mixture(obj, 1e22)
    np.testing.assert_allclose(plan.weights, U / U.sum(), atol=2e-4)
    assert plan.epochs.max() - plan.epochs.min() < 0.01
    # Lumping the pools into one source is then the same prediction.
    one = DataConstrainedObjective(law, ["all"], [U.sum()], unit="flops")
    assert plan.loss == pytest.approx(one.loss_batch([[1.0]], 1e22)[0], rel=1e-9)
    # A pool-only plan repeats more and predicts a higher loss.
    assert plan.baselines["best_pool_only"].loss > plan.loss + 1e-3


def test_quality_multipliers_shift_the_mixture(law):
    U = [20e9, 20e9]
    obj = DataConstrainedObjective(law, ["good", "plain"], U, unit="tokens", params=2e9,
                                   quality=[1.3, 1.0])
    plan = plan_mixture(obj, 100e9)
    assert plan.weights[0] > 0.5
    assert plan.loss < plan.baselines["all_once"].loss


def test_max_epochs_with_free_model_size(law):
    obj = DataConstrainedObjective(law, ["web"], [25e9], unit="flops")
    plan = plan_mixture(obj, 1e22, Constraints(max_epochs=4))
    assert plan.epochs[0] == pytest.approx(4.0, rel=1e-6)  # binds: the free optimum is 9.5
    assert plan.params == pytest.approx(1e22 / (6 * 4 * 25e9), rel=1e-6)
    free = plan_mixture(obj, 1e22)
    assert plan.loss > free.loss


def test_token_budget_needs_params(law):
    with pytest.raises(ValueError, match="--params"):
        DataConstrainedObjective(law, ["web"], [25e9], unit="tokens")
    obj = DataConstrainedObjective(law, ["web"], [25e9], unit="tokens", params=1e9)
    with pytest.raises(Infeasible, match="caps"):
        plan_mixture(obj, 1e12, Constraints(max_epochs=2))


def test_chinchilla_law_ignores_repetition():
    law = ChinchillaLaw(**{k: PUBLISHED[k] for k in ("E", "A", "B", "alpha", "beta")})
    obj = DataConstrainedObjective(law, ["web"], [1e9], unit="flops")
    plan = plan_mixture(obj, 1e22)
    assert plan.params == pytest.approx(float(law.n_opt(1e22)), rel=1e-3)


def test_bootstrap_over_data_constrained_draws(law):
    obj = DataConstrainedObjective(law, ["a", "b"], [10e9, 30e9], unit="flops")
    plan = plan_mixture(obj, 1e21)
    rng = np.random.default_rng(1)
    draws = [{"R_D_star": PUBLISHED["R_D_star"] * np.exp(rng.normal(0, 0.2))} for _ in range(6)]
    rob = bootstrap_robustness(obj, plan, draws)
    assert rob.draws == 6 and rob.interval[0] <= rob.interval[1]
    assert rob.same_choice == 1.0  # both pools are always used


# -- quality multipliers and model size through make_plan ----------------------------------------

def _dc(pool_sizes, fit=None, **attrs):
    law = DataConstrainedLaw(**PUBLISHED)
    law.pool_sizes = dict(pool_sizes)
    law.fit_info = fit
    for k, v in attrs.items():
        setattr(law, k, v)
    return law


def _weights(res):
    return {r["pool"]: r["weight"] for r in res["plan"]["pools"]}


def test_make_plan_without_quality_is_size_proportional():
    from curate.laws.planning import make_plan

    res = make_plan(_dc({"web": 2e10, "books": 5e9}), 1e21)
    assert res["quality"] is None
    w = _weights(res)
    assert w["books"] == pytest.approx(0.2, abs=2e-4)


def test_quality_flag_moves_the_mixture_and_is_reported():
    from curate.laws.planning import make_plan

    law = _dc({"web": 2e10, "books": 5e9})
    res = make_plan(law, 1e21, quality={"books": 1.4})
    assert res["quality"] == {"web": 1.0, "books": 1.4}
    assert _weights(res)["books"] > 0.2 + 0.02
    assert any("no quality multiplier for pool(s) web" in w for w in res["warnings"])
    # A worse pool gets less than its size share.
    res = make_plan(law, 1e21, quality={"books": 0.7, "web": 1.0})
    assert _weights(res)["books"] < 0.2 - 0.02
    assert not any("no quality multiplier" in w for w in res["warnings"])


def test_quality_from_the_law_and_the_flag_wins():
    from curate.laws.planning import make_plan

    law = _dc({"web": 2e10, "books": 5e9}, quality={"web": 1.0, "books": 1.4})
    res = make_plan(law, 1e21)
    assert res["quality"] == {"web": 1.0, "books": 1.4}
    res = make_plan(_dc({"web": 2e10, "books": 5e9}), 1e21,
                    law_quality={"web": 1.0, "books": 1.4})  # as read from the law file
    assert res["quality"] == {"web": 1.0, "books": 1.4}
    res = make_plan(law, 1e21, quality={"books": 1.0, "web": 1.0})
    assert _weights(res)["books"] == pytest.approx(0.2, abs=2e-4)


@pytest.mark.parametrize("kwargs,message", [
    ({"quality": {"nope": 1.2}}, "unknown pool 'nope'"),
    ({"quality": {"books": 0.0}}, "must be positive"),
    ({"quality": {"books": -1.0}}, "must be positive"),
    ({"law_quality": {"books": "x"}}, "must be a number"),
])
def test_bad_quality_is_a_one_line_error(kwargs, message):
    from curate.laws.planning import make_plan

    with pytest.raises(ValueError, match=message):
        make_plan(_dc({"web": 2e10, "books": 5e9}), 1e21, **kwargs)


def test_quality_with_a_qqt_law_is_refused():
    from curate.laws.planning import make_plan
    from curate.laws.qqt import QQTLaw

    law = QQTLaw(0.03, 0.1, ["p", "q"], b=[-0.1, -0.12], tau=[3, 4], sizes=[1e7, 1e7])
    with pytest.raises(ValueError, match="--quality applies to data-constrained"):
        make_plan(law, 1e8, quality={"p": 1.2})


def test_single_model_size_fit_warns_for_another_size():
    """A law fitted on probe observations (one model size) has no measured model-size term."""
    from curate.laws.planning import make_plan

    fit = {"params_range": [1.2e5, 1.2e5], "samples_range": [1e6, 1e8]}
    law = _dc({"web": 2e7}, fit)
    res = make_plan(law, 6 * 1.2e5 * 1e8)  # FLOPs: the planner would choose N itself
    warn = [w for w in res["warnings"] if "single model size" in w]
    assert len(warn) == 1 and "1.2e+05" in warn[0] and "chose it" in warn[0]
    assert not any("model size" in w and "extrapolation" in w and "single" not in w
                   for w in res["warnings"])  # one warning, not two
    res = make_plan(law, 6 * 1.2e5 * 1e8, params=1.2e5)  # at the probe's size: fine
    assert not any("single model size" in w for w in res["warnings"])
    res = make_plan(law, 1e8, unit="tokens", params=1.2e5)
    assert not any("single model size" in w for w in res["warnings"])
    res = make_plan(law, 1e8, unit="tokens", params=1e9)
    assert any("single model size" in w for w in res["warnings"])
    # A law fitted over model sizes has a measured model-size term: no such warning.
    law = _dc({"web": 2e7}, {"params_range": [1e7, 1e9]})
    res = make_plan(law, 6 * 1e8 * 1e9)
    assert not any("single model size" in w for w in res["warnings"])

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

"""Planner with the QQT law: the published top-m table, global optimality, constraints."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from curate.laws.planner import (Constraints, Infeasible, bootstrap_robustness, parse_sweep,
                          plan_mixture, plan_sweep, range_warning, top_m_weights)
from curate.laws.planner_objectives import QQTObjective, qqt_error_batch
from curate.laws.planner_search import project, simplex_grid
from curate.laws.qqt import QQTLaw, mixture_error
from tests.laws import qqt_reference as reference
from tests.laws.released import tmars_top4

POOL = 12.8e6


@pytest.fixture(scope="module")
def tmars(reference_dir) -> QQTLaw:
    """tmars_imagenet1k_utility restricted to the first four (disjoint, ordered) pools."""
    return tmars_top4(reference_dir)


def toy_law(n_pools: int, seed: int, variant: str = "utility") -> QQTLaw:
    """Unequal pools: better pools are smaller, half-lives vary."""
    rng = np.random.default_rng(seed)
    b = -np.sort(rng.uniform(0.07, 0.2, n_pools))[::-1]
    b = np.sort(b)  # most negative (best) first
    return QQTLaw(0.03, 0.1, [f"p{i}" for i in range(n_pools)], b=b,
                  tau=rng.uniform(1.5, 9.0, n_pools), sizes=rng.uniform(3e6, 3e7, n_pools),
                  variant=variant)


# -- the vectorised objective is the law ---------------------------------------------------------

@pytest.mark.parametrize("variant", ["utility", "data"])
def test_batch_objective_equals_mixture_error(variant):
    law = toy_law(4, seed=1, variant=variant)
    rng = np.random.default_rng(0)
    W = rng.dirichlet(np.full(4, 0.6), size=60)
    W[:8, 1] = 0.0
    W[8:12] = np.eye(4)
    for n in (2e6, 4e7, 3e8, 2e9):
        got = qqt_error_batch(n, W, law.a, law.b, law.tau, law.sizes, law.d, variant=variant)
        want = [reference.mixture_error(n, w, law.a, law.b, law.tau, law.sizes, law.d,
                                        variant=variant)
                for w in W]
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


def test_batch_objective_skips_negligible_passes_exactly():
    """A tiny pool under a huge budget: passes past 70 half-lives are dropped, value unchanged."""
    law = QQTLaw(0.03, 0.1, ["tiny", "big"], b=[-0.2, -0.1], tau=[1.5, 4.0], sizes=[2e3, 5e6])
    W = np.array([[1.0, 0.0], [0.7, 0.3], [0.05, 0.95]])
    n = 4e7  # 20,000 passes over the tiny pool
    got = qqt_error_batch(n, W, law.a, law.b, law.tau, law.sizes, law.d)
    want = [reference.mixture_error(n, w, law.a, law.b, law.tau, law.sizes, law.d) for w in W]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


# -- acceptance: the published table -------------------------------------------------------------

TABLE = {  # samples seen -> accuracy % of top10, top20, top30, top40 (reference README)
    32e6: [18.25, 15.84, 13.42, 11.68],
    64e6: [24.62, 23.30, 20.40, 17.99],
    128e6: [28.73, 29.60, 26.77, 24.13],
    640e6: [31.18, 38.55, 37.56, 35.14],
}
BEST = {32e6: 1, 64e6: 1, 128e6: 2, 640e6: 2}


def test_top_m_reproduces_published_table(tmars):
    obj = QQTObjective(tmars)
    for n, accs in TABLE.items():
        plan = plan_mixture(obj, n, top_m_only=True)
        got = [round(100 * (1 - c.loss), 2) for c in plan.top_m]
        assert got == pytest.approx(accs, abs=1e-9), n
        assert plan.m == BEST[n] and plan.label() == f"top{BEST[n]}"
        assert plan.loss == pytest.approx(min(c.loss for c in plan.top_m))


def test_top_m_switch_points_on_fine_sweep(tmars):
    sweep = plan_sweep(QQTObjective(tmars), np.geomspace(1e7, 1e10, 121), top_m_only=True)
    switches = [(s.before, s.after, s.budget) for s in sweep.switches]
    assert [s[:2] for s in switches] == [("top1", "top2"), ("top2", "top3")]
    assert switches[0][2] == pytest.approx(101e6, rel=0.01)
    assert switches[1][2] == pytest.approx(1.10e9, rel=0.01)


def test_unrestricted_never_worse_than_best_top_m(tmars):
    obj = QQTObjective(tmars)
    gains = []
    # 1e10: with the split-invariant mixture rule free weights gain most once the fourth pool
    # enters (between 3e9 and 1e10; the m_eff rule, which rewarded spreading, got there by 2e9)
    for n in (1.5e7, 3.2e7, 6.4e7, 1.28e8, 3e8, 6.4e8, 2e9, 1e10):
        plan = plan_mixture(obj, n)
        best_top = plan.baselines["best_top_m"].loss
        assert plan.loss <= best_top + 1e-12
        assert plan.loss <= plan.baselines["all_once"].loss + 1e-12
        assert plan.loss <= plan.baselines["best_pool_only"].loss + 1e-12
        gains.append(best_top - plan.loss)
    assert max(gains) > 5e-3  # free weights do help at large budgets (~1 accuracy point)


# -- global optimality against brute force -------------------------------------------------------

def brute_force(f, n_pools: int, steps: int, zoom_levels: int = 4, keep: int = 6,
                lower=None, upper=None):
    """Exhaustive simplex grid, then exhaustive local grids around the best cells (coarse->fine).

    Points outside [lower, upper] (when given) score +inf.
    """
    lower = np.zeros(n_pools) if lower is None else np.asarray(lower)
    upper = np.ones(n_pools) if upper is None else np.asarray(upper)
    inner = f

    def f(W):
        ok = np.all((W >= lower - 1e-12) & (W <= upper + 1e-12), axis=1)
        out = np.full(len(W), np.inf)
        if ok.any():
            out[ok] = inner(W[ok])
        return out

    G = simplex_grid(n_pools, steps)
    vals = f(G)
    best_pts = G[np.argsort(vals)[:keep]]
    best = float(vals.min())
    h = 1.0 / steps
    offsets_1d = np.linspace(-1.0, 1.0, 11)
    for _ in range(zoom_levels):
        new_pts = []
        for c in best_pts:
            offs = np.array(list(itertools.product(offsets_1d, repeat=n_pools - 1))) * h
            pts = np.hstack([c[None, :-1] + offs, np.zeros((len(offs), 1))])
            pts[:, -1] = 1.0 - pts[:, :-1].sum(axis=1)
            pts = pts[np.all(pts >= -1e-15, axis=1)]
            pts = np.clip(pts, 0.0, 1.0)
            v = f(pts)
            new_pts.append(pts[np.argsort(v)[:2]])
            best = min(best, float(v.min()))
        allp = np.vstack(new_pts)
        vals = f(allp)
        best_pts = allp[np.argsort(vals)[:keep]]
        h /= 5.0
    return best


@pytest.mark.parametrize("n_pools,steps,budgets,law_seed", [
    (2, 4000, (3e7, 1.28e8, 6e8), None),
    (3, 120, (6.4e7, 3e8, 1.1e9), None),
    (4, 40, (1.28e8, 6.4e8), None),
    (3, 120, (5e7, 4e8), 7),
    (4, 40, (2e8,), 3),
])
def test_matches_brute_force_grid(tmars, n_pools, steps, budgets, law_seed):
    if law_seed is None:
        law = QQTLaw(tmars.a, tmars.d, tmars.pools[:n_pools], b=tmars.b[:n_pools],
                     tau=tmars.tau[:n_pools], sizes=tmars.sizes[:n_pools])
    else:
        law = toy_law(n_pools, seed=law_seed)
    obj = QQTObjective(law)
    for n in budgets:
        plan = plan_mixture(obj, n)
        brute = brute_force(lambda W: obj.loss_batch(W, n), n_pools, steps)
        assert plan.loss <= brute + 1e-9, (n, plan.loss, brute)
        assert plan.loss == pytest.approx(brute, abs=1e-6), (n, plan.loss, brute)
        # The reported loss is the law's own prediction for the reported weights.
        assert plan.loss == pytest.approx(
            mixture_error(n, plan.weights, law.a, law.b, law.tau, law.sizes, law.d), rel=1e-12)


@pytest.mark.parametrize("variant", ["utility", "data"])
def test_constrained_optimum_matches_brute_force(tmars, variant):
    law = QQTLaw(tmars.a, tmars.d, tmars.pools[:3], b=tmars.b[:3], tau=tmars.tau[:3],
                 sizes=[POOL, 0.5 * POOL, 2 * POOL], variant=variant)
    obj = QQTObjective(law)
    n = 4e8
    c = Constraints(max_share={"pool0": 0.45}, min_share={"pool2": 0.1}, max_epochs=25)
    lower, upper = c.bounds(obj, n)
    plan = plan_mixture(obj, n, c)
    brute = brute_force(lambda W: obj.loss_batch(W, n), 3, 120, lower=lower, upper=upper)
    assert plan.loss <= brute + 1e-9
    assert plan.loss == pytest.approx(brute, abs=1e-6)
    assert np.all(plan.weights >= lower - 1e-12) and np.all(plan.weights <= upper + 1e-12)


def test_data_variant_matches_brute_force(tmars):
    law = QQTLaw(0.022, 0.1, ["x", "y", "z"], b=[-0.18, -0.145, -0.135], tau=[4.0, 4.36, 2.9],
                 sizes=[POOL, POOL, 3 * POOL], variant="data")
    obj = QQTObjective(law)
    for n in (1e8, 6e8):
        plan = plan_mixture(obj, n)
        brute = brute_force(lambda W: obj.loss_batch(W, n), 3, 120)
        assert plan.loss <= brute + 1e-9
        assert plan.loss == pytest.approx(brute, abs=1e-6)
        assert plan.loss <= plan.baselines["best_top_m"].loss + 1e-12


# -- plan contents, constraints, infeasibility ---------------------------------------------------

def test_plan_per_pool_numbers(tmars):
    plan = plan_mixture(QQTObjective(tmars), 6.4e8)
    assert plan.weights.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(plan.samples, plan.weights * 6.4e8)
    np.testing.assert_allclose(plan.unique, np.minimum(plan.samples, POOL))
    np.testing.assert_allclose(plan.epochs, plan.samples / POOL)
    d = plan.to_dict()
    assert set(d["baselines"]) == {"best_top_m", "all_once", "best_pool_only"}
    assert d["predicted"] == plan.loss and len(d["pools"]) == 4


def test_constraints_are_respected(tmars):
    obj = QQTObjective(tmars)
    n = 6.4e8
    free = plan_mixture(obj, n)
    c = Constraints(max_share={"pool0": 0.3}, min_share={"pool3": 0.1}, max_epochs=20)
    plan = plan_mixture(obj, n, c)
    assert plan.weights[0] <= 0.3 + 1e-12 and plan.weights[3] >= 0.1 - 1e-12
    assert np.all(plan.epochs <= 20 + 1e-9)
    assert plan.loss >= free.loss - 1e-12  # constraints cannot help
    ex = plan_mixture(obj, n, Constraints(exclude=["pool1"]))
    assert ex.weights[1] == 0.0
    assert ex.baselines["best_top_m"].weights[1] == 0.0  # top-m skips excluded pools


@pytest.mark.parametrize("constraints,budget,message", [
    (Constraints(), 0.0, "budget"),
    (Constraints(), -5.0, "budget"),
    (Constraints(exclude=["pool0", "pool1", "pool2", "pool3"]), 1e8, "excluded"),
    (Constraints(min_share={"pool0": 0.7, "pool1": 0.5}), 1e8, "add up"),
    (Constraints(max_epochs=1.0), 1e8, "caps"),
    (Constraints(min_share={"pool0": 0.5}, max_share={"pool0": 0.2}), 1e8, "minimum share"),
])
def test_infeasible_requests(tmars, constraints, budget, message):
    with pytest.raises(Infeasible, match=message):
        plan_mixture(QQTObjective(tmars), budget, constraints)


def test_top_m_only_with_no_feasible_member(tmars):
    with pytest.raises(Infeasible, match="top-m"):
        plan_mixture(QQTObjective(tmars), 1e8, Constraints(max_share={"pool0": 0.2}), top_m_only=True)


def test_top_m_weights_are_size_proportional():
    fam = top_m_weights(np.array([1.0, 3.0, 2.0]), np.array([True, False, True]))
    assert [m for m, _ in fam] == [1, 2]
    np.testing.assert_allclose(fam[1][1], [1 / 3, 0.0, 2 / 3])


def test_project_respects_bounds():
    lo, up = np.array([0.1, 0.0, 0.0]), np.array([1.0, 0.2, 1.0])
    w = project(np.array([0.0, 0.9, 0.9]), lo, up)
    assert w.sum() == pytest.approx(1.0) and np.all(w >= lo - 1e-12) and np.all(w <= up + 1e-12)


# -- sweep, robustness, warnings -----------------------------------------------------------------

def test_unrestricted_sweep_adds_pools_as_budget_grows(tmars):
    # up to 1e10: under the split-invariant rule the fourth pool enters between 3e9 and 1e10
    sweep = plan_sweep(QQTObjective(tmars), np.geomspace(1e7, 1e10, 13), refine=False)
    used = [len(p.support) for p in sweep.plans]
    assert used[0] == 1 and used[-1] == 4
    assert all(a <= b for a, b in zip(used, used[1:]))
    assert len(sweep.switches) >= 2
    assert sweep.to_dict()["switches"][0]["from"] == "top1"


def test_parse_sweep():
    b = parse_sweep("1e7:1e10:4")
    np.testing.assert_allclose(b, [1e7, 1e8, 1e9, 1e10])
    for bad in ("1e7", "5:1", "1e7:1e8:1", "a:b"):
        with pytest.raises(ValueError):
            parse_sweep(bad)


def test_bootstrap_robustness(tmars):
    obj = QQTObjective(tmars)
    plan = plan_mixture(obj, 6.4e8)
    same = [tmars.params] * 5
    rob = bootstrap_robustness(obj, plan, same)
    assert rob.stays_optimal == 1.0 and rob.same_choice == 1.0
    assert rob.interval[0] == pytest.approx(plan.loss) and rob.interval[1] == pytest.approx(plan.loss)
    rng = np.random.default_rng(0)
    draws = [{**tmars.params, "a": tmars.a * np.exp(rng.normal(0, 0.1)),
              "b[pool1]": tmars.b[1] * np.exp(rng.normal(0, 0.15))} for _ in range(12)]
    rob = bootstrap_robustness(obj, plan, draws)
    assert 0.0 <= rob.stays_optimal <= 1.0 and rob.draws == 12
    assert rob.interval[0] < plan.loss < rob.interval[1]
    assert rob.regret_median >= -1e-9  # each draw's own optimum is at least as good


def test_range_warning():
    assert range_warning(1e8, [1e6, 1e8]) is None
    assert "extrapolation" in range_warning(1e9, [1e6, 1e8])
    assert "below" in range_warning(1e5, [1e6, 1e8])
    assert range_warning(1e9, None) is None


# -- conservative parameters for planning (laws.bounds.conservative_law) -------------------------

def _tau_at_bound_law():
    """pool1's half-life at the 1e4 bound in the fit and in most draws, lower tail resolved."""
    rng = np.random.default_rng(3)
    taus = np.where(rng.random(40) < 0.7, 1e4, rng.uniform(2.0, 6.0, 40))
    draws = [{"tau[pool1]": float(t)} for t in taus]
    fit = {"at_bound": {"tau[pool1]": {"bound": 1e4, "side": "upper", "value": 1e4,
                                       "value_at_bound": True, "draw_share": 0.7,
                                       "interval_reaches": True, "box": [0.01, 1e4]}}}
    law = QQTLaw(0.025, 0.1, ["pool0", "pool1"], b=[-0.16, -0.15], tau=[6.0, 1e4],
                 sizes=[POOL, POOL], fit_info=fit, bootstrap={"level": 0.9, "draws": draws})
    return law, float(np.quantile(taus, 0.1))


def test_make_plan_plans_with_a_conservative_tau():
    from curate.laws.planning import make_plan

    law, q10 = _tau_at_bound_law()
    res = make_plan(law, 6.4e8, max_draws=0)
    assert res["conservative"]["tau[pool1]"]["to"] == pytest.approx(q10)
    assert any("tau[pool1]" in w and "planning with" in w for w in res["warnings"])
    # The plan is the conservative law's optimum, which leans less on the repeated pool1.
    off = make_plan(law, 6.4e8, max_draws=0, tau_quantile=None)
    assert off["conservative"] is None
    assert not any("tau[pool1]" in w for w in off["warnings"])
    w_on = {r["pool"]: r["weight"] for r in res["plan"]["pools"]}
    w_off = {r["pool"]: r["weight"] for r in off["plan"]["pools"]}
    assert w_on["pool1"] < w_off["pool1"] - 0.05
    moved = law.with_params({"tau[pool1]": q10})
    assert res["plan"]["predicted"] == pytest.approx(
        float(plan_mixture(QQTObjective(moved), 6.4e8).loss), abs=1e-9)
    with pytest.raises(ValueError, match="--tau-quantile"):
        make_plan(law, 6.4e8, tau_quantile=0.7)

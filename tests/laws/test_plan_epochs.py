"""Epoch caps from the law's fit data, --max-epochs, saturation and n = s/a warnings."""
from __future__ import annotations

import numpy as np
import pytest

from curate.laws.data_constrained import PUBLISHED, DataConstrainedLaw
from curate.laws.planner import Constraints, plan_mixture
from curate.laws.planner_objectives import QQTObjective
from curate.laws.planner_search import Infeasible
from curate.laws.planning import make_plan
from curate.laws.qqt import QQTLaw

SIZES = [1e7, 4e6, 2.5e7]


def qqt_law(fit=None, a=0.03) -> QQTLaw:
    return QQTLaw(a, 0.1, ["good", "small", "plain"], b=[-0.16, -0.14, -0.10],
                  tau=[9.0, 7.0, 12.0], sizes=SIZES, fit_info=fit)


def epochs(result) -> dict:
    return {r["pool"]: r["epochs"] for r in result["plan"]["pools"]}


def test_uncapped_law_repeats_beyond_the_measured_range():
    """The premise: without a cap the law's optimum repeats pools far beyond 8 epochs."""
    plan = plan_mixture(QQTObjective(qqt_law()), 6e8)
    assert plan.epochs.max() > 12


@pytest.mark.parametrize("budget", [6e7, 2e8, 3e8])
def test_no_plan_exceeds_the_fit_datas_max_epochs(budget):
    law = qqt_law({"max_epochs": 8.0, "samples_range": [1e6, 3e8]})
    res = make_plan(law, budget)
    assert max(epochs(res).values()) <= 8.0 * (1 + 1e-9)
    c = res["constraints"]
    assert c["epoch_cap_source"] == "fit data" and c["measured_max_epochs"] == 8.0
    for row in res["plan"]["pools"]:
        assert row["epoch_cap"] == 8.0
        assert row["cap_binding"] == (row["epochs"] >= 8.0 * (1 - 1e-6))
    assert not any("no measured epoch range" in w for w in res["warnings"])


def test_binding_cap_is_reported_and_costs_loss():
    fit = {"max_epochs": 8.0, "samples_range": [1e6, 3e8]}
    capped = make_plan(qqt_law(fit), 3e8)
    free = make_plan(qqt_law(fit), 3e8, max_epochs=float("inf"))
    assert capped["plan"]["cap_binding"]  # at least one pool sits at its cap
    assert any("binds for" in w for w in capped["warnings"])
    assert capped["plan"]["predicted"] >= free["plan"]["predicted"] - 1e-12
    assert max(epochs(free).values()) > 8.0  # only the explicit override goes beyond


def test_per_pool_caps_win_over_the_overall_cap():
    law = qqt_law({"max_epochs": 8.0, "max_epochs_by_pool": {"good": 3.0, "small": 8.0}})
    res = make_plan(law, 2e8)
    caps = {r["pool"]: r["epoch_cap"] for r in res["plan"]["pools"]}
    assert caps == {"good": 3.0, "small": 8.0, "plain": 8.0}
    e = epochs(res)
    assert e["good"] <= 3.0 * (1 + 1e-9) and max(e.values()) <= 8.0 * (1 + 1e-9)
    assert res["plan"]["pools"][0]["cap_binding"]


def test_budget_beyond_what_the_caps_allow_is_a_one_line_error():
    law = qqt_law({"max_epochs": 8.0})
    with pytest.raises(Infeasible, match="--max-epochs") as info:
        make_plan(law, 8.0 * sum(SIZES) * 1.01)
    assert "\n" not in str(info.value) and "at most 8 epochs" in str(info.value)
    make_plan(law, 8.0 * sum(SIZES) * 0.99)  # just inside: feasible


def test_max_epochs_overrides_with_a_warning_above_the_measured_maximum():
    law = qqt_law({"max_epochs": 8.0})
    res = make_plan(law, 6e8, max_epochs=20)
    assert res["constraints"]["epoch_cap_source"] == "--max-epochs"
    assert max(epochs(res).values()) <= 20 * (1 + 1e-9)
    assert max(epochs(res).values()) > 8.0
    assert any("exceeds the largest epoch count in the law's fit data (8)" in w
               for w in res["warnings"])
    lower = make_plan(law, 1e8, max_epochs=5)  # below the measured maximum: no such warning
    assert not any("exceeds the largest epoch count" in w for w in lower["warnings"])
    assert max(epochs(lower).values()) <= 5 * (1 + 1e-9)


def test_law_without_epoch_range_is_uncapped_and_says_so():
    res = make_plan(qqt_law(), 6e8)
    assert res["constraints"]["epoch_cap_source"] is None
    assert all(r["epoch_cap"] is None and not r["cap_binding"] for r in res["plan"]["pools"])
    assert any("carries no measured epoch range" in w for w in res["warnings"])
    assert max(epochs(res).values()) > 12  # the law's own optimum, unchanged


def test_data_constrained_caps_with_free_model_size():
    law = DataConstrainedLaw(**PUBLISHED)
    law.fit_info = {"max_epochs": 4.0}
    law.pool_sizes = {"web": 25e9}
    res = make_plan(law, 1e22)  # the free optimum repeats 9.5 times (published allocation)
    row = res["plan"]["pools"][0]
    assert row["epochs"] == pytest.approx(4.0, rel=1e-6) and row["cap_binding"]
    law.fit_info = {"max_epochs": 4.0, "max_epochs_by_pool": {"web": 12.0}}
    res = make_plan(law, 1e22)
    row = res["plan"]["pools"][0]
    assert row["epochs"] == pytest.approx(9.49, rel=0.01) and not row["cap_binding"]


def test_data_constrained_per_pool_caps_with_free_model_size():
    law = DataConstrainedLaw(**PUBLISHED)
    law.fit_info = {"max_epochs": 10.0, "max_epochs_by_pool": {"a": 2.0}}
    law.pool_sizes = {"a": 5e9, "b": 20e9}
    res = make_plan(law, 1e22)
    e = epochs(res)
    assert e["a"] <= 2.0 * (1 + 1e-6) and e["b"] <= 10.0 * (1 + 1e-6)
    assert res["plan"]["pools"][0]["cap_binding"]


def test_saturation_warning():
    one = QQTLaw(0.025, 0.1, ["p"], b=[-0.16], tau=[6.7], sizes=[12.8e6])
    res = make_plan(one, 5e9)  # ~400 passes: the repetition terms have decayed to nothing
    sat = res["plan"]["saturation"]
    assert sat["saturated"] and sat["eps"] == 1e-3 and 0 <= sat["relative_gain"] < 1e-3
    assert any(w.startswith("saturated: doubling the budget") for w in res["warnings"])
    res = make_plan(one, 2e7)
    assert not res["plan"]["saturation"]["saturated"]
    assert res["plan"]["saturation"]["relative_gain"] > 1e-2
    assert not any(w.startswith("saturated") for w in res["warnings"])
    res = make_plan(one, 2e7, saturation_eps=0.5)  # the threshold is the caller's
    assert res["plan"]["saturation"]["saturated"]


def test_far_side_of_s_over_a():
    # s/a = 1e5 / 0.025 = 4e6; fitted only below it (LM-like losses above 1 + d)
    law = qqt_law({"samples_range": [1e5, 2e6]}, a=0.025)
    warn = [w for w in make_plan(law, 5e7)["warnings"] if "far side" in w]
    assert len(warn) == 1 and "4e+06" in warn[0] and "fitted only on the other side" in warn[0]
    assert not any("far side" in w for w in make_plan(law, 1e6)["warnings"])
    # fit data on both sides: measured, no warning
    law = qqt_law({"samples_range": [1e6, 5e7]}, a=0.025)
    assert not any("far side" in w for w in make_plan(law, 2e8)["warnings"])
    # no fitted range: warned below s/a, where the order of pools by b is reversed
    law = qqt_law(a=0.025)
    assert any("far side" in w for w in make_plan(law, 1e6)["warnings"])
    assert not any("far side" in w for w in make_plan(law, 1e8)["warnings"])


def test_sweep_skips_budgets_the_caps_cannot_supply():
    law = qqt_law({"max_epochs": 8.0})
    res = make_plan(law, sweep="1e7:1e9:9")
    sweep = res["sweep"]
    limit = 8.0 * sum(SIZES)
    assert [r["budget"] for r in sweep["infeasible"]] == \
        [b for b in np.geomspace(1e7, 1e9, 9) if b > limit]
    assert all(r["budget"] <= limit for r in sweep["plans"])
    for row in sweep["plans"]:
        assert max(row["epochs"].values()) <= 8.0 * (1 + 1e-9)
    assert any("cannot be planned" in w for w in res["warnings"])


def test_constraints_cap_by_pool_name_directly():
    obj = QQTObjective(qqt_law())
    c = Constraints(max_epochs=10.0, epoch_caps={"small": 2.0})
    plan = plan_mixture(obj, 2e8, c)
    assert plan.epochs[1] <= 2.0 * (1 + 1e-9) and plan.epochs.max() <= 10 * (1 + 1e-9)
    with pytest.raises(ValueError, match="unknown pool"):
        plan_mixture(obj, 2e8, Constraints(epoch_caps={"nope": 2.0}))

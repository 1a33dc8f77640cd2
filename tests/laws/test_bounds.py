"""Parameters at the optimiser's box are flagged; conservative laws; the epoch range of fits."""
from __future__ import annotations

import json

import numpy as np
import pytest

from curate.laws.bounds import (bound_warnings, conservative_law, flag_at_bounds, max_epochs,
                                near_bound)
from curate.laws.lawfile import law_from_dict, law_to_dict
from curate.laws.lm_fit import LMFit
from curate.laws.observations import validate_observations
from curate.laws.qqt import QQTLaw
from curate.laws.qqt_fit import QQTFit, epoch_range

SIZE = 12.8e6
GRID = (3.2e6, 6.4e6, 12.8e6, 25.6e6, 64e6, 128e6)  # up to 10 passes
# "fresh" does not decay at all over 10 passes (true half-life 1e7 passes, 1000x the 1e4
# bound); "decay" halves its utility every 4 passes, which 10 passes resolve.
TRUTH = QQTLaw(0.025, 0.1, ["fresh", "decay"], b=[-0.16, -0.13], tau=[1e7, 4.0],
               sizes=[SIZE, SIZE])


def _obs(seed=0, sigma=0.005, mixtures=()):
    rng = np.random.default_rng(seed)
    cols = {"pool": [], "samples_seen": [], "unique_samples": [], "metric": []}
    for pool in TRUTH.pools:
        for n in GRID:
            cols["pool"].append(pool)
            cols["samples_seen"].append(n)
            cols["unique_samples"].append(min(n, SIZE))
            cols["metric"].append(TRUTH.predict(n, pool=pool) * np.exp(sigma * rng.standard_normal()))
    for weights, n, unique in mixtures:
        cols["pool"].append(";".join(f"{p}={w}" for p, w in weights.items()))
        cols["samples_seen"].append(n)
        cols["unique_samples"].append(unique)
        cols["metric"].append(TRUTH.predict_mixture(weights, n))
    return validate_observations(cols, law="qqt")


# -- flags on QQT fits ------------------------------------------------------------------------

def test_noise_free_no_decay_pool_ends_at_the_tau_bound_and_is_flagged():
    fit = QQTFit(diagnostics=False).fit(_obs(sigma=0.0))
    flags = fit.at_bound_
    assert set(flags) == {"tau[fresh]"}  # the resolved half-life and d, a, b are not flagged
    f = flags["tau[fresh]"]
    assert f["bound"] == 1e4 and f["side"] == "upper" and f["value_at_bound"]
    assert f["draw_share"] is None and f["interval_reaches"] is None  # no bootstrap
    assert fit.params_["tau[decay]"] == pytest.approx(4.0, rel=0.01)
    assert any(w.startswith("tau[fresh] = 1e4 is at the upper bound 1e4")
               and "no decay with repetition was measured" in w for w in fit.warnings_)
    # and it travels into the law file
    assert fit.law_.fit_info["at_bound"]["tau[fresh]"]["bound"] == 1e4
    assert fit.law_.fit_info["bounds"]["tau[decay]"] == [0.01, 1e4]


@pytest.mark.parametrize("seed", [0, 3, 4])
def test_noisy_no_decay_pool_has_draws_at_the_bound_and_resolved_pool_does_not(seed):
    """With 0.5 % noise the point estimate of tau[fresh] may land anywhere from ~50 to the bound
    (seeds 0..5 gave 46..1e4), but its interval always reaches the bound; tau[decay] (true 4)
    is resolved on every seed (90 % interval within [1.6, 7.9])."""
    fit = QQTFit(fix={"d": 0.1}, n_bootstrap=40, seed=seed, diagnostics=False).fit(_obs(seed))
    assert "tau[decay]" not in fit.at_bound_
    f = fit.at_bound_["tau[fresh]"]
    assert f["side"] == "upper" and f["bound"] == 1e4 and f["interval_reaches"] is True
    assert 0.1 <= f["draw_share"] <= 1.0
    at = near_bound([d["tau[fresh]"] for d in fit.draws_], "tau[fresh]", 1e4, "upper")
    assert f["draw_share"] == pytest.approx(float(np.mean(at)))
    assert f["draw_share"] == pytest.approx(
        np.mean([d["tau[fresh]"] >= 0.99 * 1e4 for d in fit.draws_]))


def test_flag_at_bounds_sides_zero_bounds_and_tolerances():
    bounds = {"tau[p]": (0.01, 1e4), "d": (0.0, 2.0), "b[p]": (-5.0, -1e-6), "E": (0.0, None),
              "alpha": (0.01, 3.0)}
    params = {"tau[p]": 9950.0, "d": 1e-4, "b[p]": -0.2, "E": 0.5, "alpha": 0.0101}
    flags = flag_at_bounds(params, bounds, scale=2.0)
    # tau within 1 % (log) of 1e4; d below 0.1 % of the scale 2; alpha within 0.1 % of its box
    assert set(flags) == {"tau[p]", "d", "alpha"}
    assert flags["d"]["side"] == "lower" and flags["d"]["bound"] == 0.0
    assert flags["alpha"]["side"] == "lower"
    assert not flag_at_bounds({"tau[p]": 9800.0}, {"tau[p]": (0.01, 1e4)})  # 2 % away: estimated
    assert not flag_at_bounds({"d": 3e-3}, {"d": (0.0, 2.0)}, scale=2.0)
    assert flag_at_bounds({"E": 1e-5}, {"E": (0.0, None)}, scale=2.0)["E"]["side"] == "lower"
    # inside at the point, but the interval reaches the bound
    draws = [{"tau[p]": v} for v in (20.0, 40.0, 1e4, 1e4)]
    f = flag_at_bounds({"tau[p]": 50.0}, {"tau[p]": (0.01, 1e4)}, draws,
                       {"tau[p]": (18.0, 1e4)})["tau[p]"]
    assert not f["value_at_bound"] and f["interval_reaches"] and f["draw_share"] == 0.5
    (line,) = bound_warnings({"tau[p]": f})
    assert "interval reaches the upper bound 1e4" in line and "50% of bootstrap draws" in line
    # an interval clear of the bound: nothing to say
    assert not flag_at_bounds({"tau[p]": 50.0}, {"tau[p]": (0.01, 1e4)}, draws,
                              {"tau[p]": (18.0, 900.0)})


# -- conservative laws ------------------------------------------------------------------------

def _flagged_law(draw_values, value=1e4, interval=None, name="tau[fresh]"):
    law = TRUTH.with_params({name: value})
    draws = [{name: v, "b[fresh]": -0.16} for v in draw_values]
    vals = np.array(draw_values)
    interval = interval or [float(np.percentile(vals, 5)), float(np.percentile(vals, 95))]
    law.bootstrap = {"level": 0.9, "n": len(draws), "seed": 0, "draws": draws,
                     "intervals": {name: interval}}
    law.fit_info = {"at_bound": flag_at_bounds(law.params, {name: (0.01, 1e4)}, draws,
                                               {name: interval}), "max_epochs": 10.0}
    return law


def test_conservative_law_lowers_a_tau_at_the_bound_to_its_quantile():
    values = [10.0 * (k + 1) for k in range(36)] + [1e4] * 64  # 64 % of draws at the bound
    law = _flagged_law(values)
    moved, notes = conservative_law(law, quantile=0.1)
    expected = float(np.quantile(values, 0.1))
    assert moved.params["tau[fresh]"] == pytest.approx(expected) and expected < 200
    assert notes == [f"tau[fresh] at the 1e4 bound in 64% of draws: planning with its 10% "
                     f"quantile {expected:.4g}"]
    for name, v in law.params.items():  # every other parameter as it was
        if name != "tau[fresh]":
            assert moved.params[name] == v
    assert law.params["tau[fresh]"] == 1e4  # the law itself is a value: unchanged
    assert moved.bootstrap is law.bootstrap and moved.fit_info["max_epochs"] == 10.0
    assert moved.fit_info["conservative"]["tau[fresh]"]["from"] == 1e4
    # a larger quantile is less conservative
    higher, _ = conservative_law(law, quantile=0.3)
    assert expected < higher.params["tau[fresh]"] < 1e4
    with pytest.raises(ValueError, match="quantile"):
        conservative_law(law, quantile=0.7)


def test_conservative_law_leaves_laws_without_draws_or_flags_unchanged():
    assert conservative_law(TRUTH) == (TRUTH, [])
    no_draws = _flagged_law([20.0, 1e4, 1e4, 1e4])
    no_draws.bootstrap = None
    assert conservative_law(no_draws) == (no_draws, [])
    clear = _flagged_law([20.0, 30.0, 40.0, 50.0], value=35.0)
    assert not clear.fit_info["at_bound"]
    assert conservative_law(clear) == (clear, [])


def test_conservative_law_says_so_when_even_the_quantile_is_at_the_bound():
    law = _flagged_law([30.0] + [1e4] * 19)  # 95 % of draws at the bound
    moved, notes = conservative_law(law, quantile=0.1)
    assert moved is law
    assert len(notes) == 1 and "at the bound too" in notes[0] and "planning with 1e4" in notes[0]


def test_conservative_direction_of_a_floor_at_zero_is_up():
    law = TRUTH.with_params({"d": 0.0})
    draws = [{"d": v} for v in [0.0] * 10 + [0.01 * k for k in range(1, 11)]]
    law.bootstrap = {"level": 0.9, "draws": draws, "intervals": {"d": [0.0, 0.09]}}
    law.fit_info = {"at_bound": flag_at_bounds(law.params, {"d": (0.0, 1.0)}, draws,
                                               {"d": (0.0, 0.09)}, scale=1.0), "bound_scale": 1.0}
    moved, notes = conservative_law(law, quantile=0.1)
    assert moved.params["d"] == pytest.approx(np.quantile([d["d"] for d in draws], 0.9))
    assert "90% quantile" in notes[0]


def test_conservative_law_on_a_real_fit_lowers_the_unmeasured_half_life():
    fit = QQTFit(fix={"d": 0.1}, n_bootstrap=40, seed=3, diagnostics=False).fit(_obs(3))
    moved, notes = conservative_law(fit.law_, quantile=0.1)
    draws = [d["tau[fresh]"] for d in fit.draws_]
    assert moved.params["tau[fresh]"] == pytest.approx(np.quantile(draws, 0.1))
    assert moved.params["tau[fresh]"] < fit.params_["tau[fresh]"]
    assert moved.params["tau[decay]"] == fit.params_["tau[decay]"]
    assert len(notes) == 1 and notes[0].startswith("tau[fresh] at the 1e4 bound in ")


# -- epoch range ------------------------------------------------------------------------------

def test_max_epochs_recorded_and_survives_a_law_file_round_trip():
    # a mixture of both pools at 64e6 samples: each pool gets 32e6 = 2.5 passes of 12.8e6
    obs = _obs(mixtures=[({"fresh": 1.0, "decay": 1.0}, 64e6, 25.6e6)])
    fit = QQTFit(fix={"d": 0.1}, diagnostics=False).fit(obs)
    ratio = np.asarray(obs.samples_seen) / np.asarray(obs.unique_samples)
    assert fit.law_.fit_info["max_epochs"] == float(ratio.max()) == 10.0
    assert fit.law_.fit_info["max_epochs_by_pool"] == {"fresh": 10.0, "decay": 10.0}
    back = law_from_dict(json.loads(json.dumps(law_to_dict(fit.law_))))
    assert back.fit_info["max_epochs"] == 10.0
    assert back.fit_info["max_epochs_by_pool"] == {"fresh": 10.0, "decay": 10.0}
    assert max_epochs(back) == 10.0 and max_epochs(back, "decay") == 10.0
    assert back.fit_info["at_bound"] == json.loads(json.dumps(fit.law_.fit_info["at_bound"]))
    assert max_epochs(TRUTH) is None  # a law without a fit section


def test_epochs_by_pool_counts_mixture_rows_by_weight_and_known_size():
    cols = {"pool": ["p", "p", "p=0.75;q=0.25", "q=0.5;r=0.5"],
            "samples_seen": [1e6, 4e6, 8e6, 1e6], "unique_samples": [1e6, 1e6, 3e6, 1e6],
            "metric": [2.0, 1.9, 1.8, 1.95]}
    obs = validate_observations(cols, law="qqt")
    sizes = {"p": 1e6, "q": 2e6, "r": 1e6}
    overall, by_pool = epoch_range(obs, ["p", "q", "r"], sizes, known={"p", "q"})
    assert overall == 4.0  # 4e6 / 1e6; the mixture rows are 8/3 and 1
    # p: max(4, 0.75 * 8e6 / 1e6 = 6); q: max(0.25 * 8e6 / 2e6, 0.5 * 1e6 / 2e6) = 1;
    # r: its size is not known (seen only in a mixture): no count
    assert by_pool == {"p": 6.0, "q": 1.0}


def test_law_file_rejects_bad_epoch_and_bound_fields():
    data = law_to_dict(TRUTH)
    for fit, message in [({"max_epochs": -1.0}, "max_epochs must be positive"),
                         ({"max_epochs_by_pool": {"other": 2.0}}, "unknown pool 'other'"),
                         ({"at_bound": {"zeta": {"bound": 1.0, "side": "upper"}}},
                          "unknown parameter"),
                         ({"at_bound": {"d": {"bound": 0.0, "side": "up"}}}, "side must be"),
                         ({"at_bound": {"d": {"bound": 0.0, "side": "lower",
                                              "draw_share": 2}}}, "draw_share")]:
        with pytest.raises(ValueError, match=message):
            law_from_dict({**data, "fit": fit})


# -- LM laws ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs182(reference_dir):
    import csv

    with open(reference_dir / "datablations_runs_fit182.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    cols = {"params": [float(r["params"]) for r in rows],
            "samples_seen": [float(r["tokens"]) for r in rows],
            "unique_samples": [float(r["unique_tokens"]) for r in rows],
            "metric": [float(r["val_loss"]) for r in rows]}
    return validate_observations(cols, law="data-constrained")


def test_lm_fit_flags_a_decay_constant_at_its_bound_and_records_max_epochs(runs182):
    from curate.laws.data_constrained import PUBLISHED

    fix = {k: PUBLISHED[k] for k in ("E", "A", "B", "alpha", "beta")}
    # the data want R*_D far above 10 (15.4 in the published box, 95 unbounded): a box
    # ending at 10 pins it there; R*_N (5.3) is estimated inside [0.01, 20]
    fit = LMFit(fix=fix, diagnostics=False, n_bootstrap=8, seed=1,
                bounds={"R_D_star": (0.01, 10.0), "R_N_star": (0.01, 20.0)}).fit(runs182)
    f = fit.at_bound_["R_D_star"]
    assert f["bound"] == 10.0 and f["side"] == "upper" and f["value_at_bound"]
    assert 0 <= f["draw_share"] <= 1 and isinstance(f["interval_reaches"], bool)
    # R*_N is estimated inside its box (its interval may reach 20: the valley is flat)
    assert not fit.at_bound_.get("R_N_star", {}).get("value_at_bound")
    assert any(w.startswith("R_D_star = 10 is at the upper bound 10") for w in fit.warnings_)
    ratio = np.asarray(runs182.samples_seen) / np.asarray(runs182.unique_samples)
    assert fit.max_epochs_ == float(ratio.max())
    back = law_from_dict(json.loads(json.dumps(law_to_dict(fit.law_))))
    assert max_epochs(back) == float(ratio.max())
    assert back.fit_info["at_bound"]["R_D_star"]["bound"] == 10.0
    assert back.fit_info["bounds"]["R_N_star"] == [0.01, 20.0]


def test_all_free_data_constrained_fit_runs_r_n_star_into_its_default_box(runs182):
    """Unboxed, R*_N runs off to ~2.5e13 on these runs (nothing said it was unmeasured); the
    default box [0.01, 1e6] stops it at 1e6 and flags it, at a cost of < 0.2 % of the Huber
    objective (measured 0.0065712 vs 0.0065659: the valley is flat in R*_N)."""
    boxed = LMFit(diagnostics=False).fit(runs182)
    f = boxed.at_bound_["R_N_star"]
    assert f["bound"] == 1e6 and f["side"] == "upper" and f["value_at_bound"]
    assert any(w.startswith("R_N_star = 1e6 is at the upper bound 1e6") for w in boxed.warnings_)
    open_box = LMFit(diagnostics=False, bounds={"R_N_star": (0.01, None)}).fit(runs182)
    assert open_box.params_["R_N_star"] > 1e8 and "R_N_star" not in open_box.at_bound_
    assert open_box.objective_ <= boxed.objective_ <= 1.002 * open_box.objective_

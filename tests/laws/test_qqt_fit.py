"""QQT fitting: vectorised model, recovery of known parameters, bootstrap coverage."""
from __future__ import annotations

import json

import numpy as np
import pytest

from curate.laws.observations import validate_observations
from curate.laws.qqt import QQTLaw, b_name, tau_name
from curate.laws.qqt_fit import (QQTFit, infer_pool_sizes, observation_segments, refit_law,
                                 stratified_bootstrap_draws)
from tests.laws import qqt_reference as reference

POOL_SIZE = 12.8e6
GRID = (3.2e6, 6.4e6, 12.8e6, 25.6e6, 64e6, 128e6)  # up to 10 passes over a pool


@pytest.fixture(scope="module")
def golden_params(reference_dir):
    """The released parameter sets, keyed by variant."""
    out = {}
    for line in (reference_dir / "qqt_parameter_values.jsonl").read_text().splitlines():
        p = json.loads(line)
        out["data" if p["id"].endswith("_data") else "utility"] = p
    return out


def _law(p, n_pools, variant):
    return QQTLaw(p["best_a"], 0.1, p["names"][:n_pools], b=p["b_values"][:n_pools],
                  tau=p["c_values"][:n_pools], sizes=[POOL_SIZE] * n_pools, variant=variant)


def _synthetic(law, seed, sigma=0.01, grid=GRID, mixtures=()):
    """Rows for every pool x samples in grid (+ given mixtures), with log-normal noise."""
    rng = np.random.default_rng(seed)
    cols = {"pool": [], "samples_seen": [], "unique_samples": [], "metric": []}
    for pool in law.pools:
        for n in grid:
            cols["pool"].append(pool)
            cols["samples_seen"].append(n)
            cols["unique_samples"].append(min(n, POOL_SIZE))
            cols["metric"].append(law.predict(n, pool=pool) * np.exp(sigma * rng.standard_normal()))
    for weights, n in mixtures:
        cols["pool"].append(";".join(f"{p}={w}" for p, w in weights.items()))
        cols["samples_seen"].append(n)
        cols["unique_samples"].append(min(n, POOL_SIZE * len(weights)))
        cols["metric"].append(law.predict_mixture(weights, n) * np.exp(sigma * rng.standard_normal()))
    return validate_observations(cols, law="qqt")


@pytest.mark.parametrize("variant", ["utility", "data"])
def test_vectorised_model_and_jacobian_match_reference(variant):
    rng = np.random.default_rng(3)
    law = QQTLaw(0.02, 0.1, ["p", "q", "r"], b=[-0.16, -0.12, -0.09], tau=[3.0, 6.0, 2.0],
                 sizes=[2e6, 3e6, 5e6], variant=variant)
    cols = {"pool": [], "samples_seen": [], "unique_samples": [], "metric": []}
    expected = []
    for i in range(40):
        n = float(np.exp(rng.uniform(np.log(1e5), np.log(1e8))))
        if i % 3 == 0:
            pool = law.pools[i % 3]
            cols["pool"].append(pool)
            cols["unique_samples"].append(min(n, law.pool_sizes[pool]))
            i_pool = law.pools.index(pool)
            single = (reference.single_pool_error_data if variant == "data"
                      else reference.single_pool_error)
            expected.append(single(n, law.a, law.b[i_pool], law.tau[i_pool],
                                   law.pool_sizes[pool], law.d))
        else:
            w = rng.dirichlet([1, 1, 1]) * (rng.random(3) > 0.2) + 1e-3
            cols["pool"].append(";".join(f"{p}={x}" for p, x in zip(law.pools, w)))
            cols["unique_samples"].append(n)
            expected.append(reference.mixture_error(n, w, law.a, law.b, law.tau, law.sizes, law.d,
                                                    variant=variant))
        cols["samples_seen"].append(n)
        cols["metric"].append(1.0)
    design = observation_segments(validate_observations(cols, law="qqt"), law.pools, law.pool_sizes)
    E, J = design.predict_and_jacobian(law.a, law.d, law.b, law.tau, variant)
    np.testing.assert_allclose(E, expected, rtol=1e-12)
    x = np.concatenate([[np.log(law.a), law.d], law.b, np.log(law.tau)])

    def f(x):
        return design.predict(np.exp(x[0]), x[1], x[2:5], np.exp(x[5:]), variant)
    numeric = np.column_stack([(f(x + h) - f(x - h)) / 2e-6 for h in np.eye(x.size) * 1e-6])
    np.testing.assert_allclose(J, numeric, rtol=1e-5, atol=1e-8)
    rows = [5, 5, 0, 17]
    np.testing.assert_allclose(design.subset(rows).predict(law.a, law.d, law.b, law.tau, variant),
                               E[rows], rtol=1e-14)


@pytest.mark.parametrize("variant", ["utility", "data"])
def test_recovers_golden_parameters_within_intervals(golden_params, variant):
    truth_law = _law(golden_params[variant], 4, variant)
    obs = _synthetic(truth_law, seed=11, sigma=0.005,
                     mixtures=[({p: 1.0 for p in truth_law.pools[:2]}, 64e6)])
    fit = QQTFit(variant=variant, fix={"d": 0.1}, n_bootstrap=60, seed=5).fit(obs)
    truth = truth_law.params
    assert set(fit.intervals_) == set(truth) - {"d"}
    inside = []
    for name, (lo, hi) in fit.intervals_.items():
        assert lo <= fit.params_[name] <= hi
        inside.append(lo <= truth[name] <= hi)
        if name == "a" or name.startswith("b["):  # well identified: close to the truth
            assert fit.params_[name] == pytest.approx(truth[name], rel=0.08), name
    assert sum(inside) >= 7, inside  # 90 % intervals: ~8 of 9 expected
    # half-lives are weaker (they show only after repetition) but still of the right size
    for pool in truth_law.pools:
        assert fit.params_[tau_name(pool)] == pytest.approx(truth[tau_name(pool)], rel=0.5)
    assert fit.r2_ > 0.98 and fit.objective_ < 1e-3
    assert fit.loo_error_ < 0.02 and fit.holdout_largest_error_ < 0.03
    law = fit.law_
    assert law.fixed == ["d"] and law.fit_info["n_obs"] == len(obs) == 25
    assert law.bootstrap["level"] == 0.9 and len(law.bootstrap["draws"]) == 60
    # the fitted law predicts the noise-free truth closely, mixtures included
    for n in (5e7, 2e8):
        for pool in truth_law.pools:
            assert law.predict(n, pool=pool) == pytest.approx(truth_law.predict(n, pool=pool), rel=0.02)
        mix = {p: 1.0 for p in truth_law.pools[:3]}
        assert law.predict_mixture(mix, n) == pytest.approx(truth_law.predict_mixture(mix, n), rel=0.02)


def test_mixture_observations_inform_the_fit():
    """A pool seen only inside mixtures is still estimated, via predict_mixture."""
    truth = QQTLaw(0.025, 0.1, ["hi", "lo"], b=[-0.16, -0.09], tau=[6.0, 3.0], sizes=[1e7, 1e7])
    rng = np.random.default_rng(1)
    cols = {"pool": [], "samples_seen": [], "unique_samples": [], "metric": []}
    for n in (2e6, 5e6, 1e7, 3e7, 8e7, 1.5e8):
        cols["pool"].append("hi")
        cols["samples_seen"].append(n)
        cols["unique_samples"].append(min(n, 1e7))
        cols["metric"].append(truth.predict(n, pool="hi") * np.exp(0.002 * rng.standard_normal()))
        for w in (0.3, 0.6):
            mix = {"hi": w, "lo": 1 - w}
            cols["pool"].append(f"hi={w};lo={1 - w}")
            cols["samples_seen"].append(n)
            cols["unique_samples"].append(min(n, 2e7))
            cols["metric"].append(truth.predict_mixture(mix, n) * np.exp(0.002 * rng.standard_normal()))
    obs = validate_observations(cols, law="qqt")
    fit = QQTFit(fix={"d": 0.1}, sizes={"hi": 1e7, "lo": 1e7}, diagnostics=False).fit(obs)
    assert fit.params_["b[lo]"] == pytest.approx(-0.09, rel=0.1)
    assert fit.params_["b[hi]"] == pytest.approx(-0.16, rel=0.05)
    assert fit.pool_sizes_ == {"hi": 1e7, "lo": 1e7}


def test_fixed_parameters_stay_fixed_and_bad_fixes_fail(golden_params):
    truth_law = _law(golden_params["utility"], 2, "utility")
    obs = _synthetic(truth_law, seed=2)
    first = truth_law.pools[0]
    fix = {"d": 0.1, "a": 0.025, tau_name(first): 6.0}
    fit = QQTFit(fix=fix, diagnostics=False).fit(obs)
    for k, v in fix.items():
        assert fit.params_[k] == v
    assert fit.free_ == [b_name(first), b_name(truth_law.pools[1]), tau_name(truth_law.pools[1])]
    with pytest.raises(ValueError, match="unknown QQT parameter"):
        QQTFit(fix={"c": 1.0}).fit(obs)
    with pytest.raises(ValueError, match="must be negative"):
        QQTFit(fix={b_name(first): 0.1}).fit(obs)
    few = obs.subset(np.arange(3))  # one pool: a, b, tau free
    with pytest.raises(ValueError, match="too few points"):
        QQTFit(fix={"d": 0.1}).fit(few)


def test_free_floor_and_law_refit_in_place(golden_params):
    truth_law = _law(golden_params["utility"], 2, "utility")
    obs = _synthetic(truth_law, seed=4, sigma=0.003)
    fit = QQTFit(diagnostics=False).fit(obs)  # d free too
    assert 0 <= fit.params_["d"] <= obs.metric.min()
    assert fit.params_["d"] == pytest.approx(0.1, abs=0.03)
    law = QQTLaw(0.05, 0.1, truth_law.pools, b=[-0.3, -0.3], tau=[1.0, 1.0],
                 sizes=[POOL_SIZE] * 2, fixed=["d"])
    law = refit_law(law, obs, diagnostics=False)
    assert law.d == 0.1 and law.b[0] == pytest.approx(-0.16, rel=0.05)
    assert law.fit_info["n_obs"] == len(obs)


def test_pool_sizes_inferred_from_unique_samples():
    obs = validate_observations({"pool": ["x", "x", "y=1;z=1", "y"],
                                 "samples_seen": [1e6, 5e6, 8e6, 1e6],
                                 "unique_samples": [1e6, 2e6, 4e6, 5e5],
                                 "metric": [1.0, 0.9, 0.8, 0.95]}, law="qqt")
    assert infer_pool_sizes(obs) == {"x": 2e6, "y": 5e5, "z": 2e6}
    assert infer_pool_sizes(obs, {"y": 3e6})["y"] == 3e6


def _coverage(golden_params, reps, n_boot, n_pools, seed0):
    truth_law = _law(golden_params["utility"], n_pools, "utility")
    truth = truth_law.params
    hits, widths = [], []
    for r in range(reps):
        obs = _synthetic(truth_law, seed=seed0 + r)
        fit = QQTFit(fix={"d": 0.1}, n_bootstrap=n_boot, seed=r, diagnostics=False).fit(obs)
        for name, (lo, hi) in fit.intervals_.items():
            hits.append(lo <= truth[name] <= hi)
            if name.startswith("b["):
                widths.append((hi - lo) / abs(truth[name]))
    return float(np.mean(hits)), float(np.median(widths)), len(hits)


def test_bootstrap_intervals_cover_at_roughly_nominal_rate(golden_params):
    # 10 synthetic data sets x 5 free parameters: 50 intervals, measured 0.88 here (0.86-0.88
    # for other seeds). The slow study below is the real check of the rate.
    coverage, width, n = _coverage(golden_params, reps=10, n_boot=50, n_pools=2, seed0=100)
    assert n == 50
    assert 0.75 <= coverage <= 1.0, coverage
    assert width < 0.5  # informative intervals, not trivially wide


@pytest.mark.slow
def test_bootstrap_coverage_study(golden_params):
    coverage, width, n = _coverage(golden_params, reps=60, n_boot=200, n_pools=3, seed0=1000)
    assert n == 60 * 7
    assert 0.84 <= coverage <= 0.96, coverage


def test_unrepeated_pool_warns_that_tau_is_not_identified(golden_params):
    truth_law = _law(golden_params["utility"], 2, "utility")
    obs = _synthetic(truth_law, seed=9, grid=(1e6, 2e6, 4e6, 8e6, 12.8e6))  # never repeats
    fit = QQTFit(fix={"d": 0.1}, diagnostics=False).fit(obs)
    assert len(fit.warnings_) == 2 and "tau[" in fit.warnings_[0]
    assert fit.law_.fit_info["warnings"] == fit.warnings_
    fixed_tau = {"d": 0.1, **{tau_name(p): 5.0 for p in truth_law.pools}}
    assert QQTFit(fix=fixed_tau, diagnostics=False).fit(obs).warnings_ == []


def test_mixture_rows_inconsistent_with_pool_sizes_are_reported(golden_params):
    truth_law = _law(golden_params["utility"], 2, "utility")
    mix = {p: 1.0 for p in truth_law.pools}
    obs = _synthetic(truth_law, seed=8, mixtures=[(mix, 64e6)])
    assert QQTFit(fix={"d": 0.1}, diagnostics=False).fit(obs).warnings_ == []
    fit = QQTFit(fix={"d": 0.1}, diagnostics=False,
                 sizes={truth_law.pools[0]: 3 * POOL_SIZE}).fit(obs)
    assert len(fit.warnings_) == 1 and fit.warnings_[0].startswith("row 13: mixture unique_samples")


def test_fit_is_scale_free_in_the_sample_unit(golden_params):
    """Counting in tokens (x1000) instead of samples only rescales a; b, tau are unchanged."""
    truth_law = _law(golden_params["utility"], 2, "utility")
    obs = _synthetic(truth_law, seed=21)
    scaled = obs.subset(np.arange(len(obs)))
    scaled.samples_seen = obs.samples_seen * 1000
    scaled.unique_samples = obs.unique_samples * 1000
    fit = QQTFit(fix={"d": 0.1}, diagnostics=False).fit(obs)
    fit_tokens = QQTFit(fix={"d": 0.1}, diagnostics=False, unit="tokens").fit(scaled)
    assert fit_tokens.params_["a"] == pytest.approx(fit.params_["a"] / 1000, rel=1e-4)
    for pool in truth_law.pools:
        for name in (b_name(pool), tau_name(pool)):
            assert fit_tokens.params_[name] == pytest.approx(fit.params_[name], rel=1e-4)
    assert fit_tokens.law_.unit == "tokens" and fit_tokens.law_.pool_sizes[pool] == POOL_SIZE * 1000


def test_stratified_bootstrap_keeps_every_pool_and_whole_runs():
    obs = validate_observations({
        "pool": ["x"] * 4 + ["y"] * 3 + ["x=1;y=1"],
        "samples_seen": [1, 2, 3, 4, 1, 2, 3, 4], "unique_samples": [1] * 8,
        "metric": [1.0, 0.9, 0.8, 0.7, 1.0, 0.9, 0.8, 0.7],
        "run_id": ["r1", "r1", "r2", "r2", "s1", "s2", "s3", "m"]}, law="qqt")
    picks = []
    draws = stratified_bootstrap_draws(lambda rows: picks.append(np.sort(rows)) or {"n": len(rows)},
                                       obs, n_boot=30, seed=0)
    assert len(draws) == 30
    for rows in picks:
        labels = [obs.pool[i] for i in rows]
        assert labels.count("x") == 4 and labels.count("y") == 3 and labels.count("x=1;y=1") == 1
        xs = [i for i in rows if i < 4]  # runs r1 = rows {0, 1}, r2 = rows {2, 3}: kept whole
        assert xs in ([0, 0, 1, 1], [0, 1, 2, 3], [2, 2, 3, 3])
    assert len({tuple(r) for r in picks}) > 5  # it does resample
    again = []
    stratified_bootstrap_draws(lambda rows: again.append(np.sort(rows)) or {}, obs, 30, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(picks, again))  # seeded


def test_law_prediction_interval_from_its_draws(golden_params):
    truth_law = _law(golden_params["utility"], 2, "utility")
    fit = QQTFit(fix={"d": 0.1}, n_bootstrap=40, seed=1, diagnostics=False).fit(
        _synthetic(truth_law, seed=31))
    law = fit.law_
    samples = np.array([3.2e7, 6.4e8])
    lo, hi = law.predict_interval(samples, pool=truth_law.pools[0])
    mid = law.predict(samples, pool=truth_law.pools[0])
    assert np.all(lo <= mid) and np.all(mid <= hi) and np.all(hi - lo > 0)
    assert (hi - lo)[1] > (hi - lo)[0]  # extrapolating further is less certain
    lo2, hi2 = fit.predict_interval(samples, pool=truth_law.pools[0])
    np.testing.assert_allclose([lo, hi], [lo2, hi2])
    mix = {p: 1.0 for p in truth_law.pools}
    mlo, mhi = law.predict_interval(6.4e8, weights=mix, level=0.5)
    assert mlo <= law.predict_mixture(mix, 6.4e8) <= mhi
    with pytest.raises(ValueError, match="exactly one"):
        law.predict_interval(1e7)
    with pytest.raises(ValueError, match="no bootstrap draws"):
        truth_law.predict_interval(1e7, pool=truth_law.pools[0])


def test_stratified_bootstrap_keeps_the_subset_sizes_of_a_design():
    """Runs of one pool at different subset sizes (a probe's U, U/4 and fresh runs) are
    resampled within their size: every draw keeps one run of each size per seed count."""
    pool, n, u, run = [], [], [], []
    for size, tag in ((4, "U"), (1, "small"), (32, "fresh")):
        for s in range(3):
            for m in (1, 2):
                pool.append("x")
                n.append(m * 4)
                u.append(min(m * 4, size))
                run.append(f"s{s}-{tag}")
    obs = validate_observations({"pool": pool, "samples_seen": n, "unique_samples": u,
                                 "metric": [1.0] * len(n), "run_id": run}, law="qqt")
    picks = []
    stratified_bootstrap_draws(lambda rows: picks.append(rows) or {}, obs, n_boot=20, seed=0)
    for rows in picks:
        tags = [obs.run_id[i].split("-")[1] for i in rows]
        assert tags.count("U") == tags.count("small") == tags.count("fresh") == 6
    assert len({tuple(r) for r in picks}) > 5

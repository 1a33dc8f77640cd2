"""Fitting gamma, the gap exponent of the QQT mixture rule (tau'_i = tau_i (P_i / G_i)^gamma):
identified only by a pool repeated at two subset sizes; its Jacobian column; the law keeps it."""
from __future__ import annotations

import numpy as np
import pytest

from curate.laws.lawfile import law_from_dict, law_to_dict
from curate.laws.observations import validate_observations
from curate.laws.qqt import QQTLaw
from curate.laws.qqt_fit import QQTFit, gamma_identified, measured_gaps
from curate.laws.qqt_kernel import (Segments, gamma_jacobian, gap_log_ratios, multiplier_errors,
                                    pass_periods)

U = 1.0e6  # the larger subset per pool; the smaller is U / 4
POOLS = ["hi", "mid", "lo"]


def _truth(variant: str, gamma: float = 0.5) -> QQTLaw:
    """A probe-like law: tau measured at gap U (the larger subset), gap exponent `gamma`."""
    tau = [3.0, 6.0, 2.0]
    if variant == "multiplier":
        return QQTLaw([2e-4, 1e-4, 5e-5], 0.3, POOLS, b=-0.15, tau=tau, sizes=[U] * 3,
                      variant="multiplier", gaps=[U] * 3, gamma=gamma)
    return QQTLaw(0.05, 0.3, POOLS, b=[-0.2, -0.15, -0.1], tau=tau, sizes=[U] * 3,
                  variant=variant, gaps=[U] * 3, gamma=gamma)


def _rows(law: QQTLaw, subsets=(U, U / 4), seeds=3, sigma=0.002, epochs=16):
    """Single-pool runs as a probe writes them: per pool and subset size `seeds` runs (distinct
    run ids), evaluated from 0.25 to `epochs` passes, with log-normal noise of `sigma`."""
    rng = np.random.default_rng(0)
    cols = {k: [] for k in ("pool", "samples_seen", "unique_samples", "metric", "run_id")}
    for pool in law.pools:
        for size in subsets:
            for s in range(seeds):
                for m in (0.25, 0.5, 1, 2, 3, 4, 6, 8, 12, epochs):
                    n = m * size
                    cols["pool"].append(pool)
                    cols["samples_seen"].append(n)
                    cols["unique_samples"].append(min(n, size))
                    cols["metric"].append(float(law.predict(n, pool, size=size))
                                          * np.exp(sigma * rng.standard_normal()))
                    cols["run_id"].append(f"s{s}-{pool}-{int(size)}")
    return validate_observations(cols, "qqt")


@pytest.mark.parametrize("variant", ["multiplier", "utility"])
def test_gamma_is_recovered_from_two_subset_sizes(variant):
    obs = _rows(_truth(variant))
    assert gamma_identified(obs)
    assert measured_gaps(obs) == {p: U for p in POOLS}
    fit = QQTFit(variant=variant, diagnostics=False).fit(obs)
    # 0.2 % noise, 3 seeds, subsets U and U/4 up to 16 passes: gamma within +-0.1 of 0.5
    assert fit.gamma_fitted_ and fit.gamma_ == pytest.approx(0.5, abs=0.1)
    assert "gamma" in fit.free_ and "gamma" not in fit.params_
    law = fit.law_
    assert law.gamma == fit.gamma_ and "gamma" not in law.params
    info = law.fit_info["gamma"]
    assert info["fitted"] is True and info["value"] == fit.gamma_
    assert info["bounds"] == [0.0, 3.0]
    # taus at the measured gap U, within 25 %
    for p, t in zip(POOLS, (3.0, 6.0, 2.0)):
        assert fit.params_[f"tau[{p}]"] == pytest.approx(t, rel=0.25)


def test_a_fixed_gamma_at_1_fits_worse_than_the_fitted_one():
    obs = _rows(_truth("multiplier"))
    fitted = QQTFit(variant="multiplier", diagnostics=False).fit(obs)
    fixed = QQTFit(variant="multiplier", diagnostics=False, gamma=1.0).fit(obs)
    assert not fixed.gamma_fitted_ and fixed.gamma_ == 1.0
    assert fixed.law_.fit_info["gamma"]["fitted"] is False
    assert fitted.objective_ < 0.5 * fixed.objective_


def test_one_subset_size_leaves_gamma_fixed_at_1():
    obs = _rows(_truth("multiplier"), subsets=(U,))
    assert not gamma_identified(obs)
    fit = QQTFit(variant="multiplier", diagnostics=False).fit(obs)
    assert fit.gamma_ == 1.0 and not fit.gamma_fitted_ and "gamma" not in fit.free_
    info = fit.law_.fit_info["gamma"]
    assert info["fitted"] is False and info["value"] == 1.0 and "interval" not in info


def test_fresh_data_runs_do_not_identify_gamma_nor_move_the_gap():
    """A control run on fresh data (unique = seen) repeats nothing: one repeated subset size
    plus a fresh run is still one size, and the gap stays where the repetition was measured."""
    law = _truth("multiplier")
    obs = _rows(law, subsets=(U,))
    cols = {k: list(getattr(obs, k)) for k in ("pool", "samples_seen", "unique_samples", "metric")}
    cols["run_id"] = list(obs.run_id)
    for m in (0.5, 2, 8, 16):
        cols["pool"].append("hi")
        cols["samples_seen"].append(m * U)
        cols["unique_samples"].append(m * U)
        cols["metric"].append(float(law.predict(m * U, "hi", size=16 * U)))
        cols["run_id"].append("fresh-hi")
    obs = validate_observations(cols, "qqt")
    assert not gamma_identified(obs)
    assert measured_gaps(obs)["hi"] == U


def test_fix_gamma_by_name_and_bad_values():
    obs = _rows(_truth("utility"), seeds=1)
    fit = QQTFit(diagnostics=False, fix={"gamma": 0.7}).fit(obs)
    assert fit.gamma_ == 0.7 and not fit.gamma_fitted_ and fit.law_.gamma == 0.7
    with pytest.raises(ValueError, match="gamma must be"):
        QQTFit(gamma=-1.0).fit(obs)


def test_bootstrap_interval_and_law_file_round_trip():
    obs = _rows(_truth("multiplier"), seeds=3, sigma=0.005)
    fit = QQTFit(variant="multiplier", diagnostics=False, n_bootstrap=20, seed=1).fit(obs)
    info = fit.law_.fit_info["gamma"]
    lo, hi = info["interval"]
    assert lo <= fit.gamma_ <= hi and 0.0 <= lo and hi <= 3.0
    assert len(fit.gamma_draws_) == 20
    # the law's draws hold the law's parameters only (planner re-plans with with_params)
    assert all("gamma" not in d for d in fit.law_.bootstrap["draws"])
    fit.law_.with_params(fit.law_.bootstrap["draws"][0])
    again = law_from_dict(law_to_dict(fit.law_))
    assert again.gamma == pytest.approx(fit.gamma_, rel=1e-12)
    assert again.fit_info["gamma"]["fitted"] is True


# -- the Jacobian column ------------------------------------------------------------------------

def _mixture_rows():
    rng = np.random.default_rng(3)
    W = rng.dirichlet(np.ones(3), size=12)
    W[::4] = np.eye(3)[rng.integers(0, 3, size=3)]
    W /= W.sum(axis=1, keepdims=True)
    n = np.exp(rng.uniform(np.log(2e5), np.log(5e7), size=12))
    sizes = np.array([1e6, 3e5, 2e6])
    gaps = np.array([2e6, 1e5, 1e6])  # tau measured at other gaps than these rows use
    return n, W, sizes, gaps


@pytest.mark.parametrize("variant", ["utility", "data"])
def test_gamma_column_matches_finite_differences_segments(variant):
    n, W, sizes, gaps = _mixture_rows()
    seg = Segments.build(n, W, sizes, gaps=gaps)
    b, tau, g, h = np.array([-0.2, -0.1, -0.15]), np.array([2.0, 5.0, 1.2]), 0.6, 1e-6
    _, J = seg.predict_and_jacobian(0.05, 0.3, b, tau, variant, jacobian=True, gamma=g)
    column = gamma_jacobian(J[:, -3:], seg.log_ratio)
    up = seg.predict(0.05, 0.3, b, tau, variant, gamma=g + h)
    down = seg.predict(0.05, 0.3, b, tau, variant, gamma=g - h)
    numeric = (up - down) / (2 * h)
    assert np.max(np.abs(numeric)) > 1e-4  # the rows do depend on gamma
    np.testing.assert_allclose(column, numeric, rtol=1e-5, atol=1e-9)


def test_gamma_column_matches_finite_differences_multiplier():
    n, W, sizes, gaps = _mixture_rows()
    a, b, tau, g, h = np.array([2e-4, 1e-4, 5e-5]), -0.15, np.array([2.0, 5.0, 1.2]), 0.6, 1e-6
    _, J = multiplier_errors(n, W, a, b, 0.3, tau, sizes, gaps=gaps, gamma=g, jacobian=True)
    column = gamma_jacobian(J[:, -3:], gap_log_ratios(pass_periods(W, np.broadcast_to(sizes, W.shape)), gaps))

    def at(x):
        return multiplier_errors(n, W, a, b, 0.3, tau, sizes, gaps=gaps, gamma=x)[0]

    numeric = (at(g + h) - at(g - h)) / (2 * h)
    assert np.max(np.abs(numeric)) > 1e-4
    np.testing.assert_allclose(column, numeric, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("variant", ["multiplier", "utility"])
def test_fitter_residual_jacobian_includes_gamma(variant):
    """The fitter's analytic Jacobian (with the gamma column) against finite differences of its
    own residuals, at a point away from the optimum."""
    obs = _rows(_truth(variant), seeds=1)
    fit = QQTFit(variant=variant, diagnostics=False).fit(obs)
    from curate.laws.qqt_fit import observation_design

    design = observation_design(obs, fit.pools_, fit.pool_sizes_, fit.gaps_, 1.0, variant)
    residuals, jacobian = fit._residual_functions(design, np.asarray(obs.metric, dtype=float))
    lo, hi = fit._bounds(np.asarray(obs.metric, dtype=float))
    x = np.clip(np.array(fit._grid(np.asarray(obs.metric), U)[0]), lo + 0.1, hi - 0.1)
    x[fit.free_.index("gamma")] = 0.8
    J = jacobian(x)
    h = 1e-6
    for k in range(x.size):
        e = np.zeros_like(x)
        e[k] = h
        numeric = (residuals(x + e) - residuals(x - e)) / (2 * h)
        np.testing.assert_allclose(J[:, k], numeric, rtol=1e-4, atol=1e-7, err_msg=fit.free_[k])

"""Fitting machinery: Huber loss, multi-start L-BFGS, variable projection, fixed parameters."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import nnls

from curate.laws import fitting
from curate.laws.data_constrained import (
    PUBLISHED,
    ChinchillaLaw,
    DataConstrainedLaw,
    chinchilla_loss,
    data_constrained_loss,
)
from curate.laws.fitting import _batched_nnls, fit_law, huber, multistart_lbfgs

TRUE = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)  # Hoffmann et al. (2022)
SMALL_GRID = {"E": np.exp([0.0, 1.0]), "A": np.exp([0.0, 10.0]), "B": np.exp([0.0, 10.0]),
              "alpha": [0.0, 1.0], "beta": [0.0, 1.0]}  # 32 starts: keeps the grid method fast


def synthetic_chinchilla(n=250, sigma=0.01, seed=0, params=TRUE):
    rng = np.random.default_rng(seed)
    N = np.exp(rng.uniform(np.log(5e7), np.log(5e9), n))
    D = N * np.exp(rng.uniform(np.log(2), np.log(200), n))
    y = chinchilla_loss(N, D, **params) * np.exp(rng.normal(0.0, sigma, n))
    return N, D, y


def test_huber_is_quadratic_then_linear_and_continuous():
    d = 1e-3
    r = np.array([0.0, 5e-4, -5e-4, 1e-3, 2e-3, -0.1])
    expected = [0.0, 0.5 * 25e-8, 0.5 * 25e-8, 0.5e-6, d * (2e-3 - 0.5 * d), d * (0.1 - 0.5 * d)]
    np.testing.assert_allclose(huber(r, d), expected, rtol=1e-12)
    eps = 1e-12
    assert abs(float(huber(d + eps, d)) - float(huber(d - eps, d))) < 1e-14


def test_multistart_lbfgs_keeps_the_best_of_several_basins():
    # Double well with the deeper minimum near x = -1.
    f = lambda x: float((x[0] ** 2 - 1) ** 2 + 0.3 * x[0])
    x, fun, results = multistart_lbfgs(f, [[2.0], [-2.0], [0.5]])
    assert len(results) == 3
    assert x[0] == pytest.approx(-1.04, abs=0.02)
    assert fun == min(r.fun for r in results)


def test_batched_nnls_matches_scipy_nnls():
    rng = np.random.default_rng(3)
    G, n, k = 40, 30, 3
    Phi = rng.normal(size=(G, n, k))
    t = rng.normal(size=(G, n))
    w = rng.uniform(0.1, 1.0, size=(G, n))
    got = _batched_nnls(Phi, t, w)
    for g in range(G):
        sw = np.sqrt(w[g])
        ref, _ = nnls(Phi[g] * sw[:, None], t[g] * sw)
        np.testing.assert_allclose(got[g], ref, atol=1e-9)


def test_noise_free_data_are_recovered_exactly_by_varpro():
    N, D, y = synthetic_chinchilla(n=80, sigma=0.0, seed=1)
    law = ChinchillaLaw().fit(N, D, y, method="varpro")
    assert law.method_ == "varpro"
    for name, value in TRUE.items():
        assert law.params_[name] == pytest.approx(value, rel=1e-4), name
    assert law.objective_ < 1e-12


def test_varpro_reaches_the_grid_objective():
    N, D, y = synthetic_chinchilla(n=250, sigma=0.01, seed=2)
    vp = ChinchillaLaw().fit(N, D, y, method="varpro")
    grid = ChinchillaLaw().fit(N, D, y, method="lbfgs-grid", grid=SMALL_GRID)
    assert grid.fit_result_.n_starts == 32
    assert vp.objective_ <= grid.objective_ * (1 + 1e-9)
    for name in TRUE:
        assert vp.params_[name] == pytest.approx(grid.params_[name], rel=1e-4), name
    # Both report the same function: the Huber sum of log residuals.
    r = np.log(vp.predict(N, D)) - np.log(y)
    assert vp.objective_ == pytest.approx(float(np.sum(huber(r))), rel=1e-12)


def test_auto_picks_varpro_when_a_linear_parameter_is_free():
    N, D, y = synthetic_chinchilla(n=60, seed=4)
    assert ChinchillaLaw().fit(N, D, y).method_ == "varpro"
    fixed_linear = ChinchillaLaw(**TRUE).fit(N, D, y, fix=["E", "A", "B"],
                                             grid={"alpha": [0.3], "beta": [0.3]})
    assert fixed_linear.method_ == "lbfgs-grid"


def test_fixed_parameters_stay_fixed_and_the_rest_adapt():
    N, D, y = synthetic_chinchilla(n=120, sigma=0.005, seed=5)
    law = ChinchillaLaw().fit(N, D, y, fix={"E": 1.69, "beta": 0.28})
    assert law.params_["E"] == 1.69 and law.params_["beta"] == 0.28
    assert law.fixed_ == ("E", "beta")
    assert law.params_["alpha"] == pytest.approx(0.34, rel=0.05)
    # Fixing E at a wrong value must cost objective.
    wrong = ChinchillaLaw().fit(N, D, y, fix={"E": 1.2})
    assert wrong.objective_ > law.objective_


def test_data_constrained_full_fit_by_varpro_recovers_parameters():
    rng = np.random.default_rng(6)
    n = 150
    U = np.exp(rng.uniform(np.log(1e8), np.log(2e10), n))
    D = U * np.exp(rng.uniform(0.0, np.log(60.0), n))
    N = np.exp(rng.uniform(np.log(1e7), np.log(9e9), n))
    y = data_constrained_loss(N, D, U, **PUBLISHED) * np.exp(rng.normal(0, 0.003, n))
    law = DataConstrainedLaw().fit(N, D, U, y)
    assert law.method_ == "varpro"
    truth_obj = float(np.sum(huber(np.log(data_constrained_loss(N, D, U, **PUBLISHED))
                                   - np.log(y))))
    assert law.objective_ <= truth_obj  # at least as good as the generating parameters
    for name in ("alpha", "beta"):
        assert law.params_[name] == pytest.approx(PUBLISHED[name], rel=0.1), name
    assert law.params_["R_D_star"] == pytest.approx(PUBLISHED["R_D_star"], rel=0.5)


def test_bounds_constrain_the_search():
    N, D, y = synthetic_chinchilla(n=60, seed=7)
    law = ChinchillaLaw().fit(N, D, y, bounds={"alpha": (0.0, 0.3)})
    assert law.params_["alpha"] <= 0.3 + 1e-12


@pytest.mark.parametrize("bad, message", [
    (dict(y=np.array([3.0, -1.0, 3.0, 3.0, 3.0, 3.0, 3.0])), "row 1"),
    (dict(N=np.array([1e8, np.nan, 1e8, 1e8, 1e8, 1e8, 1e8])), "N must be positive"),
    (dict(y=np.array([3.0, 3.0])), "2 losses"),
])
def test_bad_inputs_name_the_problem(bad, message):
    N = np.geomspace(1e8, 1e9, 7)
    data = dict(N=N, D=20 * N, y=np.linspace(3.0, 2.5, 7))
    data.update(bad)
    with pytest.raises(ValueError, match=message):
        ChinchillaLaw().fit(data["N"], data["D"], data["y"])


def test_too_few_points_and_unknown_method_are_errors():
    N = np.geomspace(1e8, 1e9, 4)
    with pytest.raises(ValueError, match="too few"):
        ChinchillaLaw().fit(N, 20 * N, np.linspace(3, 2.5, 4))
    with pytest.raises(ValueError, match="unknown fit method"):
        ChinchillaLaw().fit(N, 20 * N, np.linspace(3, 2.5, 4), method="newton")
    with pytest.raises(ValueError, match="varpro needs"):
        fit_law(fitting.CHINCHILLA_MODEL, {"N": N, "D": 20 * N}, np.linspace(3, 2.5, 4),
                fix={"E": 1.0, "A": 400.0, "B": 400.0}, method="varpro")


@pytest.mark.parametrize("params", [
    PUBLISHED,
    dict(PUBLISHED, alpha=0.5, beta=0.25, A=3000.0, R_N_star=2.0),  # U_N binds on other rows
])
def test_data_constrained_gradient_matches_finite_differences(params):
    import dataclasses

    rng = np.random.default_rng(8)
    n = 60
    U = np.exp(rng.uniform(np.log(1e8), np.log(2e10), n))
    D = U * np.exp(rng.uniform(0.0, np.log(60.0), n))
    N = np.exp(rng.uniform(np.log(1e7), np.log(9e9), n))
    y = data_constrained_loss(N, D, U, **PUBLISHED) * np.exp(rng.normal(0, 0.01, n))
    model = fitting.DATA_CONSTRAINED_MODEL
    arrays, y = fitting._check_data(model, {"N": N, "D": D, "U": U}, y)
    names = list(model.names)
    analytic = fitting._Objective(model, arrays, y, {}, names, 1e-3)
    numeric = fitting._Objective(dataclasses.replace(model, grad=None), arrays, y, {}, names, 1e-3)
    z = analytic.to_z(params)
    np.testing.assert_allclose(analytic.jacobian(z), numeric.jacobian(z), atol=1e-7, rtol=1e-6)


def test_local_method_refines_from_the_constructor_values():
    N, D, y = synthetic_chinchilla(n=100, seed=9)
    full = ChinchillaLaw().fit(N, D, y)
    start = {k: v * 1.05 for k, v in full.params_.items()}
    start_objective = float(np.sum(huber(np.log(ChinchillaLaw(**start).predict(N, D)) - np.log(y))))
    local = ChinchillaLaw(**start).fit(N, D, y, method="local")
    assert local.method_ == "local" and local.fit_result_.n_starts == 1
    # One L-BFGS run from 5 % off the optimum must close (nearly) all of the gap to it. How
    # close it gets is not a float64 constant: L-BFGS stops on a relative decrease (ftol) in a
    # valley where A and alpha trade off, and the BLAS kernel (OpenBLAS Haswell / Sandybridge
    # vs SkylakeX) changes the rounding of the path: 2e-5 relative above the optimum on some,
    # 3e-11 on others, i.e. < 3e-6 of the starting gap everywhere. Asserted: within 1e-4 of the
    # optimum and at least 99.99 % of the gap closed.
    assert local.objective_ == pytest.approx(full.objective_, rel=1e-4)
    assert local.objective_ - full.objective_ <= 1e-4 * (start_objective - full.objective_)
    with pytest.raises(ValueError, match="start values"):
        ChinchillaLaw().fit(N, D, y, method="local")

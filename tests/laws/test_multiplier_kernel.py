"""The per-pool-multiplier QQT kernel: closed form against a pass-by-pass sum, Jacobian
against finite differences, and the invariances it is for."""
from __future__ import annotations

import numpy as np
import pytest

from curate.laws.qqt_kernel import effective_data, multiplier_errors


def _by_passes(n, w, N, tau, gap, gamma):
    """sum over passes of the samples in each pass times 0.5^(k / tau'), one pool, a loop."""
    period = N / w
    tau_s = tau * (period / gap) ** gamma
    drawn, total, k = w * n, 0.0, 0
    while k * N < drawn:
        total += (min(drawn, (k + 1) * N) - k * N) * 0.5 ** (k / tau_s)
        k += 1
    return total


def test_closed_form_equals_the_pass_by_pass_sum():
    rng = np.random.default_rng(0)
    for _ in range(40):
        P = 3
        w = rng.dirichlet(np.ones(P))
        N, tau, gap = rng.uniform(1e5, 1e7, P), rng.uniform(0.5, 30, P), rng.uniform(1e5, 1e7, P)
        n = float(rng.uniform(1e5, 3e8))
        got = effective_data([n], w[None, :], N, tau, gap, gamma=0.8)[0]
        want = [_by_passes(n, w[i], N[i], tau[i], gap[i], 0.8) for i in range(P)]
        np.testing.assert_allclose(got, want, rtol=1e-11)


def test_jacobian_matches_finite_differences():
    rng = np.random.default_rng(1)
    P = 3
    W = rng.dirichlet(np.ones(P), size=8)
    n = rng.uniform(1e6, 5e8, 8)
    N = np.array([2e6, 5e6, 1.1e7])
    a, b, d, tau = np.array([0.02, 0.05, 0.01]), -0.12, 0.3, np.array([2.0, 6.0, 15.0])
    E, J = multiplier_errors(n, W, a, b, d, tau, N, jacobian=True)

    def f(x):
        return multiplier_errors(n, W, np.exp(x[:P]), x[P + 1], x[P], np.exp(x[P + 2:]), N)[0]

    x0 = np.r_[np.log(a), d, b, np.log(tau)]
    for j in range(x0.size):
        h = 1e-6 * max(1.0, abs(x0[j]))
        num = (f(x0 + h * np.eye(x0.size)[j]) - f(x0 - h * np.eye(x0.size)[j])) / (2 * h)
        np.testing.assert_allclose(J[:, j], num, rtol=1e-5, atol=1e-10)


def test_unit_split_and_copy_invariances():
    N, tau, gap = np.array([4e6, 9e6]), np.array([3.0, 8.0]), np.array([4e6, 9e6])
    a, b, d = np.array([0.03, 0.01]), -0.15, 0.5
    w = np.array([[0.6, 0.4]])
    n = np.geomspace(1e6, 1e10, 9)
    E = np.array([multiplier_errors([x], w, a, b, d, tau, N, gaps=gap)[0][0] for x in n])
    # unit: c E is the same family (d -> c d, a_i -> a_i c^(1/b))
    c = 1 / np.log(256)
    Ec = np.array([multiplier_errors([x], w, a * c ** (1 / b), b, c * d, tau, N, gaps=gap)[0][0] for x in n])
    np.testing.assert_allclose(Ec, c * E, rtol=1e-12)
    # split pool 0 in 4 identical sub-pools (same a, tau, measured gap)
    ws = np.array([[0.15, 0.15, 0.15, 0.15, 0.4]])
    Ns, taus, gaps, as_ = (np.r_[[N[0] / 4] * 4, N[1]], np.r_[[tau[0]] * 4, tau[1]],
                           np.r_[[gap[0]] * 4, gap[1]], np.r_[[a[0]] * 4, a[1]])
    Es = np.array([multiplier_errors([x], ws, as_, b, d, taus, Ns, gaps=gaps)[0][0] for x in n])
    np.testing.assert_allclose(Es, E, rtol=1e-12)
    # a repeated copy of an unlimited pool of the same worth never helps
    for x in n:
        alone = multiplier_errors([x], np.array([[1.0, 0.0]]), [0.02, 0.02], b, d, [5.0, 5.0], [1e16, 1e6])[0][0]
        for wc in (0.01, 0.1, 0.5):
            mixed = multiplier_errors([x], np.array([[1 - wc, wc]]), [0.02, 0.02], b, d, [5.0, 5.0],
                                      [1e16, 1e6])[0][0]
            assert mixed >= alone * (1 - 1e-13)


def test_huge_budgets_cost_nothing_more():
    """Closed form: 1e14 samples of a 1e3-sample pool is one evaluation, not 1e11 passes."""
    E, _ = multiplier_errors([1e14], np.array([[1.0]]), [0.02], -0.1, 0.2, [4.0], [1e3])
    assert np.isfinite(E[0]) and E[0] > 0.2


def test_the_law_object_in_the_multiplier_form():
    from curate.laws.qqt import QQTLaw

    law = QQTLaw({"p": 0.03, "q": 0.01}, 0.5, ["p", "q"], b=-0.15, tau={"p": 3.0, "q": 8.0},
                 sizes={"p": 4e6, "q": 9e6}, variant="multiplier")
    assert law.params == {"a[p]": 0.03, "a[q]": 0.01, "b": -0.15, "d": 0.5, "tau[p]": 3.0, "tau[q]": 8.0}
    n = np.geomspace(1e6, 1e9, 5)
    E, _ = multiplier_errors(n, np.tile([0.6, 0.4], (5, 1)), [0.03, 0.01], -0.15, 0.5, [3.0, 8.0], [4e6, 9e6])
    np.testing.assert_allclose(law.predict_mixture({"p": 0.6, "q": 0.4}, n), E, rtol=1e-13)
    moved = law.with_params({"a[q]": 0.02, "b": -0.2})
    assert moved.variant == "multiplier" and moved.params["a[q]"] == 0.02 and set(moved.b) == {-0.2}
    assert law.subset(["q"]).predict(1e8, pool="q") == pytest.approx(law.predict(1e8, pool="q"))
    # on fresh data the better pool is the one whose samples are worth more
    assert law.predict(2e6, pool="p") < law.predict(2e6, pool="q")
    with pytest.raises(ValueError, match="one slope"):
        QQTLaw([0.1, 0.1], 0.1, ["p", "q"], b=[-0.1, -0.2], tau=[1, 1], sizes=[1, 1], variant="multiplier")


def test_law_files_round_trip_gaps_gamma_and_the_multiplier_form():
    from curate.laws.lawfile import law_from_dict, law_to_dict
    from curate.laws.qqt import QQTLaw

    for law in (QQTLaw({"p": 0.03, "q": 0.01}, 0.5, ["p", "q"], b=-0.15, tau={"p": 3.0, "q": 8.0},
                       sizes={"p": 4e6, "q": 9e6}, gaps={"p": 1e5, "q": 2e5}, gamma=0.5,
                       variant="multiplier"),
                QQTLaw(0.02, 0.1, ["p", "q"], b=[-0.1, -0.2], tau=[2.0, 5.0], sizes=[1e6, 2e6],
                       gaps=[1e5, 2e6])):
        data = law_to_dict(law)
        back = law_from_dict(data)
        assert back.params == law.params and back.variant == law.variant and back.gamma == law.gamma
        np.testing.assert_array_equal(back.gaps, law.gaps)
        assert back.predict_mixture({"p": 0.5, "q": 0.5}, 3e7) == law.predict_mixture({"p": 0.5, "q": 0.5}, 3e7)
    old = law_to_dict(law)
    old.pop("gamma")
    for entry in old["pools"]:
        entry.pop("gap")  # files written before gaps existed: tau measured at the pool size
    back = law_from_dict(old)
    assert back.gamma == 1.0 and list(back.gaps) == list(back.sizes)

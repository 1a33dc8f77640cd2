"""The QQT kernel against a direct transcription of the formulas (tests/laws/qqt_reference.py)."""
from __future__ import annotations

import numpy as np
import pytest

from curate.laws import qqt_kernel
from curate.laws.qqt_kernel import Segments, mixture_errors
from tests.laws import qqt_reference as reference

A, D = 0.03, 0.1
B = np.array([-0.18, -0.12, -0.09, -0.15])
TAU = np.array([2.0, 6.0, 1.5, 9.0])
SIZES = np.array([2e6, 5e6, 1e7, 3e5])


def _rows(seed=0, count=50):
    rng = np.random.default_rng(seed)
    W = rng.dirichlet(np.full(4, 0.7), size=count)
    W[::5, 2] = 0.0  # some pools unused
    W[1::7] = np.eye(4)[rng.integers(0, 4, size=W[1::7].shape[0])]
    n = np.exp(rng.uniform(np.log(1e5), np.log(3e9), size=count))
    return n, W / W.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("variant", ["utility", "data"])
def test_mixture_errors_match_the_formulas(variant):
    n, W = _rows()
    got = mixture_errors(n, W, A, B, TAU, SIZES, D, variant=variant)
    want = [reference.mixture_error(x, w, A, B, TAU, SIZES, D, variant=variant)
            for x, w in zip(n, W)]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("variant", ["utility", "data"])
def test_segments_with_and_without_the_half_life_cut_agree(variant):
    """Passes beyond 70 half-lives are below double precision: the cut changes no digit that
    float64 can promise (1e-12), and it keeps a tiny pool's 10^5 passes from becoming segments."""
    n = np.array([4e8, 4e8, 4e8])
    W = np.array([[1.0, 0.0], [0.7, 0.3], [0.05, 0.95]])
    b, tau, sizes = np.array([-0.2, -0.1]), np.array([1.5, 4.0]), np.array([2e3, 5e6])
    exact = Segments.build(n, W, sizes)
    cut = Segments.build(n, W, sizes, tau=tau)
    assert cut.seg_row.size < exact.seg_row.size / 100
    np.testing.assert_allclose(cut.predict(A, D, b, tau, variant),
                               exact.predict(A, D, b, tau, variant), rtol=1e-12, atol=0)
    np.testing.assert_allclose(mixture_errors(n, W, A, b, tau, sizes, D, variant=variant),
                               exact.predict(A, D, b, tau, variant), rtol=1e-12, atol=0)


def test_chunked_building_gives_the_same_segments(monkeypatch):
    n, W = _rows(seed=1, count=30)
    whole = Segments.build(n, W, SIZES)
    monkeypatch.setattr(qqt_kernel, "_CHUNK_ELEMENTS", 40)  # a few rows per chunk
    chunked = Segments.build(n, W, SIZES)
    for field in ("seg_row", "seg_lo", "seg_hi", "seg_pass", "first", "log_ratio", "t_all"):
        np.testing.assert_array_equal(getattr(chunked, field), getattr(whole, field))
    np.testing.assert_array_equal(mixture_errors(n, W, A, B, TAU, SIZES, D),
                                  mixture_errors(n, W, A, B, TAU, SIZES, D))


def test_rows_without_repetition_have_no_segments():
    seg = Segments.build([1e5, 1e6], [[0.5, 0.5], [1.0, 0.0]], [1e6, 2e6])
    assert seg.seg_row.size == 0
    assert seg.predict(A, D, B[:2], TAU[:2]) == pytest.approx(
        [(A * 1e5 / 1e5) ** (0.5 * (B[0] + B[1])) + D, (A * 1e6 / 1e5) ** B[0] + D], rel=1e-13)


def test_data_variant_jacobian_is_finite_where_every_decay_underflows():
    """gamma and a short gap can shrink a half-life until 0.5^(pass/tau') underflows to 0:
    nothing is added there, and the Jacobian must say 0, not NaN (the fitter cannot use NaN)."""
    from curate.laws.qqt_kernel import Segments

    seg = Segments.build([5e6], [[1.0]], [1e4], gaps=[1e6], gamma=3.0)  # tau' = tau * 1e-6
    E, J = seg.predict_and_jacobian(0.02, 0.1, [-0.1], [1.0], "data", jacobian=True, gamma=3.0)
    assert np.all(np.isfinite(E)) and np.all(np.isfinite(J))


# -- many passes: bounded work, exact values (issue 17 item 7: predict at 1e14 summed every pass)

def _fsum_reference(n, a, b, tau, N, d, variant):
    """One pool, every pass summed exactly (math.fsum, log1p): the released formulas."""
    import math

    K = math.floor(n / N)
    if variant == "data":
        D = math.fsum([N * 0.5 ** (k / tau) for k in range(K)] + [(n - K * N) * 0.5 ** (K / tau)])
        return (a * D / 1e5) ** b + d
    terms = []
    for k in range(1, min(K, math.ceil(70 * tau)) + 1):
        hi = min(n, (k + 1) * N)
        terms.append(0.5 ** (k / tau) * (math.log1p(1 / k) if hi == (k + 1) * N else math.log(hi / (k * N))))
    return ((a * min(n, N) / 1e5) ** b + d) * math.exp(b * math.fsum(terms))


@pytest.mark.parametrize("variant", ["utility", "data"])
@pytest.mark.parametrize("tau, N, n", [(3e3, 1e3, 2.5e8 + 123), (1e4, 1e2, 7.77e7), (5e4, 10.0, 5.3e6)])
def test_hundreds_of_thousands_of_passes_match_the_exact_sum(variant, tau, N, n):
    from curate.laws.qqt_kernel import mixture_errors

    got = mixture_errors(n, [1.0], 0.025, [-0.16], [tau], [N], 0.1, variant=variant)[0]
    assert got == pytest.approx(_fsum_reference(n, 0.025, -0.16, tau, N, 0.1, variant), rel=1e-13)


def test_mixture_passes_in_closed_form_match_the_exact_segments():
    """The utility form's closed-form tail against the fitter's exact segments (every pass
    boundary of every pool, no cut), with t_all inside the tail and uneven pools and gaps."""
    from curate.laws.qqt_kernel import Segments, mixture_errors

    # row 3: pool 1's share is so small that t_all (5e7) is ~5e4 passes of pool 2, in its tail
    W = np.array([[0.7, 0.3, 0.0], [0.2, 0.3, 0.5], [0.0009, 0.001, 0.9981]])
    sizes, gaps = np.array([2e3, 5e4, 1e3]), np.array([1e3, 2e4, 5e3])
    b, tau, gamma = np.array([-0.16, -0.1, -0.12]), np.array([900.0, 30.0, 2e3]), 0.7
    n = np.array([4e7, 9e7, 6e7])
    exact = Segments.build(n, W, sizes, gaps=gaps, gamma=gamma).predict(0.025, 0.1, b, tau, gamma=gamma)
    got = mixture_errors(n, W, 0.025, b, tau, sizes, 0.1, gaps=gaps, gamma=gamma)
    np.testing.assert_allclose(got, exact, rtol=1e-11)


def test_a_huge_budget_with_slow_decay_is_bounded():
    """tau at the box's upper bound measured at a 100x smaller gap, 1e14 samples: ~7e6 passes
    per pool (9 s and 870 MB per evaluation before; a bootstrap band made it 100 of those)."""
    import time
    import tracemalloc

    from curate.laws.qqt import QQTLaw

    for variant in ("utility", "data"):
        law = QQTLaw(0.025, 0.1, ["p0", "p1"], b=[-0.16, -0.1], tau=[1e4, 5.0], sizes=[1.4e7, 2e6],
                     gaps=[1.4e5, 2e4], variant=variant)
        tracemalloc.start()
        started = time.perf_counter()
        value = law.predict(1e14, pool="p0")
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert np.isfinite(value) and 0.1 < value < law.predict(1e12, pool="p0")
        assert peak < 50e6 and elapsed < 5, (variant, peak, elapsed)
    law = QQTLaw(0.025, 0.1, ["p0", "p1"], b=[-0.16, -0.1], tau=[1e4, 5.0], sizes=[1.4e7, 2e6],
                 gaps=[1.4e5, 2e4], variant="utility")
    assert np.isfinite(law.predict_mixture({"p0": 0.5, "p1": 0.5}, 1e14))
    with pytest.raises(ValueError, match=r"effective-data form would sum 3.64e\+06 passes"):
        QQTLaw(0.025, 0.1, ["p0", "p1"], b=[-0.16, -0.1], tau=[1e4, 5.0], sizes=[1.4e7, 2e6],
               gaps=[1.4e5, 2e4], variant="data").predict_mixture({"p0": 0.5, "p1": 0.5}, 1e14)

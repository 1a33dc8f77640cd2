"""QQT model: the released golden values, mixtures of unequal pools, the QQTLaw object."""
from __future__ import annotations

import json

import numpy as np
import pytest

from curate.laws.qqt import (QQTLaw, mixture_error, single_pool_error, single_pool_error_data)


@pytest.fixture(scope="module")
def golden(reference_dir):
    return json.loads((reference_dir / "qqt_golden.json").read_text())


@pytest.fixture(scope="module")
def published(reference_dir):
    """Both released parameter sets as QQTLaw objects, keyed by id."""
    out = {}
    for line in (reference_dir / "qqt_parameter_values.jsonl").read_text().splitlines():
        p = json.loads(line)
        out[p["id"]] = QQTLaw(p["best_a"], p.get("d_value", 0.1), p["names"], b=p["b_values"],
                              tau=p["c_values"], sizes=[12.8e6] * len(p["names"]),
                              variant="data" if p["id"].endswith("_data") else "utility")
    return out


def test_all_102_golden_cases_to_1e9(golden, published):
    cases = golden["cases"]
    assert len(cases) == 102
    kinds = set()
    for c in cases:
        law = published[c["param_key"]]
        assert law.a == c["a"] and law.d == c["d"]
        if c["kind"] == "single":
            got = law.predict(c["n"], pool=c["pool"])
        else:
            assert c["tau_scaled_by_m"]
            got = law.predict_mixture({p: 1.0 for p in c["pools"]}, c["n"])
        kinds.add((c["kind"], law.variant))
        assert got == pytest.approx(c["error"], rel=1e-9, abs=0), c
    assert kinds == {("single", "utility"), ("single", "data"),
                     ("mixture_topk", "utility"), ("mixture_topk", "data")}


def test_golden_cases_through_plain_functions(golden):
    for c in golden["cases"]:
        variant = "data" if c["param_key"].endswith("_data") else "utility"
        if c["kind"] == "single":
            fn = single_pool_error_data if variant == "data" else single_pool_error
            got = fn(c["n"], c["a"], c["b"], c["tau"], golden["pool_size"], c["d"])
        else:
            m = len(c["pools"])
            got = mixture_error(c["n"], [1.0] * m, c["a"], c["b"], c["tau"],
                                [golden["pool_size"]] * m, c["d"], variant=variant)
        assert got == pytest.approx(c["error"], rel=1e-9, abs=0)


@pytest.mark.parametrize("variant", ["utility", "data"])
def test_one_pool_mixture_equals_single_pool(variant):
    law = QQTLaw(0.02, 0.1, ["x", "y"], b=[-0.15, -0.1], tau=[3.0, 5.0], sizes=[1e6, 4e6],
                 variant=variant)
    n = np.array([3e5, 1e6, 2.5e6, 1.7e7])
    assert np.allclose(law.predict_mixture({"x": 1.0}, n), law.predict(n, pool="x"), rtol=1e-12)
    # a zero weight removes a pool entirely
    assert np.allclose(law.predict_mixture([0.0, 2.0], n), law.predict(n, pool="y"), rtol=1e-12)


@pytest.mark.parametrize("variant", ["utility", "data"])
def test_identical_pools_split_equals_one_merged_pool_first_pass(variant):
    # Before any repetition the mixture of identical pools is one pool of their total size.
    law = QQTLaw(0.02, 0.1, ["x", "y"], b=[-0.12, -0.12], tau=[4.0, 4.0], sizes=[1e6, 1e6],
                 variant=variant)
    merged = QQTLaw(0.02, 0.1, ["xy"], b=[-0.12], tau=[4.0], sizes=[2e6], variant=variant)
    for n in (5e5, 1.9e6):
        assert law.predict_mixture([1, 1], n) == pytest.approx(merged.predict(n, pool="xy"), rel=1e-12)


@pytest.mark.parametrize("variant", ["utility", "data"])
def test_unequal_pools_small_pool_decays_first(variant):
    """Each pool follows its own repetition count: a small pool given a big share decays early."""
    law = QQTLaw(0.02, 0.1, ["small", "big"], b=[-0.15, -0.15], tau=[0.5, 0.5],
                 sizes=[1e6, 1e8], variant=variant)
    w = {"small": 0.9, "big": 0.1}
    t1 = 1e6 / 0.9  # the small pool's first pass ends here; until then the stream is unique
    first_pass = (0.02 * 1e6 / 1e5) ** -0.15 + 0.1
    assert law.predict_mixture(w, 1e6) == pytest.approx(first_pass, rel=1e-13)
    assert law.predict_mixture(w, 1.5 * t1) != pytest.approx(
        (0.02 * 1.5 * t1 / 1e5) ** -0.15 + 0.1, rel=1e-3)
    n = 2e7
    heavy_small = law.predict_mixture(w, n)
    light_small = law.predict_mixture({"small": 0.1, "big": 0.9}, n)
    only_small = law.predict(n, pool="small")
    assert light_small < heavy_small < only_small


@pytest.mark.parametrize("variant", ["utility", "data"])
def test_mixture_continuous_in_weights_and_monotone_in_samples(variant):
    law = QQTLaw(0.02, 0.1, ["p", "q", "r"], b=[-0.16, -0.12, -0.09], tau=[3.0, 6.0, 2.0],
                 sizes=[2e6, 3e6, 5e6], variant=variant)
    w = np.array([0.5, 0.3, 0.2])
    base = law.predict_mixture(w, 3e7)
    bumped = law.predict_mixture(w + np.array([1e-7, -1e-7, 0.0]), 3e7)
    assert abs(bumped - base) < 1e-5
    # adding a tiny weight for a pool changes the prediction only a little -- except that a
    # pool never exhausted keeps the floor whole (utility: d erodes only once every pool of
    # the mixture is repeating); E is linear in d, so E(d=0) + d is the floor-whole value
    tiny = law.predict_mixture({"p": 0.5, "q": 0.5, "r": 1e-9}, 3e7)
    without = law.predict_mixture({"p": 0.5, "q": 0.5}, 3e7)
    if variant == "utility":
        floor_whole = law.with_params({"d": 0.0}).predict_mixture({"p": 0.5, "q": 0.5}, 3e7) + law.d
        assert tiny == pytest.approx(floor_whole, rel=1e-4) and tiny > without
    else:
        assert tiny == pytest.approx(without, rel=1e-4)
    errs = law.predict_mixture(w, np.geomspace(1e5, 1e9, 40))
    assert np.all(np.diff(errs) < 0)  # b < 0: more samples never hurts here


def test_sizes_override_and_array_inputs():
    law = QQTLaw(0.025, 0.1, ["a1", "a2"], b={"a1": -0.16, "a2": -0.1},
                 tau={"a1": 6.7, "a2": 5.3}, sizes={"a1": 1e6, "a2": 1e6})
    n = np.array([[1e6, 5e6], [1e7, 2e7]])
    out = law.predict(n, pool="a1")
    assert out.shape == (2, 2)
    bigger = law.predict(n, pool="a1", size=1e7)
    assert np.all(bigger <= out + 1e-15)  # a bigger pool repeats less
    # with the sizes overridden to 1e7 each, 5e6 samples of a 50/50 mix are all first-pass
    fresh = (0.025 * 5e6 / 1e5) ** (-0.13) + 0.1
    assert law.predict_mixture({"a1": 1, "a2": 1}, 5e6, sizes={"a1": 1e7, "a2": 1e7}) == \
        pytest.approx(fresh, rel=1e-13)
    assert law.predict_mixture({"a1": 1, "a2": 1}, 5e6) != pytest.approx(fresh, rel=1e-6)


def test_law_parameters_by_name_and_errors():
    law = QQTLaw(0.025, 0.1, ["p0", "p1"], b=[-0.16, -0.1], tau=[6.0, 3.0], sizes=[1e6, 2e6])
    assert law.params == {"a": 0.025, "d": 0.1, "b[p0]": -0.16, "tau[p0]": 6.0,
                          "b[p1]": -0.1, "tau[p1]": 3.0}
    moved = law.with_params({"b[p1]": -0.2, "d": 0.05})
    assert moved.params["b[p1]"] == -0.2 and moved.d == 0.05 and law.d == 0.1
    with pytest.raises(ValueError, match="unknown pool 'zz'"):
        law.predict(1e6, pool="zz")
    with pytest.raises(ValueError, match="unknown pool"):
        law.predict_mixture({"zz": 1.0}, 1e6)
    with pytest.raises(ValueError, match="not all zero"):
        law.predict_mixture({"p0": 0.0}, 1e6)
    with pytest.raises(ValueError, match="unknown QQT parameter"):
        law.with_params({"c": 1.0})
    with pytest.raises(ValueError, match="missing for pool"):
        QQTLaw(0.02, 0.1, ["p0", "p1"], b={"p0": -0.1}, tau=[1, 1], sizes=[1, 1])
    with pytest.raises(ValueError, match="variant"):
        QQTLaw(0.02, 0.1, ["p0"], b=[-0.1], tau=[1], sizes=[1], variant="bogus")

"""laws.prediction.predict_table: what `curate predict` prints, usable without the CLI."""
from __future__ import annotations

import numpy as np
import pytest

from curate.laws.prediction import predict_table
from curate.laws.qqt import QQTLaw


def _law():
    return QQTLaw(a=5e-9, d=0.1, pools=["p", "q"], b={"p": -0.2, "q": -0.1}, tau={"p": 4.0, "q": 10.0},
                  sizes={"p": 1e6, "q": 4e6})


def test_pool_and_mixture_predictions_equal_the_law():
    law = _law()
    n = [1e6, 3e6]
    one = predict_table(law, n, pool="p")
    assert one["pool_size"] == 1e6 and one["interval"] is None
    np.testing.assert_allclose(one["prediction"], law.predict(np.array(n), pool="p"), rtol=1e-12)
    smaller = predict_table(law, n, pool="p", unique=5e5)  # a subsample repeats more: worse
    assert all(s > o for s, o in zip(smaller["prediction"], one["prediction"]))
    mix = predict_table(law, n, mixture={"p": 0.5, "q": 0.5})
    np.testing.assert_allclose(mix["prediction"], law.predict_mixture({"p": 0.5, "q": 0.5}, np.array(n)),
                               rtol=1e-12)


@pytest.mark.parametrize("kwargs, message", [
    ({}, "needs --pool NAME or --mixture"),
    ({"pool": "zz"}, "unknown pool 'zz'"),
    ({"mixture": {"p": 1.0, "zz": 1.0}}, "unknown pool"),
    ({"pool": "p", "params": 1e6}, "--params does not apply"),
    ({"mixture": {"p": 1.0}, "unique": 10.0}, "--unique applies to --pool only"),
    ({"pool": "p", "unique": -1.0}, "--unique must be a positive number"),
])
def test_bad_requests_are_one_line_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        predict_table(_law(), [1e6], **kwargs)


def _overflowing_law():
    """Pool p's first-pass term (a n / s)^b overflows to inf for small n; pool q is sane."""
    return QQTLaw(a=1e-300, d=0.1, pools=["p", "q"], b={"p": -5.0, "q": -0.1},
                  tau={"p": 4.0, "q": 10.0}, sizes={"p": 1e6, "q": 4e6})


def test_non_finite_predictions_are_errors_naming_the_input():
    """Issue 17 item 10: predictions printed as a bare inf / NaN with no warning."""
    import warnings

    law = _overflowing_law()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning lines either: the error is the one line
        with pytest.raises(ValueError, match="prediction for pool p at 1000 samples is inf: its "
                                             "parameters overflow"):
            predict_table(law, [1e3], pool="p")
        with pytest.raises(ValueError, match="for mixture p=1, q=1 at 1000 samples is inf"):
            predict_table(law, [1e3], mixture={"p": 1, "q": 1})
        assert np.isfinite(predict_table(law, [1e3], pool="q")["prediction"][0])


def test_non_finite_interval_bounds_and_lm_predictions_are_errors():
    from curate.laws.data_constrained import ChinchillaLaw

    law = _law()
    law.bootstrap = {"level": 0.9, "draws": [{"a": 5e-9}, {"a": 1e-300, "b[p]": -5.0}]}
    with pytest.raises(ValueError, match=r"law's 90% interval for pool p at 1000 samples is inf"):
        predict_table(law, [1e3], pool="p")
    huge = ChinchillaLaw(E=1.0, A=1e300, B=1e300, alpha=-2.0, beta=0.3)
    with pytest.raises(ValueError, match=r"prediction for N = 1e\+09 params at 1e\+10 tokens is inf"):
        predict_table(huge, [1e10], params=1e9)


def test_a_plan_with_a_non_finite_number_names_where_and_for_what():
    from curate.laws.planning import make_plan
    from curate.laws.prediction import require_finite_plan

    with pytest.raises(ValueError, match=r"the law predicts inf for all pools, size-proportional "
                                         r"\(p=0.2, q=0.8\) at a budget of 1e\+07 samples "
                                         r"\(plan.baselines.all_once.loss\)"):
        make_plan(_overflowing_law(), 1e7, max_epochs=10)
    require_finite_plan({"plan": {"predicted": 0.5, "interval": [0.4, 0.6]}, "sweep": None})
    with pytest.raises(ValueError, match=r"predicts nan for top2 .*\(sweep.points.1.loss\)"):
        require_finite_plan({"unit": "samples", "sweep": {"points": [
            {"budget": 1e6, "loss": 0.5}, {"budget": 2e6, "name": "top2", "loss": float("nan")}]}})

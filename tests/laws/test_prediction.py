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

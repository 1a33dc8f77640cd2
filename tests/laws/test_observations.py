"""Observation validation: every bad input names the row and the problem."""
from __future__ import annotations

import numpy as np
import pytest

from curate.laws.observations import parse_mixture, require_points, validate_observations


def _cols(**overrides):
    cols = {"pool": ["top10", "top10", "top20", "top10=1;top20=3"],
            "samples_seen": [1e6, 4e6, 2e6, 8e6],
            "unique_samples": [1e6, 1e6, 2e6, 8e6],
            "metric": [0.9, 0.8, 0.85, 0.7]}
    cols.update(overrides)
    return cols


def test_valid_observations_parse_numbers_and_mixtures():
    obs = validate_observations(_cols(samples_seen=["1e6", 4e6, "2000000", 8e6]), law="qqt")
    assert len(obs) == 4
    assert obs.samples_seen.tolist() == [1e6, 4e6, 2e6, 8e6]
    assert obs.pool_names == ["top10", "top20"]
    assert obs.mixtures[0] is None
    assert obs.mixtures[3] == pytest.approx({"top10": 0.25, "top20": 0.75})
    assert obs.is_mixture.tolist() == [False, False, False, True]
    sub = obs.subset([3, 3, 0])
    assert sub.pool == ["top10=1;top20=3"] * 2 + ["top10"] and sub.metric.tolist() == [0.7, 0.7, 0.9]


@pytest.mark.parametrize("column, values, message", [
    ("metric", [0.9, float("nan"), 0.85, 0.7], "row 2: metric is NaN"),
    ("metric", [0.9, 0.8, "nan", 0.7], "row 3: metric is NaN"),
    ("samples_seen", [1e6, float("inf"), 2e6, 8e6], "row 2: samples_seen is infinite"),
    ("samples_seen", [1e6, 4e6, 0, 8e6], "row 3: samples_seen must be positive"),
    ("unique_samples", [1e6, -1, 2e6, 8e6], "row 2: unique_samples must be positive"),
    ("metric", [0.9, 0.8, None, 0.7], "row 3: metric is missing"),
    ("metric", [0.9, 0.8, "", 0.7], "row 3: metric is missing"),
    ("metric", [0.9, "abc", 0.85, 0.7], "row 2: metric must be a number, got 'abc'"),
    ("unique_samples", [1e6, 5e6, 2e6, 8e6], r"row 2: unique_samples \(5e\+06\) > samples_seen \(4e\+06\)"),
    ("pool", ["top10", "top10", "top20", "top10=1;top20"], "row 4: bad mixture syntax"),
    ("pool", ["top10", "top10", "top20", "top10=x;top20=1"], "row 4: mixture weight 'x'"),
    ("pool", ["top10", "top10", "top20", "top10=0;top20=0"], "row 4: .*sum to more than 0"),
    ("pool", ["top10", "top10", "top20", "top10=-1;top20=2"], "row 4: .*>= 0"),
    ("pool", ["top10", "top10", "top20", "top10=1;top10=2"], "row 4: pool 'top10' appears twice"),
    ("pool", ["top10", None, "top20", "top10"], "row 2: pool is missing"),
    ("pool", ["top10", "b[x]", "top20", "top10"], "row 2: bad pool name"),
])
def test_bad_values_name_the_row(column, values, message):
    with pytest.raises(ValueError, match=message):
        validate_observations(_cols(**{column: values}), law="qqt")


def test_duplicates_are_rejected():
    cols = _cols(pool=["top10", "top20", "top10", "top20"],
                 samples_seen=[1e6, 2e6, 1e6, 3e6], unique_samples=[1e6, 2e6, 1e6, 3e6],
                 metric=[0.9, 0.8, 0.9, 0.7])
    with pytest.raises(ValueError, match="row 3: duplicate of row 1"):
        validate_observations(cols, law="qqt")
    # the same run and step measured twice (different metric) is a duplicate too
    cols = _cols(run_id=["r1", "r1", "r2", "r1"], step=[1, 2, 1, 1])
    with pytest.raises(ValueError, match="row 4: run_id 'r1' step 1 already measured in row 1"):
        validate_observations(cols, law="qqt")
    # repeated seeds of one configuration with distinct run ids are fine
    obs = validate_observations(_cols(pool=["top10"] * 4, samples_seen=[1e6] * 4,
                                      unique_samples=[1e6] * 4, metric=[0.9, 0.91, 0.9, 0.89],
                                      run_id=["s1", "s2", "s3", "s4"]), law="qqt")
    assert obs.groups().tolist() == [0, 1, 2, 3]


def test_required_columns_depend_on_the_law():
    cols = _cols()
    with pytest.raises(ValueError, match=r"lack column\(s\) \['params'\]"):
        validate_observations(cols, law="data-constrained")
    del cols["pool"]
    with pytest.raises(ValueError, match=r"lack column\(s\) \['pool'\]"):
        validate_observations(cols, law="qqt")
    cols["params"] = [1e8, 1e8, 2e8, 2e8]
    obs = validate_observations(cols, law="data-constrained")
    assert obs.pool_names == ["data"] and obs.params.tolist() == [1e8, 1e8, 2e8, 2e8]
    chin = validate_observations({"samples_seen": [1, 2], "metric": [3, 2], "params": [5, 5]},
                                 law="chinchilla")
    assert chin.unique_samples.tolist() == [1, 2]
    with pytest.raises(ValueError, match="params must be positive"):
        validate_observations({**cols, "params": [1e8, 0, 2e8, 2e8]}, law="data-constrained")
    with pytest.raises(ValueError, match="different lengths"):
        validate_observations({**_cols(), "metric": [1.0]}, law="qqt")
    with pytest.raises(ValueError, match="empty"):
        validate_observations({k: [] for k in _cols()}, law="qqt")


def test_too_few_points():
    require_points(5, 4, "qqt")
    with pytest.raises(ValueError, match="too few points for the qqt law: 4 observation"):
        require_points(4, 4, "qqt")


def test_parse_mixture():
    assert parse_mixture("top10") is None
    assert parse_mixture("a=1;b=1;") == {"a": 0.5, "b": 0.5}
    assert parse_mixture(" a = 2 ; b = 6 ") == {"a": 0.25, "b": 0.75}
    np.testing.assert_allclose(sum(parse_mixture("a=0.1;b=0.2;c=0.3").values()), 1.0)
    for bad in ("a=1;;b=1", "a=1=2", "=1", "a=inf"):
        with pytest.raises(ValueError):
            parse_mixture(bad)


@pytest.mark.parametrize("column, values, message", [
    # issue 17 item 7: one samples_seen=1e308 row asked the fit for 22 GB
    ("samples_seen", [1e6, 1e308, 2e6, 8e6], r"row 2: samples_seen 1e\+308 is above the maximum 1e\+15"),
    ("unique_samples", [1e6, 1e6, 2e6, 2e15], r"row 4: unique_samples 2e\+15 is above the maximum"),
    ("metric", [0.9, 0.8, 1e300, 0.7], r"row 3: metric 1e\+300 is above the maximum"),
    ("unique_samples", [1e6, 1e-3, 2e6, 8e6], r"row 2: samples_seen \(4e\+06\) is 4e\+09 passes"),
])
def test_values_outside_sane_ranges_name_the_row(column, values, message):
    with pytest.raises(ValueError, match=message):
        validate_observations(_cols(**{column: values}), law="qqt")


def test_limits_are_inclusive_and_cover_the_lm_columns():
    from curate.laws.observations import MAX_COUNT, MAX_EPOCHS

    ok = validate_observations(_cols(samples_seen=[1e6, 4e6, 2e6 * MAX_EPOCHS, 8e6]), law="qqt")
    assert ok.samples_seen[2] == 2e6 * MAX_EPOCHS
    lm = {"samples_seen": [1e9, 2e9], "unique_samples": [1e9, 1e9], "metric": [3.0, 2.9],
          "params": [1e8, MAX_COUNT * 10]}
    with pytest.raises(ValueError, match=r"row 2: params 1e\+16 is above the maximum"):
        validate_observations(lm, law="data-constrained")

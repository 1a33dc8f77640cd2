"""Law-file dicts: round trips and validation errors that name the field."""
from __future__ import annotations

import copy
import json

import pytest

from curate.laws.lawfile import FORMAT, law_from_dict, law_to_dict
from curate.laws.qqt import QQTLaw


def _qqt_law():
    return QQTLaw(0.025, 0.1, ["top10", "top20"], b=[-0.16, -0.125], tau=[6.7, 8.5],
                  sizes=[12_800_000, 12_800_000], variant="utility", unit="documents",
                  fixed=["d"], fit_info={"r2": 0.99, "n_obs": 12},
                  bootstrap={"level": 0.9, "draws": [{"a": 0.024}], "intervals": {"a": [0.02, 0.03]}})


def test_qqt_round_trip_through_json():
    law = _qqt_law()
    d = law_to_dict(law)
    assert d["format"] == FORMAT and d["kind"] == "qqt" and d["unit"] == "documents"
    assert d["pools"] == [{"name": "top10", "size": 12800000, "gap": 12800000},
                          {"name": "top20", "size": 12800000, "gap": 12800000}]
    assert d["gamma"] == 1.0  # the released scaling of tau with the gap
    assert d["params"]["b[top20]"] == -0.125 and d["fixed"] == ["d"]
    back = law_from_dict(json.loads(json.dumps(d)))
    assert isinstance(back, QQTLaw)
    assert back.params == law.params and back.pool_sizes == law.pool_sizes
    assert back.fit_info == {"r2": 0.99, "n_obs": 12} and back.bootstrap["intervals"]["a"] == [0.02, 0.03]
    assert back.predict_mixture({"top10": 1, "top20": 1}, 7e7) == \
        law.predict_mixture({"top10": 1, "top20": 1}, 7e7)
    assert law_from_dict(law_to_dict(law)).params == law.params


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("format"), "'format'"),
    (lambda d: d.update(kind="gpt"), "'kind'"),
    (lambda d: d.update(unit="bytes"), "'unit'"),
    (lambda d: d.update(variant="x"), "'variant'"),
    (lambda d: d["params"].pop("tau[top20]"), r"params.tau\[top20\] is missing"),
    (lambda d: d["params"].pop("a"), "params.a is missing"),
    (lambda d: d["params"].update(a="big"), "params.a must be a number"),
    (lambda d: d["params"].update(d=float("nan")), "params.d must be finite"),
    (lambda d: d["params"].update({"c[top10]": 1.0}), "unknown QQT parameter"),
    (lambda d: d["pools"][1].pop("size"), r"pools\[1\] must be an object"),
    (lambda d: d["pools"][0].update(size=-5), r"pools\[0\].size must be positive"),
    (lambda d: d["pools"][0].update(name="a=b"), "may not contain"),
    (lambda d: d.update(pools=[]), "'pools'"),
    (lambda d: d.update(fixed=["zeta"]), "'fixed' names unknown"),
    (lambda d: d.update(params=None), "'params'"),
    (lambda d: d["bootstrap"]["draws"].append({"zeta": 1.0}), r"draws\[1\] names unknown parameter 'zeta'"),
    (lambda d: d["bootstrap"]["draws"].append({"a": "x"}), r"bootstrap.draws\[1\].a must be a number"),
    (lambda d: d["bootstrap"].update(level=1.5), "bootstrap.level"),
])
def test_bad_qqt_law_files_name_the_field(mutate, message):
    d = copy.deepcopy(law_to_dict(_qqt_law()))
    mutate(d)
    with pytest.raises(ValueError, match=message):
        law_from_dict(d)


def test_data_constrained_dicts():
    dc = pytest.importorskip("curate.laws.data_constrained")
    params = {"E": 1.87, "A": 521.0, "B": 1488.0, "alpha": 0.35, "beta": 0.35,
              "R_D_star": 15.4, "R_N_star": 5.3}
    d = {"format": FORMAT, "kind": "data-constrained", "unit": "tokens", "params": params,
         "fixed": ["E"]}
    law = law_from_dict(d)
    assert isinstance(law, dc.DataConstrainedLaw)
    again = law_to_dict(law)
    assert again["params"] == pytest.approx(params) and again["kind"] == "data-constrained"
    assert again["fixed"] == ["E"]
    chin = law_from_dict({"format": FORMAT, "kind": "chinchilla",
                          "params": {k: params[k] for k in ("E", "A", "B", "alpha", "beta")}})
    assert isinstance(chin, dc.ChinchillaLaw)
    assert law_to_dict(chin)["unit"] == "tokens"
    bad = copy.deepcopy(d)
    bad["params"].pop("R_N_star")
    with pytest.raises(ValueError, match="params.R_N_star is missing"):
        law_from_dict(bad)

"""The plan file records what its pool sizes count (`size_unit`), so `curate materialize`
reads the plan in that unit instead of inferring it from the run's measures."""
from __future__ import annotations

from curate.laws.planning import make_plan, size_unit
from curate.laws.qqt import QQTLaw

SIZES = [1e7, 4e6, 2.5e7]


def _law(unit="samples", fit=None) -> QQTLaw:
    return QQTLaw(0.03, 0.1, ["pool0", "pool1", "pool2"], b=[-0.16, -0.14, -0.10], tau=[9.0, 7.0, 12.0],
                  sizes=SIZES, unit=unit, fit_info=fit)


def test_plan_records_the_unit_of_the_laws_own_sizes():
    assert make_plan(_law(), 6e7, max_draws=0)["size_unit"] == "docs"
    assert make_plan(_law("tokens"), 6e7, max_draws=0)["size_unit"] == "tokens"
    # a law fitted on probe observations counts UTF-8 bytes
    assert make_plan(_law("tokens", {"token_unit": "bytes"}), 6e7, max_draws=0)["size_unit"] == "bytes"


def test_plan_records_the_run_column_its_sizes_were_read_from():
    probe_law = _law("tokens", {"token_unit": "bytes"})
    run_sizes = {"pool0": 1.2e7, "pool1": 5e6, "pool2": 2e7}
    # --pools-from reads the run's `chars` for a probe law (size_column), or the column named
    assert make_plan(probe_law, 6e7, run_sizes=run_sizes, max_draws=0)["size_unit"] == "chars"
    assert make_plan(probe_law, 6e7, run_sizes=run_sizes, max_draws=0, run_column="tokens")["size_unit"] == "tokens"
    assert size_unit(_law(), None) == "docs" and size_unit(_law(), "chars") == "chars"

"""`curate report` over the whole loop: observations, law, plan and replay sections appear exactly
when their file is given, and their numbers are the files' (read back from the HTML cells)."""
from __future__ import annotations

import html
import json
import math
import re
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from curate.laws.lawfile import law_from_dict
from curate.orchestration.cli import main
from curate.orchestration.report import write_report
from tests.orchestration.report_dom import HOSTILE_POOL, ROOT, parse_cells, write_loop_files
from tests.pools.runfixture import make_run

LOOP_IDS = ("loop", "fit", "fit-comparison", "observations", "plan", "recommendation", "sweep", "replay")


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    base = tmp_path_factory.mktemp("loop")
    make_run(base / "run", n=80, k=3, seed=3)
    files = write_loop_files(base / "files")
    result = write_report(base / "run", base / "out" / "report.html", observations=files["observations"],
                          law=files["law"], plan=files["plan"], replays=[files["replay"]])
    return base, files, result, result.html_path.read_text()


def _ids(text: str) -> set[str]:
    return set(re.findall(r"<h[23] id='([^']+)'", text))


def _value(cells, group, key) -> str:
    return cells[(group, key)][0]


def test_sections_appear_exactly_when_their_file_is_given(loop, tmp_path):
    base, files, result, text = loop
    assert {"loop", "fit", "fit-comparison", "plan", "recommendation", "sweep", "replay"} <= _ids(text)
    assert result.loop.sections == ["fit", "plan", "sweep", "replay"]
    # run only: no loop section at all
    plain = write_report(base / "run", tmp_path / "run.html")
    assert plain.loop is None and not (_ids(plain.html_path.read_text()) & set(LOOP_IDS))
    # one file at a time
    for name, expected in (("plan", {"loop", "plan", "recommendation", "sweep"}),
                           ("law", {"loop", "fit", "fit-comparison"}),
                           ("observations", {"loop", "observations"}),
                           ("replay", {"loop", "replay"})):
        kwargs = {"replays": [files["replay"]]} if name == "replay" else {name: files[name]}
        out = write_report(base / "run", tmp_path / f"{name}.html", **kwargs)
        assert _ids(out.html_path.read_text()) & set(LOOP_IDS) == expected, name
    # a plan without a sweep has no sweep section and no sweep figure
    no_sweep = json.loads(files["plan"].read_text())
    no_sweep["sweep"] = None
    (tmp_path / "p.json").write_text(json.dumps(no_sweep))
    out = write_report(base / "run", tmp_path / "nosweep.html", plan=tmp_path / "p.json")
    assert "sweep" not in _ids(out.html_path.read_text()) and "sweep" not in out.figures
    assert "plan" in out.figures


def test_law_numbers_equal_the_law_file(loop):
    _, files, _, text = loop
    law = json.loads(files["law"].read_text())
    cells = parse_cells(text).cells
    for name, value in law["params"].items():
        assert float(_value(cells, "law", name)) == value
        lo, hi = law["bootstrap"]["intervals"][name]
        assert float(_value(cells, "law-lo", name)) == lo and float(_value(cells, "law-hi", name)) == hi
    for pool, epochs in law["fit"]["max_epochs_by_pool"].items():
        assert float(_value(cells, "law-epochs", pool)) == epochs
    for row in law["fit"]["model_selection"]["candidates"]:
        assert float(_value(cells, "selection-largest", row["variant"])) == row["holdout_largest_error"]
        assert _value(cells, "selection-chosen", row["variant"]) == ("true" if row["chosen"] else "false")
    assert "data-variant='multiplier'" in text and "one slope b" in text


def test_curves_are_the_laws_predictions_over_the_observations(loop):
    _, files, result, text = loop
    law = law_from_dict(json.loads(files["law"].read_text()))
    obs = pq.read_table(files["observations"]).to_pylist()
    cells = parse_cells(text).cells
    assert "fit" in result.figures and result.figures["fit"].read_bytes().startswith(b"\x89PNG")
    for pool in law.pools:
        rows = [r for r in obs if r["pool"] == pool]
        top = max(r["samples_seen"] for r in rows)
        assert float(_value(cells, "curve-samples", pool)) == top
        measured = [r["metric"] for r in rows if r["samples_seen"] == top]
        assert float(_value(cells, "curve-measured", pool)) == pytest.approx(sum(measured) / len(measured), rel=1e-12)
        assert float(_value(cells, "curve-predicted", pool)) == float(law.predict(top, pool=pool))
        lo, hi = law.predict_interval(top, pool=pool)
        assert float(_value(cells, "curve-lo", pool)) == float(lo) and float(_value(cells, "curve-hi", pool)) == float(hi)
        # the fit is good on its own data: within 2 % on every pool (noise 0.5 %)
        assert float(_value(cells, "curve-error", pool)) < 0.02
        assert int(_value(cells, "obs-rows", pool)) == len(rows) and int(_value(cells, "obs-runs", pool)) == 2


def test_plan_numbers_and_recommendation_equal_the_plan_file(loop):
    _, files, _, text = loop
    plan = json.loads(files["plan"].read_text())
    p = plan["plan"]
    cells = parse_cells(text).cells
    assert sum(r["weight"] for r in p["pools"]) == pytest.approx(1.0)
    for r in p["pools"]:
        assert float(_value(cells, "plan-weight", r["pool"])) == r["weight"]
        assert float(_value(cells, "plan-epochs", r["pool"])) == r["epochs"]
        assert float(_value(cells, "plan-cap", r["pool"])) == r["epoch_cap"]
        assert _value(cells, "plan-binds", r["pool"]) == ("true" if r["cap_binding"] else "false")
    for key, b in p["baselines"].items():
        assert float(_value(cells, "baseline-loss", key)) == b["loss"]
        assert _value(cells, "baseline-feasible", key) == ("true" if b["feasible"] else "false")
    claim = p["claim"]
    assert _value(cells, "claim", "recommended") == claim["recommended"]
    assert float(_value(cells, "claim", "error_bar")) == claim["error_bar"]
    assert _value(cells, "claim", "error_source") == claim["error_source"]
    assert claim["why"] in html.unescape(text)
    assert float(_value(cells, "robustness", "same_choice")) == plan["robustness"]["same_choice"]
    for i, row in enumerate(plan["sweep"]["plans"]):
        assert float(_value(cells, "sweep-budget", str(i))) == row["budget"]
        assert _value(cells, "sweep-mixture", str(i)) == row["mixture"]
        for pool, w in row["weights"].items():
            assert float(_value(cells, f"sweep-weight:{pool}", str(i))) == w
    # the sweep switches mixture in this range (top1 -> two pools), and the report says where
    assert plan["sweep"]["switches"] and "the choice switches at" in text


def test_replay_numbers_equal_the_replay_file_and_disagreements_are_noted(loop):
    _, files, result, text = loop
    rep = json.loads(files["replay"].read_text())
    cells = parse_cells(text).cells
    for row in rep["candidates"]:
        k = row["key"]
        assert float(_value(cells, "replay0-predicted", k)) == row["predicted"]
        assert float(_value(cells, "replay0-measured", k)) == row["mean"]
        assert float(_value(cells, "replay0-sd", k)) == row["sd"]
        assert [float(_value(cells, f"replay0-seed{j}", k)) for j in range(2)] == row["losses"]
    assert _value(cells, "replay0-verdict", "verdict") == rep["verdict"]
    assert float(_value(cells, "replay0-verdict", "measured_difference")) == rep["measured_difference"]
    assert rep["validates"] in html.unescape(text)
    # the plan's claim came from the law's held-out error, not from this replay: said so
    assert any("does not rest on replay replay.json" in n for n in result.loop.notes)
    assert "a replay note &lt;b&gt;escaped&lt;/b&gt;" in text


def test_a_replay_of_another_plan_is_flagged_and_an_unknown_layout_is_shown_as_given(loop, tmp_path):
    base, files, _, _ = loop
    other = json.loads(files["replay"].read_text())
    other["plan"]["budget"] = 9e9
    (tmp_path / "other.json").write_text(json.dumps(other))
    (tmp_path / "odd.json").write_text(json.dumps({"format": "something/2", "plan_loss": 1.25, "winner": "plan"}))
    out = write_report(base / "run", tmp_path / "r.html", plan=files["plan"],
                       replays=[tmp_path / "other.json", tmp_path / "odd.json"])
    notes = " | ".join(out.loop.notes)
    assert "replay other.json trained another plan" in notes and "do not validate that plan" in notes
    assert "format 'something/2'" in notes
    cells = parse_cells(out.html_path.read_text()).cells
    assert float(_value(cells, "replay1-field", "plan_loss")) == 1.25
    assert _value(cells, "replay1-field", "winner") == "plan"


def test_a_flagged_parameter_shows_its_flag(loop, tmp_path):
    base, files, _, _ = loop
    law = json.loads(files["law"].read_text())
    law["fit"]["at_bound"]["tau[pool1]"] = {"bound": 1e4, "side": "upper", "value": 1e4, "value_at_bound": True,
                                            "draw_share": 0.64, "interval_reaches": True, "box": [0.01, 1e4]}
    (tmp_path / "law.json").write_text(json.dumps(law))
    out = write_report(base / "run", tmp_path / "r.html", law=tmp_path / "law.json")
    cells = parse_cells(out.html_path.read_text()).cells
    assert cells[("law-flag", "tau[pool1]")] == ("upper", "at upper bound 10,000 (64% of draws)")
    assert ("law-flag", "tau[pool0]") not in cells
    assert out.loop.summary()["law"]["at_bound"] == sorted(law["fit"]["at_bound"])
    # no observations: curves over the fit's samples range are still drawn, and it says so
    assert "fit" in out.figures and "no observations given" in out.html_path.read_text()


def test_hostile_pool_names_are_escaped(tmp_path):
    make_run(tmp_path / "run", n=30, k=2, seed=1)
    files = write_loop_files(tmp_path / "files", pools=(HOSTILE_POOL, "pool1"), sweep=None, n_bootstrap=0,
                             seeds=1)
    out = write_report(tmp_path / "run", tmp_path / "r.html", observations=files["observations"],
                       law=files["law"], plan=files["plan"], replays=[files["replay"]])
    text = out.html_path.read_text()
    assert "<script>alert" not in text and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    cells = parse_cells(text).cells
    weight = next(r for r in json.loads(files["plan"].read_text())["plan"]["pools"] if r["pool"] == HOSTILE_POOL)
    assert float(cells[("plan-weight", HOSTILE_POOL)][0]) == weight["weight"]  # the name round-trips
    assert "no bootstrap draws in the law file" in text


def test_bad_files_are_one_line_errors_and_leave_no_report(loop, tmp_path, capsys):
    base, files, _, _ = loop
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "nolaw.json").write_text(json.dumps({"format": "curate-law/1", "kind": "qqt"}))
    for args, message in ((["--plan", str(tmp_path / "bad.json")], "not JSON"),
                          (["--law", str(tmp_path / "nolaw.json")], "'params' is missing"),
                          (["--replay", str(tmp_path / "missing.json")], "no such file")):
        code = main(["report", str(base / "run"), "-o", str(tmp_path / "x.html"), *args])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, err
        assert not (tmp_path / "x.html").exists()


def test_cli_json_summary(loop, tmp_path, capsys):
    base, files, _, _ = loop
    code = main(["report", str(base / "run"), "-o", str(tmp_path / "r.html"), "--law", str(files["law"]),
                 "--plan", str(files["plan"]), "--replay", str(files["replay"]), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    info = json.loads(out)
    plan = json.loads(files["plan"].read_text())["plan"]
    assert info["loop"]["sections"] == ["fit", "plan", "sweep", "replay"]
    assert info["loop"]["plan"]["recommended"] == plan["claim"]["recommended"]
    assert info["loop"]["plan"]["weights"] == {r["pool"]: r["weight"] for r in plan["pools"]}
    assert info["loop"]["replays"][0]["verdict"] == "plan wins"
    assert set(info["figures"]) >= {"fit", "plan", "sweep"}
    assert all(math.isfinite(v) for v in info["loop"]["plan"]["weights"].values())


def test_help_stays_light():
    code = ("import sys; from curate.orchestration.cli import main\n"
            "try:\n    main(['report', '--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('numpy', 'pyarrow', 'duckdb', 'torch', 'matplotlib') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert "--observations" in proc.stdout and "--replay" in proc.stdout
    assert "HEAVY []" in proc.stdout, proc.stdout[-500:] + proc.stderr[-500:]

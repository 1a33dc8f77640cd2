"""The report in real headless Chromium: it renders, its figures decode, and the numbers in the
rendered DOM equal the manifest and stats.parquet. The screenshot is kept under artifacts/report/
(gitignored build artefact)."""
from __future__ import annotations

import pytest

from curate.orchestration.report import write_report
from tests.orchestration.report_dom import ARTIFACTS, check_rendered_report, chromium_binary
from tests.pools.runfixture import make_run

pytestmark = pytest.mark.skipif(
    chromium_binary() is None,
    reason="headless Chromium not installed (Debian: apt-get install -y chromium)",
)


def test_report_renders_in_chromium_with_the_manifest_numbers(tmp_path):
    make_run(tmp_path / "run", n=300, k=4, seed=8, n_dups=40, n_dead=7, n_filtered=11)
    out = ARTIFACTS / "report" / "synthetic"
    result = write_report(tmp_path / "run", out / "report.html")
    check_rendered_report(result.html_path, tmp_path / "run", tmp_path / "chromium-profile",
                          ARTIFACTS / "report" / "report-synthetic.png")


def test_loop_sections_render_in_chromium_with_the_files_numbers(tmp_path):
    import json
    import re

    from tests.orchestration.report_dom import parse_cells, write_loop_files

    make_run(tmp_path / "run", n=120, k=3, seed=8, n_dups=10, n_dead=3, n_filtered=4)
    files = write_loop_files(tmp_path / "files")
    out = ARTIFACTS / "report" / "loop"
    result = write_report(tmp_path / "run", out / "report.html", observations=files["observations"],
                          law=files["law"], plan=files["plan"], replays=[files["replay"]])
    dom = check_rendered_report(result.html_path, tmp_path / "run", tmp_path / "chromium-profile",
                                ARTIFACTS / "report" / "report-loop.png")
    # every loop section and figure is in the rendered DOM (7 run + loop figures decoded above)
    ids = set(re.findall(r'<h[23] id="([^"]+)"', dom))
    assert {"loop", "fit", "fit-comparison", "fit-curves", "plan", "baselines", "recommendation",
            "robustness", "sweep", "replay"} <= ids, ids
    assert all(f'id="fig-{name}"' in dom for name in ("fit", "plan", "sweep"))
    cells = parse_cells(dom).cells
    plan = json.loads(files["plan"].read_text())
    for row in plan["plan"]["pools"]:
        assert float(cells[("plan-weight", row["pool"])][0]) == row["weight"]
    assert cells[("claim", "recommended")][0] == plan["plan"]["claim"]["recommended"]
    law = json.loads(files["law"].read_text())
    assert law["fit"]["at_bound"]  # the fixture's floor d reaches its bound: a flag to find
    for name, flag in law["fit"]["at_bound"].items():
        assert cells[("law-flag", name)][0] == flag["side"]
    replay = json.loads(files["replay"].read_text())
    assert cells[("replay0-verdict", "verdict")][0] == replay["verdict"]
    assert float(cells[("replay0-measured", "plan")][0]) == replay["candidates"][0]["mean"]

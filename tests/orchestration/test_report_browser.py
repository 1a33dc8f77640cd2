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

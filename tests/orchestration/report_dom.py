"""Helpers for the report tests: read the numbers back out of report HTML, drive headless Chromium."""
from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"  # gitignored build artefacts (screenshots)


class NumberCells(HTMLParser):
    """Collects every <td data-group data-key data-value> with its visible text, and body attributes."""

    def __init__(self):
        super().__init__()
        self.cells: dict[tuple[str, str], tuple[str, str]] = {}
        self.body: dict[str, str] = {}
        self._open: tuple[str, str, str] | None = None
        self._text: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body = {k: v or "" for k, v in a.items()}
        if tag == "img":
            self.images.append(a.get("src") or "")
        if tag == "td" and "data-key" in a:
            self._open = (a.get("data-group", ""), a["data-key"], a.get("data-value", ""))
            self._text = []

    def handle_data(self, data):
        if self._open:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "td" and self._open:
            group, key, value = self._open
            self.cells[(group, key)] = (value, "".join(self._text).strip())
            self._open = None


def parse_cells(html_text: str) -> NumberCells:
    parser = NumberCells()
    parser.feed(html_text)
    return parser


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium(args: list[str], html_path: Path, profile: Path, timeout: float = 120) -> str:
    """Run headless Chromium on a local file; returns stdout (the DOM with --dump-dom)."""
    binary = chromium_binary()
    assert binary, "chromium is not installed"
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args, html_path.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def check_rendered_report(html_path, run_dir, profile, screenshot):
    """Render in Chromium; assert the DOM numbers equal the run's manifest/stats; take a screenshot."""
    import json

    import numpy as np
    from matplotlib.image import imread
    import pyarrow.parquet as pq

    dom = chromium(["--dump-dom", "--virtual-time-budget=10000"], html_path, profile)
    parsed = parse_cells(dom)
    assert parsed.body.get("data-images-loaded") == "4/4", "figures did not decode in the browser"
    cells = parsed.cells
    counts = json.loads((run_dir / "manifest.json").read_text())["counts"]
    assert cells[("funnel", "input_records")] == (str(counts["input_records"]), f"{counts['input_records']:,}")
    assert cells[("funnel", "kept")] == (str(counts["kept"]), f"{counts['kept']:,}")
    for reason, n in counts["dead_letter"].items():
        assert cells[("funnel", f"dead_letter:{reason}")][0] == str(n)
    for method, n in counts["removed"].items():
        assert cells[("funnel", f"removed:{method}")][0] == str(n)
    for reason, n in counts["filtered"].items():
        assert cells[("funnel", f"filtered:{reason}")][0] == str(n)
    for row in pq.read_table(run_dir / "stats.parquet").to_pylist():
        k = row["pool"]
        assert cells[(f"pool{k}", "docs")] == (str(row["docs"]), f"{row['docs']:,}")
        assert cells[(f"pool{k}", "tokens")] == (str(row["tokens"]), f"{row['tokens']:,}")
        assert float(cells[(f"pool{k}", "score_mean")][0]) == row["score_mean"]
    assert "counts reconcile" in dom

    screenshot.parent.mkdir(parents=True, exist_ok=True)
    screenshot.unlink(missing_ok=True)
    chromium([f"--screenshot={screenshot}", "--window-size=1200,2600", "--hide-scrollbars"], html_path, profile)
    image = imread(screenshot)
    assert image.shape[:2] == (2600, 1200)
    gray = image[..., :3].mean(axis=2)
    # not blank: plenty of non-white pixels (text, tables, bars) spread over the page
    assert (gray < 0.9).mean() > 0.02
    assert np.count_nonzero((gray < 0.9).any(axis=1)) > 500
    return dom

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
    n_images = len(parse_cells(Path(html_path).read_text(encoding="utf-8")).images)
    assert n_images >= 4
    assert parsed.body.get("data-images-loaded") == f"{n_images}/{n_images}", "figures did not decode in the browser"
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


# --------------------------------------------------------------------------- loop fixtures
LOOP_POOLS = ("pool0", "pool1", "pool2")
HOSTILE_POOL = "<script>alert('x')</script>&\"pool"


def write_loop_files(base: Path, pools=LOOP_POOLS, budget: float = 2e6, sweep: str | None = "1e5:1e7:5",
                     n_bootstrap: int = 20, seeds: int = 2) -> dict[str, Path]:
    """Observations (synthetic QQT multiplier curves, `seeds` runs per pool), a law fitted on them
    (QQTFit via compare_variants, with bootstrap), a plan (make_plan, with a sweep) and a replay
    file in the `curate validate` layout ("curate-replay/1") of that plan. Returns their paths."""
    import json

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate.laws.lawfile import law_from_dict, law_to_dict
    from curate.laws.observations import validate_observations
    from curate.laws.planning import make_plan
    from curate.laws.qqt import QQTLaw
    from curate.laws.qqt_fit import compare_variants

    base.mkdir(parents=True, exist_ok=True)
    size = 2e5
    worth = dict(zip(pools, (0.05, 0.02, 0.008, 0.004)))
    tau = dict(zip(pools, (4.0, 9.0, 20.0, 30.0)))
    true = QQTLaw(worth, 0.6, list(pools), b=-0.18, tau=tau, sizes={p: size for p in pools}, variant="multiplier")
    rng = np.random.default_rng(0)
    rows = {"pool": [], "samples_seen": [], "unique_samples": [], "metric": [], "run_id": []}
    for p in pools:
        for s in range(seeds):
            for k in (0.25, 0.5, 1.0, 2.0, 4.0, 8.0):
                rows["pool"].append(p)
                rows["samples_seen"].append(k * size)
                rows["unique_samples"].append(min(k, 1.0) * size)
                rows["metric"].append(float(true.predict(k * size, pool=p) * np.exp(0.005 * rng.normal())))
                rows["run_id"].append(f"{p}/seed{s}")
    obs_path = base / "obs.parquet"
    pq.write_table(pa.table(rows), obs_path)
    fit, _ = compare_variants(validate_observations(rows, law="qqt"), chosen="multiplier",
                              n_bootstrap=n_bootstrap, seed=0)
    law_dict = law_to_dict(fit.law_)
    law_path = base / "law.json"
    law_path.write_text(json.dumps(law_dict))
    plan = make_plan(law_from_dict(law_dict), budget, sweep=sweep, run_sizes={p: size for p in pools},
                     law_name=str(law_path))
    plan_path = base / "plan.json"
    plan_path.write_text(json.dumps(plan))
    p = plan["plan"]
    cands = [("plan", "the plan", p["predicted"], {r["pool"]: r["weight"] for r in p["pools"] if r["weight"] > 0})]
    cands += [(k, b["name"], b["loss"], b["weights"]) for k, b in p["baselines"].items()]
    rows = []
    for i, (key, name, predicted, weights) in enumerate(cands):
        losses = [round(2.0 + 0.01 * i + 0.003 * s, 6) for s in range(2)]
        rows.append({"key": key, "name": name, "baseline": key != "plan", "weights": weights,
                     "epochs": {q: w * budget / size for q, w in weights.items()}, "predicted": predicted,
                     "feasible": True, "same_as": None, "note": None, "losses": losses,
                     "mean": float(np.mean(losses)), "sd": float(np.std(losses, ddof=1))})
    replay = {"format": "curate-replay/1", "validates": "a reduced-scale (1/k) replay of the plan's epochs per pool",
              "plan": {"law": str(law_path), "budget": budget, "unit": plan["unit"], "draws": budget,
                       "mixture": p["mixture"]},
              "scale_k": 32.0, "replay_budget_tokens": budget / 32, "seeds": [0, 1],
              "proxy": {"source": "probe", "params": 120000}, "device": "cpu",
              "target": {"source": "held-out sample", "tokens": 4096}, "candidates": rows,
              "best_baseline": rows[1]["key"], "verdict": "plan wins",
              "measured_difference": rows[0]["mean"] - rows[1]["mean"],
              "predicted_difference": rows[0]["predicted"] - rows[1]["predicted"], "sd": rows[1]["sd"],
              "plan_at_most_best_plus_sd": True, "notes": ["a replay note <b>escaped</b>"]}
    replay_path = base / "replay.json"
    replay_path.write_text(json.dumps(replay))
    return {"observations": obs_path, "law": law_path, "plan": plan_path, "replay": replay_path}

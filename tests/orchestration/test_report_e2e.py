"""End to end on real text: `curate run` on a few hundred documents from ../shared/corpora, then
`curate register`, `curate query`, `curate diff` and `curate report` (checked in Chromium when
installed) on that real output."""
from __future__ import annotations

import gzip
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from curate.orchestration.cli import main
from tests.orchestration.report_dom import ARTIFACTS, check_rendered_report, chromium_binary

ROOT = Path(__file__).resolve().parents[2]


def _slice(src: Path, dst: Path, n: int, extra: list[str] = ()) -> None:
    with gzip.open(src, "rt", encoding="utf-8") as fin, open(dst, "w", encoding="utf-8") as out:
        lines = list(itertools.islice(fin, n))
        out.writelines(lines)
        # exact duplicates under new ids, so dedup has real work
        for line in lines[:8]:
            rec = json.loads(line)
            rec["id"] = f"copy-{rec.get('id', '')}"
            out.write(json.dumps(rec) + "\n")
        out.writelines(extra)


@pytest.fixture(scope="module")
def real_run(corpora_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    inputs = base / "inputs"
    inputs.mkdir()
    _slice(corpora_dir / "news_articles.jsonl.gz", inputs / "news.jsonl", 150,
           ["{not json\n", '{"id": "no-text"}\n', '{"id": "num", "text": 7}\n'])
    _slice(corpora_dir / "common_crawl_raw.jsonl.gz", inputs / "cc.jsonl", 150)
    env = {**os.environ, "CURATE_WORKSPACE": str(base / "ws"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    # the two runs (3 and 4 pools over the same inputs) run side by side to save wall time
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "curate.orchestration.cli", "run", "--input", str(inputs / "*.jsonl"),
             "--output", str(base / name), "--pools", pools],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for name, pools in (("run3", "3"), ("run4", "4"))
    }
    runs = {}
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        runs[name] = base / name
    return base, runs


def test_register_and_query_a_real_run(real_run, capsys):
    base, runs = real_run
    ws = str(base / "ws")
    for name, path in runs.items():
        assert main(["register", str(path), "--workspace", ws, "--id", name]) == 0
    capsys.readouterr()
    manifest = json.loads((runs["run3"] / "manifest.json").read_text())

    assert main(["query", "SELECT pool, avg(score) AS mean_score, sum(tokens) AS tokens, count(*) AS docs "
                 "FROM docs GROUP BY pool ORDER BY pool", "--run", "run3", "--format", "json", "--workspace", ws]) == 0
    got = json.loads(capsys.readouterr().out)
    files = sorted((runs["run3"] / "pools").glob("pool=*/*.parquet"))
    table = pa.concat_tables(pq.read_table(f, columns=["score", "tokens", "pool"]) for f in files)
    assert [g["pool"] for g in got] == [0, 1, 2]
    for g in got:
        part = table.filter(pc.equal(table.column("pool"), g["pool"]))
        assert g["docs"] == part.num_rows
        assert g["tokens"] == pc.sum(part.column("tokens")).as_py()
        assert g["mean_score"] == pytest.approx(pc.mean(part.column("score")).as_py(), rel=1e-12)
    assert sum(g["docs"] for g in got) == manifest["counts"]["kept"]

    assert main(["query", "SELECT count(*) AS n FROM dead_letter", "--run", "run3", "--format", "json",
                 "--workspace", ws]) == 0
    dead = json.loads(capsys.readouterr().out)[0]["n"]
    assert dead == sum(manifest["counts"]["dead_letter"].values()) >= 3
    assert main(["query", "SELECT count(*) AS n FROM duplicates WHERE method = 'exact'", "--run", "run3",
                 "--format", "json", "--workspace", ws]) == 0
    assert json.loads(capsys.readouterr().out)[0]["n"] == manifest["counts"]["removed"]["exact"] >= 8

    # same inputs, 3 vs 4 pools: the same documents, re-bucketed
    assert main(["diff", "run3", "run4", "--json", "--workspace", ws]) == 0
    diff = json.loads(capsys.readouterr().out)
    assert diff["summary"]["added"] == diff["summary"]["removed"] == 0
    assert diff["summary"]["docs_a"] == diff["summary"]["docs_b"] == manifest["counts"]["kept"]
    assert [p["pool"] for p in diff["pool_sizes"]] == [0, 1, 2, 3]


def test_report_of_a_real_run(real_run, tmp_path):
    base, runs = real_run
    out = ARTIFACTS / "report" / "e2e" / "report.html"
    assert main(["report", str(runs["run3"]), "-o", str(out)]) == 0
    html_text = out.read_text()
    manifest = json.loads((runs["run3"] / "manifest.json").read_text())
    assert f"data-key='input_records' data-value='{manifest['counts']['input_records']}'" in html_text
    if chromium_binary() is None:
        pytest.skip("headless Chromium not installed (Debian: apt-get install -y chromium); HTML checked without it")
    check_rendered_report(out, runs["run3"], tmp_path / "profile", ARTIFACTS / "report" / "report-e2e.png")

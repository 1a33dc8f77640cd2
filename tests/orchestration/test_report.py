"""`curate report` on synthetic run directories: numbers equal the manifest / stats, files written,
self-contained HTML. (The real-browser check is in test_report_browser.py.)"""
from __future__ import annotations

import base64
import json
import re

import pyarrow.parquet as pq
import pytest

from curate.orchestration.cli import main
from curate.orchestration.report import write_report
from tests.orchestration.report_dom import parse_cells
from tests.pools.runfixture import make_run, publish_manifest

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    manifest, docs, dups = make_run(base / "run", n=200, k=4, seed=3, n_dups=30, n_dead=6, n_filtered=9)
    result = write_report(base / "run", base / "out" / "report.html")
    return base, manifest, docs, dups, result


def test_funnel_numbers_equal_the_manifest(report):
    _, manifest, _, _, result = report
    cells = parse_cells(result.html_path.read_text()).cells
    counts = manifest["counts"]
    assert cells[("funnel", "input_records")][0] == str(counts["input_records"])
    assert cells[("funnel", "kept")][0] == str(counts["kept"])
    for reason, n in counts["dead_letter"].items():
        assert cells[("funnel", f"dead_letter:{reason}")][0] == str(n)
    for method, n in counts["removed"].items():
        assert cells[("funnel", f"removed:{method}")][0] == str(n)
    for reason, n in counts["filtered"].items():
        assert cells[("funnel", f"filtered:{reason}")][0] == str(n)
    funnel_keys = [k for g, k in cells if g == "funnel"]
    removed = sum(int(cells[("funnel", k)][0]) for k in funnel_keys if k not in ("input_records", "kept"))
    assert removed + counts["kept"] == counts["input_records"]
    assert result.data.funnel_reconciles is True and result.data.warnings == []
    # visible text is the same number, formatted with thousands separators
    assert cells[("funnel", "input_records")][1] == f"{counts['input_records']:,}"


def test_pool_table_equals_stats_parquet(report):
    base, _, _, _, result = report
    cells = parse_cells(result.html_path.read_text()).cells
    stats = pq.read_table(base / "run" / "stats.parquet").to_pylist()
    assert len(stats) == 4
    for row in stats:
        k = row["pool"]
        for key in ("docs", "chars", "tokens"):
            assert cells[(f"pool{k}", key)][0] == str(row[key])
        for key in ("score_min", "score_mean", "score_max"):
            assert float(cells[(f"pool{k}", key)][0]) == row[key]
    assert cells[("total", "docs")][0] == str(sum(r["docs"] for r in stats))
    assert cells[("total", "tokens")][0] == str(sum(r["tokens"] for r in stats))


def test_clusters_and_sources(report):
    _, manifest, docs, dups, result = report
    cells = parse_cells(result.html_path.read_text()).cells
    sizes = {}
    for d in dups:
        sizes[d["kept_id"]] = sizes.get(d["kept_id"], 0) + 1
    assert len(sizes) <= 10  # every cluster is in the top-10 table
    for kept_id, n in sizes.items():
        assert cells[("cluster", kept_id)][0] == str(n)
    assert result.data.clusters[0]["size"] == max(sizes.values())
    assert result.data.clusters[0]["kept_text"]  # the kept document's text is shown as the example
    for source in {d["source"] for d in docs}:
        kept = sum(1 for d in docs if d["source"] == source)
        assert cells[(f"source:{source}", "kept")][0] == str(kept)
        for pool in range(4):
            n = sum(1 for d in docs if d["source"] == source and d["pool"] == pool)
            assert cells[(f"source:{source}", f"pool{pool}")][0] == str(n)
    dead_total = sum(manifest["counts"]["dead_letter"].values())
    assert sum(s["dead_letter"] for s in result.data.sources) == dead_total


def test_figures_are_written_and_embedded(report):
    _, _, _, _, result = report
    html_text = result.html_path.read_text()
    assert set(result.figures) == {"funnel", "pools", "scores", "sources"}
    embedded = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html_text)
    assert len(embedded) == 4
    for name, path in result.figures.items():
        png = path.read_bytes()
        assert png.startswith(PNG_MAGIC) and len(png) > 5000
        assert path.parent.name == "report-figures"
        assert base64.b64encode(png).decode() in embedded


def test_html_is_self_contained(report):
    _, _, _, _, result = report
    html_text = result.html_path.read_text()
    assert not re.search(r"""(src|href)\s*=\s*['"](?!data:|#)""", html_text)
    assert "<link" not in html_text and "@import" not in html_text
    assert "<style>" in html_text


def test_disagreements_are_reported_not_hidden(tmp_path):
    manifest, _, _ = make_run(tmp_path / "run", n=50, k=2, seed=4)
    manifest["counts"]["kept"] += 1  # the manifest claims a document the pools do not hold
    manifest["counts"]["removed"]["near"] += 2
    publish_manifest(tmp_path / "run", manifest)
    result = write_report(tmp_path / "run")
    assert result.html_path == tmp_path / "run" / "report.html"
    assert result.data.funnel_reconciles is False
    text = " | ".join(result.data.warnings)
    assert "kept: manifest says 51, stats.parquet holds 50" in text
    assert "duplicates: manifest says" in text and "do not reconcile" in text
    assert "counts do NOT reconcile" in result.html_path.read_text()


def test_report_semantic_duplicates_stage(tmp_path):
    from tests.pools.runfixture import assign_pools, make_docs, write_run

    docs = assign_pools(make_docs(30, seed=9), 2)
    dups = [{"removed_id": f"s{i}", "kept_id": docs[0]["id"], "method": "semantic", "similarity": 0.95}
            for i in range(3)]
    write_run(tmp_path / "run", docs, k=2, duplicates=dups)
    result = write_report(tmp_path / "run")
    labels = [r["label"] for r in result.data.funnel]
    assert "semantic duplicates (embeddings)" in labels
    assert result.data.funnel_reconciles is True


def test_cli_report(tmp_path, capsys):
    make_run(tmp_path / "run", n=40, k=2, seed=5)
    code = main(["report", str(tmp_path / "run"), "-o", str(tmp_path / "r" / "x.html"), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    info = json.loads(out)
    assert info["html"] == str(tmp_path / "r" / "x.html") and info["reconciles"] is True
    assert (tmp_path / "r" / "x-figures" / "funnel.png").is_file()
    (tmp_path / "notarun").mkdir()
    code = main(["report", str(tmp_path / "notarun")])
    _, err = capsys.readouterr()
    assert code == 2 and "no manifest.json" in err and err.count("\n") == 1


def test_removed_copy_text_is_shown_when_the_dedup_rows_carry_it(tmp_path):
    from tests.pools.runfixture import assign_pools, make_docs, write_run

    docs = assign_pools(make_docs(20, seed=2), 2)
    dups = [{"removed_id": f"copy-{i}", "kept_id": docs[0]["id"], "method": "exact", "similarity": 1.0,
             "removed_text": f"the removed copy number {i}"} for i in range(3)]
    write_run(tmp_path / "run", docs, k=2, duplicates=dups)
    result = write_report(tmp_path / "run")
    assert result.data.clusters[0]["removed_text"] == "the removed copy number 0"
    assert "the removed copy number 0" in result.html_path.read_text()

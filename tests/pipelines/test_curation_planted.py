"""Acceptance: planted duplicates and bad records through the real Beam pipeline via the CLI.

One default run (module fixture) serves most assertions; a second run with two
multi-processing workers must produce identical results.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.orchestration.cli import main
from tests.pipelines.planted import build

RUNNER = ["--runner=FnApiRunner"]


def _run(planted, out: Path, extra: list[str] = ()) -> int:
    # the planted corpus has an unreadable and a truncated file on purpose: published with them
    # dead-lettered (without the flag such a run fails, tested in test_remote_safe_paths)
    argv = ["run", "--output", str(out), "--config", planted.config_path, "--allow-unreadable",
            *RUNNER, *extra]
    for path in planted.inputs:
        argv += ["--input", path]
    return main(argv)


@pytest.fixture(scope="module")
def planted(corpora_dir, tmp_path_factory):
    return build(corpora_dir, tmp_path_factory.mktemp("planted"))


@pytest.fixture(scope="module")
def run_dir(planted, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    assert _run(planted, out) == 0
    return out


def _table(pattern: str):
    import duckdb

    return duckdb.sql(f"SELECT * FROM read_parquet('{pattern}', hive_partitioning=false)").fetchall()


def _docs(run_dir: Path) -> dict[str, tuple]:
    import duckdb

    rows = duckdb.sql(
        f"SELECT id, pool, score, source, text_hash FROM read_parquet('{run_dir}/pools/*/*.parquet', "
        "hive_partitioning=false)").fetchall()
    return {r[0]: r[1:] for r in rows}


def _dedup(run_dir: Path) -> dict[str, tuple]:
    rows = _table(f"{run_dir}/dedup/*.parquet")
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _dead(run_dir: Path) -> list[dict]:
    out = []
    for path in sorted((run_dir / "dead_letter").glob("*.jsonl")):
        out += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return out


def test_near_dedup_precision_and_recall(planted, run_dir):
    dedup = _dedup(run_dir)
    near = {rid: kept for rid, (kept, method, _) in dedup.items() if method == "near"}
    truth = planted.near
    true_pos = [rid for rid in near if rid in truth and near[rid] == truth[rid]]
    precision = len(true_pos) / max(len(near), 1)
    recall = len(true_pos) / len(truth)
    assert precision >= 0.95, f"precision {precision:.3f}: unexpected {set(near) - set(truth)}"
    assert recall >= 0.95, f"recall {recall:.3f}: missed {set(truth) - set(near)}"
    sims = [dedup[rid][2] for rid in true_pos]
    assert all(0.8 <= s < 1.0 for s in sims)


def test_exact_duplicates_removed_with_smallest_id_kept(planted, run_dir):
    dedup = _dedup(run_dir)
    for copy_id, original in planted.exact.items():
        assert dedup[copy_id] == (original, "exact", 1.0)
    docs = _docs(run_dir)
    assert all(original in docs for original in planted.exact.values())
    assert not any(copy_id in docs for copy_id in planted.exact)
    assert len({d[3] for d in docs.values()}) == len(docs)  # no normalised text twice


def test_every_bad_record_dead_lettered_with_its_reason(planted, run_dir):
    dead = _dead(run_dir)
    by_line = {(d["source"], d["line"]): d for d in dead if d["line"] is not None}
    for (source, line), reason in planted.bad.items():
        assert (source, line) in by_line, f"line {line} ({reason}) not dead-lettered"
        assert by_line[(source, line)]["reason"] == reason
    by_source = {d["source"]: d["reason"] for d in dead}
    for source, reason in planted.bad_files.items():
        assert by_source[source] == reason
    big = next(d for d in dead if d["reason"] == "text_too_large")
    assert big["raw_truncated"] and len(big["raw"]) == 10_000
    # good records from the bad file and the readable head of the truncated file survive
    docs = _docs(run_dir)
    assert {"ok-1", "ok-2"} <= set(docs)
    assert any(i.startswith("trunc-") for i in docs)


def test_manifest_counts_reconcile(planted, run_dir):
    manifest = json.loads((run_dir / "manifest.json").read_text())
    counts = manifest["counts"]
    assert manifest["reconciliation"]["holds"] is True
    assert manifest["written_rows"]["matches"] is True
    docs, dedup, dead = _docs(run_dir), _dedup(run_dir), _dead(run_dir)
    assert counts["kept"] == len(docs)
    assert sum(counts["removed"].values()) == len(dedup)
    assert sum(counts["dead_letter"].values()) == len(dead)
    assert counts["input_records"] == len(docs) + len(dedup) + len(dead) + sum(counts["filtered"].values())
    assert counts["removed"] == {"exact": len(planted.exact), "near": len(planted.near)}
    assert len(manifest["inputs"]) == 6  # news, c4, the HF dataset shard, bad, truncated, broken
    assert {i["kind"] for i in manifest["inputs"]} == {"jsonl", "parquet", "arrow"}
    assert all(len(i["sha256_first_mb"]) == 64 for i in manifest["inputs"])
    assert manifest["versions"]["apache-beam"]
    assert not list(run_dir.glob("_staging-*"))


def test_pools_ordered_by_score_and_balanced(run_dir):
    docs = _docs(run_dir)
    pools: dict[int, list[float]] = {}
    for pool, score, *_ in docs.values():
        pools.setdefault(pool, []).append(score)
    assert sorted(pools) == [0, 1, 2, 3]
    for k in range(3):
        assert min(pools[k]) >= max(pools[k + 1])
    sizes = [len(pools[k]) for k in range(4)]
    assert max(sizes) - min(sizes) <= 1
    stats = _table(f"{run_dir}/stats.parquet")
    assert [r[0] for r in stats] == [0, 1, 2, 3]
    assert [r[1] for r in stats] == sizes
    share = json.loads(stats[0][7])
    assert abs(sum(share.values()) - 1.0) < 1e-9


def test_stats_command_reads_the_table(run_dir, capsys):
    assert main(["stats", str(run_dir), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = out["pools"]
    assert [r["pool"] for r in rows] == [0, 1, 2, 3]
    assert all(r["score_min"] <= r["score_mean"] <= r["score_max"] for r in rows)
    assert out["removed"]["exact"] > 0 and out["semantic_dedup"] is None and out["embedding_scores"] is None
    assert main(["stats", str(run_dir)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:2] == ["pool", "docs"] and len(table) == 6
    assert table[5].startswith("removed: exact ")


def test_multi_processing_two_workers_gives_identical_results(planted, run_dir, tmp_path):
    out = tmp_path / "mp"
    assert _run(planted, out, ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]) == 0
    assert _docs(out) == _docs(run_dir)
    assert _dedup(out) == _dedup(run_dir)
    key = lambda d: (d["source"], d["line"] or -1, d["row"] or -1)  # noqa: E731
    assert sorted(_dead(out), key=key) == sorted(_dead(run_dir), key=key)
    m1 = json.loads((run_dir / "manifest.json").read_text())
    m2 = json.loads((out / "manifest.json").read_text())
    assert m1["counts"] == m2["counts"] and m1["pools"] == m2["pools"]

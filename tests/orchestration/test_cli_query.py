"""`curate register / runs / query / diff` through the real CLI dispatcher."""
from __future__ import annotations

import copy
import csv
import io
import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from curate.orchestration.cli import main
from tests.pools.runfixture import make_run, write_run


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def workspace(tmp_path, capsys):
    make_run(tmp_path / "runs" / "first", n=150, k=4, seed=11)
    make_run(tmp_path / "runs" / "second", n=80, k=2, seed=12)
    ws = str(tmp_path / "ws")
    for name in ("first", "second"):
        code, out, _ = run_cli(capsys, "register", str(tmp_path / "runs" / name), "--workspace", ws)
        assert code == 0 and f"registered run {name}" in out
    return ws, tmp_path


def test_runs_lists_registered_runs(workspace, capsys):
    ws, _ = workspace
    code, out, _ = run_cli(capsys, "runs", "--workspace", ws)
    assert code == 0
    assert "first" in out and "second" in out and "(2 rows)" in out
    code, out, _ = run_cli(capsys, "runs", "--workspace", ws, "--json")
    runs = json.loads(out)
    assert [r["id"] for r in runs] == ["first", "second"]
    assert runs[0]["counts"]["kept"] == 150


def test_runs_on_an_empty_workspace(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "runs", "--workspace", str(tmp_path / "nothing"))
    assert code == 0 and "no runs registered" in out


def test_mean_score_and_tokens_per_pool_match_pyarrow(workspace, capsys):
    """The acceptance question, answered from the catalog and recomputed from the files."""
    ws, base = workspace
    sql = ("SELECT pool, avg(score) AS mean_score, sum(tokens) AS tokens, count(*) AS docs "
           "FROM docs GROUP BY pool ORDER BY pool")
    code, out, err = run_cli(capsys, "query", sql, "--run", "first", "--format", "json", "--workspace", ws)
    assert code == 0, err
    got = json.loads(out)

    files = sorted((base / "runs" / "first" / "pools").glob("pool=*/*.parquet"))
    table = pa.concat_tables(pq.read_table(f, columns=["id", "score", "tokens", "pool"]) for f in files)
    expected = []
    for pool in sorted(set(table.column("pool").to_pylist())):
        part = table.filter(pc.equal(table.column("pool"), pool))
        expected.append({"pool": pool, "mean_score": pc.mean(part.column("score")).as_py(),
                         "tokens": pc.sum(part.column("tokens")).as_py(), "docs": part.num_rows})
    assert len(got) == len(expected) == 4
    for g, e in zip(got, expected):
        assert g["pool"] == e["pool"] and g["tokens"] == e["tokens"] and g["docs"] == e["docs"]
        assert g["mean_score"] == pytest.approx(e["mean_score"], rel=1e-12)

    # the pipeline's own stats agree with the documents
    code, out, _ = run_cli(capsys, "query", "SELECT pool, score_mean, tokens FROM pool_stats ORDER BY pool",
                           "--run", "first", "--format", "json", "--workspace", ws)
    for g, e in zip(json.loads(out), expected):
        assert g["tokens"] == e["tokens"] and g["score_mean"] == pytest.approx(e["mean_score"])


def test_output_formats(workspace, capsys):
    ws, _ = workspace
    sql = "SELECT run_id, count(*) AS n FROM docs GROUP BY run_id ORDER BY run_id"
    code, out, _ = run_cli(capsys, "query", sql, "--workspace", ws)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["run_id", "n"] and lines[2].split() == ["first", "150"] and lines[-1] == "(2 rows)"
    code, out, _ = run_cli(capsys, "query", sql, "--format", "csv", "--workspace", ws)
    assert list(csv.reader(io.StringIO(out))) == [["run_id", "n"], ["first", "150"], ["second", "80"]]
    code, out, _ = run_cli(capsys, "query", sql, "--format", "json", "--workspace", ws)
    assert json.loads(out) == [{"run_id": "first", "n": 150}, {"run_id": "second", "n": 80}]
    code, out, _ = run_cli(capsys, "query", "SELECT id, time FROM runs ORDER BY id", "--format", "json",
                           "--workspace", ws)
    assert json.loads(out)[0]["time"] == "2026-01-02T03:04:05"


def test_workspace_from_environment(workspace, capsys, monkeypatch):
    ws, _ = workspace
    monkeypatch.setenv("CURATE_WORKSPACE", ws)
    code, out, _ = run_cli(capsys, "query", "SELECT count(*) AS n FROM runs", "--format", "csv")
    assert code == 0 and out.splitlines() == ["n", "2"]


@pytest.mark.parametrize("sql,needle", [
    ("DELETE FROM runs", "DELETE"),
    ("COPY runs TO 'leak.csv'", "COPY"),
    ("ATTACH 'x.duckdb'", "ATTACH"),
    ("INSTALL httpfs", "LOAD"),
    ("SET threads = 1", "SET"),
    ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
    ("SELECT * FROM '/etc/passwd'", "reading the file"),
    ("SELECT 1; DROP TABLE runs", "exactly one statement"),
])
def test_refusals_exit_2_with_one_line(workspace, capsys, sql, needle, tmp_path, monkeypatch):
    ws, _ = workspace
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "query", sql, "--workspace", ws)
    assert code == 2 and out == ""
    assert err.startswith("curate query: error: refused") or err.startswith("curate query: error: exactly")
    assert needle in err and err.count("\n") == 1
    assert not (tmp_path / "leak.csv").exists()


def test_query_errors_are_one_line(workspace, capsys):
    ws, _ = workspace
    code, _, err = run_cli(capsys, "query", "SELECT nope FROM docs", "--workspace", ws)
    assert code == 2 and err.startswith("curate query: error: query failed: Binder Error") and err.count("\n") == 1
    code, _, err = run_cli(capsys, "query", "SELECT 1", "--run", "nosuch", "--workspace", ws)
    assert code == 2 and "unknown run 'nosuch'" in err


def _diff_pair(tmp_path):
    """Run B = run A with 5 documents moved 0->1, 3 removed as duplicates, 4 new documents."""
    _, docs_a, _ = make_run(tmp_path / "A", n=60, k=3, seed=21, n_dups=0, n_dead=0, n_filtered=0)
    docs_b = [copy.deepcopy(d) for d in docs_a]
    moved = [d for d in docs_b if d["pool"] == 0][:5]
    for d in moved:
        d["pool"] = 1
    removed = [d for d in docs_b if d["pool"] == 2][:3]
    docs_b = [d for d in docs_b if d not in removed]
    added = [dict(docs_a[0], id=f"new-{i}", pool=2) for i in range(4)]
    docs_b += added
    dups = [{"removed_id": d["id"], "kept_id": docs_a[0]["id"], "method": "near", "similarity": 0.9} for d in removed]
    write_run(tmp_path / "B", docs_b, k=3, duplicates=dups)
    return docs_a


def test_diff_transition_matrix(tmp_path, capsys):
    docs_a = _diff_pair(tmp_path)
    ws = str(tmp_path / "ws")
    for name in ("A", "B"):
        run_cli(capsys, "register", str(tmp_path / name), "--workspace", ws)
    code, out, err = run_cli(capsys, "diff", "A", "B", "--json", "--workspace", ws)
    assert code == 0, err
    result = json.loads(out)
    sizes_a = [sum(1 for d in docs_a if d["pool"] == p) for p in range(3)]
    assert [p["docs_a"] for p in result["pool_sizes"]] == sizes_a
    assert [p["docs_b"] for p in result["pool_sizes"]] == [sizes_a[0] - 5, sizes_a[1] + 5, sizes_a[2] - 3 + 4]
    labels = result["transitions"]["labels"]
    m = result["transitions"]["matrix"]
    assert labels == [0, 1, 2, None]
    assert m[0] == [sizes_a[0] - 5, 5, 0, 0]
    assert m[1] == [0, sizes_a[1], 0, 0]
    assert m[2] == [0, 0, sizes_a[2] - 3, 3]
    assert m[3] == [0, 0, 4, 0]
    assert result["summary"] == {"docs_a": 60, "docs_b": 61, "unchanged": 52, "moved": 5, "added": 4, "removed": 3}
    assert result["removed_in_b_as"] == {"duplicate:near": 3}

    # the table form, by run directory instead of id
    code, out, _ = run_cli(capsys, "diff", str(tmp_path / "A"), str(tmp_path / "B"), "--workspace", ws)
    assert code == 0
    assert "unchanged 52  moved 5  added 4  removed 3" in out
    assert "absent" in out


def test_diff_unknown_run(tmp_path, capsys):
    make_run(tmp_path / "A", n=10, seed=1)
    code, _, err = run_cli(capsys, "diff", str(tmp_path / "A"), "nope", "--workspace", str(tmp_path / "ws"))
    assert code == 2 and "nope" in err and err.count("\n") == 1


def test_register_refuses_a_non_run_directory(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "register", str(tmp_path / "empty"), "--workspace", str(tmp_path / "ws"))
    assert code == 2 and "no manifest.json" in err


def test_query_limits_stop_runaway_queries_with_one_line(workspace, capsys):
    """Issue 17 item 7: range(1e12), cross joins and recursive CTEs ran until killed."""
    ws, _ = workspace
    code, out, err = run_cli(capsys, "query", "SELECT count(*) FROM range(1000000000000)",
                             "--timeout", "0.5", "--workspace", ws)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "query stopped after 0.5 s (the --timeout limit)" in err
    code, out, err = run_cli(capsys, "query", "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL "
                             "SELECT i + 1 FROM r) SELECT count(*) FROM r", "--timeout", "1",
                             "--memory-limit", "64MB", "--workspace", ws)
    assert code == 2 and err.count("\n") == 1 and "query stopped" in err
    code, out, err = run_cli(capsys, "query", "SELECT list(range) FROM range(100000000)",
                             "--memory-limit", "64MB", "--workspace", ws)
    assert code == 2 and err.count("\n") == 1 and "more than 64MB of memory" in err


def test_query_refuses_a_result_too_large_to_print_unless_told_how_many(workspace, capsys):
    from curate.orchestration.commands.query import ROW_LIMIT

    ws, _ = workspace
    cross = "SELECT a.range AS a, b.range AS b FROM range(100000) a, range(100000) b"
    code, out, err = run_cli(capsys, "query", cross, "--workspace", ws)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"more than {ROW_LIMIT:,} rows" in err and "--max-rows" in err
    code, out, _ = run_cli(capsys, "query", cross, "--max-rows", "3", "--format", "csv", "--workspace", ws)
    lines = out.strip().splitlines()
    assert code == 0 and lines[0] == "a,b" and len(lines) == 4  # the first 3 rows, any order


def test_bad_limit_flags_are_one_line(workspace, capsys):
    ws, _ = workspace
    for flag, value in (("--timeout", "-3"), ("--memory-limit", "a lot")):
        code, _, err = run_cli(capsys, "query", "SELECT 1", flag, value, "--workspace", ws)
        assert code == 2 and err.count("\n") == 1 and flag in err

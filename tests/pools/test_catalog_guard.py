"""`Catalog.query` is read-only: the statement check refuses every write/escape, and the sandboxed
connection refuses them by itself too (second layer)."""
from __future__ import annotations

import duckdb
import pytest

from curate.pools.catalog import Catalog
from curate.pools.sql_guard import QueryRefused
from tests.pools.runfixture import make_run


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    base = tmp_path_factory.mktemp("guard")
    make_run(base / "run1", n=40, seed=7)
    secret = base / "outside" / "secret.csv"
    secret.parent.mkdir()
    secret.write_text("user,password\nroot,hunter2\n")
    cat = Catalog(base / "ws")
    cat.register_run(base / "run1")
    return cat, base


REFUSED = [
    ("INSERT INTO runs (id) VALUES ('x')", "INSERT"),
    ("UPDATE runs SET status = 'x'", "UPDATE"),
    ("DELETE FROM runs", "DELETE"),
    ("CREATE TABLE t AS SELECT 1", "CREATE"),
    ("CREATE TEMP VIEW v AS SELECT 1", "CREATE"),
    ("CREATE MACRO m(x) AS x", "CREATE"),
    ("DROP VIEW docs", "DROP"),
    ("ALTER TABLE runs ADD COLUMN x INT", "ALTER"),
    ("COPY runs TO '{out}'", "COPY"),
    ("COPY (SELECT * FROM docs) TO '{out}' (FORMAT parquet)", "COPY"),
    ("EXPORT DATABASE '{base}/export'", "EXPORT"),
    ("ATTACH '{base}/other.duckdb' AS other", "ATTACH"),
    ("DETACH other", "DETACH"),
    ("INSTALL httpfs", "LOAD"),
    ("LOAD httpfs", "LOAD"),
    ("SET enable_external_access = true", "SET"),
    ("RESET lock_configuration", "SET"),
    ("SET VARIABLE x = 1", "SET"),
    ("PRAGMA enable_profiling", "PRAGMA"),
    ("PRAGMA threads = 1", "SET"),  # DuckDB parses PRAGMA x = y as SET
    ("CALL checkpoint()", "CALL"),
    ("CHECKPOINT", "CALL"),
    ("VACUUM", "VACUUM"),
    ("BEGIN TRANSACTION", "TRANSACTION"),
    ("EXPLAIN ANALYZE SELECT 1", "EXPLAIN"),
    ("SELECT 1; SELECT 2", "exactly one statement"),
    ("SELECT * FROM read_csv('{secret}')", "read_csv"),
    ("SELECT * FROM read_csv_auto('{secret}')", "read_csv_auto"),
    ("SELECT * FROM read_text('/etc/passwd')", "read_text"),
    ("SELECT * FROM read_blob('/etc/passwd')", "read_blob"),
    ("SELECT * FROM read_parquet('{base}/run1/stats.parquet')", "read_parquet"),
    ("SELECT * FROM read_json('{base}/run1/manifest.json')", "read_json"),
    ("SELECT * FROM parquet_scan('{base}/run1/stats.parquet')", "parquet_scan"),
    ("SELECT * FROM glob('/etc/*')", "glob"),
    ("SELECT * FROM '{secret}'", "reading the file"),
    ("FROM '/etc/passwd'", "reading the file"),
    ("SELECT * FROM docs WHERE id IN (SELECT user FROM '{secret}')", "reading the file"),
    ("WITH x AS (SELECT * FROM read_csv('{secret}')) SELECT * FROM x", "read_csv"),
    ("SELECT (SELECT count(*) FROM glob('/*'))", "glob"),
    ("SELECT * FROM docs, LATERAL (SELECT * FROM read_text('/etc/hostname'))", "read_text"),
    ("SELECT * FROM query('SELECT * FROM read_csv(''/etc/passwd'')')", "query"),
    ("SELECT * FROM sniff_csv('{secret}')", "sniff_csv"),
    ("PIVOT docs ON pool USING count(*)", "MULTI"),
    ("", "empty query"),
    ("SELEC 1", "cannot parse"),
]


@pytest.mark.parametrize("sql,needle", REFUSED, ids=[s[:40] for s, _ in REFUSED])
def test_statement_is_refused_with_a_clear_message(catalog, sql, needle):
    cat, base = catalog
    sql = sql.format(base=base, out=base / "out.csv", secret=base / "outside" / "secret.csv")
    with pytest.raises(QueryRefused) as info:
        cat.query(sql)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message
    assert not (base / "out.csv").exists() and not (base / "export").exists()


def test_refusals_leave_the_catalog_unchanged(catalog):
    cat, _ = catalog
    assert [r["id"] for r in cat.runs()] == ["run1"]
    assert cat.query("SELECT count(*) FROM docs").rows == [(40,)]


ALLOWED = [
    "SELECT count(*) FROM docs",
    "DESCRIBE docs",
    "SHOW TABLES",
    "SUMMARIZE pool_stats",
    "PRAGMA table_info('runs')",
    "SELECT * FROM range(3)",
    "SELECT table_name FROM duckdb_tables()",
    "WITH p AS (SELECT pool, count(*) n FROM docs GROUP BY pool) SELECT * FROM p ORDER BY pool",
    "SELECT * FROM docs PIVOT (count(*) FOR pool IN (0, 1, 2) GROUP BY source)",
    "SELECT * FROM main.docs LIMIT 1",
]


@pytest.mark.parametrize("sql", ALLOWED)
def test_read_only_questions_are_allowed(catalog, sql):
    cat, _ = catalog
    result = cat.query(sql)
    assert result.columns


ENGINE_REFUSES = [
    "SELECT * FROM read_csv('{secret}')",
    "SELECT * FROM '{secret}'",
    "COPY (SELECT 1) TO '{out}'",
    "INSERT INTO runs (id) VALUES ('x')",
    "SET enable_external_access = true",
    "SET allowed_paths = ['/']",
    "RESET lock_configuration",
    "ATTACH '{base}/other.duckdb' AS other",
    "INSTALL httpfs",
    "SELECT * FROM read_text('/etc/passwd')",
]


@pytest.mark.parametrize("sql", ENGINE_REFUSES)
def test_the_sandbox_connection_refuses_on_its_own(catalog, sql):
    """Second layer: even without the statement check, the sandbox cannot write or escape."""
    cat, base = catalog
    con = cat.sandbox()
    try:
        with pytest.raises(duckdb.Error):
            con.execute(sql.format(base=base, out=base / "out.csv", secret=base / "outside" / "secret.csv")).fetchall()
        # ... while registered run files stay readable through the views
        assert con.execute("SELECT count(*) FROM docs").fetchone()[0] == 40
    finally:
        con.close()
    assert not (base / "out.csv").exists() and not (base / "other.duckdb").exists()


# -- resource limits (issue 17 item 7: range(1e12), cross joins and recursive CTEs ran until killed)

def test_a_query_past_its_timeout_is_interrupted(catalog):
    import time

    from curate.pools.sql_guard import QueryLimitHit, QueryLimits

    cat, _ = catalog
    started = time.perf_counter()
    with pytest.raises(QueryLimitHit, match=r"query stopped after 0.5 s \(the --timeout limit\)"):
        cat.query("SELECT count(*) FROM range(1000000000000)", limits=QueryLimits(timeout_s=0.5))
    assert time.perf_counter() - started < 15
    # the same limits let an ordinary question through, and the connection is not left interrupted
    assert cat.query("SELECT count(*) FROM docs", limits=QueryLimits(timeout_s=0.5)).rows == [(40,)]


def test_a_query_past_its_memory_limit_stops_with_one_line(catalog):
    from curate.pools.sql_guard import QueryLimitHit, QueryLimits

    cat, _ = catalog
    with pytest.raises(QueryLimitHit, match=r"needs more than 64MB of memory \(the --memory-limit"):
        cat.query("SELECT list(range) FROM range(100000000)",
                  limits=QueryLimits(timeout_s=60, memory_limit="64MB"))


def test_the_limits_cannot_be_raised_from_inside_the_query(catalog):
    from curate.pools.sql_guard import QueryLimits

    cat, _ = catalog
    rows = cat.query("SELECT current_setting('memory_limit'), current_setting('max_temp_directory_size')",
                     limits=QueryLimits(memory_limit="64MB")).rows
    assert all("MiB" in v or "MB" in v for v in rows[0]), rows  # DuckDB spells 64MB as 61.0 MiB
    with pytest.raises(QueryRefused, match="SET"):
        cat.query("SET memory_limit = '100GB'", limits=QueryLimits())


@pytest.mark.parametrize("kwargs, message", [
    ({"timeout_s": -1}, "--timeout must be"),
    ({"timeout_s": float("nan")}, "--timeout must be"),
    ({"memory_limit": "lots"}, "--memory-limit must be a size"),
    ({"memory_limit": "0GB"}, "--memory-limit must be a size"),
    ({"memory_limit": "1GB'; SET x = '1"}, "--memory-limit must be a size"),
])
def test_bad_limits_are_refused(kwargs, message):
    from curate.pools.sql_guard import QueryLimits

    with pytest.raises(ValueError, match=message):
        QueryLimits(**kwargs)

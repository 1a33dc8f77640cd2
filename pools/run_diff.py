"""Compare two runs' pools by document id: pool sizes and a membership transition matrix.

A document is identified by its `id`. For every id in either run the pair (pool in A, pool in B)
is counted, with None meaning "not in that run's pools"; (k, None) are documents removed, (None,
k) documents added. Removed documents are further explained by run B's own records where it has
them (dropped as a duplicate, by a filter rule, ...).
"""
from __future__ import annotations

from pathlib import Path


def diff_runs(run_a: str | Path, run_b: str | Path) -> dict:
    """Pool sizes, transitions and a summary for two run directories (plain, JSON-able dict)."""
    import duckdb

    from curate.pools.rundir import RunDir, RunDirError

    runs = {"a": RunDir(run_a), "b": RunDir(run_b)}  # refuses a run that is not published whole
    con = duckdb.connect()
    try:
        return _diff(con, runs)
    except duckdb.Error as exc:
        damage = next((p for p in (run.problem(deep=True) for run in runs.values()) if p), None)
        raise RunDirError(damage or f"cannot compare the runs: {str(exc).strip().splitlines()[0]}") from None
    finally:
        con.close()


def _diff(con, runs: dict) -> dict:
    from curate.pools.rundir import RunDirError, published_marker

    for name, run in runs.items():
        con.execute(f"CREATE TEMP VIEW docs_{name} AS {run.select('docs', 'id, pool::BIGINT AS pool')}")
    for name in ("a", "b"):
        dup_ids = con.execute(f"SELECT count(*) - count(DISTINCT id) FROM docs_{name}").fetchone()[0]
        if dup_ids:
            raise ValueError(f"run {runs[name].root} has {dup_ids} repeated document ids in its pools")
    sizes = con.execute(
        "SELECT coalesce(a.pool, b.pool) AS pool, coalesce(a.n, 0), coalesce(b.n, 0) FROM "
        "(SELECT pool, count(*) AS n FROM docs_a GROUP BY pool) a FULL OUTER JOIN "
        "(SELECT pool, count(*) AS n FROM docs_b GROUP BY pool) b ON a.pool = b.pool ORDER BY 1"
    ).fetchall()
    pairs = con.execute(
        "SELECT a.pool, b.pool, count(*) FROM docs_a a FULL OUTER JOIN docs_b b ON a.id = b.id "
        "GROUP BY ALL ORDER BY 1 NULLS LAST, 2 NULLS LAST"
    ).fetchall()
    removed_fate = _removed_fate(con, runs["b"])
    for run in runs.values():  # replaced while being read (a --force publish): rows may mix two runs
        if published_marker(run.root) != run.marker:
            raise RunDirError(f"{run.path} was replaced while being compared; run curate diff again")

    pools = [int(p) for p, _, _ in sizes]
    labels = pools + [None]
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for pa, pb, n in pairs:
        matrix[index[None if pa is None else int(pa)]][index[None if pb is None else int(pb)]] += int(n)
    unchanged = sum(matrix[index[p]][index[p]] for p in pools)
    added = sum(matrix[index[None]][index[p]] for p in pools)
    removed = sum(matrix[index[p]][index[None]] for p in pools)
    total_a = sum(a for _, a, _ in sizes)
    return {
        "run_a": str(runs["a"].root),
        "run_b": str(runs["b"].root),
        "pool_sizes": [{"pool": int(p), "docs_a": int(a), "docs_b": int(b), "change": int(b) - int(a)} for p, a, b in sizes],
        "transitions": {"labels": labels, "matrix": matrix},
        "summary": {
            "docs_a": total_a,
            "docs_b": sum(b for _, _, b in sizes),
            "unchanged": unchanged,
            "moved": total_a - unchanged - removed,
            "added": added,
            "removed": removed,
        },
        "removed_in_b_as": removed_fate,
    }


def _removed_fate(con, run_b) -> dict:
    """For ids in A's pools but not B's: how run B accounts for them (duplicate / filtered)."""
    duplicates = run_b.select("duplicates", "removed_id AS id, 'duplicate:' || coalesce(method, '?') AS fate")
    filtered = run_b.select("filtered", "id, 'filtered:' || coalesce(reason, '?') AS fate")
    fate_sql = f"({duplicates}) UNION ALL ({filtered})"
    rows = con.execute(
        "SELECT coalesce(f.fate, 'not in run B') AS fate, count(*) FROM "
        "(SELECT a.id FROM docs_a a ANTI JOIN docs_b b ON a.id = b.id) r "
        f"LEFT JOIN (SELECT id, min(fate) AS fate FROM ({fate_sql}) GROUP BY id) f ON r.id = f.id "
        "GROUP BY ALL ORDER BY 2 DESC, 1"
    ).fetchall()
    return {fate: int(n) for fate, n in rows}

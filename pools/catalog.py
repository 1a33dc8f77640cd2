"""The workspace catalog: one DuckDB file that registers every run and exposes views over them.

Layout of a workspace (default `./curate-workspace`, or `$CURATE_WORKSPACE`, or `--workspace`)::

    WORKSPACE/catalog.duckdb        tables runs, observations, laws, plans + views over run files
    WORKSPACE/catalog.duckdb.lock   writers hold an exclusive flock on it (one writer at a time)

Tables: `runs` (id, time (UTC, from the manifest), registered_at, status, output_dir, the
manifest's config / versions / input fingerprints / counts as JSON, and the SHA-256 of the
manifest registered), `observations` (the `curate fit` input contract), `laws` and `plans`
(registered law / plan files), `materialized_sets` (training sets written by `curate
materialize`, read through the `materialized` view below).

A registered run is served only while it is whole (`run_health`): its directory holds the run
that was registered (published, the same manifest SHA-256), the manifest has curate's types and
every data file opens. Otherwise it is quarantined: left out of every view with a one-line
warning naming the file, and `Catalog.runs()` gives its live status (`missing`, `unpublished`:
being replaced or killed while publishing, `stale`: another run was published there since,
`corrupt`) instead of the registered one, so `curate runs` and `curate query` agree. A query
that fails on damage inside a file (which only shows when the data is decoded) finds the run
by a deep check, quarantines it and runs again. `runs(check=True)` runs that deep check for
every run (`curate runs --check`).

Views (each row carries `run_id`), built over the registered runs' own files — nothing is copied:

    docs         RUN/pools/pool=K/*.parquet (hive-partitioned; every document column + pool)
    pools        one row per (run, pool) computed from docs: docs, chars, tokens, score min/mean/max
    pool_stats   RUN/stats.parquet as written by the pipeline
    duplicates   RUN/dedup/ (removed_id, kept_id, method, similarity)
    dead_letter  RUN/dead_letter/ (source, line/row, reason, raw)
    filtered     RUN/filtered/ (documents dropped by a configured rule)
    embeddings   RUN/embeddings/ (id, embedding) when the run embedded documents
    materialized one row per registered training set (`register_materialized`): which plan
                 (plan_path, plan_sha256), which run (run_path, run_fingerprint), which files
                 (files: file, rows, bytes, sha256[, tokens, index_file]), format, unit,
                 units_written against plan_units, rows_written, reconciled

A training set is served in `materialized` under the same rule as a run (`materialized_health`):
only while OUT holds the published set that was registered and every file it lists is there in
its recorded size (`check`: its SHA-256); otherwise it is left out with a warning and
`Catalog.materialized_sets()` gives its live status.

Concurrency: DuckDB lets one process write a database file. Writers take the lock file (waiting up
to `lock_timeout` seconds, then CatalogBusyError) and keep transactions short; readers open the
file read-only and retry briefly while a writer has it open. Views are rebuilt inside the same
transaction that changes `runs`, so the catalog is never seen half-updated.

`Catalog.query` runs user SQL in a sandbox: the statement is checked by `pools.sql_guard`, the
database is opened read-only, views are recreated as temporary views over the current files, and
then external access is disabled except for exactly those files and the configuration is locked.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from curate.pools.rundir import (EMPTY_COLUMNS, RunDir, RunDirError, RunFiles, file_sha256, manifest_problem, published_marker,
                                 read_json_object, select_files, sql_list, sql_literal, union)

DEFAULT_WORKSPACE = "curate-workspace"
CATALOG_FILE = "catalog.duckdb"
WORKSPACE_ENV = "CURATE_WORKSPACE"
SCHEMA_VERSION = 1
RUN_VIEWS = ("docs", "pools", "pool_stats", "duplicates", "dead_letter", "filtered", "embeddings")
# Live statuses of a registered run that is not served (see run_health).
QUARANTINED = ("missing", "unpublished", "stale", "corrupt")
# A query retried this often when runs change or turn out damaged under it, then refused.
QUERY_ATTEMPTS = 4
MATERIALIZED_FORMAT = "curate-materialized/1"  # manifest.json of a `curate materialize` output
# Columns of the `materialized` view, in order, with their types.
MATERIALIZED_COLUMNS = (
    ("id", "VARCHAR"), ("registered_at", "TIMESTAMP"), ("output_dir", "VARCHAR"), ("format", "VARCHAR"),
    ("unit", "VARCHAR"), ("units_written", "BIGINT"), ("plan_units", "DOUBLE"), ("rows_written", "BIGINT"),
    ("reconciled", "BOOLEAN"), ("plan_path", "VARCHAR"), ("plan_sha256", "VARCHAR"), ("run_path", "VARCHAR"),
    ("run_fingerprint", "VARCHAR"), ("files", "JSON"), ("pools", "JSON"), ("fingerprint", "VARCHAR"),
    ("manifest_sha256", "VARCHAR"),
)

_TABLES_SQL = [
    "CREATE TABLE IF NOT EXISTS catalog_meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    """CREATE TABLE IF NOT EXISTS runs (
        id VARCHAR PRIMARY KEY,
        time TIMESTAMP,               -- when the run finished (manifest), else when registered
        registered_at TIMESTAMP,
        status VARCHAR,               -- complete | failed | running (as the run or caller says)
        output_dir VARCHAR,
        config JSON,
        versions JSON,
        input_fingerprints JSON,
        counts JSON,
        manifest_sha256 VARCHAR       -- the manifest registered (views serve only that run)
    )""",
    # catalogs written before manifest_sha256 existed
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS manifest_sha256 VARCHAR",
    # Contract of `curate fit` input (DESIGN.md): one row per measured point.
    """CREATE TABLE IF NOT EXISTS observations (
        source VARCHAR,               -- file or probe that produced the rows
        pool VARCHAR,                 -- pool name or mixture `name=weight;name=weight`
        samples_seen DOUBLE,
        unique_samples DOUBLE,
        metric DOUBLE,
        params DOUBLE,
        run_id VARCHAR,
        step BIGINT,
        registered_at TIMESTAMP
    )""",
    """CREATE TABLE IF NOT EXISTS laws (
        id VARCHAR PRIMARY KEY,
        path VARCHAR,
        kind VARCHAR,                 -- qqt | data-constrained | chinchilla
        unit VARCHAR,
        params JSON,
        pools JSON,
        fit JSON,
        document JSON,                -- the whole law file
        registered_at TIMESTAMP
    )""",
    """CREATE TABLE IF NOT EXISTS plans (
        id VARCHAR PRIMARY KEY,
        path VARCHAR,
        budget DOUBLE,
        unit VARCHAR,
        pools JSON,                   -- per pool weight / samples / unique / epochs
        predicted JSON,               -- predicted metric and interval
        baselines JSON,
        document JSON,                -- the whole plan file
        registered_at TIMESTAMP
    )""",
    # Training sets from `curate materialize` (MATERIALIZED_COLUMNS; manifest_sha256: the
    # manifest registered, served only while OUT still publishes it).
    "CREATE TABLE IF NOT EXISTS materialized_sets ("
    + ", ".join(f"{name} {kind}{' PRIMARY KEY' if name == 'id' else ''}" for name, kind in MATERIALIZED_COLUMNS)
    + ")",
]

class CatalogError(ValueError):
    """A user error about the catalog: unknown run, not a run directory, no catalog yet."""


class CatalogBusyError(OSError):
    """Another process is writing the catalog and did not finish within the timeout."""

    def __init__(self, message: str):
        super().__init__(errno.EBUSY, message)

    def __str__(self) -> str:  # one line, without OSError's "[Errno 16]" prefix
        return self.strerror


def workspace_dir(workspace: str | os.PathLike | None = None) -> Path:
    """The workspace directory: the argument, else $CURATE_WORKSPACE, else ./curate-workspace."""
    chosen = workspace if workspace not in (None, "") else os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE
    return Path(chosen).expanduser().absolute()


@dataclass
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[tuple]
    warnings: list[str] = field(default_factory=list)  # registered runs left out, and why

    def records(self) -> list[dict]:
        return [dict(zip(self.columns, row)) for row in self.rows]


class Catalog:
    """The DuckDB catalog of one workspace.

    >>> cat = Catalog("ws")                 # creates nothing until the first write
    >>> run_id = cat.register_run("run/")   # called by `curate run` at the end of a run
    >>> cat.query("SELECT pool, count(*) FROM docs GROUP BY pool", run=run_id).rows
    """

    def __init__(self, workspace: str | os.PathLike | None = None, *, lock_timeout: float = 30.0):
        self.workspace = workspace_dir(workspace)
        self.path = self.workspace / CATALOG_FILE
        self.lock_path = self.workspace / (CATALOG_FILE + ".lock")
        self.lock_timeout = float(lock_timeout)

    # ------------------------------------------------------------------ connections
    @contextlib.contextmanager
    def _write_lock(self) -> Iterator[None]:
        """Exclusive advisory lock on the lock file; waits up to lock_timeout, then refuses."""
        import fcntl

        self.workspace.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + self.lock_timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        holder = _read_pid(self.lock_path)
                        raise CatalogBusyError(
                            f"catalog {self.path} is being written by another process"
                            f"{f' (pid {holder})' if holder else ''}; waited {self.lock_timeout:g} s, try again"
                        ) from None
                    time.sleep(0.05)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def _connect(self, read_only: bool, timeout: float | None = None):
        """Open the DuckDB file, retrying while another process holds DuckDB's own file lock."""
        import duckdb

        config = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
        deadline = time.monotonic() + (self.lock_timeout if timeout is None else timeout)
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only, config=config)
            except duckdb.Error as exc:
                if not isinstance(exc, duckdb.IOException) or "lock" not in str(exc).lower():
                    # a damaged or foreign file: one line naming it, not DuckDB's traceback
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise CatalogError(f"catalog {self.path} cannot be opened ({first}); move it aside "
                                       "to start a new workspace catalog") from None
                if time.monotonic() >= deadline:
                    raise CatalogBusyError(
                        f"catalog {self.path} is locked by another process; try again"
                    ) from None
                time.sleep(0.05)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        """Lock + read-write connection + one transaction (rolled back on any error)."""
        with self._write_lock():
            con = self._connect(read_only=False)
            try:
                con.execute("BEGIN TRANSACTION")
                try:
                    _ensure_schema(con)
                    yield con
                    con.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(Exception):  # the failed statement may have ended it
                        con.execute("ROLLBACK")
                    raise
            finally:
                con.close()

    @contextlib.contextmanager
    def _reader(self) -> Iterator[Any]:
        if not self.path.is_file():
            raise CatalogError(
                f"no catalog at {self.path}: run `curate run` or `curate register RUN_DIR` first"
            )
        con = self._connect(read_only=True)
        try:
            yield con
        finally:
            con.close()

    # ------------------------------------------------------------------ runs
    def register_run(self, run_dir: str | os.PathLike, *, run_id: str | None = None,
                     status: str | None = None) -> str:
        """Add (or refresh) a run directory in the catalog and rebuild the views; returns its id.

        Idempotent: registering the same directory again updates its row under the same id.
        The id is `run_id`, else the manifest's `run_id`, else the id this directory already has,
        else the directory name (with a short hash of the path appended if another directory
        already uses that name). A directory is registered under one id at a time.
        Status: `status`, else the manifest's `status`, else "complete".
        """
        try:
            run = RunDir(run_dir)  # a finished run whose manifest has curate's types
            manifest = run.manifest
            problem = run.problem()
        except RunDirError as exc:
            raise CatalogError(str(exc)) from None
        if problem:
            raise CatalogError(f"{run_dir} is not registered: {problem}")
        root = run.root
        row = _run_row(root, manifest, status)
        with self._transaction() as con:
            wanted = _claim_id(con, "runs", root, run_id, _manifest_run_id(manifest), "run id")
            con.execute(
                "INSERT OR REPLACE INTO runs (id, time, registered_at, status, output_dir, config, versions, "
                "input_fingerprints, counts, manifest_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [wanted, row["time"], _now(), row["status"], str(root), row["config"], row["versions"],
                 row["input_fingerprints"], row["counts"], run.marker["manifest_sha256"]],
            )
            self._rebuild_views(con)
        return wanted

    def remove_run(self, ref: str) -> str:
        """Forget a run, whatever state its directory is in (its files are never touched);
        returns its id."""
        run = self.resolve_run(ref)
        with self._transaction() as con:
            con.execute("DELETE FROM runs WHERE id = ?", [run["id"]])
            self._rebuild_views(con)
        return run["id"]

    def runs(self, *, check: bool = False) -> list[dict]:
        """Every registered run, oldest first (empty when there is no catalog yet), with its live
        `status` and `problem` (None, or one line naming what is wrong) from `run_health`;
        `check` decodes every data file and compares row counts with the manifest."""
        out = []
        for run in self.registered_runs():
            status, problem, _ = run_health(run, deep=check)
            out.append({**run, "registered_status": run["status"], "status": status, "problem": problem})
        return out

    def registered_runs(self) -> list[dict]:
        """The `runs` table as registered, without looking at the directories."""
        if not self.path.is_file():
            return []
        with self._reader() as con:
            return _read_runs(con)

    def resolve_run(self, ref: str) -> dict:
        """A run by exact id, by output directory, or by unique id prefix."""
        return _resolve(self.registered_runs(), ref)

    # ------------------------------------------------------------------ materialized training sets
    def register_materialized(self, out_dir: str | os.PathLike, *, set_id: str | None = None) -> str:
        """Add (or refresh) a `curate materialize` output in the catalog; returns its id.

        Only a published set (valid `_SUCCESS` beside a `curate-materialized/1` manifest) whose
        listed files are all there in their recorded sizes is registered. Idempotent: the same
        directory keeps its id. The id is `set_id`, else the id this directory already has,
        else the directory name (with a short hash of the path if another set uses that name).
        """
        root = Path(out_dir).expanduser().resolve()
        if not root.is_dir():
            raise CatalogError(f"training set directory {out_dir} does not exist")
        marker = published_marker(root)
        if marker is None:
            raise CatalogError(f"{out_dir} holds no published training set (no valid _SUCCESS beside "
                               "manifest.json: not finished, or being replaced)")
        manifest = read_json_object(root / "manifest.json", CatalogError)
        problem = materialized_manifest_problem(manifest) or _set_files_problem(root, manifest["files"])
        if problem:
            raise CatalogError(f"{out_dir} is not registered: {problem}")
        values = _set_row(root, manifest, marker["manifest_sha256"])
        with self._transaction() as con:
            wanted = _claim_id(con, "materialized_sets", root, set_id, None, "training set id")
            values["id"], values["registered_at"] = wanted, _now()
            names = [name for name, _ in MATERIALIZED_COLUMNS]
            con.execute(f"INSERT OR REPLACE INTO materialized_sets ({', '.join(names)}) "
                        f"VALUES ({', '.join('?' for _ in names)})", [values[n] for n in names])
            self._rebuild_views(con)
        return wanted

    def materialized_sets(self, *, check: bool = False) -> list[dict]:
        """Every registered training set, oldest first, with its live `status` (complete,
        missing, unpublished, stale, corrupt) and `problem` from `materialized_health`; `check`
        compares every file's SHA-256 with the manifest."""
        if not self.path.is_file():
            return []
        with self._reader() as con:
            sets = _read_sets(con)
        out = []
        for row in sets:
            status, problem = materialized_health(row, deep=check)
            out.append({**row, "status": status, "problem": problem})
        return out

    def remove_materialized(self, ref: str) -> str:
        """Forget a training set (its files are never touched); returns its id."""
        if not self.path.is_file():
            raise CatalogError(f"no catalog at {self.path}: nothing is registered")
        with self._reader() as con:
            found = _resolve(_read_sets(con), ref, "training set")
        with self._transaction() as con:
            con.execute("DELETE FROM materialized_sets WHERE id = ?", [found["id"]])
            self._rebuild_views(con)
        return found["id"]

    # ------------------------------------------------------------------ laws, plans, observations
    def register_observations(self, rows: Iterable[dict], *, source: str) -> int:
        """Append observation rows (keys per DESIGN.md); rows from the same source are replaced."""
        columns = ("pool", "samples_seen", "unique_samples", "metric", "params", "run_id", "step")
        values = [[source] + [row.get(c) for c in columns] + [_now()] for row in rows]
        with self._transaction() as con:
            con.execute("DELETE FROM observations WHERE source = ?", [source])
            if values:
                con.executemany(
                    "INSERT INTO observations (source, pool, samples_seen, unique_samples, metric, params, "
                    "run_id, step, registered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    values,
                )
        return len(values)

    def register_law(self, path: str | os.PathLike, *, law_id: str | None = None) -> str:
        """Record a law file (JSON, "curate-law/1"); returns its id (default: the file stem)."""
        path = Path(path).resolve()
        doc = _read_json(path)
        law_id = _clean_id(law_id or path.stem)
        with self._transaction() as con:
            con.execute(
                "INSERT OR REPLACE INTO laws (id, path, kind, unit, params, pools, fit, document, registered_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [law_id, str(path), doc.get("kind"), doc.get("unit"), _json(doc.get("params")),
                 _json(doc.get("pools")), _json(doc.get("fit")), _json(doc), _now()],
            )
        return law_id

    def register_plan(self, path: str | os.PathLike, *, plan_id: str | None = None) -> str:
        """Record a plan file (JSON); returns its id (default: the file stem)."""
        path = Path(path).resolve()
        doc = _read_json(path)
        plan_id = _clean_id(plan_id or path.stem)
        budget = doc.get("budget")
        if isinstance(budget, dict):
            budget = budget.get("value", budget.get("amount"))
        with self._transaction() as con:
            con.execute(
                "INSERT OR REPLACE INTO plans (id, path, budget, unit, pools, predicted, baselines, document, "
                "registered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [plan_id, str(path), _float_or_none(budget), doc.get("unit"), _json(doc.get("pools")),
                 _json(doc.get("predicted", doc.get("prediction"))), _json(doc.get("baselines")), _json(doc),
                 _now()],
            )
        return plan_id

    # ------------------------------------------------------------------ views and queries
    def _rebuild_views(self, con) -> None:
        """(Re)create the persistent views over every registered run that is whole."""
        scans = [(run["id"], files) for run, files, _ in _served(_read_runs(con), {}) if files is not None]
        create_views(con, scans, temporary=False)
        create_materialized_view(con, temporary=False)

    def sandbox(self, run: str | None = None):
        """A read-only connection for untrusted SQL (see module docstring). Caller closes it."""
        return self._sandbox(run, {})[0]

    def _sandbox(self, run: str | None, quarantined: dict[str, str], limits=None):
        """(connection, {run id: (output_dir, manifest sha256) served}, warnings)."""
        if not self.path.is_file():
            raise CatalogError(
                f"no catalog at {self.path}: run `curate run` or `curate register RUN_DIR` first"
            )
        con = self._connect(read_only=True)
        try:
            runs = _read_runs(con)
            selected = [_resolve(runs, run)] if run else runs
            served, warnings = {}, []
            scans = []
            for row, files, problem in _served(selected, quarantined):
                if files is None:
                    if run:
                        raise CatalogError(f"run {row['id']} cannot be queried: {problem}")
                    warnings.append(f"run {row['id']} is left out: {problem}")
                    continue
                scans.append((row["id"], files))
                served[row["id"]] = (row["output_dir"], _marker_sha(row["output_dir"]))
            create_views(con, scans, temporary=True)
            warnings += create_materialized_view(con, temporary=True,
                                                 run_path=selected[0]["output_dir"] if run else None)
            if run:
                (database,) = con.execute("SELECT current_database()").fetchone()
                table = f'"{database.replace(chr(34), chr(34) * 2)}".main.runs'
                con.execute(f"CREATE TEMP VIEW runs AS SELECT * FROM {table} WHERE id = {sql_literal(selected[0]['id'])}")
            allowed = sorted({f for _, scan in scans for f in scan.all_files()})
            con.execute(f"SET allowed_paths = {sql_list(allowed)}")
            con.execute("SET enable_external_access = false")
            for statement in limits.settings() if limits is not None else ():  # sql_guard.QueryLimits
                con.execute(statement)
            con.execute("SET lock_configuration = true")
        except BaseException:
            con.close()
            raise
        return con, served, warnings

    def query(self, sql: str, *, run: str | None = None, max_rows: int | None = None,
              limits=None) -> QueryResult:
        """Run one read-only SELECT (checked by pools.sql_guard) in the sandbox.

        Served only over whole runs (`run_health`); the runs left out are in `warnings`. A run
        replaced while the query read it, or found damaged by it, means another attempt.
        `limits`: a `pools.sql_guard.QueryLimits` (time and memory) for each attempt.
        """
        import duckdb

        from curate.pools.sql_guard import QueryRefused, check_query

        quarantined: dict[str, str] = {}  # run id -> damage found by a failed attempt
        for _ in range(QUERY_ATTEMPTS):
            con, served, warnings = self._sandbox(run, quarantined, limits)
            try:
                check_query(sql, con)
                try:
                    with limits.enforce(con) if limits is not None else contextlib.nullcontext():
                        rel = con.execute(sql)
                        rows = rel.fetchmany(max_rows) if max_rows is not None else rel.fetchall()
                except duckdb.PermissionException as exc:
                    raise QueryRefused(f"refused: {_first_line(exc)}") from None
                except duckdb.Error as exc:
                    hit = limits.error_for(exc) if limits is not None else None
                    if hit is not None:
                        raise hit from None
                    damaged = _damaged_runs(served) if _may_be_damage(exc) else {}
                    if not damaged:
                        raise CatalogError(f"query failed: {_first_line(exc)}") from None
                    quarantined.update(damaged)
                    continue
                if any(_marker_sha(out) != sha for out, sha in served.values()):
                    continue  # a run was replaced while being read: its rows may mix two runs
                return QueryResult(
                    columns=[d[0] for d in rel.description],
                    types=[str(d[1]) for d in rel.description],
                    rows=rows,
                    warnings=warnings,
                )
            finally:
                con.close()
        raise CatalogError(f"the registered runs changed during {QUERY_ATTEMPTS} attempts of the query; try again")


def register_run(run_dir: str | os.PathLike, workspace: str | os.PathLike | None = None, **kwargs) -> str:
    """Shortcut for `Catalog(workspace).register_run(run_dir, **kwargs)` (used at the end of `curate run`)."""
    return Catalog(workspace).register_run(run_dir, **kwargs)


# ---------------------------------------------------------------------- view SQL
def create_views(con, scans: Sequence[tuple[str, RunFiles]], *, temporary: bool) -> None:
    """Create (or replace) every run view over the given runs' files on `con`."""
    kind = "TEMP VIEW" if temporary else "VIEW"
    for view in ("docs", "pool_stats", "duplicates", "dead_letter", "filtered", "embeddings"):
        parts = []
        for run_id, scan in scans:
            parts.extend(_run_selects(view, run_id, scan.for_view(view)))
        body = union(parts, f"NULL::VARCHAR AS run_id, {EMPTY_COLUMNS[view]}")
        con.execute(f"CREATE OR REPLACE {kind} {view} AS {body}")
    doc_columns = {row[0] for row in con.execute("DESCRIBE docs").fetchall()}
    # Token counts are a pipeline column (an estimate); other writers may not have it.
    tokens = "sum(tokens)::BIGINT" if "tokens" in doc_columns else "NULL::BIGINT"
    con.execute(
        f"CREATE OR REPLACE {kind} pools AS SELECT run_id, pool, count(*)::BIGINT AS docs, "
        f"sum(length(text))::BIGINT AS chars, {tokens} AS tokens, "
        "min(score) AS score_min, avg(score) AS score_mean, max(score) AS score_max "
        "FROM docs GROUP BY run_id, pool"
    )


def _run_selects(view: str, run_id: str, files: list[str]) -> list[str]:
    return select_files(files, f"{sql_literal(run_id)} AS run_id, *", hive=view == "docs")


# ---------------------------------------------------------------------- materialized training sets
def create_materialized_view(con, *, temporary: bool, run_path: str | None = None) -> list[str]:
    """Create (or replace) the `materialized` view over the registered training sets that are
    whole (of the run in `run_path` only, when given); returns one warning per set left out."""
    warnings, served = [], []
    for row in _read_sets(con):
        if run_path is not None and row["run_path"] != run_path:
            continue
        _, problem = materialized_health(row)
        if problem:
            warnings.append(f"training set {row['id']} is left out: {problem}")
        else:
            served.append(row["id"])
    if served:
        body = (f"SELECT {', '.join(name for name, _ in MATERIALIZED_COLUMNS)} FROM materialized_sets "
                f"WHERE id IN ({', '.join(sql_literal(i) for i in served)})")
    else:  # typed and empty, also for catalogs written before the table existed
        body = "SELECT " + ", ".join(f"NULL::{kind} AS {name}" for name, kind in MATERIALIZED_COLUMNS) + " WHERE false"
    con.execute(f"CREATE OR REPLACE {'TEMP VIEW' if temporary else 'VIEW'} materialized AS {body}")
    return warnings


def materialized_health(row: dict, *, deep: bool = False) -> tuple[str, str | None]:
    """(live status, problem) of a registered training set (a `materialized_sets` row): complete
    while its directory publishes the manifest registered and every file listed there has its
    recorded size (`deep`: its SHA-256); else missing / unpublished / stale / corrupt and one line."""
    out = row["output_dir"]
    if not os.path.isdir(out):
        return "missing", f"{out} does not exist"
    marker = published_marker(out)
    if marker is None:
        return "unpublished", (f"{out} holds no published training set (being replaced, or killed while "
                               "publishing; a new `curate materialize` into it repairs it)")
    if marker.get("manifest_sha256") != row["manifest_sha256"]:
        return "stale", f"{out} holds another training set than the one registered; `curate register {out}` registers it"
    try:
        manifest = read_json_object(Path(out) / "manifest.json", CatalogError)
    except CatalogError as exc:
        return "corrupt", _first_line(exc)
    problem = materialized_manifest_problem(manifest) or _set_files_problem(Path(out), manifest["files"], deep=deep)
    return ("corrupt", problem) if problem else ("complete", None)


def is_materialized_dir(path: str | os.PathLike) -> bool:
    """True when `path`/manifest.json says it is a `curate materialize` output (published or not)."""
    try:
        manifest = json.loads((Path(path) / "manifest.json").read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == MATERIALIZED_FORMAT


# manifest key -> {field: JSON types} that the catalog reads from a training set's manifest
_SET_FIELDS = {
    "plan": {"path": (str,), "sha256": (str,)},
    "run": {"path": (str,), "fingerprint": (str, type(None))},
    "settings": {"format": (str,)},
    "total": {"units_written": (int,), "plan_units": (int, float)},
    "reconciliation": {"holds": (bool,), "rows_written": (int,)},
}
_SET_FILE_FIELDS = {"file": (str,), "rows": (int,), "bytes": (int,), "sha256": (str,)}


def _json_type(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "missing or null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _wrong_type(value, types) -> bool:
    return not isinstance(value, types) or (isinstance(value, bool) and bool not in types)


def materialized_manifest_problem(manifest) -> str | None:
    """Why `manifest` is not a `curate materialize` manifest the catalog can read (one line), or None."""
    if not isinstance(manifest, dict) or manifest.get("format") != MATERIALIZED_FORMAT:
        return f"its manifest.json is not a {MATERIALIZED_FORMAT} manifest (not a `curate materialize` output)"
    if not isinstance(manifest.get("unit"), str):
        return "manifest unit is not a string"
    for key, fields in _SET_FIELDS.items():
        section = manifest.get(key)
        if not isinstance(section, dict):
            return f"manifest {key} is {_json_type(section)}, not an object"
        for name, types in fields.items():
            if _wrong_type(section.get(name), types):
                return f"manifest {key}.{name} is {section.get(name)!r}, not of the expected type"
    files = manifest.get("files")
    if not isinstance(files, list):
        return f"manifest files is {_json_type(files)}, not a list"
    for i, entry in enumerate(files):
        if not isinstance(entry, dict):
            return f"manifest files[{i}] is not an object"
        for name, types in _SET_FILE_FIELDS.items():
            if _wrong_type(entry.get(name), types):
                return f"manifest files[{i}].{name} is {entry.get(name)!r}, not of the expected type"
        for name in ("file", "index_file"):  # inside OUT: never a path that leaves it
            rel = entry.get(name)
            if rel is not None and (not isinstance(rel, str) or os.path.isabs(rel) or ".." in Path(rel).parts):
                return f"manifest files[{i}].{name} {rel!r} is not a path inside the training set"
    return None


def _set_files_problem(root: Path, files: list[dict], *, deep: bool = False) -> str | None:
    """The first listed file that is missing, of another size or (`deep`) another SHA-256."""
    for entry in files:
        path = root / entry["file"]
        try:
            size = path.stat().st_size
        except OSError as exc:
            return f"{path}: {exc.strerror or 'cannot be read'}"
        if size != entry["bytes"]:
            return f"{path}: {size} bytes, the manifest says {entry['bytes']}"
        checks = [(path, entry["sha256"])] if deep else []
        if entry.get("index_file"):
            index = root / entry["index_file"]
            if not index.is_file():
                return f"{index}: missing"
            if deep and isinstance(entry.get("index_sha256"), str):
                checks.append((index, entry["index_sha256"]))
        for target, want in checks:
            if file_sha256(target) != want:
                return f"{target}: its SHA-256 differs from the manifest's (changed or damaged)"
    return None


def _claim_id(con, table: str, root: Path, given: str | None, suggested: str | None, what: str) -> str:
    """The id under which `root` is (re-)registered in `table`: the one given (refused if another
    directory holds it), else the suggested one, the directory's current id or its name, made
    unique with a hash of the path. A directory registered under another id loses that row."""
    existing = con.execute(f"SELECT id FROM {table} WHERE output_dir = ?", [str(root)]).fetchone()
    wanted = _clean_id(given or suggested or (existing[0] if existing else None) or root.name)
    taken = con.execute(f"SELECT output_dir FROM {table} WHERE id = ?", [wanted]).fetchone()
    if taken and taken[0] != str(root):
        if given:
            raise CatalogError(f"{what} {given!r} is already used by {taken[0]}")
        wanted = f"{wanted}-{hashlib.sha256(str(root).encode()).hexdigest()[:6]}"
    if existing and existing[0] != wanted:
        con.execute(f"DELETE FROM {table} WHERE id = ?", [existing[0]])
    return wanted


def _set_row(root: Path, manifest: dict, manifest_sha256: str) -> dict:
    files = [{k: f[k] for k in ("file", "rows", "bytes", "sha256", "tokens", "index_file", "index_sha256") if k in f}
             for f in manifest["files"]]
    return {
        "output_dir": str(root), "format": manifest["settings"]["format"], "unit": manifest["unit"],
        "units_written": manifest["total"]["units_written"], "plan_units": float(manifest["total"]["plan_units"]),
        "rows_written": manifest["reconciliation"]["rows_written"],
        "reconciled": manifest["reconciliation"]["holds"],
        "plan_path": manifest["plan"]["path"], "plan_sha256": manifest["plan"]["sha256"],
        "run_path": manifest["run"]["path"], "run_fingerprint": manifest["run"]["fingerprint"],
        "files": _json(files), "pools": _json(manifest.get("pools")),
        "fingerprint": manifest.get("fingerprint") if isinstance(manifest.get("fingerprint"), str) else None,
        "manifest_sha256": manifest_sha256,
    }


def _read_sets(con) -> list[dict]:
    if not _has_table(con, "materialized_sets"):
        return []
    names = [name for name, _ in MATERIALIZED_COLUMNS]
    rows = con.execute(f"SELECT {', '.join(names)} FROM materialized_sets ORDER BY registered_at, id").fetchall()
    out = []
    for values in rows:
        row = dict(zip(names, values))
        for key in ("files", "pools"):
            row[key] = json.loads(row[key]) if row[key] is not None else None
        out.append(row)
    return out


# ---------------------------------------------------------------------- which runs are served
def run_health(run: dict, *, deep: bool = False) -> tuple[str, str | None, RunFiles | None]:
    """(live status, problem, files to serve) of a registered run (a `runs` row).

    Served (files not None, status as registered) only when its directory holds the published
    run that was registered, with a manifest of curate's types and data files that open (`deep`:
    that decode, in the counts the manifest states). Otherwise files is None and problem one line
    naming the directory or file: nothing of a run that is not whole is ever served.
    """
    out = run["output_dir"]
    stored = manifest_problem({key: run[key] for key in ("counts", "config", "versions") if run.get(key) is not None})
    if stored and run.get("counts") is not None:
        return "corrupt", f"its registered manifest is not a curate run manifest: {stored}", None
    if not os.path.isdir(out):
        return "missing", f"{out} does not exist", None
    marker = published_marker(out)
    if marker is None:
        return "unpublished", (f"{out} holds no published run (being replaced, or killed while publishing; "
                               "a new `curate run` into it repairs it)"), None
    if run.get("manifest_sha256") and marker.get("manifest_sha256") != run["manifest_sha256"]:
        return "stale", (f"{out} holds another run than the one registered; `curate register {out}` "
                         "registers it"), None
    try:
        found = RunDir(out)
        problem = found.problem(deep=deep)
    except RunDirError as exc:
        return "corrupt", _first_line(exc), None
    if problem:
        return "corrupt", problem, None
    return run["status"], None, found.files


def _served(runs: list[dict], quarantined: dict[str, str]):
    """(row, files or None, problem) per run; `quarantined` holds damage found by a query."""
    for run in runs:
        if run["id"] in quarantined:
            yield run, None, quarantined[run["id"]]
            continue
        _, problem, files = run_health(run)
        yield run, files, problem


def _marker_sha(output_dir: str) -> str | None:
    marker = published_marker(output_dir)
    return marker.get("manifest_sha256") if marker else None


def _may_be_damage(exc: Exception) -> bool:
    """A DuckDB error that damaged data can raise (not a mistake in the SQL)."""
    import duckdb

    data_errors = (duckdb.IOException, duckdb.InvalidInputException, duckdb.InternalException,
                   duckdb.SerializationException)
    return type(exc) is duckdb.Error or isinstance(exc, data_errors)


def _damaged_runs(served: dict) -> dict[str, str]:
    """{run id: problem} for the served runs that a deep check finds damaged."""
    damaged = {}
    for run_id, (output_dir, _) in served.items():
        try:
            problem = RunDir(output_dir).problem(deep=True)
        except RunDirError as exc:
            problem = _first_line(exc)
        if problem:
            damaged[run_id] = problem
    return damaged


# ---------------------------------------------------------------------- helpers
def _read_runs(con) -> list[dict]:
    if not _has_table(con, "runs"):
        return []
    columns = {row[0] for row in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE table_name = 'runs' AND schema_name = 'main'").fetchall()}
    sha = "manifest_sha256" if "manifest_sha256" in columns else "NULL::VARCHAR AS manifest_sha256"
    rel = con.execute(
        "SELECT id, time, registered_at, status, output_dir, config, versions, input_fingerprints, "
        f"counts, {sha} FROM runs ORDER BY time, id"
    )
    cols = [d[0] for d in rel.description]
    out = []
    for values in rel.fetchall():
        run = dict(zip(cols, values))
        for key in ("config", "versions", "input_fingerprints", "counts"):
            run[key] = json.loads(run[key]) if run[key] is not None else None
        out.append(run)
    return out


def _resolve(runs: list[dict], ref: str, what: str = "run") -> dict:
    for run in runs:
        if run["id"] == ref:
            return run
    if os.path.isdir(ref):
        resolved = str(Path(ref).resolve())
        for run in runs:
            if run["output_dir"] == resolved:
                return run
    matches = [run for run in runs if run["id"].startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise CatalogError(f"{what} {ref!r} is ambiguous: matches {', '.join(r['id'] for r in matches)}")
    known = ", ".join(run["id"] for run in runs) or "none registered"
    raise CatalogError(f"unknown {what} {ref!r} (known {what}s: {known})")


def _ensure_schema(con) -> None:
    for sql in _TABLES_SQL:
        con.execute(sql)
    con.execute("INSERT OR REPLACE INTO catalog_meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])


def _has_table(con, name: str) -> bool:
    return bool(con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND schema_name = 'main'", [name]
    ).fetchone()[0])


def _run_row(root: Path, manifest: dict, status: str | None) -> dict:
    when = None
    for key in ("finished_utc", "finished_at", "completed_at", "created_utc", "created_at", "time", "started_at"):
        when = _parse_time(manifest.get(key))
        if when:
            break
    if when is None:
        when = _dt.datetime.fromtimestamp((root / "manifest.json").stat().st_mtime, _dt.timezone.utc).replace(tzinfo=None)
    fingerprints = next((manifest[k] for k in ("input_fingerprints", "inputs", "fingerprints") if k in manifest), None)
    return {
        "time": when,
        "status": status or manifest.get("status") or "complete",
        "config": _json(manifest.get("config")),
        "versions": _json(manifest.get("versions")),
        "input_fingerprints": _json(fingerprints),
        "counts": _json(manifest.get("counts")),
    }


def _manifest_run_id(manifest: dict) -> str | None:
    value = manifest.get("run_id") or manifest.get("id")
    return str(value) if value else None


def _clean_id(value: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.:-]+", "-", str(value)).strip("-")
    if not cleaned:
        raise CatalogError(f"invalid id {value!r}")
    return cleaned


def _parse_time(value) -> _dt.datetime | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _dt.datetime.fromtimestamp(value, _dt.timezone.utc).replace(tzinfo=None)
    if isinstance(value, str) and value:
        try:
            parsed = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(_dt.timezone.utc).replace(tzinfo=None)
        return parsed
    return None


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None, microsecond=0)


def _json(value) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def _read_json(path: Path) -> dict:
    return read_json_object(path, CatalogError)


def _float_or_none(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _read_pid(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

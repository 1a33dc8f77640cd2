"""Statement checks for `curate query`: only one plain SELECT over the catalog's own objects.

This is the first of two layers. The second is the sandboxed connection in `pools.catalog`
(read-only database, external access disabled except for registered run files, configuration
locked), which holds even if something slips past these checks. The checks exist so users get a
clear, specific refusal instead of a DuckDB permission error, and so that table functions that
read files (`read_csv`, `glob`, ...) or run SQL from a string (`query`) are refused before they run.

How: DuckDB's own parser classifies the statement (`duckdb.extract_statements`), and for a SELECT
its syntax tree (`json_serialize_sql`) is walked to find every table function and every
`FROM 'path'` replacement scan, however deeply nested (CTEs, subqueries, joins, lateral).
"""
from __future__ import annotations

import json
import re
import threading
from contextlib import contextmanager
from typing import Iterator

# Table functions that only read DuckDB's own metadata or generate values: safe to allow.
ALLOWED_TABLE_FUNCTIONS = frozenset(
    {
        "range",
        "generate_series",
        "unnest",
        "json_each",
        "json_tree",
        "duckdb_tables",
        "duckdb_views",
        "duckdb_columns",
        "duckdb_schemas",
        "duckdb_types",
        "duckdb_functions",
        "duckdb_constraints",
        "duckdb_indexes",
        "duckdb_keywords",
        "duckdb_databases",
        "pragma_table_info",
        "pragma_show",
        "pragma_version",
        "pragma_database_size",
        "show_tables",
        "test_all_types",
    }
)

# PRAGMAs that only describe things (everything else may change settings, so it is refused).
ALLOWED_PRAGMAS = frozenset({"table_info", "show_tables", "show_tables_expanded", "show", "version", "database_size"})

# Why a statement type is refused; the key is duckdb's StatementType name.
_REFUSALS = {
    "INSERT": "writes to the catalog",
    "UPDATE": "writes to the catalog",
    "DELETE": "writes to the catalog",
    "MERGE_INTO": "writes to the catalog",
    "CREATE": "creates catalog objects",
    "CREATE_FUNC": "creates catalog objects",
    "DROP": "drops catalog objects",
    "ALTER": "alters catalog objects",
    "COPY": "copies data in or out of files",
    "COPY_DATABASE": "copies data in or out of files",
    "EXPORT": "exports the database to files",
    "ATTACH": "attaches another database",
    "DETACH": "detaches a database",
    "LOAD": "installs or loads extensions",
    "EXTENSION": "installs or loads extensions",
    "UPDATE_EXTENSIONS": "installs or loads extensions",
    "SET": "changes settings",
    "VARIABLE_SET": "changes settings",
    "CALL": "calls a procedure (use SELECT * FROM function() for read-only table functions)",
    "TRANSACTION": "controls transactions",
    "VACUUM": "rewrites the database",
    "ANALYZE": "rewrites the database",
    "PREPARE": "prepares statements",
    "EXECUTE": "executes prepared statements",
    "EXPLAIN": "is not supported (EXPLAIN ANALYZE executes its statement)",
    "MULTI": "expands to several statements",
}

_PATH_CHARS = re.compile(r"[/\\.*?:~]")


class QueryRefused(ValueError):
    """The statement is not a single read-only SELECT over the catalog."""


def check_query(sql: str, connection) -> None:
    """Raise QueryRefused with a one-line reason unless `sql` is one safe SELECT.

    `connection` is any DuckDB connection (used only to call the parser/serializer).
    """
    import duckdb

    if not sql or not sql.strip():
        raise QueryRefused("empty query")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRefused(f"cannot parse the query: {_first_line(exc)}") from None
    if len(statements) != 1:
        raise QueryRefused(f"exactly one statement is allowed, got {len(statements)}")
    kind = statements[0].type.name
    if kind == "PRAGMA":
        name = _pragma_name(sql)
        if name not in ALLOWED_PRAGMAS:
            raise QueryRefused(f"refused: PRAGMA {name or '?'} may change settings; only read-only queries are allowed")
        return
    if kind != "SELECT":
        reason = _REFUSALS.get(kind, "is not a read-only SELECT")
        raise QueryRefused(f"refused: {kind} {reason}; only read-only queries are allowed")
    tree = _syntax_tree(sql, connection)
    for node in _walk(tree):
        node_type = node.get("type")
        if node_type == "TABLE_FUNCTION":
            function = node.get("function") or {}
            name = str(function.get("function_name", "")).lower()
            if name not in ALLOWED_TABLE_FUNCTIONS:
                raise QueryRefused(
                    f"refused: table function {name}() may read files or run other SQL; "
                    "query the catalog views (runs, docs, pools, pool_stats, duplicates, dead_letter, ...)"
                )
        elif node_type == "BASE_TABLE":
            name = str(node.get("table_name", ""))
            if _PATH_CHARS.search(name):
                raise QueryRefused(f"refused: reading the file '{name}' directly; only the catalog views are readable")


def _syntax_tree(sql: str, connection) -> dict:
    (serialized,) = connection.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
    tree = json.loads(serialized)
    if tree.get("error"):
        # SELECT-classified statements that cannot be serialized are refused: we could not check them.
        raise QueryRefused(f"refused: cannot check the query ({tree.get('error_message', 'unknown error')})")
    return tree


def _walk(value) -> Iterator[dict]:
    """Every dict in a JSON tree, depth first (iterative: deep trees must not hit recursion limits)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _pragma_name(sql: str) -> str:
    match = re.match(r"\s*pragma\s+([A-Za-z_][A-Za-z0-9_]*)\s*(=)?", sql, re.IGNORECASE)
    if not match:
        return ""
    return "" if match.group(2) else match.group(1).lower()  # `PRAGMA x = y` always sets


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# Resource limits: a checked SELECT can still run for ever (range(1e12), cross joins, recursive
# CTEs) or fill memory and the temp directory; these bound it.
# ---------------------------------------------------------------------------------------------

#: Default wall-clock limit of one `curate query` (seconds).
DEFAULT_TIMEOUT_S = 120.0
#: Default DuckDB memory limit of one `curate query`; spilling to disk is capped at the same size
#: (DuckDB's own default lets a sort spill up to 90% of the free disk).
DEFAULT_MEMORY_LIMIT = "2GB"

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$", re.IGNORECASE)


class QueryLimitHit(ValueError):
    """The query ran past its time or memory limit (one line, naming the flag to change)."""


class QueryLimits:
    """Time and memory limits for one query on a sandboxed DuckDB connection.

    `timeout_s`: seconds before the query is interrupted (`connection.interrupt()` from a timer
    thread); None or 0 means no limit. `memory_limit`: a DuckDB size ("2GB", "512MB"), set as
    both `memory_limit` and `max_temp_directory_size` (:meth:`settings`, to be executed before
    the connection's configuration is locked). Use :meth:`enforce` around execute and fetch, and
    :meth:`error_for` to turn DuckDB's interrupt / out-of-memory errors into one line.
    """

    def __init__(self, timeout_s: float | None = DEFAULT_TIMEOUT_S,
                 memory_limit: str = DEFAULT_MEMORY_LIMIT):
        if timeout_s is not None and not (timeout_s >= 0 and timeout_s != float("inf")):
            raise ValueError(f"--timeout must be a number of seconds >= 0, got {timeout_s!r}")
        if not _SIZE.match(str(memory_limit)) or float(_SIZE.match(str(memory_limit)).group(1)) <= 0:
            raise ValueError(f"--memory-limit must be a size such as 2GB or 512MB, got {memory_limit!r}")
        self.timeout_s = timeout_s or None
        self.memory_limit = "".join(str(memory_limit).split())
        self._fired = threading.Event()

    def settings(self) -> list[str]:
        """SET statements (the size is checked above, so it is safe to quote inline)."""
        return [f"SET memory_limit = '{self.memory_limit}'",
                f"SET max_temp_directory_size = '{self.memory_limit}'"]

    @contextmanager
    def enforce(self, connection) -> Iterator[None]:
        """Interrupt the connection's running query once the timeout has passed."""
        self._fired.clear()
        if self.timeout_s is None:
            yield
            return

        def stop():
            self._fired.set()
            connection.interrupt()

        timer = threading.Timer(self.timeout_s, stop)
        timer.daemon = True  # never keeps the process alive
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def error_for(self, exc: BaseException) -> QueryLimitHit | None:
        """The one-line error for a DuckDB error caused by a limit, else None."""
        import duckdb

        if isinstance(exc, duckdb.InterruptException) and self._fired.is_set():
            return QueryLimitHit(f"query stopped after {self.timeout_s:g} s (the --timeout limit); "
                                 "narrow it (WHERE, LIMIT, aggregates) or pass a larger --timeout")
        if isinstance(exc, duckdb.OutOfMemoryException) or (
                isinstance(exc, duckdb.Error) and "max_temp_directory_size" in str(exc)):
            return QueryLimitHit(f"query stopped: it needs more than {self.memory_limit} of memory "
                                 "(the --memory-limit limit); narrow it or pass a larger --memory-limit")
        return None

"""Load observation tables (CSV, Parquet, a DuckDB table) and validate them.

    load_observations("runs.csv", columns={"samples_seen": "tokens"}, law="qqt")
    load_observations("catalog.duckdb:probe_runs", law="data-constrained")

`columns` maps canonical names (pool, samples_seen, unique_samples, metric, params, run_id,
step) to the names used in the file; `parse_column_map("samples_seen=tokens,metric=loss")`
reads the CLI's `--columns` value. Validation (and its row-naming errors) is
:func:`laws.observations.validate_observations`. pyarrow / duckdb are imported lazily.
"""
from __future__ import annotations

import json

import os
from pathlib import Path
from typing import Mapping


class ObservationsError(ValueError):
    """An observations file or column mapping that cannot be read as asked (the CLI prints it as
    one line)."""


CANONICAL = ("pool", "samples_seen", "unique_samples", "metric", "params", "run_id", "step")
_TEXT_COLUMNS = ("pool", "run_id")


def parse_column_map(text: str | None) -> dict[str, str]:
    """`samples_seen=tokens,metric=val_loss` -> {"samples_seen": "tokens", "metric": "val_loss"}."""
    if not text:
        return {}
    out: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if item.count("=") != 1:
            raise ObservationsError(f"--columns: expected canonical=source, got {item!r}")
        canonical, source = (s.strip() for s in item.split("="))
        if canonical not in CANONICAL:
            raise ObservationsError(f"--columns: unknown column {canonical!r}; known: {', '.join(CANONICAL)}")
        if not source:
            raise ObservationsError(f"--columns: empty source column for {canonical!r}")
        if canonical in out:
            raise ObservationsError(f"--columns: {canonical!r} mapped twice")
        out[canonical] = source
    return out


def read_table(spec: str) -> dict[str, list]:
    """Read CSV / Parquet / `file.duckdb:table` into {column: list of python values}."""
    db_path, table = _split_duckdb(spec)
    if db_path is not None:
        return _read_duckdb(db_path, table)
    path = Path(spec)
    if not path.exists():
        raise ObservationsError(f"observations file {spec} does not exist")
    if path.is_dir():
        return _read_parquet(path)  # a directory of Parquet files (a dataset)
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return _read_parquet(path)
    if name.endswith((".csv", ".csv.gz", ".tsv")):
        return _read_csv(path, delimiter="\t" if name.endswith(".tsv") else ",")
    if name.endswith((".duckdb", ".db")):
        raise ObservationsError(f"{spec}: name the table, as {spec}:TABLE")
    raise ObservationsError(f"{spec}: unknown observations format (expected .csv, .parquet or "
                      "FILE.duckdb:TABLE)")


def probe_metadata(spec: str) -> dict:
    """The `curate probe` metadata of a Parquet observations file ({} for anything else).

    A probe records its unit (tokens = UTF-8 bytes) and the byte size of every full pool, so a
    law fitted on its output can carry the real pool sizes rather than the probe's subsets.
    """
    path = Path(spec)
    if not path.is_file() or not path.name.lower().endswith((".parquet", ".pq")):
        return {}
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    raw = metadata.get(b"curate.probe")
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}


def load_observations(spec: str, columns: Mapping[str, str] | None = None, law: str | None = None):
    """Read, rename (`columns` canonical -> source) and validate observations."""
    from curate.laws.observations import validate_observations

    table = read_table(spec)
    renamed = rename_columns(table, columns or {}, spec)
    try:
        return validate_observations(renamed, law=law)
    except ValueError as exc:
        raise ObservationsError(f"{spec}: {exc}") from None


def rename_columns(table: dict[str, list], columns: Mapping[str, str], spec: str = "table") -> dict:
    out = dict(table)
    for canonical, source in columns.items():
        if source not in table:
            raise ObservationsError(f"{spec}: column {source!r} (for {canonical}) not found; "
                              f"columns are {', '.join(table)}")
        if canonical in out and canonical != source and canonical not in columns.values():
            raise ObservationsError(f"{spec}: --columns {canonical}={source} but the file already "
                              f"has a {canonical!r} column")
    renamed = {}
    sources = {v: k for k, v in columns.items()}
    for name, values in table.items():
        if name in sources:
            renamed[sources[name]] = values
        elif name not in renamed:
            renamed[name] = values
    return renamed


# -- readers ----------------------------------------------------------------------------------

def _split_duckdb(spec: str):
    """`path.duckdb:table` -> (path, table); anything else -> (None, None)."""
    if ":" not in spec:
        return None, None
    path, _, table = spec.rpartition(":")
    if path and os.path.isfile(path) and not os.path.isfile(spec):
        if not table:
            raise ObservationsError(f"{spec}: empty table name after ':'")
        return path, table
    if path.lower().endswith((".duckdb", ".db")) and not os.path.exists(path):
        raise ObservationsError(f"DuckDB file {path} does not exist")
    return None, None


def _read_csv(path: Path, delimiter: str) -> dict[str, list]:
    import pyarrow as pa
    from pyarrow import csv

    # Read every column as text: numbers are parsed by the validator, which names the row.
    # Only empty cells are missing values: "nan" / "inf" stay text and are reported as such.
    names = _csv_header(path, delimiter)
    if len(set(names)) != len(names):
        raise ObservationsError(f"{path}: repeated column names in the header: {names}")
    try:
        table = csv.read_csv(
            path, parse_options=csv.ParseOptions(delimiter=delimiter),
            convert_options=csv.ConvertOptions(column_types={n: pa.string() for n in names},
                                               null_values=[""], strings_can_be_null=True))
    except pa.ArrowInvalid as exc:
        raise ObservationsError(f"{path}: cannot parse CSV: {str(exc).splitlines()[0]}") from None
    return {name: table.column(name).to_pylist() for name in table.column_names}


def _csv_header(path: Path, delimiter: str) -> list[str]:
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", newline="") as fh:
        import csv as stdcsv

        row = next(stdcsv.reader(fh, delimiter=delimiter), None)
    if not row:
        raise ObservationsError(f"{path}: empty file (no header row)")
    return [c.strip() for c in row]


def _read_parquet(path: Path) -> dict[str, list]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ObservationsError(f"{path}: cannot read Parquet: {str(exc).splitlines()[0]}") from None
    return {name: table.column(name).to_pylist() for name in table.column_names}


def _read_duckdb(path: str, table: str) -> dict[str, list]:
    import duckdb

    quoted = '"' + table.replace('"', '""') + '"'
    try:
        con = duckdb.connect(path, read_only=True)
    except duckdb.Error as exc:
        raise ObservationsError(f"{path}: cannot open DuckDB database: {str(exc).splitlines()[0]}") from None
    try:
        result = con.execute(f"SELECT * FROM {quoted}")
        names = [d[0] for d in result.description]
        rows = result.fetchall()
    except duckdb.Error as exc:
        raise ObservationsError(f"{path}: cannot read table {table!r}: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()
    return {name: [row[i] for row in rows] for i, name in enumerate(names)}

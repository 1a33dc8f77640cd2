"""Print rows as an aligned text table, CSV or JSON (used by query, runs and diff)."""
from __future__ import annotations

import csv
import datetime as _dt
import decimal
import json
import math
from typing import IO, Sequence

MAX_CELL = 60  # table cells longer than this are shortened with an ellipsis


def jsonable(value):
    """Plain JSON types for DuckDB/pyarrow values (dates as ISO strings, NaN as null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "hex") and type(value).__name__ == "UUID":
        return str(value)
    return value


def format_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        text = json.dumps(jsonable(value))
    else:
        text = str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def write_rows(out: IO[str], columns: Sequence[str], rows: Sequence[Sequence], fmt: str) -> None:
    if fmt == "json":
        json.dump([{c: jsonable(v) for c, v in zip(columns, row)} for row in rows], out)
        out.write("\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if v is None else jsonable(v) if isinstance(v, (dict, list)) else v for v in row])
    elif fmt == "table":
        cells = [[format_cell(v) for v in row] for row in rows]
        widths = [len(c) for c in columns]
        for row in cells:
            widths = [max(w, len(c)) for w, c in zip(widths, row)]
        numeric = [all(isinstance(row[i], (int, float)) or row[i] is None for row in rows) and rows
                   for i in range(len(columns))]

        def line(values):
            return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

        out.write(line(list(columns)) + "\n")
        out.write("  ".join("-" * w for w in widths) + "\n")
        for row in cells:
            out.write(line(row) + "\n")
        out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''})\n")
    else:
        raise ValueError(f"unknown format {fmt!r}")

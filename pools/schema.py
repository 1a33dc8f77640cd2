"""Arrow schemas of the run directory's files (see docs / DESIGN contracts).

Feature columns are dynamic (they come from the scorer's `feature_names`), so document schemas
are built from a list of feature names; everything else is fixed here.
"""
from __future__ import annotations

from typing import Sequence

DOCUMENT_FIXED = [
    ("id", "string"),
    ("text", "string"),
    ("source", "string"),
    ("text_hash", "string"),
    ("chars", "int64"),
    ("tokens", "int64"),
    ("score", "float64"),
    ("failed_rules", "string"),  # comma-separated rule families that did not pass ("" = none)
    ("reasons", "string"),  # JSON list of the scorer's reasons
]


def _pa_type(name: str):
    import pyarrow as pa

    return {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}[name]


def document_schema(feature_names: Sequence[str], extra: Sequence[tuple[str, str]] = ()):
    """Schema of `pools/pool=K/*.parquet` rows; `pool` is the hive partition *and* a column."""
    import pyarrow as pa

    fields = [pa.field(n, _pa_type(t)) for n, t in DOCUMENT_FIXED]
    fields += [pa.field(n, _pa_type(t)) for n, t in extra]
    fields += [pa.field(f"f_{name}", pa.float64()) for name in feature_names]
    fields.append(pa.field("pool", pa.int64()))
    return pa.schema(fields)


def embedding_schema(dtype: str = "float32"):
    """`embeddings/*.parquet`: one vector per embedded document, joinable by `id`."""
    import pyarrow as pa

    value = {"float32": pa.float32(), "float16": pa.float16()}[dtype]
    return pa.schema([pa.field("id", pa.string()), pa.field("embedding", pa.list_(value))])


def dedup_schema():
    """`dedup/*.parquet`: which id was removed as a duplicate of which, and why."""
    import pyarrow as pa

    return pa.schema(
        [
            ("removed_id", pa.string()),
            ("kept_id", pa.string()),
            ("method", pa.string()),  # "exact" | "near" | "semantic"
            ("similarity", pa.float64()),  # 1.0 for exact; MinHash Jaccard estimate for near
        ]
    )


def filtered_schema():
    """`filtered/*.parquet`: documents dropped by a configured keep/drop rule."""
    import pyarrow as pa

    return pa.schema(
        [("id", pa.string()), ("source", pa.string()), ("reason", pa.string()), ("score", pa.float64())]
    )


def stats_schema():
    """`stats.parquet`: one row per pool."""
    import pyarrow as pa

    return pa.schema(
        [
            ("pool", pa.int64()),
            ("docs", pa.int64()),
            ("chars", pa.int64()),
            ("tokens", pa.int64()),  # estimate: whitespace words x 1.3
            ("score_min", pa.float64()),
            ("score_mean", pa.float64()),
            ("score_max", pa.float64()),
            ("source_share", pa.string()),  # JSON object {source: fraction of the pool's docs}
        ]
    )

"""What a probe writes: observation rows as Parquet tables with the probe's metadata.

OBS.parquet holds the single-pool rows `curate fit` reads; the held-out rows go to the sibling
OBS.holdout.parquet. The metadata (JSON under the schema key `curate.probe`) carries the unit,
the design and the full pools' sizes in bytes (`pool_bytes`), which `curate fit` reads back
through `probe.observations_io.probe_metadata`.
"""
from __future__ import annotations

import json
from pathlib import Path

OBS_COLUMNS = ("pool", "samples_seen", "unique_samples", "metric", "params", "run_id", "step",
               "role", "epochs")


def holdout_path(obs_path: str | Path) -> Path:
    """Where the held-out runs of OBS.parquet go: OBS.holdout.parquet."""
    p = Path(obs_path)
    return p.with_name(p.stem + ".holdout" + (p.suffix or ".parquet"))


def observations_table(rows: list[dict], metadata: dict | None = None):
    """A pyarrow table with the observation columns (+ probe metadata in the schema)."""
    import pyarrow as pa

    schema = pa.schema([("pool", pa.string()), ("samples_seen", pa.int64()),
                        ("unique_samples", pa.int64()), ("metric", pa.float64()),
                        ("params", pa.int64()), ("run_id", pa.string()), ("step", pa.int64()),
                        ("role", pa.string()), ("epochs", pa.float64())])
    if metadata is not None:
        schema = schema.with_metadata({"curate.probe": json.dumps(metadata, sort_keys=True)})
    cols = {name: [r[name] for r in rows] for name in OBS_COLUMNS}
    return pa.Table.from_pydict(cols, schema=schema)


def write_observations(path: str | Path, rows: list[dict], metadata: dict) -> None:
    """Write `rows` (with `metadata`) as a Parquet file."""
    import pyarrow.parquet as pq

    pq.write_table(observations_table(rows, metadata), path)

"""The one place where the probe reads a `curate run` directory: its pools, as (id, text) lists.

Reads RUN/pools/pool=K/*.parquet directly. `curate.pools.rundir.RunDir` (a reader that refuses
unfinished runs) is meant to replace the body of `load_pools`; nothing else in the probe
touches the run directory.
"""
from __future__ import annotations

from pathlib import Path

from curate.probe.errors import ProbeError


def pool_name(k: int) -> str:
    return f"pool{k}"


def load_pools(run_dir: str | Path) -> dict[str, list[tuple[str, str]]]:
    """{pool name: [(id, text), ...]} from RUN/pools/pool=K/*.parquet, pool 0 first."""
    import pyarrow.parquet as pq

    root = Path(run_dir) / "pools"
    if not root.is_dir():
        raise ProbeError(f"{run_dir} has no pools/ directory: is it a `curate run` output?")
    pools: dict[str, list[tuple[str, str]]] = {}
    dirs = []
    for d in root.iterdir():
        if d.is_dir() and d.name.startswith("pool="):
            try:
                dirs.append((int(d.name.split("=", 1)[1]), d))
            except ValueError:
                continue
    for k, d in sorted(dirs):
        docs: list[tuple[str, str]] = []
        for f in sorted(d.glob("*.parquet")):
            table = pq.read_table(f, columns=["id", "text"])
            docs.extend(zip((str(i) for i in table.column("id").to_pylist()),
                            (t or "" for t in table.column("text").to_pylist())))
        docs = [(i, t) for i, t in docs if t]
        if docs:
            pools[pool_name(k)] = docs
    if not pools:
        raise ProbeError(f"no documents under {root}/pool=K/*.parquet")
    return pools

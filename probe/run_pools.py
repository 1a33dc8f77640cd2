"""The one place where the probe reads a `curate run` directory: its pools, as (id, text) lists.

Through `curate.pools.rundir.RunDir`, so an unfinished run is refused as everywhere else.
"""
from __future__ import annotations

from pathlib import Path

from curate.probe.errors import ProbeError


def pool_name(k: int) -> str:
    return f"pool{k}"


def load_pools(run_dir: str | Path) -> dict[str, list[tuple[str, str]]]:
    """{pool name: [(id, text), ...]} from RUN/pools/pool=K/*.parquet, pool 0 first."""
    import pyarrow.parquet as pq

    from curate.pools.rundir import POOLS, RunDir, RunDirError

    try:
        run = RunDir(run_dir)
    except RunDirError as exc:
        raise ProbeError(str(exc)) from None
    root = run.root / POOLS
    by_pool: dict[int, list[Path]] = {}
    for f in map(Path, run.files.pools):
        name = f.relative_to(root).parts[0]
        try:
            by_pool.setdefault(int(name.split("=", 1)[1]), []).append(f)
        except ValueError:
            continue
    pools: dict[str, list[tuple[str, str]]] = {}
    for k, files in sorted(by_pool.items()):
        docs: list[tuple[str, str]] = []
        for f in sorted(files):
            if f.suffix != ".parquet":
                continue
            table = pq.read_table(f, columns=["id", "text"])
            docs.extend(zip((str(i) for i in table.column("id").to_pylist()),
                            (t or "" for t in table.column("text").to_pylist())))
        docs = [(i, t) for i, t in docs if t]
        if docs:
            pools[pool_name(k)] = docs
    if not pools:
        raise ProbeError(f"no documents under {root}/pool=K/*.parquet")
    return pools

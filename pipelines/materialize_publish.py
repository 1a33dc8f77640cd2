"""Publishing a materialised training set with the run directory's protocol (all I/O via Beam
FileSystems; marker format and names from `pools/rundir.py`, helpers from `pipelines/publish.py`).

Layout of OUT::

    OUT/data/train-*-of-*.{parquet,jsonl,jsonl.gz,bin,idx}
    OUT/_SUCCESS        {"manifest_sha256", "fingerprint"}
    OUT/manifest.json   format curate-materialized/1

Order: `_PUBLISHING` (curate's claim), the old set removed (manifest, marker, data), data/
moved in, `_SUCCESS`, manifest.json, `_PUBLISHING` removed. A process killed anywhere leaves the
old set, a directory the next `curate materialize` recognises as its own leftover (and
cleans), or the new set. `publish.publish` knows only a run's folders, hence this module.
"""
from __future__ import annotations

import json

from apache_beam.io.filesystems import FileSystems

from curate.pipelines import fsutil
from curate.pipelines.materialize import DATA_DIR
from curate.pools.rundir import MANIFEST, PUBLISHING, STAGING_PREFIX, SUCCESS, marker_bytes

LOCK_NAME = "_curate.lock"  # orchestration's run lock file: not content of the set
PUBLISHED = (DATA_DIR, SUCCESS, MANIFEST)


def leftovers(out: str) -> list[str]:
    return [n for n in PUBLISHED if fsutil.exists(FileSystems.join(out, n))]


def foreign_entries(out: str) -> list[str]:
    """Names in a local OUT that curate materialize does not write (its lock and staging aside)."""
    import os

    if "://" in out or not os.path.isdir(out):
        return []
    own = set(PUBLISHED) | {PUBLISHING, LOCK_NAME}
    return sorted(n for n in os.listdir(out) if n not in own and not n.startswith(STAGING_PREFIX))


def unpublish(out: str) -> None:
    """Manifest and marker first (readers key on them), the data last."""
    for name in (MANIFEST, SUCCESS, DATA_DIR):
        path = FileSystems.join(out, name)
        if fsutil.exists(path):
            fsutil.delete(path)


def publish(staging: str, out: str, manifest_bytes: bytes, fingerprint: str) -> dict:
    """Replace the set in `out` with the staged one; returns the _SUCCESS contents."""
    prefix = staging.rstrip("/") + "/"
    staged = fsutil.list_files(staging)
    unknown = [f for f in staged if not f.startswith(prefix + DATA_DIR + "/")]
    if unknown:
        raise RuntimeError(f"staged set has outputs publish does not know ({unknown[:3]}); not publishing")
    fsutil.write_bytes(FileSystems.join(out, PUBLISHING), staging.encode("utf-8"))
    unpublish(out)
    fsutil.mkdirs(FileSystems.join(out, DATA_DIR))
    dests = [FileSystems.join(out, f[len(prefix):]) for f in staged]
    if staged:
        FileSystems.rename(staged, dests)
    marker = marker_bytes(manifest_bytes, fingerprint)
    fsutil.write_bytes(FileSystems.join(staging, SUCCESS), marker)
    fsutil.write_bytes(FileSystems.join(staging, MANIFEST), manifest_bytes)
    FileSystems.rename([FileSystems.join(staging, SUCCESS)], [FileSystems.join(out, SUCCESS)])
    FileSystems.rename([FileSystems.join(staging, MANIFEST)], [FileSystems.join(out, MANIFEST)])
    fsutil.delete(staging)
    fsutil.delete(FileSystems.join(out, PUBLISHING))
    return json.loads(marker)

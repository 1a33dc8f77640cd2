"""Publishing a materialised training set with the run directory's protocol (all I/O via Beam
FileSystems; marker format and names from `pools/rundir.py`, the protocols from
`pipelines/publish.py`).

Layout of OUT::

    OUT/data/train-*-of-*.{parquet,jsonl,jsonl.gz,bin,idx}
    OUT/_SUCCESS        {"manifest_sha256", "fingerprint"}
    OUT/manifest.json   format curate-materialized/1

Replacing a published set on a local filesystem (--overwrite, --force) is `curate run`'s swap
(`publish.publish_by_swap`): the new set is completed in its staging folder, moved beside OUT
and exchanged with OUT in one `renameat2(RENAME_EXCHANGE)`, so the old set stays whole and
readable until the new one is complete; the next `curate materialize` into OUT finishes a
swap that was killed (`publish.recover`). A first publish, or where no exchange is possible
(object stores, another OS), goes in place: `_PUBLISHING` (curate's claim), any old set
removed (manifest, marker, data), data/ moved in, `_SUCCESS`, manifest.json, `_PUBLISHING`
removed. Killed anywhere, OUT holds the old set, a directory the next `curate materialize`
recognises as its own leftover (and cleans), or the new set.
"""
from __future__ import annotations

import json

from apache_beam.io.filesystems import FileSystems

from curate.pipelines import fsutil
from curate.pipelines import publish as run_publish
from curate.pipelines.materialize import DATA_DIR, INFO_FILE
from curate.pools.rundir import LOCK, MANIFEST, PROGRESS, PUBLISHING, STAGING_PREFIX, SUCCESS, marker_bytes

LOCK_NAME = LOCK  # orchestration's run lock file: not content of the set
PUBLISHED = (DATA_DIR, SUCCESS, MANIFEST)
# Every name curate materialize creates in OUT (or its staging or swap folder): the only
# entries a swap deletes from the old set; anything else would be moved back.
OWN_NAMES = PUBLISHED + (PUBLISHING, LOCK, PROGRESS, INFO_FILE)


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


def recover(out: str) -> list[str]:
    """Finish a swap into `out` that was killed (hold the run lock); returns the paths that could
    not be put back (see `publish.recover`)."""
    return run_publish.recover(out, OWN_NAMES)


def publish(staging: str, out: str, manifest_bytes: bytes, fingerprint: str) -> dict:
    """Replace the set in `out` with the staged one; returns the _SUCCESS contents.

    A published local set is replaced by the atomic swap, anything else in place (module doc).
    """
    prefix = staging.rstrip("/") + "/"
    staged = fsutil.list_files(staging)
    unknown = [f for f in staged if not f.startswith(prefix + DATA_DIR + "/")]
    if unknown:
        raise RuntimeError(f"staged set has outputs publish does not know ({unknown[:3]}); not publishing")
    marker = marker_bytes(manifest_bytes, fingerprint)
    if "://" not in out and run_publish.is_published(out):
        if run_publish.publish_by_swap(staging, out, manifest_bytes, marker, OWN_NAMES):
            return json.loads(marker)
    fsutil.write_bytes(FileSystems.join(out, PUBLISHING), staging.encode("utf-8"))
    unpublish(out)
    fsutil.mkdirs(FileSystems.join(out, DATA_DIR))
    dests = [FileSystems.join(out, f[len(prefix):]) for f in staged]
    if staged:
        FileSystems.rename(staged, dests)
    fsutil.write_bytes(FileSystems.join(staging, SUCCESS), marker)
    fsutil.write_bytes(FileSystems.join(staging, MANIFEST), manifest_bytes)
    FileSystems.rename([FileSystems.join(staging, SUCCESS)], [FileSystems.join(out, SUCCESS)])
    FileSystems.rename([FileSystems.join(staging, MANIFEST)], [FileSystems.join(out, MANIFEST)])
    fsutil.delete(staging)
    fsutil.delete(FileSystems.join(out, PUBLISHING))
    return json.loads(marker)

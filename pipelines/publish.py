"""Publishing a run directory so readers never see a partial run (all I/O via Beam FileSystems).

The layout names, the publish order and the marker format are the run-directory contract's
(`pools/rundir.py`, which also holds the reader). Protocol (the order is the guarantee):
  1. The pipeline writes everything under DIR/_staging-<id>/.
  2. `unpublish(DIR)` removes an old run in reverse: manifest.json, _SUCCESS, stats.parquet,
     then the data folders. Readers key on manifest.json / _SUCCESS (stats.parquet is complete
     in itself), so from the first deletion on the directory reads as "no run".
  3. `publish` moves the data folders, then stats.parquet (both complete by then), writes
     _SUCCESS (the manifest's sha256 and the run fingerprint), and moves manifest.json in
     last. So manifest.json (what the catalog and reports key on) never exists without a
     marker, and a marker only counts when the manifest beside it has the named hash.
A process killed anywhere leaves either the old run, or a directory without a valid marker
(which the next `curate run` into it cleans up), or the new run: never a run over partial
data.
"""
from __future__ import annotations

import json

from apache_beam.io.filesystems import FileSystems

from curate.pipelines import fsutil
from curate.pools.rundir import (DATA_DIRS, MANIFEST, PUBLISH_ORDER, PUBLISHING, STAGING_PREFIX, STATS,
                                 SUCCESS, marker_bytes, parse_marker)


def _join(root: str, name: str) -> str:
    return FileSystems.join(root, name)


def read_marker(run_dir: str) -> dict | None:
    """The _SUCCESS marker of a published run, or None when the directory holds no valid one.

    Valid means: the marker parses and the manifest.json beside it has the sha256 it names
    (a marker left over from another run, or a manifest edited by hand, does not count).
    """
    marker, manifest = _join(run_dir, SUCCESS), _join(run_dir, MANIFEST)
    try:
        if not (fsutil.exists(marker) and fsutil.exists(manifest)):
            return None
        return parse_marker(fsutil.read_bytes(marker), fsutil.read_bytes(manifest))
    except OSError:
        return None


def is_published(run_dir: str) -> bool:
    return read_marker(run_dir) is not None


def leftovers(run_dir: str) -> list[str]:
    """Published names present in a directory (complete or not)."""
    return [n for n in (SUCCESS,) + PUBLISH_ORDER if fsutil.exists(_join(run_dir, n))]


def stale_staging(run_dir: str) -> list[str]:
    """`_staging-*` folders of earlier runs (only safe to delete while holding the run lock)."""
    if "://" not in run_dir:  # local match lists files only: an empty folder would be missed
        import os

        if not os.path.isdir(run_dir):
            return []
        return sorted(os.path.join(run_dir, n) for n in os.listdir(run_dir) if n.startswith(STAGING_PREFIX))
    matches = FileSystems.match([_join(run_dir, STAGING_PREFIX + "*/**")])[0].metadata_list
    root = run_dir.rstrip("/") + "/"
    return sorted({_join(run_dir, m.path[len(root):].split("/", 1)[0]) for m in matches})


def remove_stale_staging(run_dir: str) -> list[str]:
    removed = stale_staging(run_dir)
    for path in removed:
        if fsutil.exists(path):
            fsutil.delete(path)
    return removed


def unpublish(run_dir: str) -> None:
    """Remove a (possibly partial) published run: manifest and marker first, data last."""
    for name in (MANIFEST, SUCCESS, STATS) + DATA_DIRS[::-1]:
        path = _join(run_dir, name)
        if fsutil.exists(path):
            fsutil.delete(path)


def _files_under(root: str, name: str) -> list[str]:
    path = _join(root, name)
    if not fsutil.exists(path):
        return []
    files = fsutil.list_files(path)
    return files if files else [path]


def publish(staging: str, run_dir: str, manifest_bytes: bytes, fingerprint: str) -> dict:
    """Replace whatever is in `run_dir` with the staged run; returns the _SUCCESS contents."""
    prefix = staging.rstrip("/") + "/"
    known = tuple(prefix + name for name in PUBLISH_ORDER)
    unknown = [f for f in fsutil.list_files(staging) if not f.startswith(known)]
    if unknown:  # publishing would silently lose these: refuse before touching run_dir
        raise RuntimeError(f"staged run has outputs publish does not know ({unknown[:3]}); not publishing")
    # the claim of ownership goes in before anything in run_dir is touched (see rundir.PUBLISHING)
    fsutil.write_bytes(_join(run_dir, PUBLISHING), staging.encode("utf-8"))
    unpublish(run_dir)
    for name in PUBLISH_ORDER[:-1]:
        _move(staging, run_dir, [f for f in _files_under(staging, name) if f.startswith(prefix)])
    marker = marker_bytes(manifest_bytes, fingerprint)
    # marker and manifest are written in staging, then renamed: neither is ever half-written
    fsutil.write_bytes(_join(staging, SUCCESS), marker)
    fsutil.write_bytes(_join(staging, MANIFEST), manifest_bytes)
    _move(staging, run_dir, [_join(staging, SUCCESS)])
    _move(staging, run_dir, [_join(staging, MANIFEST)])
    fsutil.delete(staging)
    fsutil.delete(_join(run_dir, PUBLISHING))
    return json.loads(marker)


def is_own_leftover(run_dir: str) -> bool:
    """True when run_dir holds a publish of curate's that was killed (its _PUBLISHING marker)."""
    return fsutil.exists(_join(run_dir, PUBLISHING))


def _move(staging: str, run_dir: str, files: list[str]) -> None:
    prefix = staging.rstrip("/") + "/"
    dests = [_join(run_dir, f[len(prefix):]) for f in files]
    for d in dests:
        fsutil.mkdirs(d.rsplit("/", 1)[0])
    if files:
        FileSystems.rename(files, dests)

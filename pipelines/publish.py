"""Publishing a run directory so readers never see a partial run.

The layout names, the publish order and the marker format are the run-directory contract's
(`pools/rundir.py`, which also holds the reader). The pipeline writes everything under
DIR/_staging-<id>/; then one of two protocols puts it in place.

Replacing a published run on a local filesystem (`--force`, `--overwrite`): side by side, then
one atomic swap, so the old run stays whole and readable (and served by the catalog) until the
new one is complete:
  1. _SUCCESS and manifest.json are written into the staging folder (now a complete run), the
     run lock is hard-linked into it (so the lock held stays DIR's own after the swap) and both
     it and DIR get a `_PUBLISHING` claim (they are curate's to tidy if the process dies).
  2. The staging folder is renamed out beside DIR, to `.DIR._curate-swap-<id>` (same filesystem).
  3. `renameat2(RENAME_EXCHANGE)` exchanges the two directories in one step: DIR is the new
     run, the swap folder holds the old one.
  4. The old run's entries that are not curate's (a report, notes: anything outside
     `rundir.OWN_NAMES`) are moved back into DIR; curate's are deleted, then the swap folder.
  Killed anywhere, DIR holds the old complete run (before 3) or the new one (from 3 on); the
  next `curate run` into DIR finishes step 4 (`recover`). Foreign entries are never deleted:
  between 3 and 4 they are in the swap folder, and one whose name DIR already has stays there.
  `curate materialize` publishes its training sets with the same swap (`publish_by_swap`,
  `recover` and `tidy_swap_folder` take the names that are curate's in such a directory).

Everything else (a first publish, or no exchange available: another OS, a filesystem without
it, DIR a mount point, an object store) publishes in place, in the contract's order:
  1. `_PUBLISHING` goes into DIR before anything there is touched.
  2. `unpublish(DIR)` removes an old run in reverse: manifest.json, _SUCCESS, stats.parquet,
     then the data folders; from the first deletion on, DIR reads as "no run".
  3. The data folders, then stats.parquet are moved in, then _SUCCESS (the manifest's sha256
     and the run fingerprint), then manifest.json, and `_PUBLISHING` is removed.
  A process killed anywhere leaves the old run, a directory without a valid marker (refused by
  every reader; the next `curate run` into it cleans it up) or the new run: never a run over
  partial data. But the old run is gone from step 2 on, before the new one is complete: object
  stores (gs://, s3://) have no atomic rename of a prefix, and renaming their objects is a copy
  per object, so a side-by-side swap there would need readers to follow a pointer to a versioned
  folder, which the run layout does not have. Readers refuse such a directory while it is
  being replaced; they never serve part of it.
"""
from __future__ import annotations

import errno
import json
import os
import uuid

from apache_beam.io.filesystems import FileSystems

from curate.pipelines import fsutil
from curate.pools.rundir import (DATA_DIRS, LOCK, MANIFEST, OWN_NAMES, PUBLISH_ORDER, PUBLISHING, STAGING_PREFIX,
                                 STATS, SUCCESS, marker_bytes, parse_marker, swap_sibling, swap_siblings)


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
    """Replace whatever is in `run_dir` with the staged run; returns the _SUCCESS contents.

    A published local run is replaced by an atomic swap, anything else in place (module doc).
    """
    prefix = staging.rstrip("/") + "/"
    known = tuple(prefix + name for name in PUBLISH_ORDER)
    unknown = [f for f in fsutil.list_files(staging) if not f.startswith(known)]
    if unknown:  # publishing would silently lose these: refuse before touching run_dir
        raise RuntimeError(f"staged run has outputs publish does not know ({unknown[:3]}); not publishing")
    marker = marker_bytes(manifest_bytes, fingerprint)
    if "://" not in run_dir and is_published(run_dir):
        if publish_by_swap(staging, run_dir, manifest_bytes, marker):
            return json.loads(marker)
    return _publish_in_place(staging, run_dir, manifest_bytes, marker)


def _publish_in_place(staging: str, run_dir: str, manifest_bytes: bytes, marker: bytes) -> dict:
    prefix = staging.rstrip("/") + "/"
    # the claim of ownership goes in before anything in run_dir is touched (see rundir.PUBLISHING)
    fsutil.write_bytes(_join(run_dir, PUBLISHING), staging.encode("utf-8"))
    unpublish(run_dir)
    for name in PUBLISH_ORDER[:-1]:
        _move(staging, run_dir, [f for f in _files_under(staging, name) if f.startswith(prefix)])
    # marker and manifest are written in staging, then renamed: neither is ever half-written
    fsutil.write_bytes(_join(staging, SUCCESS), marker)
    fsutil.write_bytes(_join(staging, MANIFEST), manifest_bytes)
    _move(staging, run_dir, [_join(staging, SUCCESS)])
    _move(staging, run_dir, [_join(staging, MANIFEST)])
    fsutil.delete(staging)
    fsutil.delete(_join(run_dir, PUBLISHING))
    return json.loads(marker)


def publish_by_swap(staging: str, run_dir: str, manifest_bytes: bytes, marker: bytes,
                    own_names: tuple[str, ...] = OWN_NAMES) -> bool:
    """Steps 1-4 of the swap (module doc); False, with nothing changed that matters, when this
    filesystem cannot swap (the caller then publishes in place). `own_names`: the entries of
    the old directory that are curate's (deleted in step 4; anything else is moved back)."""
    root = os.path.realpath(run_dir)  # a symlinked DIR: swap its target, keep the link
    beside = str(swap_sibling(root, uuid.uuid4().hex[:12]))
    # Plain writes: until the rename below the staging folder is not a run anywhere (a killed
    # process leaves it to the stale-staging cleanup), and a claim counts by existing.
    _write_local(os.path.join(staging, SUCCESS), marker)
    _write_local(os.path.join(staging, MANIFEST), manifest_bytes)
    try:
        os.link(os.path.join(root, LOCK), os.path.join(staging, LOCK))
    except FileNotFoundError:
        pass  # not run under RunLock (library use): nothing to keep
    _write_local(os.path.join(staging, PUBLISHING), root.encode("utf-8"))
    _write_local(os.path.join(root, PUBLISHING), beside.encode("utf-8"))
    try:
        os.rename(staging, beside)
    except OSError:  # parent not writable, DIR a mount point: in place instead
        return False
    try:
        exchange_paths(beside, root)
    except OSError:
        os.rename(beside, staging)
        return False
    tidy_swap_folder(beside, root, own_names)
    os.remove(os.path.join(root, PUBLISHING))
    return True


def _write_local(path: str, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def exchange_paths(a: str, b: str) -> None:
    """Atomically exchange two paths (Linux renameat2 RENAME_EXCHANGE); OSError where the OS or
    filesystem cannot (ENOSYS, EINVAL on filesystems without it, EXDEV across filesystems)."""
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        raise OSError(errno.ENOSYS, "renameat2 is not available") from None
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), a, None, b)


def tidy_swap_folder(folder: str, run_dir: str, own_names: tuple[str, ...] = OWN_NAMES) -> list[str]:
    """Finish step 4 of a swap for one swap folder of `run_dir`; returns what had to stay there.

    Only a folder carrying curate's `_PUBLISHING` claim is touched. Entries that are not curate's
    go back into `run_dir` (where the name is free; otherwise they stay, and so does the folder);
    curate's own entries are deleted, the claim last, then the folder.
    """
    if not os.path.isfile(os.path.join(folder, PUBLISHING)):
        if not os.listdir(folder):
            os.rmdir(folder)  # killed between removing the claim and the folder
        return []  # otherwise not curate's: never touched
    kept = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name == PUBLISHING:
            continue
        if name in own_names or name.startswith(STAGING_PREFIX):
            _remove(path)
        elif not os.path.lexists(os.path.join(run_dir, name)):
            os.rename(path, os.path.join(run_dir, name))
        else:
            kept.append(path)
    if kept:
        return kept
    os.remove(os.path.join(folder, PUBLISHING))
    os.rmdir(folder)
    return []


def _remove(path: str) -> None:
    import shutil

    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


def recover(run_dir: str, own_names: tuple[str, ...] = OWN_NAMES) -> list[str]:
    """Finish what an interrupted publish into `run_dir` left (hold the run lock); returns the
    paths that could not be put back (foreign entries whose name the run directory has again)."""
    if "://" in run_dir or not os.path.isdir(run_dir):
        return []
    kept = []
    for folder in swap_siblings(run_dir):
        kept += tidy_swap_folder(str(folder), os.path.realpath(run_dir), own_names)
    if is_published(run_dir) and is_own_leftover(run_dir):
        os.remove(os.path.join(run_dir, PUBLISHING))  # that publish completed; only its claim is left
    return kept


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

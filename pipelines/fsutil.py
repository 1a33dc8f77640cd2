"""Small FileSystems helpers: write/read whole files, list, check, delete and create folders,
and the launcher-side path rule (`absolute`): every path a worker opens is a URL or absolute.

Object stores (gs://, s3://, ...) have no folders: a "folder" is a prefix with objects under it.
Beam's `exists` there asks for one object and `delete` without a trailing "/" removes one object,
so `exists` and `delete` below treat a URL that names no object as a prefix (without that,
publishing to gs:// found no data folders to move and left the staging prefix behind).
"""
from __future__ import annotations

import os

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

_RAW = CompressionTypes.UNCOMPRESSED


def write_bytes(path: str, data: bytes) -> None:
    with FileSystems.create(path, compression_type=_RAW) as fh:
        fh.write(data)


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path, compression_type=_RAW) as fh:
        return fh.read()


def list_files(directory: str) -> list[str]:
    """All files under `directory` (recursive), sorted; [] if it does not exist."""
    pattern = FileSystems.join(directory, "**")
    result = FileSystems.match([pattern])[0].metadata_list
    return sorted(m.path for m in result)


def is_url(path: str) -> bool:
    """True for a path with a scheme (gs://, s3://, hdfs://...): the same name on every worker."""
    return "://" in path


def absolute(path: str) -> str:
    """A URL as given; a local path made absolute (and ~ expanded) against the launcher's folder.

    A worker runs in a folder of its own (a portable runner's worker pool, a remote machine), so
    a relative path would name a different file there, or none."""
    if is_url(path):
        return path
    return os.path.abspath(os.path.expanduser(path))


def exists(path: str) -> bool:
    """A file, a local folder, or (object stores) a prefix with at least one object under it."""
    if FileSystems.exists(path):
        return True
    return is_url(path) and bool(_under(path, limit=1))


def _under(prefix: str, limit: int | None = None) -> list:
    pattern = prefix.rstrip("/") + "/**"
    return FileSystems.match([pattern], limits=[limit] if limit else None)[0].metadata_list


def metadata(path: str):
    """FileMetadata (path, size_in_bytes, last_updated_in_seconds) of one file, read without
    globbing: FileSystems.match would read `[`, `*`, `?` in a real file name as a pattern."""
    return FileSystems.get_filesystem(path).metadata(path)


def delete(path: str) -> None:
    """Delete a file or a folder with everything under it (on object stores: a prefix)."""
    if is_url(path) and not FileSystems.exists(path):
        path = path.rstrip("/") + "/"  # object stores delete everything under a name ending in "/"
    FileSystems.delete([path])


def mkdirs(path: str) -> None:
    try:
        FileSystems.mkdirs(path)
    except OSError:
        pass  # already there (local FS raises; object stores have no directories)

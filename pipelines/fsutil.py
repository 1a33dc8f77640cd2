"""Small FileSystems helpers: write/read whole files, list, check, delete and create folders."""
from __future__ import annotations

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


def exists(path: str) -> bool:
    return FileSystems.exists(path)


def metadata(path: str):
    """FileMetadata (path, size_in_bytes, last_updated_in_seconds) of one file, read without
    globbing: FileSystems.match would read `[`, `*`, `?` in a real file name as a pattern."""
    return FileSystems.get_filesystem(path).metadata(path)


def delete(path: str) -> None:
    """Delete a file or a folder with everything under it."""
    FileSystems.delete([path])


def mkdirs(path: str) -> None:
    try:
        FileSystems.mkdirs(path)
    except OSError:
        pass  # already there (local FS raises; object stores have no directories)

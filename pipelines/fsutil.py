"""Small FileSystems helpers: write/read whole files, list outputs, publish a staging folder."""
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


def delete(path: str) -> None:
    """Delete a file or a folder with everything under it."""
    FileSystems.delete([path])


def mkdirs(path: str) -> None:
    try:
        FileSystems.mkdirs(path)
    except OSError:
        pass  # already there (local FS raises; object stores have no directories)


def _parent(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[0]


def publish(staging: str, final: str, names: list[str]) -> None:
    """Move `staging/NAME` to `final/NAME` for each top-level name, replacing old copies.

    Called only after a run succeeded and its outputs were checked, so a failed run never
    leaves partial pools where readers look. Files are renamed one by one (FileSystems
    renames files, not folders, on every backend).
    """
    for name in names:
        target = FileSystems.join(final, name)
        if FileSystems.exists(target):
            FileSystems.delete([target])  # a file, or a folder with everything under it
    moves_src, moves_dst = [], []
    for name in names:
        src_root = FileSystems.join(staging, name)
        files = list_files(src_root) if not _is_file(src_root) else [src_root]
        for src in files:
            rel = src[len(staging.rstrip("/")) + 1 :]
            dst = FileSystems.join(final, rel)
            mkdirs(_parent(dst))
            moves_src.append(src)
            moves_dst.append(dst)
    if moves_src:
        FileSystems.rename(moves_src, moves_dst)
    FileSystems.delete([staging])


def _is_file(path: str) -> bool:
    if "://" not in path:
        import os

        return os.path.isfile(path)
    match = FileSystems.match([path])[0].metadata_list
    return len(match) == 1 and match[0].path.rstrip("/") == path.rstrip("/")

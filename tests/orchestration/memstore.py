"""An in-memory object store for tests: a Beam FileSystem under `memstore://` with the semantics
of GCS and S3 that matter to publishing a run.

- no folders: a name is an object or nothing; `exists` of a prefix is False; `mkdirs` does
  nothing;
- `rename` is a copy and a delete per object (what GCS does);
- `delete` of a name ending in "/" deletes every object under it; of any other name, that one
  object (an error if there is none).

Every create / rename / delete is appended to `MemStore.log`, so a test can check the order in
which a run directory's objects appear. Beam finds the class by its scheme once this module is
imported (FileSystem subclasses register themselves), in this process only: runs that use it
must keep their workers in-process (the default FnApiRunner).
"""
from __future__ import annotations

import io
import threading

from apache_beam.io.filesystem import (BeamIOError, CompressedFile, CompressionTypes, FileMetadata,
                                       FileSystem)

SCHEME = "memstore"


class _Writer(io.BytesIO):
    def __init__(self, store: "MemStore", path: str):
        super().__init__()
        self._store, self._path = store, path

    def close(self):
        if not self.closed:
            self._store._put(self._path, self.getvalue())
        super().close()


class MemStore(FileSystem):
    objects: dict[str, bytes] = {}
    log: list[tuple[str, str]] = []
    _lock = threading.Lock()

    @classmethod
    def reset(cls) -> None:
        with cls._lock:
            cls.objects.clear()
            cls.log.clear()

    @classmethod
    def scheme(cls):
        return SCHEME

    def _put(self, path: str, data: bytes) -> None:
        with self._lock:
            self.objects[path] = data
            self.log.append(("create", path))

    def join(self, basepath, *paths):
        return "/".join([basepath.rstrip("/")] + [p.strip("/") for p in paths])

    def split(self, path):
        head, _, tail = path.rpartition("/")
        return head, tail

    def mkdirs(self, path):
        pass  # object stores have no folders

    def has_dirs(self):
        return False

    def _list(self, dir_or_prefix):
        with self._lock:
            items = sorted((k, len(v)) for k, v in self.objects.items() if k.startswith(dir_or_prefix))
        for key, size in items:
            yield FileMetadata(key, size, 0.0)

    def create(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        writer = _Writer(self, path)
        compression_type = CompressionTypes.detect_compression_type(path) \
            if compression_type == CompressionTypes.AUTO else compression_type
        if compression_type == CompressionTypes.UNCOMPRESSED:
            return writer
        return CompressedFile(writer, compression_type=compression_type)

    def open(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        with self._lock:
            if path not in self.objects:
                raise BeamIOError(f"no object {path}")
            reader = io.BytesIO(self.objects[path])
        compression_type = CompressionTypes.detect_compression_type(path) \
            if compression_type == CompressionTypes.AUTO else compression_type
        if compression_type == CompressionTypes.UNCOMPRESSED:
            return reader
        return CompressedFile(reader, compression_type=compression_type)

    def copy(self, source_file_names, destination_file_names):
        for src, dst in zip(source_file_names, destination_file_names):
            with self._lock:
                if src not in self.objects:
                    raise BeamIOError(f"copy: no object {src}")
                data = self.objects[src]
            self._put(dst, data)

    def rename(self, source_file_names, destination_file_names):
        self.copy(source_file_names, destination_file_names)
        for src in source_file_names:
            with self._lock:
                self.objects.pop(src, None)
                self.log.append(("delete", src))

    def exists(self, path):
        with self._lock:
            return path in self.objects

    def size(self, path):
        return len(self.objects[path])

    def last_updated(self, path):
        return 0.0

    def checksum(self, path):
        return str(hash(self.objects[path]))

    def metadata(self, path):
        with self._lock:
            if path not in self.objects:
                raise BeamIOError(f"no object {path}")
            return FileMetadata(path, len(self.objects[path]), 0.0)

    def delete(self, paths):
        for path in paths:
            with self._lock:
                if path.endswith("/"):
                    doomed = [k for k in self.objects if k.startswith(path)]
                elif path in self.objects:
                    doomed = [path]
                else:
                    raise BeamIOError(f"delete: no object {path}", {path: FileNotFoundError(path)})
                for key in doomed:
                    del self.objects[key]
                    self.log.append(("delete", key))

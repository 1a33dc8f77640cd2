"""MinHash signature cache: signatures keyed by the normalised text's content, looked up per
batch (one stash chunk), never loaded whole.

Layout (format ``minhash-v3``), under the folder of one signature parameter set
(``pipelines.near_dedup.cache_folder``: CACHE_DIR/minhash-v3-p<perm>-s<shingle>-seed<seed>)::

    FOLDER/p=X/part-r<ROWS>-<DIGEST>.sig     X = first hex digit of the key (16 partitions)

Partitions, names (row count + a digest of the keys: the same rows give the same name, so a
retried or concurrent write replaces a file by an identical one), writes under a temporary name
then moved into place, size-tiered merging (``MERGE_FILES`` files of one tier into one, files
of ``8 ** TOP_TIER`` rows and more never merged again) and a bounded LRU index are those of
``scorers/embedding_cache.py``'s v2 layout. The file format differs: a chunk looks up ~8,192
keys spread over the whole key space, so with Parquet row groups (the embedding cache's 128
rows) nearly every row group of the cache is decoded per chunk, 128 signatures for each hit:
at 1M cached signatures as much work as signing again. Here rows have a fixed width, so a hit
reads its own signature, located through one block of ``BLOCK`` keys (2 KB)::

    rows     n x (S + 4) bytes: signature (S bytes) + CRC-32 of (key, signature), seeded with
             the parameter set's name (a row copied from another parameter folder fails it)
    keys     n x 16 bytes, sorted, unique
    fences   ceil(n / BLOCK) x 16 bytes: the first key of each block of BLOCK keys
    trailer  MAGIC, n, S, BLOCK, CRC-32 of the fences and these fields

Memory per cache instance (one per DoFn instance), whatever the number of cached signatures:
the LRU of partition listings and fences, capped at ``INDEX_BUDGET`` bytes (16 bytes of fence
per 128 cached rows: a 100M-row cache needs ~12.5 MB to keep every fence), plus during one
lookup one run of key blocks (<= ``COALESCE_BYTES`` read at a time) and the batch's hits; during
one merge, ``READ_ROWS`` rows of each merged file and the output's keys (16 bytes per row, a
file has < 262,144 rows: < 4 MB).

Safety: a row whose CRC does not match is a miss (counted in ``rejected_rows``), never a wrong
signature; a file whose trailer, size or fence checksum is wrong is moved aside to
NAME.corrupt (never read again, kept for inspection; ``rejected_files``) with one warning, and
its signatures are computed again; a file deleted by a concurrent merge between listing and
reading is listed again. Writes that fail (read-only or full disk) warn once and are skipped:
a cache never fails a run.
"""
from __future__ import annotations

import hashlib
import heapq
import logging
import os
import struct
import threading
import uuid
import zlib
from collections import OrderedDict
from typing import Callable, Iterator, Sequence

import numpy as np

from curate.scorers.tiered_files import MERGE_FILES, TOP_TIER, BoundedIndex, rows_in_name, tier_to_merge  # noqa: F401 - re-exported

log = logging.getLogger(__name__)

KEY_BYTES = 16
CHECK_BYTES = 4
BLOCK = 128  # keys per fence: a lookup reads one block of 2 KB to place a key
MAGIC = b"CURSIG3\n"
_TRAILER = struct.Struct("<8sQIII")  # magic, rows, signature bytes, block, CRC-32
FILE_SUFFIX = ".sig"
CORRUPT_SUFFIX = ".corrupt"
INDEX_BUDGET = 16 << 20  # bytes of listings and fences kept per instance
COALESCE_BYTES = 64 << 10  # nearby reads joined into one, up to this size
READ_ROWS = 4096  # rows per file held while merging
_KEY_DTYPE = f"S{KEY_BYTES}"  # numpy compares these as the bytes they are (memcmp order)


class _Gone(Exception):
    """A listed file vanished (a concurrent merge deleted it): list the partition again."""


class DamagedFile(Exception):
    """A cache file whose structure is wrong (truncated, overwritten, not ours)."""


class _FileInfo:
    __slots__ = ("rows", "fences")

    def __init__(self, rows: int, fences: np.ndarray):
        self.rows, self.fences = rows, fences

    @property
    def cost(self) -> int:
        return 128 + self.fences.nbytes


def partition_of(key: bytes) -> str:
    return format(key[0] >> 4, "x")






def _runs(sorted_items: Sequence[int], span: int, gap: int) -> Iterator[list[int]]:
    """Sorted integers -> runs whose first and last differ by < span and neighbours by <= gap."""
    run: list[int] = []
    for item in sorted_items:
        if run and (item - run[0] >= span or item - run[-1] > gap):
            yield run
            run = []
        run.append(item)
    if run:
        yield run


class SignatureCache(BoundedIndex):
    """Fixed-size binary values (MinHash signatures) keyed by 16-byte keys, stored as
    partitioned, sorted, checksummed files in ``folder`` (a local path or a pyarrow.fs URI).

    ``check_seed`` binds every row's checksum to the parameter set (the folder's name).
    Safe for concurrent writers (processes or machines); one instance may be shared by threads.
    """

    def __init__(self, folder: str, value_bytes: int, check_seed: str, *,
                 index_budget: int = INDEX_BUDGET, warn: Callable[[str], None] | None = None):
        self.folder = str(folder)
        self.value_bytes = int(value_bytes)
        self.row_bytes = self.value_bytes + CHECK_BYTES
        self._seed = zlib.crc32(check_seed.encode("utf-8"))
        self.index_budget = index_budget
        self._warn_fn = warn or (lambda message: log.warning("%s", message))
        self._warned: set[str] = set()
        self._lock = threading.RLock()
        self._index: OrderedDict = OrderedDict()  # partition -> names; (partition, name) -> _FileInfo
        self._costs: dict = {}
        self._cost = 0
        self._fs_root = None
        self._writable = True
        self.rejected_rows = 0
        self.rejected_files = 0

    # -- filesystem --------------------------------------------------------------------------

    def _fs(self):
        if self._fs_root is None:
            import pyarrow.fs as pafs

            if "://" in self.folder:
                fs, root = pafs.FileSystem.from_uri(self.folder)
            else:
                fs, root = pafs.LocalFileSystem(), os.path.abspath(self.folder)
            self._fs_root = (fs, root.rstrip("/"))
        return self._fs_root

    def _part_dir(self, partition: str) -> str:
        return f"{self._fs()[1]}/p={partition}"

    def _path(self, partition: str, name: str) -> str:
        return f"{self._part_dir(partition)}/{name}"

    def _warn(self, what: str, message: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            self._warn_fn(message)

    def row_check(self, key: bytes, value: bytes) -> bytes:
        return zlib.crc32(value, zlib.crc32(key, self._seed)).to_bytes(CHECK_BYTES, "little")

    # -- the index: listings and fences in one LRU bounded in bytes ---------------------------

    def _listing(self, partition: str) -> list[str]:
        listing = self._index.get(partition)
        if listing is not None:
            self._index.move_to_end(partition)
            return listing
        import pyarrow.fs as pafs

        fs, _ = self._fs()
        found = fs.get_file_info(pafs.FileSelector(self._part_dir(partition), allow_not_found=True))
        listing = sorted(f.base_name for f in found if f.type == pafs.FileType.File
                         and f.base_name.startswith("part-") and f.base_name.endswith(FILE_SUFFIX))
        self._remember(partition, listing, 64 + sum(len(n) + 50 for n in listing))
        return listing

    def _open(self, partition: str, name: str):
        fs, _ = self._fs()
        try:
            return fs.open_input_file(self._path(partition, name))
        except FileNotFoundError:
            raise _Gone(name) from None

    def _info(self, partition: str, name: str, fh) -> _FileInfo:
        info = self._index.get((partition, name))
        if info is not None:
            self._index.move_to_end((partition, name))
            return info
        info = self._read_info(fh)
        self._remember((partition, name), info, info.cost)
        return info

    def _read_info(self, fh) -> _FileInfo:
        size = fh.size()
        if size < _TRAILER.size:
            raise DamagedFile(f"{size} bytes: shorter than its trailer")
        trailer = fh.read_at(_TRAILER.size, size - _TRAILER.size)
        magic, rows, value_bytes, block, check = _TRAILER.unpack(trailer)
        if magic != MAGIC:
            raise DamagedFile("no signature-cache trailer")
        if value_bytes != self.value_bytes or block <= 0:
            raise DamagedFile(f"values of {value_bytes} bytes in blocks of {block}, expected {self.value_bytes}")
        n_fences = -(-rows // block)
        expected = rows * (self.row_bytes + KEY_BYTES) + n_fences * KEY_BYTES + _TRAILER.size
        if size != expected:
            raise DamagedFile(f"{size} bytes where its trailer says {expected}")
        fences = fh.read_at(n_fences * KEY_BYTES, size - _TRAILER.size - n_fences * KEY_BYTES)
        if zlib.crc32(fences, zlib.crc32(trailer[:-4])) != check:
            raise DamagedFile("trailer checksum mismatch")
        return _FileInfo(rows, np.frombuffer(fences, dtype=_KEY_DTYPE))

    def _quarantine(self, partition: str, name: str, problem: str) -> None:
        """Move a damaged file aside (NAME.corrupt: not listed, kept for inspection)."""
        fs, _ = self._fs()
        path = self._path(partition, name)
        self.rejected_files += 1
        try:
            fs.move(path, path + CORRUPT_SUFFIX)
            where = f"moved to {path + CORRUPT_SUFFIX}"
        except Exception:  # noqa: BLE001 - e.g. a concurrent worker moved it first
            where = "left in place"
        self._warn(f"damaged:{path}", f"signature cache file {path} is invalid ({problem}); {where}, its "
                                      "signatures are recomputed")
        self._forget(partition)

    # -- get ---------------------------------------------------------------------------------

    def get(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """The cached value of each key, or None where it is not cached (or its row is damaged)."""
        by_partition: dict[str, set[bytes]] = {}
        for key in keys:
            if len(key) != KEY_BYTES:
                raise ValueError(f"cache keys are {KEY_BYTES} bytes, got {len(key)}")
            by_partition.setdefault(partition_of(key), set()).add(key)
        found: dict[bytes, bytes] = {}
        with self._lock:
            for partition in sorted(by_partition):
                wanted = by_partition[partition]
                for attempt in (0, 1):
                    try:
                        self._lookup(partition, wanted, found)
                        break
                    except _Gone:
                        self._forget(partition)  # merged away meanwhile: list again, once
        return [found.get(key) for key in keys]

    def _lookup(self, partition: str, wanted: set[bytes], found: dict[bytes, bytes]) -> None:
        for name in list(self._listing(partition)):
            todo = sorted(k for k in wanted if k not in found)
            if not todo:
                return
            try:
                fh = self._open(partition, name)
            except _Gone:
                raise
            except OSError as exc:
                self._warn(f"open:{name}", f"signature cache file {name} unreadable, skipped ({exc})")
                continue
            try:
                with fh:
                    info = self._info(partition, name, fh)
                    self._lookup_file(fh, info, todo, found, name)
            except DamagedFile as exc:
                self._quarantine(partition, name, str(exc))  # its keys: misses, unless another file has them
            except OSError as exc:  # e.g. deleted under us on an object store: a miss
                self._warn(f"read:{name}", f"signature cache file {name} not read ({exc})")

    def _lookup_file(self, fh, info: _FileInfo, todo: list[bytes], found: dict, name: str) -> None:
        n = info.rows
        if n == 0:
            return
        wanted = np.array(todo, dtype=_KEY_DTYPE)
        blocks = np.searchsorted(info.fences, wanted, side="right") - 1
        keep = blocks >= 0
        if not keep.any():
            return
        wanted, blocks = wanted[keep], blocks[keep]
        keys_at = n * self.row_bytes
        hit_rows: list[tuple[int, bytes]] = []
        block_span = max(1, COALESCE_BYTES // (BLOCK * KEY_BYTES))
        for run in _runs(np.unique(blocks).tolist(), block_span, 1):
            first, last = run[0] * BLOCK, min((run[-1] + 1) * BLOCK, n)
            data = fh.read_at((last - first) * KEY_BYTES, keys_at + first * KEY_BYTES)
            if len(data) != (last - first) * KEY_BYTES:
                raise DamagedFile("key section cut short")
            block_keys = np.frombuffer(data, dtype=_KEY_DTYPE)
            mine = (blocks >= run[0]) & (blocks <= run[-1])
            for key, pos in zip(wanted[mine].tolist(), np.searchsorted(block_keys, wanted[mine]).tolist()):
                key = key.ljust(KEY_BYTES, b"\0")  # numpy drops trailing NULs of S16 values
                if pos < len(block_keys) and data[pos * KEY_BYTES:(pos + 1) * KEY_BYTES] == key:
                    hit_rows.append((first + pos, key))
        hit_rows.sort()
        rows = [r for r, _ in hit_rows]
        span = max(1, COALESCE_BYTES // self.row_bytes)
        gap = max(1, 4096 // self.row_bytes)
        i = 0
        for run in _runs(rows, span, gap):
            first = run[0]
            data = fh.read_at((run[-1] - first + 1) * self.row_bytes, first * self.row_bytes)
            for row in run:
                key = hit_rows[i][1]
                i += 1
                off = (row - first) * self.row_bytes
                value = data[off:off + self.value_bytes]
                check = data[off + self.value_bytes:off + self.row_bytes]
                if len(value) == self.value_bytes and check == self.row_check(key, value):
                    found[key] = value
                else:
                    self.rejected_rows += 1
                    self._warn(f"crc:{name}", f"signature cache file {name}: a row with a wrong checksum "
                                              "(its signature is recomputed)")

    # -- put ---------------------------------------------------------------------------------

    def put(self, keys: Sequence[bytes], values: Sequence[bytes]) -> None:
        """Store these values: one new file per partition their keys fall in, then merge a tier
        of files where one is full. A failure to write warns once and turns writing off."""
        if not self._writable or not keys:
            return
        rows: dict[str, dict[bytes, bytes]] = {}
        for key, value in zip(keys, values):
            if len(key) != KEY_BYTES or len(value) != self.value_bytes:
                raise ValueError(f"cache rows are {KEY_BYTES}-byte keys and {self.value_bytes}-byte values")
            rows.setdefault(partition_of(key), {})[key] = value
        with self._lock:
            try:
                for partition in sorted(rows):
                    part = rows[partition]
                    self._write(partition, ((k, part[k] + self.row_check(k, part[k])) for k in sorted(part)))
                    names = tier_to_merge(self._listing(partition))
                    if names:
                        self._merge(partition, names)
            except OSError as exc:
                self._writable = False
                self._warn("write", f"signature cache {self.folder} not written ({type(exc).__name__}: {exc}); "
                                    "this worker stops adding to it")

    def _write(self, partition: str, rows: Iterator[tuple[bytes, bytes]]) -> str | None:
        """Sorted, distinct (key, row bytes) -> one new file of `partition`; its name or None."""
        fs, _ = self._fs()
        folder = self._part_dir(partition)
        fs.create_dir(folder, recursive=True)
        tmp = f"{folder}/.tmp-{uuid.uuid4().hex}"
        digest = hashlib.sha256()
        keys = bytearray()
        count = 0
        out = fs.open_output_stream(tmp)
        try:
            buffer = bytearray()
            for key, row in rows:
                buffer += row
                keys += key
                count += 1
                if len(buffer) >= 1 << 20:
                    out.write(bytes(buffer))
                    buffer.clear()
            out.write(bytes(buffer))
            digest.update(keys)
            out.write(bytes(keys))
            fences = b"".join(bytes(keys[i * KEY_BYTES:(i + 1) * KEY_BYTES]) for i in range(0, count, BLOCK))
            head = _TRAILER.pack(MAGIC, count, self.value_bytes, BLOCK, 0)[:-4]
            out.write(fences)
            out.write(head + zlib.crc32(fences, zlib.crc32(head)).to_bytes(4, "little"))
            out.close()
        except BaseException:
            out.close()
            _delete_quietly(fs, tmp)
            raise
        if count == 0:
            _delete_quietly(fs, tmp)
            return None
        name = f"part-r{count:07d}-{digest.hexdigest()[:16]}{FILE_SUFFIX}"
        fs.move(tmp, f"{folder}/{name}")
        listing = self._index.get(partition)
        if listing is not None and name not in listing:
            self._remember(partition, sorted([*listing, name]), self._costs[partition] + len(name) + 50)
        return name

    def _rows_of(self, fh, info: _FileInfo, name: str) -> Iterator[tuple[bytes, bytes]]:
        """(key, row bytes) of a file in key order, READ_ROWS rows at a time; rows with a wrong
        checksum are left out (counted), so a merge drops them instead of spreading them."""
        n = info.rows
        for first in range(0, n, READ_ROWS):
            last = min(first + READ_ROWS, n)
            keys = fh.read_at((last - first) * KEY_BYTES, n * self.row_bytes + first * KEY_BYTES)
            data = fh.read_at((last - first) * self.row_bytes, first * self.row_bytes)
            if len(keys) != (last - first) * KEY_BYTES or len(data) != (last - first) * self.row_bytes:
                raise DamagedFile("cut short while merging")
            for i in range(last - first):
                key = keys[i * KEY_BYTES:(i + 1) * KEY_BYTES]
                row = data[i * self.row_bytes:(i + 1) * self.row_bytes]
                if row[self.value_bytes:] == self.row_check(key, row[:self.value_bytes]):
                    yield key, row
                else:
                    self.rejected_rows += 1
                    self._warn(f"crc:{name}", f"signature cache file {name}: a row with a wrong checksum "
                                              "(dropped while merging)")

    def _merge(self, partition: str, names: list[str]) -> None:
        """Merge these files of the partition into one (streaming, READ_ROWS rows per input held)."""
        handles, sources = [], []
        try:
            for name in names:
                fh = self._open(partition, name)
                handles.append(fh)
                try:
                    info = self._read_info(fh)
                except DamagedFile as exc:
                    self._quarantine(partition, name, str(exc))
                    return
                sources.append(self._rows_of(fh, info, name))
            merged = heapq.merge(*sources, key=lambda kv: kv[0])
            try:
                new = self._write(partition, _distinct(merged))
            except DamagedFile as exc:  # found while streaming: keep the files, mention it once
                self._warn(f"merge:{partition}", f"signature cache partition {partition} not merged ({exc})")
                return
        except (_Gone, FileNotFoundError):  # another writer merged them first
            self._forget(partition)
            return
        finally:
            for fh in handles:
                fh.close()
        fs, _ = self._fs()
        for name in names:
            if name != new:
                _delete_quietly(fs, self._path(partition, name))
        self._forget(partition)  # listed again when next needed


def _distinct(rows: Iterator[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
    last = None
    for key, row in rows:
        if key != last:
            last = key
            yield key, row


def _delete_quietly(fs, path: str) -> None:
    try:
        fs.delete_file(path)
    except OSError:
        pass  # already gone (a concurrent merge) or never written

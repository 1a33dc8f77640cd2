"""Embedding cache: vectors keyed by (model id, text), looked up per batch, never loaded whole.

Layout (format ``v2``), a directory on any pyarrow filesystem (local path or URL)::

    DIR/v2/p=X/part-r<ROWS>-<DIGEST>.parquet     X = first hex digit of the key (16 partitions)

Each file holds ``key`` (sorted, unique), ``embedding`` (float32 fixed-size list) and ``crc``
(CRC-32 of key and vector bytes) in row groups of ``ROW_GROUP_ROWS`` rows; files of at most
``BITMAP_MAX_ROWS`` rows also carry a bitmap of the key digits 2-4 present, so a lookup skips
them without reading a row. The name holds the row count and a digest of the keys: the same
rows give the same name, so writers never clash and a retried write replaces a file by itself.

- ``put`` writes one file per partition its keys fall in (under a temporary name, then moved
  into place) and merges ``MERGE_FILES`` files of one size tier (rows within a factor 8) into
  one by a streaming k-way merge (one row group per input held), so a vector is rewritten
  about log_8(rows of its partition) times and a partition holds fewer than 8 files per tier;
  files of ``TOP_TIER`` (32,768 rows) and more are not merged again (< 262,144 rows a file).
- ``get`` lists only the partitions of the batch's keys and reads, of each file, only the
  row group whose key range holds a wanted key (the key column first, vectors on a hit).

Memory per cache instance (one per worker process), independent of how many vectors are
cached: an LRU of partition listings and per-file row-group key ranges capped at
``INDEX_BUDGET`` units (one per file name and per row group, ~220 bytes each: ~14 MB), plus
during one lookup or merge one footer (< 2,048 row groups) and at most ``MERGE_FILES + 1``
row groups of ``ROW_GROUP_ROWS`` vectors (dimension 384: ~1.8 MB), plus the batch's vectors.
A lookup costs one row-group read per file of the key's partition that may hold it, so it
grows with the number of files (log_8 of the partition's rows while below the top tier, then
one more file per 32,768-262,144 rows): an index the budget cannot hold is read again, not kept.

Safety: a row whose CRC does not match, a file that cannot be read, a file deleted by a
concurrent merge between listing and reading: each is a cache miss (the text is embedded
again), logged once per cache, never a wrong vector. Keys hash the model id (model, precision,
recipe, document mode), so vectors of another model or setting are never returned. A cache
folder of the earlier format (``part-*.parquet`` shards at its top, loaded whole) is ignored
with one log line.
"""
from __future__ import annotations

import bisect
import hashlib
import heapq
import logging
import os
import threading
import uuid
import zlib
from collections import OrderedDict
from typing import Iterator, Sequence

import numpy as np

from curate.scorers.tiered_files import MERGE_FILES, TOP_TIER, BoundedIndex, rows_in_name, tier_to_merge  # noqa: F401 - re-exported

log = logging.getLogger(__name__)

FORMAT = "v2"
PARTITION_DIGITS = 1  # 16 partitions: a put of a 256-text batch writes 16 files, not ~160
ROW_GROUP_ROWS = 128
#: files of 8**5 = 32,768 rows or more are not merged again: a file has fewer than 262,144 rows
#: (its footer, ~2,048 row groups, is what one lookup reads at most at a time)
BITMAP_MAX_ROWS = 1024  # above this the 4096-bit prefix bitmap is too full to skip anything
INDEX_BUDGET = 65_536
_BITMAP_BITS = 4096  # key digits 3-5 (12 bits)
_META_FORMAT = b"curate.embedding_cache"
_META_BITMAP = b"prefix_bitmap"


def text_key(model_id: str, text: str) -> str:
    """Cache key of one text under one model: sha256 of model id and text (hex, 32 chars)."""
    h = hashlib.sha256(model_id.encode("utf-8"))
    h.update(b"\0")
    h.update(text.encode("utf-8", errors="surrogatepass"))
    return h.hexdigest()[:32]


def _crc(key: str, vector: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(vector, dtype=np.float32).tobytes(), zlib.crc32(key.encode("ascii")))


def _prefix_bit(key: str) -> int:
    return int(key[PARTITION_DIGITS:PARTITION_DIGITS + 3], 16)


def _bitmap(keys: Sequence[str]) -> bytes:
    bits = np.zeros(_BITMAP_BITS, dtype=bool)
    bits[[_prefix_bit(k) for k in keys]] = True
    return np.packbits(bits).tobytes()




class _FileInfo:
    __slots__ = ("ranges", "bitmap")

    def __init__(self, ranges: list[tuple[str, str]], bitmap: bytes | None):
        self.ranges = ranges  # (min key, max key) per row group, in key order
        self.bitmap = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8)).astype(bool) if bitmap else None

    @property
    def cost(self) -> int:
        return 1 + len(self.ranges)

    def group_of(self, key: str) -> int | None:
        if self.bitmap is not None and not self.bitmap[_prefix_bit(key)]:
            return None
        i = bisect.bisect_left([hi for _, hi in self.ranges], key)
        if i < len(self.ranges) and self.ranges[i][0] <= key:
            return i
        return None


class _Gone(Exception):
    """A listed file vanished (a concurrent merge deleted it): list the partition again."""


class EmbeddingCache(BoundedIndex):
    """Embeddings keyed by (model id, text hash), stored as partitioned Parquet files.

    ``directory`` is a local path or any URI pyarrow.fs understands (gs://, s3://, ...).
    Safe for concurrent writers (processes or machines); one instance may be shared by threads.
    """

    def __init__(self, directory: str, index_budget: int = INDEX_BUDGET):
        self.directory = str(directory)
        self.index_budget = index_budget
        self._lock = threading.RLock()
        # partition -> its file names, (partition, name) -> _FileInfo; cost: 1 per name / row group
        self._index: OrderedDict = OrderedDict()
        self._costs: dict = {}
        self._cost = 0
        self._fs_root = None
        self._checked_old = False
        self._warned: set[str] = set()

    # -- filesystem ------------------------------------------------------------------------

    def _fs(self):
        if self._fs_root is None:
            import pyarrow.fs as pafs

            if "://" in self.directory:
                fs, root = pafs.FileSystem.from_uri(self.directory)
            else:
                fs, root = pafs.LocalFileSystem(), os.path.abspath(self.directory)
            self._fs_root = (fs, root.rstrip("/"))
        return self._fs_root

    def _part_dir(self, partition: str) -> str:
        return f"{self._fs()[1]}/{FORMAT}/p={partition}"

    def _warn(self, what: str, message: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning("embedding cache %s: %s", self.directory, message)

    def _check_old_format(self) -> None:
        if self._checked_old:
            return
        self._checked_old = True
        import pyarrow.fs as pafs

        fs, root = self._fs()
        try:
            top = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
        except OSError:
            return
        if any(f.type == pafs.FileType.File and f.base_name.endswith(".parquet") for f in top):
            self._warn("old", f"holds shards of the earlier format (part-*.parquet at its top); they are "
                              f"ignored (embedded again into {FORMAT}/), delete them to reclaim the space")

    # -- the index: partition listings and per-file row-group key ranges (one bounded LRU) --

    def _listing(self, partition: str) -> list[str]:
        """File names of a partition (listed once, then kept while the budget allows)."""
        listing = self._index.get(partition)
        if listing is not None:
            self._index.move_to_end(partition)
            return listing
        import pyarrow.fs as pafs

        fs, _ = self._fs()
        found = fs.get_file_info(pafs.FileSelector(self._part_dir(partition), allow_not_found=True))
        listing = sorted(f.base_name for f in found if f.type == pafs.FileType.File
                         and f.base_name.startswith("part-") and f.base_name.endswith(".parquet"))
        self._remember(partition, listing, 1 + len(listing))
        return listing

    def _info(self, partition: str, name: str, pf) -> "_FileInfo":
        info = self._index.get((partition, name))
        if info is None:
            info = self._info_of(pf)
            self._remember((partition, name), info, info.cost)
        else:
            self._index.move_to_end((partition, name))
        return info

    def _open(self, partition: str, name: str):
        import pyarrow.parquet as pq

        fs, _ = self._fs()
        try:
            return pq.ParquetFile(fs.open_input_file(f"{self._part_dir(partition)}/{name}"))
        except FileNotFoundError:
            raise _Gone(name) from None

    @staticmethod
    def _info_of(pf) -> _FileInfo:
        meta = pf.metadata
        ranges = []
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(0).statistics
            ranges.append((stats.min, stats.max) if stats is not None and stats.has_min_max else ("", "~"))
        kv = meta.metadata or {}
        return _FileInfo(ranges, bytes.fromhex(kv[_META_BITMAP].decode()) if _META_BITMAP in kv else None)

    # -- get -------------------------------------------------------------------------------

    def get(self, model_id: str, texts: Sequence[str]) -> tuple[np.ndarray | None, list[int]]:
        """(embeddings with rows filled where cached, indices of the texts not cached)."""
        keys = [text_key(model_id, t) for t in texts]
        by_partition: dict[str, dict[str, list[int]]] = {}
        for i, k in enumerate(keys):
            by_partition.setdefault(k[:PARTITION_DIGITS], {}).setdefault(k, []).append(i)
        found: dict[int, np.ndarray] = {}
        with self._lock:
            self._check_old_format()
            for partition in sorted(by_partition):
                wanted = by_partition[partition]
                for attempt in (0, 1):
                    try:
                        self._lookup(partition, wanted, found)
                        break
                    except _Gone:
                        self._forget(partition)  # merged away meanwhile: list again, once
        missing = [i for i in range(len(texts)) if i not in found]
        if not found:
            return None, missing
        dim = len(next(iter(found.values())))
        out = np.zeros((len(texts), dim), dtype=np.float32)
        for i, vec in found.items():
            out[i] = vec
        return out, missing

    def _lookup(self, partition: str, wanted: dict[str, list[int]], found: dict[int, np.ndarray]) -> None:
        for name in self._listing(partition):
            todo = [k for k, idx in wanted.items() if idx[0] not in found]
            if not todo:
                return
            info = self._index.get((partition, name))
            pf = None
            if info is None:
                try:
                    pf = self._open(partition, name)
                    info = self._info(partition, name, pf)
                except _Gone:
                    raise
                except Exception as exc:  # noqa: BLE001 - an unreadable footer is a miss
                    self._warn(name, f"unreadable file {name} skipped ({type(exc).__name__}: {exc})")
                    continue
            else:
                self._index.move_to_end((partition, name))
            groups: dict[int, list[str]] = {}
            for k in todo:
                g = info.group_of(k)
                if g is not None:
                    groups.setdefault(g, []).append(k)
            if not groups:
                continue
            try:
                pf = pf or self._open(partition, name)
            except _Gone:
                raise
            except Exception as exc:  # noqa: BLE001 - as above
                self._warn(name, f"unreadable file {name} skipped ({type(exc).__name__}: {exc})")
                continue
            for g in sorted(groups):
                try:
                    self._read_group(pf, g, groups[g], wanted, found, name)
                except Exception as exc:  # noqa: BLE001 - a damaged file is a miss, never a wrong vector
                    self._warn(name, f"unreadable row group in {name} skipped ({type(exc).__name__}: {exc})")

    def _read_group(self, pf, g: int, keys: list[str], wanted, found, name: str) -> None:
        group_keys = pf.read_row_group(g, columns=["key"]).column(0).to_pylist()
        rows = {k: r for r, k in enumerate(group_keys)}
        hits = [(k, rows[k]) for k in keys if k in rows]
        if not hits:
            return
        table = pf.read_row_group(g, columns=["embedding", "crc"])
        flat = table.column("embedding").combine_chunks()
        vectors = np.asarray(flat.values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(
            len(group_keys), flat.type.list_size)
        crcs = table.column("crc").to_numpy()
        for k, r in hits:
            if _crc(k, vectors[r]) != int(crcs[r]):
                self._warn(f"crc:{name}", f"checksum mismatch in {name}: those rows are embedded again")
                continue
            for i in wanted[k]:
                found[i] = vectors[r].copy()

    # -- put -------------------------------------------------------------------------------

    def put(self, model_id: str, texts: Sequence[str], embeddings: np.ndarray) -> None:
        """Store these texts' embeddings (float32): one file per partition their keys fall in."""
        if len(texts) == 0:
            return
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        rows: dict[str, dict[str, np.ndarray]] = {}
        for text, vec in zip(texts, embeddings):
            k = text_key(model_id, text)
            rows.setdefault(k[:PARTITION_DIGITS], {})[k] = vec
        with self._lock:
            for partition in sorted(rows):
                part = rows[partition]
                keys = sorted(part)
                self._write(partition, ((k, part[k]) for k in keys), len(keys))
                names = tier_to_merge(self._listing(partition))
                if names:
                    self._merge(partition, names)

    def _write(self, partition: str, rows: Iterator[tuple[str, np.ndarray]], n_rows: int) -> str | None:
        """Write sorted (key, vector) rows into one new file of `partition`; its name, or None.

        `n_rows` (an upper bound): up to BITMAP_MAX_ROWS the rows are held to compute the
        prefix bitmap first; above it they stream through, one row group at a time."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        bitmap = None
        if n_rows <= BITMAP_MAX_ROWS:
            rows = list(rows)
            bitmap = _bitmap([k for k, _ in rows])
        fs, _ = self._fs()
        folder = self._part_dir(partition)
        fs.create_dir(folder, recursive=True)
        tmp = f"{folder}/.tmp-{uuid.uuid4().hex}"
        digest = hashlib.sha256()
        meta = {_META_FORMAT: FORMAT.encode()}
        if bitmap is not None:
            meta[_META_BITMAP] = bitmap.hex().encode()
        writer, sink = None, []
        count, ranges = 0, []
        buf_keys: list[str] = []
        buf_vecs: list[np.ndarray] = []

        def flush():
            nonlocal writer
            block = np.stack(buf_vecs).astype(np.float32)
            table = pa.table({
                "key": pa.array(buf_keys, pa.string()),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1)), block.shape[1]),
                "crc": pa.array([_crc(k, v) for k, v in zip(buf_keys, block)], pa.uint32()),
            })
            if writer is None:
                sink.append(fs.open_output_stream(tmp))
                writer = pq.ParquetWriter(sink[0], table.schema.with_metadata(meta))
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
            ranges.append((buf_keys[0], buf_keys[-1]))
            buf_keys.clear()
            buf_vecs.clear()

        try:
            for key, vec in rows:
                digest.update(key.encode("ascii"))
                buf_keys.append(key)
                buf_vecs.append(vec)
                count += 1
                if len(buf_keys) == ROW_GROUP_ROWS:
                    flush()
            if buf_keys:
                flush()
            if writer is None:
                return None
            writer.close()
            sink[0].close()
        except BaseException:
            if writer is not None:
                writer.close()
                sink[0].close()
            _delete_quietly(fs, tmp)
            raise
        name = f"part-r{count:07d}-{digest.hexdigest()[:16]}.parquet"
        fs.move(tmp, f"{folder}/{name}")
        listing = self._index.get(partition)
        if listing is not None and name not in listing:
            listing.append(name)
            self._costs[partition] += 1
            self._cost += 1
            info = _FileInfo(ranges, bitmap)
            self._remember((partition, name), info, info.cost)
        return name

    def _merge(self, partition: str, names: list[str]) -> None:  # noqa: C901
        """Merge these files of the partition into one (streaming, one row group per input held)."""
        import pyarrow.parquet as pq

        fs, _ = self._fs()
        folder = self._part_dir(partition)
        handles = []
        try:
            for name in names:
                handles.append(pq.ParquetFile(fs.open_input_file(f"{folder}/{name}")))
        except OSError:  # FileNotFoundError included: another writer merged them first
            for h in handles:
                h.close()
            self._forget(partition)
            return
        n_rows = sum(h.metadata.num_rows for h in handles)
        merged = _dedup(heapq.merge(*(_rows_of(h) for h in handles), key=lambda kv: kv[0]))
        try:
            new = self._write(partition, merged, n_rows)
        except Exception as exc:  # noqa: BLE001 - a damaged input or a failed write: keep the files as they are
            self._warn(f"merge:{partition}", f"partition {partition} not merged ({type(exc).__name__}: {exc})")
            return
        finally:
            for h in handles:
                h.close()
        for name in names:
            if name != new:
                _delete_quietly(fs, f"{folder}/{name}")
        self._forget(partition)  # listed again when next needed




def _rows_of(pf) -> Iterator[tuple[str, np.ndarray]]:
    """(key, vector) of a cache file in key order, one row group in memory at a time."""
    for g in range(pf.metadata.num_row_groups):
        table = pf.read_row_group(g)
        keys = table.column("key").to_pylist()
        flat = table.column("embedding").combine_chunks()
        vectors = np.asarray(flat.values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(
            len(keys), flat.type.list_size)
        crcs = table.column("crc").to_numpy()
        for k, v, c in zip(keys, vectors, crcs):
            if _crc(k, v) != int(c):
                raise ValueError(f"checksum mismatch in a row of {k[:PARTITION_DIGITS]}")
            yield k, v


def _dedup(rows: Iterator[tuple[str, np.ndarray]]) -> Iterator[tuple[str, np.ndarray]]:
    last = None
    for key, vec in rows:
        if key != last:
            last = key
            yield key, vec


def _delete_quietly(fs, path: str) -> None:
    try:
        fs.delete_file(path)
    except (FileNotFoundError, OSError):
        pass  # already gone (a concurrent merge) or never written

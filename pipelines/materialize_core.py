"""Beam-free pieces of `curate materialize`: seeded keys, the per-pool selection, copy spacing
within a shard, and the shard file encoders (Parquet, JSONL(.gz), token arrays).

Everything here is a pure function of its arguments, so the Beam pipeline
(`pipelines/materialize.py`) is byte-identical for any runner and worker count.

Keys are the first 8 bytes of BLAKE2b over (seed, purpose, pool, id[, epoch]) read as an
unsigned 64-bit integer: "unique" orders a pool for the plan's unique subset, "partial" orders
the subset for the partial last epoch (a fresh permutation), "shuffle" orders every copy
globally (each epoch gets its own key, so each epoch is reshuffled).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

COLUMNS = ("text", "id", "pool", "epoch", "source", "score")
FORMATS = ("parquet", "jsonl", "jsonl.gz", "tokens")
ORDERS = ("hash", "score")
UNITS = ("docs", "bytes", "chars", "tokens")
# A plan's integer epochs are floats (7.99999999 for 8): this much below an integer counts as it.
EPOCH_EPS = 1e-6


def seeded_key(seed: int, purpose: str, pool: str, doc_id: str, epoch: int | None = None) -> int:
    """A uint64 (as a Python int) that orders documents the same way on every machine."""
    text = f"{seed}\x00{purpose}\x00{pool}\x00{doc_id}"
    if epoch is not None:
        text += f"\x00{epoch}"
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def doc_units(unit: str, text: str, chars: int | None, tokens: int | None) -> int:
    """The size of one document in the plan's unit (the run's own per-document columns)."""
    if unit == "docs":
        return 1
    if unit == "bytes":
        return len(text.encode("utf-8"))
    if unit == "chars":
        return int(chars if chars is not None else len(text))
    return int(tokens or 0)


def order_key(order: str, seed: int, pool: str, doc_id: str, score: float) -> tuple[float, int]:
    """(primary, hash): ascending order of the unique-subset selection. `score` takes the best
    scored first (primary = -score), ties and `hash` order by the seeded hash."""
    primary = -float(score) if order == "score" else 0.0
    return primary, seeded_key(seed, "unique", pool, doc_id)


@dataclass(frozen=True)
class PoolTarget:
    """What the plan asks of one pool, in the plan's unit; `index` is the run's pool number."""

    name: str
    index: int
    unique: float     # unique units the plan's law assumed
    samples: float    # units drawn in all (unique x epochs)
    epochs: float

    @property
    def full_epochs(self) -> int:
        return max(1, math.floor(self.epochs + EPOCH_EPS)) if self.samples > 0 else 0

    @property
    def has_partial(self) -> bool:
        return self.samples > 0 and self.epochs - math.floor(self.epochs + EPOCH_EPS) > EPOCH_EPS


def nearest_prefix(cumulative: np.ndarray, target: float) -> int:
    """How many leading items bring the cumulative sum nearest to `target` (ties: fewer)."""
    if target <= 0 or len(cumulative) == 0:
        return 0
    k = int(np.searchsorted(cumulative, target, side="left"))  # first prefix reaching target
    if k >= len(cumulative):
        return len(cumulative)
    below = cumulative[k - 1] if k > 0 else 0
    return k + 1 if cumulative[k] - target < target - below else k


def select_pool(target: PoolTarget, primary: np.ndarray, unique_hash: np.ndarray,
                partial_hash: np.ndarray, units: np.ndarray) -> dict:
    """The plan's unique subset of one pool and its partial last epoch, as cut-offs.

    Documents in (primary, unique_hash) order are taken while that brings their units nearest
    to `target.unique`; a document is in the subset iff its (primary, unique_hash) <= `cutoff`.
    Full epochs repeat the subset; the partial epoch takes the subset in `partial_hash` order up
    to the units the plan still lacks (samples - full x the subset's actual units, so rounding
    of the subset is not multiplied by the epochs), i.e. iff partial_hash <= `partial_cutoff`.
    """
    n = len(units)
    order = np.lexsort((unique_hash, primary))
    cum = np.cumsum(units[order], dtype=np.int64)
    unique_target = min(target.unique, target.samples)
    k = nearest_prefix(cum, unique_target)
    if target.samples > 0 and k == 0 and n:
        k = 1  # a planned pool contributes at least one document
    unique_units = int(cum[k - 1]) if k else 0
    out = {"pool": target.name, "unique_docs": k, "unique_units": unique_units,
           "cutoff": None, "full_epochs": target.full_epochs, "partial_cutoff": None,
           "partial_docs": 0, "partial_units": 0,
           "max_doc_units": int(units.max()) if n else 0, "pool_docs": n,
           "pool_units": int(cum[-1]) if n else 0}
    if k == 0:
        out["full_epochs"] = 0
        return out
    last = order[k - 1]
    out["cutoff"] = [float(primary[last]), int(unique_hash[last])]
    if target.has_partial:
        wanted = max(0.0, min(target.samples - target.full_epochs * unique_units, unique_units))
        chosen = order[:k]
        sub = chosen[np.argsort(partial_hash[chosen], kind="stable")]
        cum2 = np.cumsum(units[sub], dtype=np.int64)
        k2 = nearest_prefix(cum2, wanted)
        if k2:
            out["partial_cutoff"] = int(partial_hash[sub[k2 - 1]])
            out["partial_docs"] = k2
            out["partial_units"] = int(cum2[k2 - 1])
    return out


def copies_of(selection: dict, key: tuple[float, int], partial_key: int) -> int:
    """How many times a document appears: 0, the full epochs, or one more (partial epoch)."""
    cutoff = selection["cutoff"]
    if cutoff is None or (key[0], key[1]) > (cutoff[0], cutoff[1]):
        return 0
    extra = selection["partial_cutoff"] is not None and partial_key <= selection["partial_cutoff"]
    return selection["full_epochs"] + int(extra)


def shard_boundaries(keys: np.ndarray, shards: int) -> list[int]:
    """Shuffle keys where shards 1..N-1 start, so shard i holds ranks [i*T//N, (i+1)*T//N):
    shard i is every copy with boundaries[i-1] <= key < boundaries[i] (the reference that
    `shard_span` + `shard_mask` reproduce one bucket range at a time)."""
    keys = np.sort(keys)
    total = len(keys)
    return [int(keys[i * total // shards]) for i in range(1, shards)]


# ---------------------------------------------------------------------------------------------
# Buckets: how copies reach their shard without a shuffle holding them
# ---------------------------------------------------------------------------------------------

# Shuffle keys are uniform hashes, so equal key ranges hold about equal numbers of copies.
# Copies are spilled by key range ("bucket"), BUCKETS_PER_SHARD buckets per expected shard:
# a shard's writer reads the buckets its ranks span, about 1 + 1/BUCKETS_PER_SHARD shards.
BUCKETS_PER_SHARD = 4


def bucket_edges(buckets: int) -> np.ndarray:
    """Lower key bounds of buckets 1..buckets-1 (bucket 0 starts at 0), equal ranges of the
    uint64 key space: bucket of k = searchsorted(edges, k, side="right")."""
    return np.array([(j << 64) // buckets for j in range(1, buckets)], dtype=np.uint64)


def bucket_of(keys: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.searchsorted(edges, np.asarray(keys, dtype=np.uint64), side="right")


def shard_span(counts, total: int, shards: int, shard: int) -> tuple[int, int, int, int, int]:
    """(first bucket, last bucket, rank of the first copy of the first bucket, lo, hi): shard
    `shard` holds ranks [lo, hi) of all copies in key order, and those ranks lie in buckets
    first..last (`counts`: copies per bucket, buckets in key order)."""
    lo, hi = shard * total // shards, (shard + 1) * total // shards
    ends = np.cumsum(np.asarray(counts, dtype=np.int64))
    first = int(np.searchsorted(ends, lo, side="right"))
    last = int(np.searchsorted(ends, max(lo, hi - 1), side="right"))
    return first, last, int(ends[first] - counts[first]), lo, hi


def shard_mask(keys: np.ndarray, base: int, lo: int, hi: int) -> np.ndarray:
    """Which of `keys` (every copy of buckets first..last of `shard_span`, whose first rank is
    `base`) belong to the shard of ranks [lo, hi): key >= the key at rank lo and < the key at
    rank hi, as `shard_boundaries` cuts (equal keys stay in one shard; a key at rank hi outside
    these buckets is larger than all of them)."""
    keys = np.asarray(keys, dtype=np.uint64)
    ranked = np.sort(keys)
    mask = keys >= ranked[lo - base]
    if hi - base < len(ranked):
        mask &= keys < ranked[hi - base]
    return mask


def batch_units(unit: str, table) -> np.ndarray:
    """`doc_units` of every row of an Arrow table/batch of pool rows, as int64 (a null text
    counts as "", a null chars falls back to the text's characters, null tokens count 0)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = table.num_rows
    names = table.schema.names
    if unit == "docs":
        return np.ones(n, dtype=np.int64)
    if unit == "tokens":
        if "tokens" not in names:
            return np.zeros(n, dtype=np.int64)
        col = pc.fill_null(table.column("tokens"), 0)
        return np.asarray(pc.cast(col, pa.int64(), safe=False).to_numpy(zero_copy_only=False), dtype=np.int64)
    text = pc.fill_null(table.column("text"), "") if "text" in names else pa.array([""] * n)
    if unit == "bytes":
        return np.asarray(pc.binary_length(text).to_numpy(zero_copy_only=False), dtype=np.int64)
    length = pc.cast(pc.utf8_length(text), pa.int64())
    if "chars" not in names:
        return np.asarray(length.to_numpy(zero_copy_only=False), dtype=np.int64)
    chars = pc.cast(table.column("chars"), pa.int64(), safe=False)
    return np.asarray(pc.if_else(pc.is_null(chars), length, chars).to_numpy(zero_copy_only=False),
                      dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# Copy spacing within a shard
# ---------------------------------------------------------------------------------------------

def shard_window(window: int, rows: int, max_copies: int) -> int:
    """The spacing used in one shard: `window`, shrunk where the shard is too small for it
    (a document with c copies in n rows can keep at most n / c apart; half that leaves the
    greedy pass room)."""
    if max_copies <= 1:
        return window
    return max(1, min(window, rows // (2 * max_copies)))


def space_copies(rows: list, doc_of, window: int, max_deferred: int | None = None) -> tuple[list, int, int | None]:
    """Reorder `rows` (already in shuffle order) so two copies of a document are at least
    `window` positions apart, moving as little as possible: a row whose document appeared less
    than `window` rows ago waits in a queue and goes in at the first position where it fits.
    Deterministic (a function of the input order only).

    Rows still waiting at the end of the shard are inserted into the widest stretch free of
    their document. Returns (rows, violations, smallest gap between copies or None): a
    violation is a copy less than `window` rows after the previous copy of its document.
    """
    if window <= 1:
        return list(rows), 0, _gaps(rows, doc_of, window)[1]
    max_deferred = max_deferred or 4 * window
    last: dict = {}
    out: list = []
    deferred: deque = deque()
    stream = iter(rows)
    exhausted = False

    def fits(doc) -> bool:
        pos = last.get(doc)
        return pos is None or len(out) - pos >= window

    while True:
        placed = None
        for i, row in enumerate(deferred):
            if fits(doc_of(row)):
                placed = row
                del deferred[i]
                break
        while placed is None and not exhausted and len(deferred) < max_deferred:
            row = next(stream, None)
            if row is None:
                exhausted = True
            elif fits(doc_of(row)):
                placed = row
            else:
                deferred.append(row)
        if placed is None:
            if not deferred:
                break
            if not exhausted:  # the queue is full: place its oldest row anyway, and count it
                placed = deferred.popleft()
            else:  # the end of the shard: what still waits goes back in where it fits
                _insert_spaced(out, list(deferred), doc_of, window)
                break
        last[doc_of(placed)] = len(out)
        out.append(placed)
    return (out, *_gaps(out, doc_of, window))


def _insert_spaced(out: list, rows: list, doc_of, window: int) -> None:
    """Insert each row at the middle of the widest stretch free of its document's copies
    (an insertion only widens the gaps that span it, so spaced pairs stay spaced)."""
    for row in rows:
        doc = doc_of(row)
        marks = [-window] + [j for j, r in enumerate(out) if doc_of(r) == doc] + [len(out) + window - 1]
        width, start = max((b - a, a) for a, b in zip(marks, marks[1:]))
        position = min(len(out), max(0, start + width // 2 + (1 if start >= 0 else 0)))
        out.insert(position, row)


def _gaps(rows: list, doc_of, window: int) -> tuple[int, int | None]:
    """(copies closer than `window` to the previous copy of their document, smallest gap)."""
    last: dict = {}
    gap, close = None, 0
    for pos, row in enumerate(rows):
        doc = doc_of(row)
        if doc in last:
            d = pos - last[doc]
            gap = d if gap is None else min(gap, d)
            close += d < window
        last[doc] = pos
    return close, gap


# ---------------------------------------------------------------------------------------------
# Shard files
# ---------------------------------------------------------------------------------------------

def shard_name(index: int, shards: int, fmt: str) -> str:
    """`train-00000-of-00004.parquet`: the split prefix `datasets` recognises."""
    stem = f"train-{index:05d}-of-{shards:05d}"
    return {"parquet": stem + ".parquet", "jsonl": stem + ".jsonl", "jsonl.gz": stem + ".jsonl.gz",
            "tokens": stem + ".bin"}[fmt]


def parquet_bytes(rows: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("text", pa.string()), ("id", pa.string()), ("pool", pa.string()),
                        ("epoch", pa.int32()), ("source", pa.string()), ("score", pa.float64())])
    table = pa.Table.from_pydict({c: [r[c] for r in rows] for c in COLUMNS}, schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", row_group_size=10_000)
    return buf.getvalue()


def jsonl_bytes(rows: list[dict], compress: bool) -> bytes:
    text = "".join(json.dumps({c: r[c] for c in COLUMNS}, ensure_ascii=False) + "\n" for r in rows)
    data = text.encode("utf-8")
    if not compress:
        return data
    buf = io.BytesIO()
    # mtime 0 and no file name: the same rows give the same bytes
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as fh:
        fh.write(data)
    return buf.getvalue()


def token_dtype(vocab_size: int):
    return np.uint16 if vocab_size <= 2 ** 16 else np.uint32


def token_arrays(tokenizer, texts: list[str], dtype) -> tuple[bytes, bytes, int]:
    """(flat little-endian token ids, uint64 little-endian document start offsets with the end
    appended, tokens): document i is tokens[idx[i]:idx[i+1]]."""
    encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
    lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
    offsets = np.zeros(len(encodings) + 1, dtype="<u8")
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter((t for e in encodings for t in e.ids), dtype=np.int64, count=int(offsets[-1]))
    return (flat.astype(np.dtype(dtype).newbyteorder("<")).tobytes(), offsets.tobytes(),
            int(offsets[-1]))


def index_name(data_name: str) -> str:
    return data_name[: -len(".bin")] + ".idx"

"""Byte tokenizer, packing into context windows, and the seeded training stream (numpy only).

* Tokenizer: raw UTF-8 bytes (vocabulary 256) plus one document-separator token (256). No
  vocabulary to train or ship, identical on every machine; one token = one byte, so "tokens"
  in probe observations are bytes.
* `pack_sequences` cuts a stream of documents into non-overlapping windows of `context`
  predicted tokens.
* `SequenceStream` draws batches from one or more fixed sets of windows, epoch after epoch,
  from a seeded numpy RNG: the data order half of a probe's determinism (the proxy's
  initialisation, `probe.proxy_lm`, is the other).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

VOCAB_SIZE = 257  # 256 byte values + the document separator
SEPARATOR = 256


def encode(text: str) -> np.ndarray:
    """UTF-8 bytes of a text as int64 token ids (0..255)."""
    return np.frombuffer(text.encode("utf-8", errors="replace"), dtype=np.uint8).astype(np.int64)


def pack_sequences(texts: Iterable[str], context: int, max_sequences: int | None = None) -> np.ndarray:
    """Concatenate documents (separator token before each) and cut non-overlapping windows.

    Returns an int64 array of shape (n, context + 1): window i holds tokens
    [i*context, i*context + context] of the stream, so consecutive windows share one boundary
    token and every stream token is *predicted* exactly once. Each window therefore carries
    `context` training tokens; a trailing partial window is dropped.
    """
    if context < 1:
        raise ValueError("context must be >= 1")
    parts: list[np.ndarray] = []
    total = 0
    need = None if max_sequences is None else max_sequences * context + 1
    sep = np.array([SEPARATOR], dtype=np.int64)
    for text in texts:
        ids = encode(text)
        parts.append(sep)
        parts.append(ids)
        total += 1 + ids.size
        if need is not None and total >= need:
            break
    if not parts:
        return np.zeros((0, context + 1), dtype=np.int64)
    stream = np.concatenate(parts)
    n = (stream.size - 1) // context
    if max_sequences is not None:
        n = min(n, max_sequences)
    if n <= 0:
        return np.zeros((0, context + 1), dtype=np.int64)
    idx = np.arange(n)[:, None] * context + np.arange(context + 1)[None, :]
    return stream[idx]


class SequenceStream:
    """Deterministic batches from one or more fixed sets of unique sequences, with repetition.

    Each source is an array of sequences (its unique set, size U_i sequences) and a weight
    w_i. Source i is read epoch by epoch, each epoch a fresh permutation drawn from a seeded
    numpy RNG, so after the stream has produced t sequences, source i has contributed
    ~w_i t of them and its repetition count is exactly (w_i t) / U_i passes (at batch
    granularity). Row slots of the stream are given to sources by smooth weighted round-robin
    (deterministic, no sampling noise in the shares).
    """

    def __init__(self, sources: Sequence[np.ndarray], weights: Sequence[float] | None = None,
                 seed: int = 0):
        if not sources:
            raise ValueError("SequenceStream needs at least one source")
        self.sources = [np.asarray(s) for s in sources]
        for s in self.sources:
            if s.ndim != 2 or s.shape[0] == 0:
                raise ValueError("every source must be a non-empty 2-D array of sequences")
        w = np.ones(len(sources)) if weights is None else np.asarray(weights, dtype=float)
        if w.shape != (len(sources),) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError("weights must be non-negative, one per source, not all zero")
        self.weights = w / w.sum()
        self._rng = np.random.default_rng(seed)
        self._orders = [self._rng.permutation(len(s)) for s in self.sources]
        self._cursor = [0] * len(self.sources)
        self._credit = np.zeros(len(self.sources))
        self.taken = np.zeros(len(self.sources), dtype=np.int64)  # sequences drawn per source

    def _next_source(self) -> int:
        # Smooth weighted round-robin: every slot each source earns its weight; the richest
        # source gives the slot and pays 1. Shares stay within one slot of w_i * t.
        self._credit += self.weights
        i = int(np.argmax(self._credit))
        self._credit[i] -= 1.0
        return i

    def _next_sequence(self, i: int) -> np.ndarray:
        if self._cursor[i] == len(self.sources[i]):
            self._orders[i] = self._rng.permutation(len(self.sources[i]))
            self._cursor[i] = 0
        row = self.sources[i][self._orders[i][self._cursor[i]]]
        self._cursor[i] += 1
        self.taken[i] += 1
        return row

    def next_batch(self, batch_size: int) -> np.ndarray:
        """The next `batch_size` sequences, shape (batch_size, context + 1)."""
        return np.stack([self._next_sequence(self._next_source()) for _ in range(batch_size)])

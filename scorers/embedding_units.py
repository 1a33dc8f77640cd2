"""How documents become model inputs: the sentences that stand for a document, and batches cut
by a token budget. Shared by every embedding backend (scorers/embedding.py, the torch path, and
scorers/embedding_backends.py, the OpenVINO int8 path), so both embed the same units.
"""
from __future__ import annotations

import hashlib
import re
from typing import Sequence

import numpy as np

MAX_BATCH_ROWS = 512
#: Padded widths of the fixed batch shapes (``fixed_shape_batches``); the model's own maximum
#: sequence length closes the list.
PAD_WIDTHS = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512)
DEFAULT_MAX_UNITS = 16
#: Sentence ends (., !, ? followed by space) and line breaks delimit units.
_UNIT_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")
#: Units longer than this many words (no punctuation) are cut into windows of this size.
_MAX_UNIT_WORDS = 200


def token_budget_batches(lengths: Sequence[int], batch_tokens: int, max_rows: int = MAX_BATCH_ROWS) -> list[np.ndarray]:
    """Group indices, sorted by length (longest first), into batches of <= batch_tokens padded tokens."""
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        longest = max(1, int(lengths[order[start]]))
        rows = max(1, min(max_rows, batch_tokens // longest))
        batches.append(order[start:start + rows])
        start += rows
    return batches


def pad_widths(max_width: int) -> tuple[int, ...]:
    """The batch widths used for a model whose longest input is ``max_width`` tokens."""
    return tuple(w for w in PAD_WIDTHS if w < max_width) + (int(max_width),)


def fixed_shape_batches(lengths: Sequence[int], max_width: int, batch_tokens: int,
                        max_rows: int = MAX_BATCH_ROWS) -> list[tuple[np.ndarray, int, int]]:
    """(indices, width, rows) batches whose shape depends on nothing but the width.

    Why: CPU and GPU matrix kernels are chosen by shape, so a sequence embedded in a batch of
    another shape comes out differently in the last bits (measured on the project's CPU:
    1.7e-7 with MiniLM fp32, 1e-3 under bf16 autocast), and which sequences share a batch
    depends on Beam's bundles, hence on the worker count.  Here every sequence of ``n``
    tokens goes into a batch of width ``w`` = the smallest of ``pad_widths(max_width)`` with
    ``w > n`` (at least one padding position, so attention is always masked: transformers
    drops an all-ones mask and SDPA then takes another kernel), and every batch of width
    ``w`` has exactly ``rows(w) = min(max_rows, batch_tokens // w)`` rows: the caller fills
    the last one with filler rows.  A sequence's embedding then depends only on itself.
    Lengths must be < ``max_width`` (truncate at ``max_width - 1``).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    widths = np.asarray(pad_widths(max_width), dtype=np.int64)
    if len(lengths) and lengths.max() >= max_width:
        raise ValueError(f"sequence of {int(lengths.max())} tokens does not fit width {max_width} "
                         "with a padding position")
    bucket = np.searchsorted(widths, lengths, side="right")  # first width > length
    batches: list[tuple[np.ndarray, int, int]] = []
    for b, width in enumerate(widths.tolist()):
        members = np.flatnonzero(bucket == b)
        rows = max(1, min(max_rows, batch_tokens // width))
        for start in range(0, len(members), rows):
            batches.append((members[start:start + rows], width, rows))
    return batches


def _unit_hash(unit: str) -> bytes:
    return hashlib.blake2b(unit.encode("utf-8", errors="surrogatepass"), digest_size=8).digest()


def document_units(text: str, max_units: int = DEFAULT_MAX_UNITS) -> list[str]:
    """The sentences that stand for a document: all of them, or the ``max_units`` with the
    smallest hash (order-independent).  Never empty (an empty text gives [""])."""
    units: list[str] = []
    for piece in _UNIT_SPLIT.split(text or ""):
        piece = piece.strip()
        if not piece:
            continue
        words = piece.split()
        if len(words) > _MAX_UNIT_WORDS:
            units.extend(" ".join(words[i:i + _MAX_UNIT_WORDS]) for i in range(0, len(words), _MAX_UNIT_WORDS))
        else:
            units.append(piece)
    units = list(dict.fromkeys(units))  # repeated sentences count once
    if len(units) > max_units:
        units = sorted(units, key=_unit_hash)[:max_units]
    return units or [""]

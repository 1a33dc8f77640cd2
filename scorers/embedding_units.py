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

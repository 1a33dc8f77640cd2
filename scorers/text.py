"""Text normalisation and hashing shared by the pipeline's dedup stages.

Plain Python (no Beam). Normalisation is deliberately conservative: it makes two copies of a
document that differ only in Unicode composition or in-line whitespace compare equal, but it
keeps the line structure because the line-based quality rules (C4, FineWeb) need it.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata

# Horizontal whitespace only: spaces, tabs, form feeds, NBSP and the other Unicode space
# separators. Newlines are handled separately so the line structure survives.
_HSPACE = re.compile(r"[^\S\n]+")
_MANY_NEWLINES = re.compile(r"\n{3,}")
# Word tokens for shingling: Unicode letters/digits/underscore runs.
_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s")
# characters lower-cased and tokenised at a time by `word_token_chunks` (bounds the memory
# one very large document takes while it is shingled)
TOKEN_CHUNK_CHARS = 1 << 20


def normalise_text(text: str) -> str:
    """NFC, collapse runs of horizontal whitespace, strip each line, collapse 3+ newlines.

    `\\r\\n` and lone `\\r` become `\\n`; leading and trailing blank lines are removed.
    The result keeps one blank line between paragraphs at most.
    """
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = (_HSPACE.sub(" ", line).strip() for line in text.split("\n"))
    text = "\n".join(lines)
    text = _MANY_NEWLINES.sub("\n\n", text)
    return text.strip("\n")


def text_hash(normalised: str) -> str:
    """128-bit BLAKE2b hex digest of the (already normalised) text: the exact-dedup key."""
    return hashlib.blake2b(normalised.encode("utf-8"), digest_size=16).hexdigest()


def content_id(text: str) -> str:
    """Stable id derived from the text alone, for records that carry no id.

    Identical texts get identical ids; the pipeline makes colliding ids unique afterwards.
    """
    return "h" + hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def word_tokens(text: str) -> list[str]:
    """Lower-cased word tokens (punctuation and whitespace dropped), used for shingling."""
    return _WORD.findall(text.lower())


def word_token_chunks(text: str, chunk_chars: int = TOKEN_CHUNK_CHARS):
    """`word_tokens(text)` in consecutive lists (their concatenation is `word_tokens(text)`).

    A very large text is lower-cased and tokenised a piece at a time instead of as one copy
    and one list of every word. Pieces are cut just before a whitespace character: no word
    spans a cut, and lower-casing (context-sensitive only for the Greek final sigma, whose
    context ends at whitespace) gives the same result piece by piece.
    """
    start, n = 0, len(text)
    while start < n:
        end = start + chunk_chars
        if end < n:
            cut = _SPACE.search(text, end)
            end = cut.start() if cut else n
        else:
            end = n
        yield _WORD.findall(text[start:end].lower())
        start = end


def estimate_tokens(text: str) -> int:
    """Rough LM token estimate: whitespace-separated words x 1.3 (rounded).

    Chosen over chars/4 because it tracks BPE token counts better on prose and URLs alike;
    it is an estimate for stats tables only, never used for decisions.
    """
    return int(round(len(text.split()) * 1.3))

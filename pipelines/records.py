"""Record validation shared by every input format (plain Python; Beam-free on purpose).

A *document* travelling through the pipeline is a plain dict (picklable, cheap to encode):

    id, text, source            -- the public columns
    _order                      -- (source, shard, position): where it came from, for
                                   deterministic tie-breaking; dropped before writing

A *dead letter* is a dict: source, line (JSONL, 1-based) or row (Parquet/Arrow, 0-based),
reason, detail, raw (the record as text, truncated to `max_raw_chars`), raw_truncated.
"""
from __future__ import annotations

import json

from curate.scorers.text import content_id

# Dead-letter reasons (stable strings: tests, manifests and users key on them).
MALFORMED_JSON = "malformed_json"
MALFORMED_ROW = "malformed_row"  # a Parquet/Arrow row whose values cannot be converted
NOT_AN_OBJECT = "not_an_object"
INVALID_UTF8 = "invalid_utf8"
MISSING_TEXT = "missing_text"
NULL_TEXT = "null_text"
TEXT_NOT_STRING = "text_not_string"
EMPTY_TEXT = "empty_text"
TEXT_TOO_LARGE = "text_too_large"
RECORD_TOO_LARGE = "record_too_large"
BAD_ID = "bad_id"
UNREADABLE_FILE = "unreadable_file"
TRUNCATED_FILE = "truncated_file"

REASONS = (MALFORMED_JSON, MALFORMED_ROW, NOT_AN_OBJECT, INVALID_UTF8, MISSING_TEXT, NULL_TEXT,
           TEXT_NOT_STRING, EMPTY_TEXT, TEXT_TOO_LARGE, RECORD_TOO_LARGE, BAD_ID, UNREADABLE_FILE,
           TRUNCATED_FILE)


class RecordError(Exception):
    """A record that cannot become a document; `reason` is one of REASONS."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def to_document(obj, *, id_field: str, text_field: str, max_text_bytes: int, source: str,
                order: tuple) -> dict:
    """Validate one parsed record and build a document; raise RecordError if it is bad.

    A missing/null/empty-string id gets `scorers.text.content_id(text)` (a hash of the text
    only, so it is stable across runs and file renames); identical texts then share an id
    and the unique-id stage suffixes the later copies.
    """
    if not isinstance(obj, dict):
        raise RecordError(NOT_AN_OBJECT, f"top-level JSON value is {type(obj).__name__}")
    if text_field not in obj:
        raise RecordError(MISSING_TEXT, f"no field {text_field!r}")
    text = obj[text_field]
    if text is None:
        raise RecordError(NULL_TEXT, f"field {text_field!r} is null")
    if not isinstance(text, str):
        raise RecordError(TEXT_NOT_STRING, f"field {text_field!r} is {type(text).__name__}")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:  # lone surrogates from "\ud800"-style JSON escapes
        raise RecordError(INVALID_UTF8, f"text is not valid Unicode: {exc.reason}") from None
    if not text.strip():
        raise RecordError(EMPTY_TEXT, "text is empty after stripping whitespace")
    if size > max_text_bytes:
        raise RecordError(TEXT_TOO_LARGE, f"text is {size} bytes > limit {max_text_bytes}")
    raw_id = obj.get(id_field)
    if raw_id is None or raw_id == "":
        doc_id = content_id(text)
    elif isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        raise RecordError(BAD_ID, f"field {id_field!r} is {type(raw_id).__name__}, not a string or integer")
    else:
        doc_id = str(raw_id)
        try:  # an id is written, hashed and keyed as UTF-8: a lone surrogate would crash a worker
            doc_id.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise RecordError(BAD_ID, f"field {id_field!r} is not valid Unicode: {exc.reason}") from None
    return {"id": doc_id, "text": text, "source": source, "_order": order}


def dead_letter(*, source: str, reason: str, detail: str = "", raw=None, line: int | None = None,
                row: int | None = None, max_raw_chars: int = 10_000) -> dict:
    """Dead-letter row; `raw` may be bytes, str or a JSON-able object."""
    if raw is None:
        text = None
    elif isinstance(raw, bytes):
        text = raw.decode("utf-8", errors="backslashreplace")
    elif isinstance(raw, str):
        text = raw
    else:
        text = json.dumps(raw, ensure_ascii=False, default=repr)
    if text is not None:  # lone surrogates cannot be encoded: escape them
        text = text.encode("utf-8", errors="backslashreplace").decode("utf-8")
    detail = detail.encode("utf-8", errors="backslashreplace").decode("utf-8")
    truncated = text is not None and len(text) > max_raw_chars
    if truncated:
        text = text[:max_raw_chars]
    return {"source": source, "line": line, "row": row, "reason": reason, "detail": detail,
            "raw": text, "raw_truncated": truncated}

"""Normalise: add the normalised text and its hash; the original `text` is kept untouched."""
from __future__ import annotations

import apache_beam as beam

from curate.scorers.text import normalise_text, text_hash


def _normalise(doc: dict) -> dict:
    norm = normalise_text(doc["text"])
    return {**doc, "_norm": norm, "text_hash": text_hash(norm)}


class Normalise(beam.PTransform):
    """documents -> documents with `_norm` (internal) and `text_hash` (public column)."""

    reads = ("text",)
    adds = ("_norm", "text_hash")

    def expand(self, docs):
        return docs | "NormaliseText" >> beam.Map(_normalise)

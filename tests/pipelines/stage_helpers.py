"""Shared pieces of the per-stage Beam unit tests (tests/pipelines/test_stage_*.py).

Each stage test builds one composite PTransform on a handful of hand-made documents in a
`TestPipeline` pinned to the FnApiRunner (the default DirectRunner would try to download
Prism, which cannot work offline) and checks its outputs with `assert_that`.
"""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline

from curate.pipelines import counters
from curate.scorers.text import normalise_text, text_hash

RUNNER = "FnApiRunner"


def fnapi_pipeline(flags: list[str] | None = None) -> TestPipeline:
    """A TestPipeline on the in-process FnApiRunner (works offline, on any CPU).

    `flags`: extra pipeline options, e.g. ``["--curate_cache_dir=DIR"]`` (runtime options).
    """
    options = PipelineOptions(flags) if flags else None
    return TestPipeline(runner=RUNNER, options=options)


def document(doc_id: str, text: str, source: str = "src", position: int = 0) -> dict:
    """A document as it leaves the Normalise stage: public columns plus `_order`/`_norm`."""
    norm = normalise_text(text)
    return {"id": doc_id, "text": text, "source": source, "_order": (source, 0, position),
            "_norm": norm, "text_hash": text_hash(norm)}


def run_counting(p) -> dict[str, int]:
    """Run `p` to completion and return its curate counters (`removed.exact`, ...)."""
    result = p.run()
    result.wait_until_finish()
    return counters.query(result)


def words(n: int, prefix: str = "w") -> list[str]:
    """n distinct words: a text built from them has n-1 distinct word bigrams."""
    return [f"{prefix}{i:03d}" for i in range(n)]

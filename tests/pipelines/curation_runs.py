"""Shared pieces of the tests that run the whole curation pipeline in process and compare what
it wrote (test_compact_pipeline, test_compact_embedding, test_ingest_pieces), and of the news
corpora with planted paraphrases (test_compact_embedding, test_embedding_scores_wired)."""
from __future__ import annotations

import gzip
import json
import random
import re
from pathlib import Path

SPLIT = re.compile(r"(?<=[.!?])\s+")
HEADER = "Home | News | Sports | Subscribe to our newsletter. Advertisement\n\n"


def paraphrase(text: str, seed: int) -> str:
    """The text's sentences in another order under a boilerplate header: a semantic duplicate
    that word-level near dedup does not see."""
    sentences = SPLIT.split(text.strip())
    shuffled = sentences[:]
    while shuffled == sentences:
        random.Random(seed).shuffle(shuffled)
        seed += 1
    return HEADER + " ".join(shuffled)


def write_gzip_parts(records: list, folder: Path, parts: int = 3) -> list[str]:
    """records (dicts, or anything JSON) -> `parts` gzip JSONL files, record i in part i % parts."""
    paths = []
    for part in range(parts):
        path = folder / f"part{part}.jsonl.gz"
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            for r in records[part::parts]:
                fh.write(json.dumps(r) + "\n")
        paths.append(str(path))
    return paths


def run_curation_pipeline(files, out: Path, config, compact: bool, *, flags=(), cache_dir=None):
    """build_curation on the in-process FnApiRunner, run to completion; returns the result.
    The run's intermediate folder is left for the caller (pipelines.stash.delete)."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from curate.pipelines.curation import build_curation
    from curate.pipelines.runtime import set_runtime

    options = PipelineOptions(["--runner=FnApiRunner", *flags])
    set_runtime(options, cache_dir, None)
    p = beam.Pipeline(options=options)
    build_curation(p, files, str(out), config, compact=compact)
    result = p.run()
    result.wait_until_finish()
    return result


def sorted_rows(out: Path, sub: str, key: str) -> list[dict]:
    """Every Parquet row under out/sub, sorted by `key`."""
    import pyarrow.parquet as pq

    rows = []
    for f in sorted((out / sub).rglob("*.parquet")):
        rows += pq.read_table(f).to_pylist()
    return sorted(rows, key=lambda r: r[key])


def dead_letter_lines(out: Path) -> list[str]:
    return sorted(line for f in (out / "dead_letter").glob("*.jsonl") for line in f.read_text().splitlines())

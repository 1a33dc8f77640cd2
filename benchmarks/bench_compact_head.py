"""Memory of the compact pipeline's head: IngestAndValidate(stash) + ExactDedup + grouping by
chunk (the head before CompactHead, one dict or tuple per document in each of its three shuffles) against
CompactHead (pipelines/compact_head.py: packed blobs in every shuffle), on the shared corpora
repeated COPIES times with a perturbation per copy (no exact repeats across copies).

    .venv/bin/python benchmarks/bench_compact_head.py [COPIES]     (default 1: ~70k documents)

Each variant runs in its own subprocess on the in-process FnApiRunner; printed per variant:
wall seconds, the process's peak RSS, documents out. Also printed: bytes per document a
shuffle holds, decoded (the dict / the tuple, deep size) and packed (one blob of 128 records).
"""
from __future__ import annotations

import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(os.environ.get("CURATE_SHARED", "/work/shared")) / "corpora"


def _corpus(folder: Path, copies: int) -> list[str]:
    paths = []
    for src in sorted(SHARED.glob("*.jsonl.gz")):
        out = folder / src.name
        with gzip.open(src, "rt", encoding="utf-8") as fh, gzip.open(out, "wt", encoding="utf-8", compresslevel=1) as w:
            lines = fh.readlines()
            for c in range(copies):
                for line in lines:
                    r = json.loads(line)
                    if c:
                        r["text"] = f"{r.get('text', '')} copy{c}"
                        if r.get("id") not in (None, ""):
                            r["id"] = f"{r['id']}-c{c}"
                    w.write(json.dumps(r) + "\n")
        paths.append(str(out))
    return paths


def _deep_size(obj) -> int:
    if isinstance(obj, dict):
        return sys.getsizeof(obj) + sum(_deep_size(k) + _deep_size(v) for k, v in obj.items())
    if isinstance(obj, tuple):
        return sys.getsizeof(obj) + sum(_deep_size(v) for v in obj)
    return sys.getsizeof(obj)


def _record_sizes(paths) -> None:
    from curate.pipelines import stash as ST
    from curate.pipelines.stash_stages import pack
    from curate.scorers.text import normalise_text, text_hash

    dicts, tuples, packed, n, batch = 0, 0, 0, 0, []
    for f, path in enumerate(paths):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for s, line in enumerate(fh):
                r = json.loads(line)
                if not isinstance(r.get("text"), str) or n >= 20_000:
                    continue
                doc = {"id": str(r.get("id") or f"h{s}"), "_order": ST.locator(f, s),
                       "text_hash": text_hash(normalise_text(r["text"]))}
                record = (doc["id"], doc["_order"], bytes.fromhex(doc["text_hash"]), None)
                dicts += _deep_size(doc)
                tuples += _deep_size(record)
                batch.append(record)
                n += 1
                if len(batch) == 128:
                    packed += sys.getsizeof(pack(batch))
                    batch = []
    print(f"bytes per document held by a shuffle (decoded, deep size): dict {dicts / n:.0f}, "
          f"tuple {tuples / n:.0f}; packed in blobs of 128 records: {packed / (n - len(batch)):.1f}")


def _run(variant: str, paths: list[str], out: str) -> None:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from curate.pipelines import counters
    from curate.pipelines import stash as ST
    from curate.pipelines.compact_head import CompactHead
    from curate.pipelines.exact_dedup import ExactDedup
    from curate.pipelines.ingest import IngestAndValidate
    from curate.pipelines.inputs import expand_inputs
    from curate.pipelines.stage_configs import IngestConfig
    from curate.pipelines.stash_stages import unpack

    files = expand_inputs(paths)
    stash = ST.Stash(out, files)
    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    if variant == "head":
        chunks = (p | CompactHead(files, IngestConfig(), stash, True, False))["chunks"]
        count = lambda item: counters.inc("bench.members", sum(len(unpack(b)) for b in item[1]))  # noqa: E731
    else:
        docs = (p | IngestAndValidate(files, IngestConfig(), stash=stash))["documents"] | ExactDedup()
        chunks = docs["documents"] | beam.Map(lambda d: (ST.chunk_key(d["_order"]), (
            ST.row_in_chunk(d["_order"]), d["id"], d["_order"], d["text_hash"], None)))
        count = lambda item: counters.inc("bench.members", len(list(item[1])))  # noqa: E731
    chunks | "GroupChunks" >> beam.GroupByKey() | beam.Map(count)
    start = time.time()
    result = p.run()
    result.wait_until_finish()
    members = counters.query(result).get("bench.members", 0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{variant:>9}: {time.time() - start:6.1f} s, peak RSS {rss:6.0f} MB, {members} documents out")
    ST.delete(out)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--variant":
        _run(sys.argv[2], sys.argv[4:], sys.argv[3])
        return
    copies = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    with tempfile.TemporaryDirectory() as tmp:
        paths = _corpus(Path(tmp), copies)
        _record_sizes(paths)
        for variant in ("documents", "head"):
            subprocess.run([sys.executable, __file__, "--variant", variant, f"{tmp}/out-{variant}", *paths],
                           check=True)


if __name__ == "__main__":
    main()

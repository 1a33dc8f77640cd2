"""DataTrove doing what `curate run` does (CPU stages), for bench_pipeline.py.

Runs inside the benchmark's own venv (benchmarks/.venv-datatrove), never the
project's. Steps, in curate's order (dedup first, so both tools score the same
surviving documents):

1. read JSONL(.gz) -> MinHash signatures          (MinhashDedupSignature)
2. LSH buckets                                     (MinhashDedupBuckets)
3. connected components / clusters                 (MinhashDedupCluster)
4. read again -> drop near duplicates              (MinhashDedupFilter)
   -> Gopher repetition, Gopher quality, FineWeb and C4 quality filters,
      each applied to *every* document, the verdict stored in metadata
      (curate scores and does not drop; DataTrove's usual cascade drops a
      document at its first failed filter, which is less work: --cascade)
   -> JSONL.gz writer

Prints one JSON line with the per-stage and total wall time and the counts.
"""
from __future__ import annotations

import argparse
import json
import os
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input-dir", required=True, help="folder of *.jsonl.gz inputs")
    p.add_argument("--work-dir", required=True, help="scratch folder (emptied by the caller)")
    p.add_argument("--tasks", type=int, default=2, help="DataTrove tasks for the read stages")
    p.add_argument("--workers", type=int, default=2, help="processes running tasks at once")
    p.add_argument("--ngrams", type=int, default=2, help="shingle size in words (curate: 2)")
    p.add_argument("--buckets", type=int, default=9, help="LSH bands (curate: 9 for 0.8 / 128)")
    p.add_argument("--hashes-per-bucket", type=int, default=13, help="LSH rows (curate: 13)")
    p.add_argument("--time-filters", type=int, metavar="N", default=0,
                   help="only time the four filters in this process on the first N records "
                        "of each input file (CPU seconds), print JSON and exit")
    p.add_argument("--cascade", action="store_true",
                   help="DataTrove's usual filter cascade (drop at the first failed filter)")
    return p.parse_args()


def time_filters(input_dir: str, limit: int) -> dict:
    """CPU seconds of the four filters alone, per input file, on its first `limit` records."""
    import glob
    import gzip
    import itertools

    from datatrove.data import Document
    from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter,
                                            GopherQualityFilter, GopherRepetitionFilter)

    filters = [GopherRepetitionFilter(), GopherQualityFilter(), FineWebQualityFilter(), C4QualityFilter()]
    filters[1].filter(Document(text="warm up the word tokenizer", id="0"))  # load spaCy outside the timing
    out = {}
    for path in sorted(glob.glob(os.path.join(input_dir, "*.jsonl.gz"))):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            rows = [json.loads(line) for line in itertools.islice(fh, limit)]
        docs = [Document(text=r["text"], id=str(r.get("id"))) for r in rows if isinstance(r.get("text"), str) and r["text"]]
        start = time.process_time()
        for doc in docs:
            for f in filters:
                f.filter(doc)
        seconds = time.process_time() - start
        out[os.path.basename(path)] = {"docs": len(docs), "cpu_seconds": round(seconds, 2),
                                       "docs_per_cpu_s": round(len(docs) / seconds)}
    return out


def main() -> None:
    args = parse_args()
    if args.time_filters:
        print(json.dumps(time_filters(args.input_dir, args.time_filters)))
        return
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.base import PipelineStep
    from datatrove.pipeline.dedup import (MinhashDedupBuckets, MinhashDedupCluster,
                                          MinhashDedupFilter, MinhashDedupSignature)
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter,
                                            GopherQualityFilter, GopherRepetitionFilter)
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig

    class ScoreWithFilters(PipelineStep):
        """Every filter on every document; verdicts go to metadata, nothing is dropped."""

        name = "score with all filters"
        type = "FILTER"

        def __init__(self):
            super().__init__()
            # C4 last: its filter() rewrites doc.text (drops lines) when the page passes.
            self.filters = [GopherRepetitionFilter(), GopherQualityFilter(),
                            FineWebQualityFilter(), C4QualityFilter()]

        def run(self, data, rank: int = 0, world_size: int = 1):
            for doc in data:
                with self.track_time():
                    for f in self.filters:
                        verdict = f.filter(doc)
                        ok = verdict is True or (isinstance(verdict, tuple) and verdict[0])
                        doc.metadata[f"dt_{type(f).__name__}"] = (
                            "pass" if ok else (verdict[1] if isinstance(verdict, tuple) else "fail"))
                        self.stat_update("pass" if ok else "fail")
                yield doc

    work = args.work_dir
    config = MinhashConfig(n_grams=args.ngrams, num_buckets=args.buckets,
                           hashes_per_bucket=args.hashes_per_bucket,
                           hash_config=HashConfig(precision=64))

    def reader():
        return JsonlReader(args.input_dir, glob_pattern="*.jsonl.gz", text_key="text", id_key="id")

    def filters():
        if args.cascade:
            return [GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(),
                    FineWebQualityFilter()]
        return [ScoreWithFilters()]

    stages = {
        "signatures": LocalPipelineExecutor(
            [reader(), MinhashDedupSignature(f"{work}/sigs", config=config)],
            tasks=args.tasks, workers=args.workers, logging_dir=f"{work}/logs/sigs",
            skip_completed=False),
        "buckets": LocalPipelineExecutor(
            [MinhashDedupBuckets(f"{work}/sigs", f"{work}/buckets", config=config)],
            tasks=config.num_buckets, workers=args.workers, logging_dir=f"{work}/logs/buckets",
            skip_completed=False),
        "clusters": LocalPipelineExecutor(
            [MinhashDedupCluster(f"{work}/buckets", f"{work}/remove_ids", config=config)],
            tasks=1, workers=1, logging_dir=f"{work}/logs/clusters", skip_completed=False),
        "dedup+score+write": LocalPipelineExecutor(
            [reader(), MinhashDedupFilter(f"{work}/remove_ids"), *filters(),
             JsonlWriter(f"{work}/output")],
            tasks=args.tasks, workers=args.workers, logging_dir=f"{work}/logs/final",
            skip_completed=False),
    }
    seconds = {}
    start = time.perf_counter()
    for name, executor in stages.items():
        t0 = time.perf_counter()
        executor.run()
        seconds[name] = round(time.perf_counter() - t0, 3)
    total = time.perf_counter() - start

    def written_docs():
        import gzip
        n = 0
        for root, _, files in os.walk(f"{work}/output"):
            for fn in files:
                with gzip.open(os.path.join(root, fn), "rt", encoding="utf-8") as fh:
                    n += sum(1 for _ in fh)
        return n

    print(json.dumps({"tool": "datatrove", "seconds": round(total, 3), "stage_seconds": seconds,
                      "docs_out": written_docs(), "cascade": args.cascade,
                      "tasks": args.tasks, "workers": args.workers}))


if __name__ == "__main__":
    main()

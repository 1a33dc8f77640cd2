"""MinHash signing speed: shingle hashes + signature per document, as the NearDedup stage does.

Texts: health tweets (short) and news articles (long) from ../shared/corpora, normalised as the
pipeline does. Each implementation signs every text `--repeats` times with one warm hasher
(its token memo filled, as in a worker); the best repeat counts. `--compare-to FILE` also
times another `scorers/minhash.py` (e.g. the 32-bit version from git) on the same texts, in
the same process, alternating, so machine load hits both alike:

    git show 00c99b6:scorers/minhash.py > /tmp/minhash_32bit.py
    .venv/bin/python benchmarks/bench_minhash.py --compare-to /tmp/minhash_32bit.py
"""
from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CURATE_SHARED", ROOT.parent / "shared"))


def load_texts(name: str, limit: int) -> list[str]:
    from curate.scorers.text import normalise_text

    out = []
    with gzip.open(SHARED / "corpora" / name, "rt", encoding="utf-8") as fh:
        for line in fh:
            out.append(normalise_text(json.loads(line)["text"]))
            if len(out) >= limit:
                break
    return out


def load_module(path: str):
    spec = importlib.util.spec_from_file_location("minhash_compared", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while decorating
    spec.loader.exec_module(module)
    return module


def sign_all(hasher, texts) -> float:
    start = time.perf_counter()
    for text in texts:
        hasher.signature_of_hashes(hasher.shingle_hashes(text))
    return time.perf_counter() - start


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--compare-to", help="another scorers/minhash.py to time on the same texts")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--tweets", type=int, default=20_000)
    p.add_argument("--articles", type=int, default=2_000)
    args = p.parse_args(argv)

    from curate.scorers import minhash

    impls = {"current": minhash}
    if args.compare_to:
        impls["compared"] = load_module(args.compare_to)
    sets = {"tweets": load_texts("health_tweets.jsonl.gz", args.tweets),
            "articles": load_texts("news_articles.jsonl.gz", args.articles)}
    for set_name, texts in sets.items():
        chars = sum(len(t) for t in texts)
        hashers = {name: m.MinHasher(num_perm=128, shingle_size=2, seed=42) for name, m in impls.items()}
        for h in hashers.values():
            sign_all(h, texts)  # warm the token memo, as a worker's is after its first bundle
        best = {name: float("inf") for name in impls}
        for _ in range(args.repeats):
            for name, h in hashers.items():
                best[name] = min(best[name], sign_all(h, texts))
        line = [f"{set_name}: {len(texts)} docs, {chars / len(texts):.0f} chars/doc"]
        for name, seconds in best.items():
            line.append(f"{name} {len(texts) / seconds:,.0f} docs/s ({chars / seconds / 1e6:.1f} MB/s)")
        if "compared" in best:
            line.append(f"current/compared speed {best['compared'] / best['current']:.2f}")
        print("; ".join(line))


if __name__ == "__main__":
    main()

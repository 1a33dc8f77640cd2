"""False near-duplicate removals on 1M short distinct documents (the reliability issue's item 5).

Documents: short sentences of random words (1 to 12, half of them 1 to 3 words) drawn
from a real vocabulary (every word seen at least twice in ../shared/corpora), generated with a
fixed seed and kept only if their normalised text is new: 1,000,000 distinct documents.

They go through the scoring path of the NearDedup stage, outside Beam (a 1M-document
`curate run` does not fit this 2-core machine in reasonable time; the per-document and
per-pair functions are the stage's own): `normalise_text`, `MinHasher.shingle_hashes` and
`signature_of_hashes` (word bigrams, 128 permutations, seed 42), `band_keys` (16 bands x 6
rows for threshold 0.8), buckets -> `_candidate_pairs` (all pairs up to 20 ids, else star +
chain), exact Jaccard of the shingle-hash sets (`jaccard_of_hashes`) >= 0.8, then
`union_find_min` for the components (the smallest id survives, as in the stage).

A removal is false when the pair that made it is not a near duplicate by the ground truth:
the Jaccard of the *string* shingle sets (`shingles(text, 2)`), no hashing involved.
`--compare-to FILE` runs another `scorers/minhash.py` (the 32-bit version from git) through
the same path on the same documents:

    git show 00c99b6:scorers/minhash.py > /tmp/minhash_32bit.py
    .venv/bin/python benchmarks/bench_false_dups.py --compare-to /tmp/minhash_32bit.py
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CURATE_SHARED", ROOT.parent / "shared"))
CORPORA = ("news_articles.jsonl.gz", "health_tweets.jsonl.gz", "c4_sample_a.jsonl.gz",
           "c4_sample_b.jsonl.gz")
THRESHOLD, NUM_PERM, SHINGLE, SEED, MAX_ALL_PAIRS = 0.8, 128, 2, 42, 20


def vocabulary() -> list[str]:
    from curate.scorers.text import word_tokens

    counts: Counter = Counter()
    for name in CORPORA:
        with gzip.open(SHARED / "corpora" / name, "rt", encoding="utf-8") as fh:
            for line in fh:
                counts.update(word_tokens(json.loads(line)["text"]))
    return sorted(w for w, c in counts.items() if c >= 2 and not w.isdigit())


def documents(n: int, vocab: list[str], seed: int = 0) -> list[str]:
    from curate.scorers.text import normalise_text

    rng = random.Random(seed)
    seen, out = set(), []
    while len(out) < n:
        k = rng.randint(1, 3) if rng.random() < 0.5 else rng.randint(4, 12)
        text = " ".join(rng.choice(vocab) for _ in range(k)).capitalize() + "."
        norm = normalise_text(text)
        if norm not in seen:
            seen.add(norm)
            out.append(norm)
    return out


def load_module(path: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location("minhash_compared", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def near_dedup_path(minhash, texts: list[str]) -> dict:
    """The stage's decisions on `texts` (ids = zero-padded positions) with one minhash module."""
    from curate.pipelines.components import union_find_min
    from curate.pipelines.near_dedup import _candidate_pairs

    hasher = minhash.MinHasher(num_perm=NUM_PERM, shingle_size=SHINGLE, seed=SEED)
    bands, rows = minhash.lsh_params(THRESHOLD, NUM_PERM)
    start = time.perf_counter()
    hash_sets = []
    keys = np.empty((len(texts), bands), dtype=np.uint64)
    for i, text in enumerate(texts):
        hashes = hasher.shingle_hashes(text)
        hash_sets.append(hashes)
        sig = hasher.signature_of_hashes(hashes)
        # the stage's bucket keys, as 64-bit ints (band index is the column)
        keys[i] = [int.from_bytes(k[2:], "little") for k in minhash.band_keys(sig, bands, rows)]
    signed = time.perf_counter() - start
    candidates = set()
    for band in range(bands):
        order = np.argsort(keys[:, band], kind="stable")
        column = keys[order, band]
        cuts = np.flatnonzero(column[1:] != column[:-1]) + 1
        for group in np.split(order, cuts):
            if group.size > 1:
                bucket = (band, [f"{i:07d}" for i in group])
                candidates.update(_candidate_pairs(bucket, MAX_ALL_PAIRS))
    verified = []
    for a, b in sorted(candidates):
        sim = minhash.jaccard_of_hashes(hash_sets[int(a)], hash_sets[int(b)])
        if sim >= THRESHOLD:
            verified.append((a, b, sim))
    labels = union_find_min([(a, b) for a, b, _ in verified])
    removed = sorted(node for node, label in labels.items() if node != label)
    return {"bands_rows": (bands, rows), "sign_seconds": signed,
            "total_seconds": time.perf_counter() - start, "candidate_pairs": len(candidates),
            "verified": verified, "removed": removed}


def false_pairs(verified, texts) -> list[tuple]:
    """Verified pairs whose true (string-shingle) Jaccard is below the threshold."""
    from curate.scorers.minhash import jaccard, shingles

    out = []
    for a, b, sim in verified:
        truth = jaccard(shingles(texts[int(a)], SHINGLE), shingles(texts[int(b)], SHINGLE))
        if truth < THRESHOLD:
            out.append((texts[int(a)], texts[int(b)], sim, truth))
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=1_000_000)
    p.add_argument("--compare-to", help="another scorers/minhash.py run through the same path")
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "false_dups.md")
    args = p.parse_args(argv)

    from curate.scorers import minhash

    t0 = time.perf_counter()
    vocab = vocabulary()
    texts = documents(args.docs, vocab)
    lengths = Counter(min(len(t.split()), 13) for t in texts)
    print(f"{len(texts):,} distinct documents from a {len(vocab):,}-word vocabulary "
          f"in {time.perf_counter() - t0:.0f} s", flush=True)
    impls = {"64-bit (current)": minhash}
    if args.compare_to:
        impls["32-bit (compared)"] = load_module(args.compare_to)
    rows = []
    for name, module in impls.items():
        result = near_dedup_path(module, texts)
        wrong = false_pairs(result["verified"], texts)
        print(f"{name}: {result['candidate_pairs']:,} candidate pairs, {len(result['verified'])} "
              f"verified, {len(wrong)} false, {len(result['removed'])} documents removed; "
              f"signing {result['sign_seconds']:.0f} s, whole path {result['total_seconds']:.0f} s",
              flush=True)
        for a, b, sim, truth in wrong[:10]:
            print(f"    {a!r} ~ {b!r}: hashed Jaccard {sim:.2f}, true {truth:.2f}")
        rows.append((name, result, wrong))
    write_results(args, texts, vocab, lengths, rows)


def write_results(args, texts, vocab, lengths, rows) -> None:
    lines = [
        "# False near-duplicate removals on 1M short distinct documents",
        "",
        f"`benchmarks/bench_false_dups.py` ({time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}).",
        "",
        f"{len(texts):,} distinct documents: random-word sentences from a {len(vocab):,}-word "
        "vocabulary (every word seen twice or more in ../shared/corpora), 1 to 12 words. Words per "
        "document: " + ", ".join(f"{k}: {lengths[k]:,}" for k in sorted(lengths)) + ".",
        "",
        "The near-dedup stage's scoring path run **outside Beam** (a 1M-document `curate run` does "
        "not fit this shared 2-core machine in reasonable time): normalise, shingle hashes "
        f"(word bigrams), MinHash ({NUM_PERM} permutations, seed {SEED}), LSH band keys, the "
        "stage's candidate pairs per bucket, exact Jaccard of the shingle-hash sets >= "
        f"{THRESHOLD}, connected components (smallest id survives). A verified pair is *false* "
        "when the Jaccard of its string shingle sets (no hashing) is below the threshold; every "
        "document is distinct, so every removal here would be a false one.",
        "",
        "| shingle hashes | candidate pairs | verified pairs | false pairs | documents removed | signing s | whole path s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, result, wrong in rows:
        lines.append(f"| {name} | {result['candidate_pairs']:,} | {len(result['verified'])} | "
                     f"{len(wrong)} | {len(result['removed'])} | {result['sign_seconds']:.0f} | "
                     f"{result['total_seconds']:.0f} |")
    for name, result, wrong in rows:
        if wrong:
            lines += ["", f"False pairs under {name} (first 10):", ""]
            lines += [f"- `{a}` ~ `{b}`: hashed Jaccard {sim:.2f}, true {truth:.2f}"
                      for a, b, sim, truth in wrong[:10]]
    lines += ["", "Reproduce:", "", "```",
              "git show 00c99b6:scorers/minhash.py > /tmp/minhash_32bit.py",
              ".venv/bin/python benchmarks/bench_false_dups.py --compare-to /tmp/minhash_32bit.py",
              "```", ""]
    args.results.write_text("\n".join(lines))
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()

"""Build a corpus with planted exact duplicates, near duplicates and bad records.

Real documents from ../shared/corpora (news articles + C4) are the base; base documents are
chosen to be pairwise dissimilar (exact word-bigram Jaccard < 0.5) so every duplicate the
pipeline may report is a planted one and precision/recall are measured against known truth.
"""
from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from curate.scorers.minhash import shingles

NEWS = "news_articles.jsonl.gz"
C4 = "c4_sample_c.jsonl.gz"


@dataclass
class Planted:
    inputs: list[str]
    config_path: str
    base_ids: list[str]
    exact: dict[str, str] = field(default_factory=dict)  # copy id -> original id
    near: dict[str, str] = field(default_factory=dict)  # perturbed id -> original id
    bad: dict[tuple[str, int], str] = field(default_factory=dict)  # (source, line) -> reason
    bad_files: dict[str, str] = field(default_factory=dict)  # source -> reason
    no_id_texts: int = 0


def _read(path: Path, limit: int) -> list[dict]:
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            out.append(json.loads(line))
            if len(out) >= limit:
                break
    return out


def perturb(text: str, rate: float, vocab: list[str], rng: random.Random) -> str:
    """Random word substitutions, deletions and insertions at `rate` of the words."""
    words = text.split()
    for _ in range(max(1, round(rate * len(words)))):
        op, i = rng.choice("sdi"), rng.randrange(len(words))
        if op == "s":
            words[i] = rng.choice(vocab)
        elif op == "d" and len(words) > 1:
            del words[i]
        else:
            words.insert(i, rng.choice(vocab))
    return " ".join(words)


def _dissimilar(docs: list[dict], limit: float = 0.5) -> list[dict]:
    """Greedy: keep a document only if its exact bigram Jaccard to every kept one is < limit."""
    import numpy as np
    from scipy import sparse

    sets = [shingles(d["text"], 2) for d in docs]
    vocab: dict[str, int] = {}
    rows, cols = [], []
    for i, s in enumerate(sets):
        for g in s:
            rows.append(i)
            cols.append(vocab.setdefault(g, len(vocab)))
    x = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(sets), len(vocab)))
    inter = (x @ x.T).toarray()
    size = np.array([len(s) for s in sets], dtype=float)
    jac = inter / np.maximum(size[:, None] + size[None, :] - inter, 1.0)
    chosen: list[int] = []
    for i in range(len(docs)):
        if all(jac[i, j] < limit for j in chosen):
            chosen.append(i)
    return [docs[i] for i in chosen]


def build(corpora: Path, out: Path, *, n_news: int = 300, n_c4: int = 100, n_exact: int = 30,
          n_near: int = 40, seed: int = 7) -> Planted:
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    news = [d for d in _read(corpora / NEWS, 900) if len(d["text"].split()) >= 120]
    news = _dissimilar(news)[:n_news]
    c4 = [d for d in _read(corpora / C4, 300) if len(d["text"].split()) >= 120]
    c4 = _dissimilar(c4)
    c4, c4_spare = c4[:n_c4], c4[n_c4:]
    vocab = [w for d in news[:50] for w in d["text"].split()]

    news_records = [{"id": d["id"], "text": d["text"]} for d in news]
    # C4 records carry no id: the pipeline derives one from the text
    c4_records = [{"text": d["text"]} for d in c4]
    planted = Planted(inputs=[], config_path="", base_ids=[d["id"] for d in news],
                      no_id_texts=len(c4_records))

    extra = []
    for i, d in enumerate(rng.sample(news, n_exact)):
        copy_id = f"{d['id']}~exact{i}"
        # whitespace-only differences: identical after normalisation
        text = d["text"].replace(". ", ".  ", 3) + ("  \n" if i % 2 else "")
        extra.append({"id": copy_id, "text": text})
        planted.exact[copy_id] = d["id"]
    remaining = [d for d in news if d["id"] not in set(planted.exact.values())]
    for i, d in enumerate(rng.sample(remaining, n_near)):
        near_id = f"{d['id']}~near{i}"
        extra.append({"id": near_id, "text": perturb(d["text"], rng.uniform(0.02, 0.05), vocab, rng)})
        planted.near[near_id] = d["id"]
    rng.shuffle(extra)

    # -- formats: JSONL.gz (news), Parquet (c4), HF save_to_disk (planted copies) ---------
    news_path = out / "news.jsonl.gz"
    with gzip.open(news_path, "wt", encoding="utf-8") as fh:
        for r in news_records:
            fh.write(json.dumps(r) + "\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    c4_path = out / "c4.parquet"
    pq.write_table(pa.Table.from_pylist(c4_records), c4_path)
    import datasets

    hf_path = out / "copies_hf"
    datasets.Dataset.from_list(extra).save_to_disk(str(hf_path))

    # -- bad records, one per reason, in a plain JSONL file ------------------------------
    bad_path = out / "bad.jsonl"
    good_text = news[0]["text"][:500]
    bad_lines: list[tuple[bytes, str | None]] = [
        (json.dumps({"id": "ok-1", "text": "A fine short document that is valid."}).encode(), None),
        (b'{"id": "bad-json", "text": "unterminated', "malformed_json"),
        (b'{"id": "bad-utf8", "text": "caf\xe9 \xff\xfe"}', "invalid_utf8"),
        (json.dumps({"id": "no-text", "body": good_text}).encode(), "missing_text"),
        (json.dumps({"id": "null-text", "text": None}).encode(), "null_text"),
        (json.dumps({"id": "int-text", "text": 12345}).encode(), "text_not_string"),
        (json.dumps({"id": "empty-text", "text": ""}).encode(), "empty_text"),
        (json.dumps({"id": "blank-text", "text": " \n\t "}).encode(), "empty_text"),
        (json.dumps({"id": "huge-text", "text": "word " * 30_000}).encode(), "text_too_large"),
        (json.dumps(["not", "an", "object"]).encode(), "not_an_object"),
        (json.dumps({"id": ["list", "id"], "text": good_text}).encode(), "bad_id"),
        (b'{"id": "surrogate", "text": "lone \\ud800 surrogate"}', "invalid_utf8"),
        (json.dumps({"id": "giant-record", "text": "x", "pad": "y" * 300_000}).encode(), "record_too_large"),
        (b"", None),  # blank line: not a record
        (json.dumps({"id": "ok-2", "text": "Another valid document, different words here."}).encode(), None),
    ]
    with open(bad_path, "wb") as fh:
        line_no = 0
        for raw, reason in bad_lines:
            fh.write(raw + b"\n")
            line_no += 1
            if reason:
                planted.bad[(str(bad_path), line_no)] = reason

    # a gzip file cut short, and a ".gz" that is not gzip at all
    truncated = out / "truncated.jsonl.gz"
    payload = gzip.compress("".join(json.dumps({"id": f"trunc-{i}", "text": d["text"]}) + "\n"
                                    for i, d in enumerate(c4_spare[:20])).encode())
    truncated.write_bytes(payload[: len(payload) // 2])
    planted.bad_files[str(truncated)] = "truncated_file"
    broken = out / "broken.jsonl.gz"
    broken.write_bytes(b"this is not gzip data at all\n" * 10)
    planted.bad_files[str(broken)] = "unreadable_file"

    config = {"input": {"max_text_bytes": 100_000, "max_record_bytes": 200_000}}
    config_path = out / "config.json"
    config_path.write_text(json.dumps(config))
    planted.config_path = str(config_path)
    planted.inputs = [str(news_path), str(c4_path), str(hf_path), str(bad_path),
                      str(out / "*.jsonl.gz").replace("*.jsonl.gz", "trunc*.jsonl.gz"), str(broken)]
    return planted

"""Acceptance: semantic dedup on real text with MiniLM (CPU, a few hundred documents).

Planted paraphrase-level duplicates: a real news article with its sentences shuffled and a
boilerplate header added.  At the default eps, >= 90 % of them must be found while < 2 % of a
duplicate-free control corpus (other news articles, C4 pages, Wikipedia excerpts) is removed.
"""
from __future__ import annotations

import gzip
import json
import random
import re

import numpy as np
import pytest

pytest.importorskip("faiss")

from curate.scorers.semdedup import DEFAULT_EPS, SemDedupConfig, semantic_dedup  # noqa: E402

HEADER = ("Home | News | Sports | Weather | Opinion | Subscribe to our newsletter for the latest "
          "updates and breaking news. Advertisement\n\n")
N_PLANTED, N_CONTROL_NEWS, N_CONTROL_C4, N_CONTROL_WIKI = 60, 70, 40, 20


def read_texts(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def shuffle_sentences(text, seed):
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    random.Random(seed).shuffle(sentences)
    return HEADER + " ".join(sentences)


@pytest.fixture(scope="module")
def corpus(corpora_dir):
    news = [t for t in dict.fromkeys(read_texts(corpora_dir / "news_articles.jsonl.gz")) if len(t.split()) >= 60]
    c4 = [t for t in dict.fromkeys(read_texts(corpora_dir / "c4_sample_a.jsonl.gz")) if len(t.split()) >= 60]
    wiki = read_texts(corpora_dir / "wikipedia_30.jsonl.gz")
    rng = random.Random(42)
    picks = rng.sample(range(len(news)), N_PLANTED + N_CONTROL_NEWS)
    originals = [news[i] for i in picks[:N_PLANTED]]
    control = ([news[i] for i in picks[N_PLANTED:]] + rng.sample(c4, N_CONTROL_C4)
               + [w[:4000] for w in wiki[:N_CONTROL_WIKI]])
    copies = [shuffle_sentences(t, seed) for seed, t in enumerate(originals)]
    ids = ([f"orig-{i}" for i in range(N_PLANTED)] + [f"copy-{i}" for i in range(N_PLANTED)]
           + [f"ctrl-{i}" for i in range(len(control))])
    texts = originals + copies + control

    from curate.scorers.embedding import Embedder

    return ids, Embedder(device="cpu").encode(texts)


def test_planted_paraphrases_found_and_control_kept(corpus):
    ids, emb = corpus
    result = semantic_dedup(ids, emb, config=SemDedupConfig())
    assert result.eps == DEFAULT_EPS
    removed = {ids[i]: result.matched_id[i] for i in np.flatnonzero(result.is_duplicate)}
    found = sum(1 for i in range(N_PLANTED)
                if removed.get(f"copy-{i}") == f"orig-{i}" or removed.get(f"orig-{i}") == f"copy-{i}")
    n_control = sum(1 for i in ids if i.startswith("ctrl-"))
    control_removed = sum(1 for i in removed if i.startswith("ctrl-"))
    assert found / N_PLANTED >= 0.90, f"found {found}/{N_PLANTED} planted duplicates"
    assert control_removed / n_control < 0.02, f"removed {control_removed}/{n_control} control documents"

    again = semantic_dedup(ids, emb, config=SemDedupConfig())
    assert np.array_equal(result.is_duplicate, again.is_duplicate)
    assert result.matched_id == again.matched_id


def test_same_answer_with_forced_clusters(corpus):
    """With several clusters (as at scale) recall holds: copies land beside their originals."""
    ids, emb = corpus
    result = semantic_dedup(ids, emb, config=SemDedupConfig(n_clusters=4))
    removed = {ids[i] for i in np.flatnonzero(result.is_duplicate)}
    found = sum(1 for i in range(N_PLANTED) if f"copy-{i}" in removed or f"orig-{i}" in removed)
    assert found / N_PLANTED >= 0.85
    assert sum(1 for i in removed if i.startswith("ctrl-")) / (len(ids) - 2 * N_PLANTED) < 0.02

"""The compact pipeline with embedding stages (texts in the run's intermediate files, chunks
embedded from them: pipelines/embed_on_stash.py) decides exactly what the whole-document
pipeline decides: same pools, dedup rows, filtered rows, dead letters, stats, stage info,
embeddings and counters.

Corpus: real news paragraphs and tweets (shared corpora), with planted paraphrases (caught by
semantic dedup only: near dedup at 0.95), one-word near copies, exact copies, a reused id and
bad records, over three files and chunks of 5 documents, so chunks mix removed, filtered and
kept documents. Real MiniLM on CPU (offline)."""
from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("faiss")
pytest.importorskip("sentence_transformers")

from curate.pipelines import counters  # noqa: E402
from curate.pipelines import stash as ST  # noqa: E402
from curate.pipelines import stash_stages  # noqa: E402
from curate.pipelines.inputs import expand_inputs  # noqa: E402
from curate.pipelines.run_config import RunConfig  # noqa: E402
from curate.pools import rundir  # noqa: E402
from tests.pipelines.curation_runs import (SPLIT, dead_letter_lines, paraphrase,  # noqa: E402
                                           run_curation_pipeline, sorted_rows, write_gzip_parts)

N_NEWS, N_TWEETS, N_REF, N_PLANTED = 24, 12, 20, 4


@pytest.fixture(scope="module")
def corpus(corpora_dir, tmp_path_factory):
    news, ref = [], []
    with gzip.open(corpora_dir / "news_articles.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            sentences = SPLIT.split(json.loads(line)["text"].strip())
            text = " ".join(sentences[:6])  # short paragraphs keep CPU embedding quick
            if len(sentences) < 5 or len(text.split()) < 80 or text in news:
                continue
            (news if len(news) < N_NEWS else ref).append(text)
            if len(ref) == N_REF:
                break
    tweets = []
    with gzip.open(corpora_dir / "health_tweets.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            text = json.loads(line)["text"]
            if len(text.split()) >= 8 and text not in tweets:
                tweets.append(text)
            if len(tweets) == N_TWEETS:
                break
    records: list = [{"id": f"news-{i}", "text": t} for i, t in enumerate(news)]
    records += [{"id": f"tweet-{i}", "text": t} for i, t in enumerate(tweets)]
    records += [{"id": f"para-{i}", "text": paraphrase(news[i], i)} for i in range(N_PLANTED)]
    for i in (5, 9, 13):  # near copies: one word changed (word-bigram Jaccard ~0.96)
        words = news[i].split()
        words[len(words) // 2] = "changed"
        records.append({"id": f"near-{i}", "text": " ".join(words)})
    records += [{"id": "exact-1", "text": news[1]}, {"id": "exact-2", "text": tweets[2]},
                {"id": "news-3", "text": "A second document reusing an id that exists already, about gardens and rain."},
                {"text": "no id at all, so the content decides one; it is a short line"},
                {"id": "blank", "text": "   "}, "not an object"]
    random.Random(5).shuffle(records)
    root = tmp_path_factory.mktemp("compact_embedding")
    paths = write_gzip_parts(records, root)
    reference = root / "reference.jsonl"
    reference.write_text("".join(json.dumps({"text": t}) + "\n" for t in ref), encoding="utf-8")
    return paths, str(reference)


def _config(name: str, reference: str) -> dict:
    base = {"near_dedup": {"threshold": 0.95}, "pools": {"num_pools": 3}}
    if name == "embed_only":
        return {**base, "embed": {"enabled": True, "backend": "torch"},
                "filter": {"drop_failed": ["gopher_repetition"], "min_score": 0.3}}
    return {**base, "embed": {"enabled": True, "backend": "torch", "dtype": "float16"},
            "semantic_dedup": {"enabled": True},
            "embedding_scores": {"enabled": True, "reference": reference,
                                 "weights": {"heuristic": 0.5, "reference": 0.3, "prototypicality": 0.2}},
            "filter": {"drop_failed": ["fineweb"]}}


def _run(paths, out: Path, config: dict, compact: bool, cache_dir=None) -> dict:
    result = run_curation_pipeline(expand_inputs(paths), out, RunConfig.from_dict(config), compact,
                                   cache_dir=cache_dir)
    ST.delete(str(out))
    embeddings = {r["id"]: np.asarray(r["embedding"]) for r in sorted_rows(out, "embeddings", "id")}
    return {"pools": sorted_rows(out, "pools", "id"), "dedup": sorted_rows(out, "dedup", "removed_id"),
            "filtered": sorted_rows(out, "filtered", "id"), "dead": dead_letter_lines(out),
            "counters": counters.query(result),
            "stats": pq.read_table(out / "stats.parquet").to_pylist(), "embeddings": embeddings,
            "info": json.loads((out / rundir.STAGE_INFO).read_text()) if (out / rundir.STAGE_INFO).exists() else None,
            "cuts": json.loads((out / rundir.CUTS).read_text())}


@pytest.mark.slow
@pytest.mark.parametrize("name,cached", [("embed_only", False), ("semantic_and_scores", True)])
def test_compact_embedding_pipeline_decides_what_the_document_pipeline_decides(
        corpus, tmp_path, monkeypatch, name, cached):
    monkeypatch.setattr(ST, "CHUNK_ROWS", 5)  # many chunks, each mixing removed/filtered/kept rows
    monkeypatch.setattr(stash_stages, "BAND_PARTITIONS", 7)
    monkeypatch.setattr(stash_stages, "MEMBER_PARTITIONS", 3)
    paths, reference = corpus
    config = _config(name, reference)
    # cached: the compact run reads the vectors and signatures the document run cached
    cache = str(tmp_path / "cache") if cached else None
    whole = _run(paths, tmp_path / "whole", config, compact=False, cache_dir=cache)
    compact = _run(paths, tmp_path / "compact", config, compact=True, cache_dir=cache)

    for key in ("pools", "dedup", "filtered", "dead", "info", "cuts"):
        assert compact[key] == whole[key], key
    # a pool's score_mean is a float sum in the combine's (bundle-dependent) order: equal up to
    # rounding; every other stats field exactly
    assert [{**r, "score_mean": None} for r in compact["stats"]] == [{**r, "score_mean": None} for r in whole["stats"]]
    assert [r["score_mean"] for r in compact["stats"]] == pytest.approx([r["score_mean"] for r in whole["stats"]],
                                                                        rel=1e-12)
    assert compact["embeddings"].keys() == whole["embeddings"].keys()
    for doc_id, vector in whole["embeddings"].items():  # bit for bit
        assert compact["embeddings"][doc_id].dtype == vector.dtype
        assert compact["embeddings"][doc_id].tobytes() == vector.tobytes(), doc_id
    if cached:
        for name_ in ("signature_cache_hits", "signature_cache_misses"):
            whole["counters"].pop(f"near_dedup.{name_}", None)
            compact["counters"].pop(f"near_dedup.{name_}", None)
    assert compact["counters"] == whole["counters"]
    assert not (tmp_path / "compact" / ST.WORK_DIR).exists()  # intermediate files never stay
    # the corpus exercises what it is meant to
    assert whole["pools"] and whole["filtered"] and whole["dead"]
    methods = {r["method"] for r in whole["dedup"]}
    assert methods == ({"exact", "near", "semantic"} if name == "semantic_and_scores" else {"exact", "near"})
    assert any(i.startswith("news-3#") for i in whole["embeddings"]), "no renamed id"
    n_embedded = whole["counters"][counters.EMBEDDED]
    assert len(whole["embeddings"]) == n_embedded > len(whole["pools"])  # filtered ones were embedded too
    if name == "semantic_and_scores":
        assert {"heuristic_score", "reference_score", "prototypicality"} <= set(whole["pools"][0])
        assert set(whole["info"]) == {"clusters", "embedding_scores"}

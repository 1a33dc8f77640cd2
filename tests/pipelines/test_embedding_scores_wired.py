"""`curate run` with embedding quality scores folded into the pool score.

Corpus: 30 real news paragraphs, 30 distinct health tweets and 4 planted paraphrases
(sentences reordered + a boilerplate header) of news paragraphs. Reference: 60 *other* news
paragraphs (never in the corpus). With the weight on the reference score alone, the pool
score must put news above tweets; with mixed weights the pool score must equal the weighted
mean of the columns written beside it. Embeddings are written beside the pools, joinable by id.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")
pytest.importorskip("sentence_transformers")

from curate.orchestration.cli import main  # noqa: E402
from curate.orchestration.errors import CurateError  # noqa: E402
from tests.pipelines.curation_runs import SPLIT, paraphrase  # noqa: E402

RUNNER = ["--runner=FnApiRunner", "--no-catalog", "--cache-dir", "none", "--quiet"]
N_NEWS, N_TWEETS, N_REF, N_PLANTED = 30, 30, 60, 4


@pytest.fixture(scope="module")
def corpus(corpora_dir, tmp_path_factory):
    news, ref = [], []
    with gzip.open(corpora_dir / "news_articles.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            sentences = SPLIT.split(json.loads(line)["text"].strip())
            text = " ".join(sentences[:8])  # short paragraphs keep CPU embedding quick
            if len(sentences) < 5 or len(text.split()) < 60:
                continue
            (news if len(news) < N_NEWS else ref).append(text)
            if len(ref) == N_REF:
                break
    tweets, seen = [], set()
    with gzip.open(corpora_dir / "health_tweets.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            text = json.loads(line)["text"]
            key = " ".join(text.lower().split()[:6])
            if len(text.split()) >= 8 and key not in seen:
                seen.add(key)
                tweets.append(text)
            if len(tweets) == N_TWEETS:
                break
    rows = [{"id": f"news-{i}", "text": t} for i, t in enumerate(news)]
    rows += [{"id": f"tweet-{i}", "text": t} for i, t in enumerate(tweets)]
    rows += [{"id": f"para-{i}", "text": paraphrase(news[i], i)} for i in range(N_PLANTED)]
    random.Random(3).shuffle(rows)
    root = tmp_path_factory.mktemp("embedding_scores")
    data, reference = root / "corpus.jsonl", root / "reference.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    reference.write_text("".join(json.dumps({"text": t}) + "\n" for t in ref), encoding="utf-8")
    return root, data, reference


def _config(root: Path, name: str, section: dict) -> str:
    path = root / f"{name}.json"
    path.write_text(json.dumps({"near_dedup": {"threshold": 0.95}, "pools": {"num_pools": 2}, **section}))
    return str(path)


def _docs(out: Path) -> dict[str, dict]:
    import duckdb

    rel = duckdb.sql(f"SELECT * FROM read_parquet('{out}/pools/*/*.parquet', hive_partitioning=false)")
    cols = [d[0] for d in rel.description]
    return {row[0]: dict(zip(cols, row)) for row in rel.fetchall()}


def _embeddings(out: Path) -> dict[str, np.ndarray]:
    import duckdb

    rows = duckdb.sql(f"SELECT id, embedding FROM read_parquet('{out}/embeddings/*.parquet')").fetchall()
    return {i: np.asarray(e, dtype=np.float32) for i, e in rows}


@pytest.fixture(scope="module")
def reference_run(corpus, tmp_path_factory):
    root, data, reference = corpus
    out = tmp_path_factory.mktemp("ref") / "out"
    config = _config(root, "ref", {"embedding_scores": {"weights": {"reference": 1.0}}})
    assert main(["run", "--input", str(data), "--output", str(out), "--config", config,
                 "--quality-reference", str(reference), "--semantic-dedup", *RUNNER]) == 0
    return out, json.loads((out / "manifest.json").read_text())


def test_reference_score_decides_the_pools_and_reconciles(corpus, reference_run):
    _, _, reference = corpus
    out, manifest = reference_run
    assert manifest["reconciliation"]["holds"] is True, manifest["reconciliation"]
    assert manifest["written_rows"]["matches"] is True, manifest["written_rows"]
    docs = _docs(out)
    assert len(docs) == manifest["counts"]["kept"]
    for d in docs.values():  # weight on the reference alone: the pool score is the reference score
        assert d["score"] == pytest.approx(d["reference_score"], abs=1e-12)
        assert 0.0 <= d["reference_score"] <= 1.0 and 0.0 <= d["prototypicality"] <= 2.0
        assert d["heuristic_score"] is not None
    news = [d["reference_score"] for i, d in docs.items() if not i.startswith("tweet-")]
    tweets = [d["reference_score"] for i, d in docs.items() if i.startswith("tweet-")]
    assert np.mean(news) > np.mean(tweets) + 0.2, (np.mean(news), np.mean(tweets))
    pool0 = [i for i, d in docs.items() if d["pool"] == 0]
    assert sum(not i.startswith("tweet-") for i in pool0) >= 0.8 * len(pool0)
    es = manifest["embedding_scores"]
    assert es["reference"] == str(reference) and es["n_reference"] == N_REF
    assert es["reference_sha256"] == hashlib.sha256(reference.read_bytes()).hexdigest()
    assert es["training_auc"] > 0.9 and es["weights"] == {"reference": 1.0}


def test_semantic_section_and_planted_copies(reference_run):
    out, manifest = reference_run
    sem = manifest["semantic_dedup"]
    assert sem["eps"] == 0.1 and sem["similarity_threshold"] == pytest.approx(0.9)
    assert sem["removed"] == manifest["counts"]["removed"].get("semantic", 0) >= N_PLANTED - 1
    assert sem["clusters"]["n_leaves"] >= 1
    # one clustering serves dedup and prototypicality
    assert manifest["embedding_scores"]["clusters"] == sem["clusters"]


def test_embeddings_are_written_beside_the_pools(reference_run):
    out, manifest = reference_run
    vectors = _embeddings(out)
    docs = _docs(out)
    emb = manifest["embeddings"]
    assert emb["rows_written"] == emb["documents"] == len(vectors) == N_NEWS + N_TWEETS + N_PLANTED
    assert set(docs) <= set(vectors)  # joinable by id; semantic duplicates keep theirs too
    norms = np.linalg.norm(np.stack(list(vectors.values())), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-4) and len(next(iter(vectors.values()))) == 384


def test_stats_show_the_embedding_sections(reference_run, capsys):
    out, manifest = reference_run
    assert main(["stats", str(out)]) == 0
    text = capsys.readouterr().out
    assert "semantic " in text and "cosine > 0.9" in text and "training AUC" in text
    assert main(["stats", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["semantic_dedup"]["eps"] == 0.1 and data["embedding_scores"]["n_reference"] == N_REF


def test_mixed_weights_default_reference_float16_and_two_workers(corpus, reference_run, tmp_path):
    root, data, _ = corpus
    weights = {"heuristic": 0.5, "reference": 0.3, "prototypicality": -0.2}
    config = _config(root, "mixed", {"embed": {"dtype": "float16"},
                                     "embedding_scores": {"enabled": True, "weights": weights}})
    runs = {}
    for name, extra in (("one", []), ("two", ["--direct_num_workers=2",
                                             "--direct_running_mode=multi_processing"])):
        out = tmp_path / name
        assert main(["run", "--input", str(data), "--output", str(out), "--config", config,
                     "--embedding-scores", *RUNNER, *extra]) == 0
        runs[name] = (out, json.loads((out / "manifest.json").read_text()))
    out, manifest = runs["one"]
    assert manifest["embedding_scores"]["reference"].startswith("default")
    assert "semantic_dedup" not in manifest and manifest["embeddings"]["dtype"] == "float16"
    docs = _docs(out)
    norm = sum(abs(w) for w in weights.values())
    for d in docs.values():
        expected = (0.5 * d["heuristic_score"] + 0.3 * d["reference_score"] - 0.2 * d["prototypicality"]) / norm
        assert d["score"] == pytest.approx(expected, abs=1e-6)  # scores are rounded to 1e-6
    vectors = _embeddings(out)
    assert set(vectors) == set(docs)  # no semantic dedup: every embedded document is kept
    assert np.allclose(np.linalg.norm(np.stack(list(vectors.values())), axis=1), 1.0, atol=2e-3)
    # same run on two worker processes: other batches, the same vectors (fixed-shape batching,
    # fp32 fixed on the launcher), so the same scores and pools
    other = _docs(runs["two"][0])
    assert runs["two"][1]["config"]["embed"]["precision"] == manifest["config"]["embed"]["precision"] == "fp32"
    assert {i: d["pool"] for i, d in docs.items()} == {i: d["pool"] for i, d in other.items()}
    assert {i: d["score"] for i, d in docs.items()} == {i: d["score"] for i, d in other.items()}
    # the reference run (reference-only weight) and this one score the same documents differently
    ref_docs = _docs(reference_run[0])
    common = set(ref_docs) & set(docs)
    assert any(abs(ref_docs[i]["score"] - docs[i]["score"]) > 0.05 for i in common)


def test_bad_reference_files_are_one_line_errors(corpus, tmp_path, capsys):
    _, data, _ = corpus
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a fine reference text"}\nnot json\n')
    for path, message in ((tmp_path / "missing.jsonl", "cannot read quality reference"),
                          (bad, "bad.jsonl:2: expected a JSON object with a 'text' field")):
        code = main(["run", "--input", str(data), "--output", str(tmp_path / "out"),
                     "--quality-reference", str(path), *RUNNER])
        err = capsys.readouterr().err
        assert code == 2 and message in err, err
        assert not (tmp_path / "out" / "manifest.json").exists()


def test_embedding_scores_config_is_validated(tmp_path):
    from curate.orchestration.config import resolve_config

    path = tmp_path / "c.json"
    other_model = tmp_path / "models" / "other"  # a model folder that exists, not the packaged one
    other_model.mkdir(parents=True)
    for section, match in (
        ({"embedding_scores": {"enabled": True}}, "embedding_scores.enabled needs embed.enabled"),
        ({"embedding_scores": {"weights": {"refrence": 1.0}}}, "weights.refrence: unknown score"),
        ({"embedding_scores": {"weights": {"reference": 0}}}, "non-zero weight"),
        ({"embed": {"enabled": True, "model": str(other_model)}, "embedding_scores": {"enabled": True}},
         "give your own reference texts"),
        ({"embed": {"dtype": "int8"}}, "embed.dtype"),
    ):
        path.write_text(json.dumps(section))
        with pytest.raises(CurateError, match=match):
            resolve_config(str(path))
    # weights are taken whole (not merged with the defaults); the CLI switches imply embed
    path.write_text(json.dumps({"embedding_scores": {"weights": {"reference": 1.0}}}))
    config = resolve_config(str(path), quality_reference="ref.jsonl")
    assert config["embedding_scores"]["weights"] == {"reference": 1.0}
    assert config["embed"]["enabled"] and config["embedding_scores"]["enabled"]
    # made absolute on the launcher: workers open it from folders of their own
    assert config["embedding_scores"]["reference"] == os.path.abspath("ref.jsonl")


def test_catalog_joins_embeddings_with_documents(reference_run, tmp_path):
    from curate.pools.catalog import Catalog

    out, manifest = reference_run
    cat = Catalog(tmp_path / "ws")
    run_id = cat.register_run(out, status="complete")
    rows = cat.query(f"SELECT d.id, len(e.embedding), d.reference_score FROM docs d JOIN embeddings e "
                     f"USING (run_id, id) WHERE run_id = '{run_id}'").rows
    assert len(rows) == manifest["counts"]["kept"] and {r[1] for r in rows} == {384}
    empty = cat.query("SELECT count(*) FROM embeddings WHERE run_id = 'none'").rows
    assert empty == [(0,)]


def test_rerun_with_other_settings_reuses_cached_embeddings(corpus, tmp_path):
    import pyarrow.parquet as pq

    root, data, _ = corpus
    small = tmp_path / "small.jsonl"
    small.write_text("".join(data.read_text(encoding="utf-8").splitlines(keepends=True)[:20]), encoding="utf-8")
    cache = tmp_path / "cache"
    common = ["--input", str(small), "--semantic-dedup", "--runner=FnApiRunner", "--no-catalog",
              "--quiet", "--cache-dir", str(cache)]
    outs = []
    for eps in (0.1, 0.2):
        config = _config(root, f"eps{eps}", {"semantic_dedup": {"eps": eps}})
        out = tmp_path / f"eps{eps}"
        shards_before = sorted((cache / "embeddings").rglob("*.parquet")) if (cache / "embeddings").exists() else []
        assert main(["run", "--output", str(out), "--config", config, *common]) == 0
        shards = sorted((cache / "embeddings").rglob("*.parquet"))
        outs.append((out, shards_before, shards))
    (first, _, shards1), (second, before2, shards2) = outs
    assert sum(pq.ParquetFile(s).metadata.num_rows for s in shards1) == 20
    assert shards2 == before2 == shards1  # the second run embedded nothing new
    manifest = json.loads((second / "manifest.json").read_text())
    assert manifest["embeddings"]["cache_dir"] == str(cache / "embeddings")
    a, b = _embeddings(first), _embeddings(second)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_reference_texts_travel_with_the_job(corpus, tmp_path):
    """The reference file is deleted after the pipeline is built: the scores do not change."""
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from curate.pipelines.embedding_scores import REFERENCE_SCORE, EmbeddingScores
    from curate.pipelines.stage_configs import EmbedConfig, EmbeddingScoresConfig
    from curate.scorers.embedding import Embedder

    root, data, _ = corpus
    texts = [json.loads(line)["text"] for line in data.read_text(encoding="utf-8").splitlines()[:16]]
    emb = Embedder().encode(texts)
    docs = [{"id": f"d{i}", "text": t, "score": 0.5, "embedding": emb[i].tolist()} for i, t in enumerate(texts)]
    reference = tmp_path / "ref.jsonl"
    reference.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[:4]), encoding="utf-8")
    es = EmbeddingScoresConfig(enabled=True, reference=str(reference), negatives=8)
    embed = EmbedConfig(enabled=True, precision="fp32")

    def scores(delete_before_run: bool) -> dict:
        target = tmp_path / f"scores-{delete_before_run}.jsonl"
        p = beam.Pipeline(runner=FnApiRunner())
        pcoll = p | beam.Create(docs, reshuffle=False)
        out = pcoll | EmbeddingScores(es, embed, p | "NoClusters" >> beam.Create([None]))
        (out["documents"] | beam.Map(lambda d: json.dumps([d["id"], d[REFERENCE_SCORE]]))
         | beam.io.WriteToText(str(target), shard_name_template=""))
        if delete_before_run:
            reference.unlink()
        p.run().wait_until_finish()
        return dict(json.loads(line) for line in target.read_text().splitlines())

    present = scores(False)
    assert scores(True) == present and len(present) == 16
    assert len(set(present.values())) > 1  # a fitted classifier, not a constant

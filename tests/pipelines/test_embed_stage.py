"""Beam embedding and semantic-dedup stages on the FnApiRunner."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

beam = pytest.importorskip("apache_beam")
pytest.importorskip("faiss")
from apache_beam.runners.portability.fn_api_runner import FnApiRunner  # noqa: E402

from curate.pipelines.embed import EmbedDocuments  # noqa: E402
from curate.pipelines.semdedup import SemanticDedup, removed_pair_row  # noqa: E402
from curate.scorers.semdedup import SemDedupConfig, semantic_dedup  # noqa: E402


def run_collect(docs, transform, tmp_path):
    """Run docs | transform on the FnApiRunner and return the output (via a JSONL file)."""
    target = tmp_path / "out.jsonl"
    with beam.Pipeline(runner=FnApiRunner()) as p:
        (p | beam.Create(docs, reshuffle=False) | transform
         | beam.Map(json.dumps) | beam.io.WriteToText(str(target), shard_name_template=""))
    return [json.loads(line) for line in target.read_text().splitlines()]


@pytest.fixture(scope="module")
def news_docs(corpora_dir):
    docs = []
    with gzip.open(corpora_dir / "news_articles.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            docs.append({"id": f"news-{len(docs)}", "text": row["text"][:600], "source": "news"})
            if len(docs) == 50:
                break
    return docs


def test_embed_stage_matches_plain_encode(news_docs, tmp_path):
    from curate.scorers.embedding import Embedder

    out = run_collect(news_docs, EmbedDocuments(cache_dir=str(tmp_path / "cache"), max_batch_size=32),
                      tmp_path)
    assert sorted(d["id"] for d in out) == sorted(d["id"] for d in news_docs)
    by_id = {d["id"]: d for d in out}
    got = np.asarray([by_id[d["id"]]["embedding"] for d in news_docs], dtype=np.float32)
    assert got.shape == (50, 384)
    assert by_id["news-0"]["text"] == news_docs[0]["text"] and by_id["news-0"]["source"] == "news"
    ref = Embedder().encode([d["text"] for d in news_docs])
    cos = (got * ref).sum(axis=1)
    assert cos.min() > 0.999
    assert list((tmp_path / "cache").rglob("*.parquet")), "the embedding cache was not written"


def planted(n_base=600, n_dups=60, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n_base, dim))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    dups = base[:n_dups] + 0.01 * rng.normal(size=(n_dups, dim))
    x = np.concatenate([base, dups]).astype(np.float32)
    ids = [f"b{i}" for i in range(n_base)] + [f"d{i}" for i in range(n_dups)]
    quality = [0.9] * n_base + [0.2] * n_dups
    docs = [{"id": i, "embedding": v.tolist(), "quality": q} for i, v, q in zip(ids, x, quality)]
    return docs, ids, x, np.asarray(quality)


def test_semdedup_stage_equals_in_memory_result(tmp_path):
    docs, ids, x, quality = planted()
    cfg = SemDedupConfig(eps=0.05, n_clusters=4, max_cluster_size=300)
    out = run_collect(docs, SemanticDedup(cfg, quality_field="quality"), tmp_path)
    assert len(out) == len(docs)
    ref = semantic_dedup(ids, x, quality=quality, config=cfg)
    expected = {ids[i]: ref.matched_id[i] for i in np.flatnonzero(ref.is_duplicate)}
    got = {d["id"]: d["semdedup_matched_id"] for d in out if d["semdedup_duplicate"]}
    assert got == expected
    assert len(got) >= 55 and all(k.startswith("d") for k in got)
    assert all(type(d["semdedup_cluster"]) is int for d in out)
    assert all(0.0 <= d["prototypicality"] <= 2.0 for d in out)
    row = removed_pair_row(next(d for d in out if d["semdedup_duplicate"]))
    assert row["method"] == "semantic" and row["kept_id"].startswith("b") and row["similarity"] > 0.95


def test_semdedup_stage_same_under_multi_processing(tmp_path):
    """--direct_running_mode=multi_processing (2 worker processes) gives the same answer."""
    from apache_beam.options.pipeline_options import PipelineOptions

    docs, ids, x, quality = planted(seed=1)
    cfg = SemDedupConfig(eps=0.05, n_clusters=4, max_cluster_size=300)
    target = tmp_path / "mp.jsonl"
    opts = PipelineOptions(direct_running_mode="multi_processing", direct_num_workers=2)
    with beam.Pipeline(runner="DirectRunner", options=opts) as p:
        (p | beam.Create(docs, reshuffle=False) | SemanticDedup(cfg, quality_field="quality")
         | beam.Map(lambda d: json.dumps([d["id"], d["semdedup_duplicate"], d["semdedup_matched_id"]]))
         | beam.io.WriteToText(str(target), shard_name_template=""))
    got = {r[0]: r[2] for r in map(json.loads, target.read_text().splitlines()) if r[1]}
    ref = semantic_dedup(ids, x, quality=quality, config=cfg)
    assert got == {ids[i]: ref.matched_id[i] for i in np.flatnonzero(ref.is_duplicate)}
    assert len(got) >= 55


@pytest.mark.slow  # copies MiniLM (~90 MB) twice and loads it: 30-130 s on 2 busy cores
def test_a_local_model_folder_is_staged_and_not_read_by_workers(news_docs, tmp_path):
    """The launcher's model folder is gone when the pipeline runs: workers use the staged copy."""
    import shutil

    from apache_beam.options.pipeline_options import PipelineOptions

    from curate.pipelines.job_files import set_job_files_dir
    from curate.scorers.embedding import Embedder, resolve_model_path

    folder = tmp_path / "my-model"
    shutil.copytree(resolve_model_path(), folder)
    docs = news_docs[:12]
    target = tmp_path / "out.jsonl"
    options = PipelineOptions()
    set_job_files_dir(options, str(tmp_path / "staging" / "job_files"))
    p = beam.Pipeline(runner=FnApiRunner(), options=options)
    (p | beam.Create(docs, reshuffle=False) | EmbedDocuments(model=str(folder), min_batch_size=4, max_batch_size=8)
     | beam.Map(json.dumps) | beam.io.WriteToText(str(target), shard_name_template=""))
    folder.rename(tmp_path / "moved-away")  # after building, before running
    p.run().wait_until_finish()
    by_id = {d["id"]: d["embedding"] for d in map(json.loads, target.read_text().splitlines())}
    got = np.asarray([by_id[d["id"]] for d in docs], dtype=np.float32)
    ref = Embedder().encode([d["text"] for d in docs])  # same weights, packaged copy
    np.testing.assert_allclose(got, ref, atol=1e-6)
    assert list((tmp_path / "staging" / "job_files").glob("model-*/MANIFEST.json"))

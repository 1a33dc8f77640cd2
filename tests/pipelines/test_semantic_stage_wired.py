"""`curate run` with the embed + semantic-dedup stages switched on (they are off by default).

A small corpus of real news articles plus planted paraphrase-level copies (the same article
with its sentences reordered and a boilerplate header added) runs through the CLI twice on
the FnApiRunner: once with `embed` and `semantic_dedup` enabled, once without. Both runs use
a stricter near-dedup threshold (0.95) so the planted copies (word-bigram Jaccard ~0.85 to
their originals) pass near dedup and only the semantic stage can catch them.
"""
from __future__ import annotations

import gzip
import json
import random
import re
from pathlib import Path

import pytest

pytest.importorskip("faiss")
pytest.importorskip("sentence_transformers")

from curate.orchestration.cli import main  # noqa: E402
from curate.orchestration.errors import CurateError  # noqa: E402

RUNNER = ["--runner=FnApiRunner"]
N_REAL, N_PLANTED, MAX_SENTENCES = 40, 8, 8
HEADER = ("Home | News | Sports | Weather | Opinion | Subscribe to our newsletter for the latest "
          "updates and breaking news. Advertisement\n\n")
SPLIT = re.compile(r"(?<=[.!?])\s+")


def _paraphrase(text: str, seed: int) -> str:
    sentences = SPLIT.split(text.strip())
    rng = random.Random(seed)
    shuffled = sentences[:]
    while shuffled == sentences:
        rng.shuffle(shuffled)
    return HEADER + " ".join(shuffled)


@pytest.fixture(scope="module")
def corpus(corpora_dir, tmp_path_factory):
    texts = []
    with gzip.open(corpora_dir / "news_articles.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            sentences = SPLIT.split(json.loads(line)["text"].strip())
            if len(sentences) < 5:
                continue
            text = " ".join(sentences[:MAX_SENTENCES])  # short: keeps CPU embedding fast
            if len(text.split()) >= 80 and text not in texts:
                texts.append(text)
            if len(texts) == N_REAL:
                break
    assert len(texts) == N_REAL
    rows = [{"id": f"news-{i}", "text": t} for i, t in enumerate(texts)]
    planted = {f"para-{i}": f"news-{i}" for i in range(N_PLANTED)}  # copy id -> original id
    rows += [{"id": f"para-{i}", "text": _paraphrase(texts[i], i)} for i in range(N_PLANTED)]
    random.Random(7).shuffle(rows)
    root = tmp_path_factory.mktemp("semantic")
    data = root / "news.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return data, planted, root


def _config(root: Path, name: str, semantic: bool) -> str:
    config = {"near_dedup": {"threshold": 0.95}}
    if semantic:
        config["embed"] = {"enabled": True, "device": "cpu"}
        config["semantic_dedup"] = {"enabled": True}
    path = root / f"{name}.json"
    path.write_text(json.dumps(config))
    return str(path)


def _run(data: Path, out: Path, config: str) -> dict:
    assert main(["run", "--input", str(data), "--output", str(out), "--config", config, *RUNNER]) == 0
    return json.loads((out / "manifest.json").read_text())


def _dedup_rows(out: Path) -> list[tuple]:
    import duckdb

    return duckdb.sql(f"SELECT removed_id, kept_id, method, similarity FROM "
                      f"read_parquet('{out}/dedup/*.parquet', hive_partitioning=false)").fetchall()


def _pool_ids(out: Path) -> set[str]:
    import duckdb

    rows = duckdb.sql(f"SELECT id FROM read_parquet('{out}/pools/*/*.parquet', hive_partitioning=false)")
    return {r[0] for r in rows.fetchall()}


@pytest.fixture(scope="module")
def runs(corpus, tmp_path_factory):
    data, planted, root = corpus
    on = tmp_path_factory.mktemp("on") / "out"
    off = tmp_path_factory.mktemp("off") / "out"
    return {"on": (on, _run(data, on, _config(root, "on", True))),
            "off": (off, _run(data, off, _config(root, "off", False)))}


def test_semantic_stage_removes_planted_paraphrases_and_reconciles(corpus, runs):
    _, planted, _ = corpus
    out, manifest = runs["on"]
    assert manifest["reconciliation"]["holds"] is True, manifest["reconciliation"]
    assert manifest["written_rows"]["matches"] is True, manifest["written_rows"]
    assert manifest["config"]["semantic_dedup"]["enabled"] is True
    counts = manifest["counts"]
    semantic = [r for r in _dedup_rows(out) if r[2] == "semantic"]
    assert counts["removed"].get("semantic", 0) == len(semantic)
    # every semantic row pairs a planted copy with its original (either may be the one kept:
    # ranking "quality" keeps the higher heuristic score), with cosine above 1 - eps
    pairs = {}
    for removed, kept, _, similarity in semantic:
        copy = removed if removed in planted else kept
        assert copy in planted and {removed, kept} == {copy, planted[copy]}, (removed, kept)
        assert similarity > 0.9
        pairs[copy] = removed
    assert len(pairs) >= N_PLANTED - 1, f"found {sorted(pairs)} of {sorted(planted)}"
    assert counts["kept"] == N_REAL + N_PLANTED - len(semantic)
    pool_ids = _pool_ids(out)
    assert not pool_ids & {r[0] for r in semantic}
    assert len(pool_ids) == counts["kept"]


def test_default_run_removes_nothing_semantically(corpus, runs):
    _, planted, _ = corpus
    out, manifest = runs["off"]
    assert manifest["reconciliation"]["holds"] is True
    assert manifest["config"]["semantic_dedup"]["enabled"] is False
    assert manifest["config"]["embed"]["enabled"] is False
    assert "semantic" not in manifest["counts"]["removed"]
    assert not [r for r in _dedup_rows(out) if r[2] == "semantic"]
    # the planted copies survive near dedup: only the semantic stage catches them
    assert set(planted) <= _pool_ids(out)


def test_semantic_dedup_requires_embed(tmp_path):
    from curate.orchestration.config import resolve_config

    path = tmp_path / "c.json"
    path.write_text(json.dumps({"semantic_dedup": {"enabled": True}}))
    with pytest.raises(CurateError, match="embed.enabled"):
        resolve_config(str(path))
    path.write_text(json.dumps({"semantic_dedup": {"ranking": "best"}}))
    with pytest.raises(CurateError, match="semantic_dedup.ranking"):
        resolve_config(str(path))
    path.write_text(json.dumps({"embed": {"modle": "x"}}))
    with pytest.raises(CurateError, match="unknown key 'embed.modle'"):
        resolve_config(str(path))


def test_int8_backend_through_the_cli(corpus, runs, tmp_path):
    """`--embed-backend openvino-int8` runs the same stage on the int8 model (extra fast-cpu):
    the manifest says which backend embedded, and the planted copies are still found."""
    from curate.scorers import embedding_backends as eb

    assert runs["on"][1]["config"]["embed"]["backend"] == "torch"  # resolved, not null
    assert runs["on"][1]["embeddings"]["backend"] == "torch"
    if not eb.backend_available("openvino-int8"):
        pytest.skip("openvino/nncf not installed (extra fast-cpu)")
    data, planted, root = corpus
    out = tmp_path / "int8"
    assert main(["run", "--input", str(data), "--output", str(out), "--config", _config(root, "on", True),
                 "--embed-backend", "openvino-int8", *RUNNER]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["embed"]["backend"] == "openvino-int8"
    assert manifest["embeddings"]["backend"] == "openvino-int8"
    assert manifest["reconciliation"]["holds"] is True
    found = {r[0] if r[0] in planted else r[1] for r in _dedup_rows(out) if r[2] == "semantic"}
    assert len(found & set(planted)) >= N_PLANTED - 1, sorted(found)

"""Embedding quality scores: logistic regression, reference classifier, prototypicality, combination."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from curate.scorers.embedding_quality import (
    LogisticRegression,
    ReferenceClassifier,
    combine_scores,
    decode_int8,
    encode_int8,
    load_default_reference,
    prototypicality,
    read_reference_texts,
)


def test_logistic_regression_matches_scikit_learn_objective():
    sklearn = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 10))
    y = (X[:, 0] - 0.5 * X[:, 1] + 0.3 * rng.normal(size=400) > 0.4).astype(int)
    ours = LogisticRegression(C=0.5).fit(X, y)
    ref = sklearn.LogisticRegression(C=0.5, class_weight="balanced", tol=1e-10, max_iter=5000).fit(X, y)
    np.testing.assert_allclose(ours.coef_, ref.coef_[0], atol=2e-3)
    assert ours.intercept_ == pytest.approx(ref.intercept_[0], abs=2e-3)
    assert (ours.predict(X) == y).mean() > 0.85
    again = LogisticRegression.from_dict(json.loads(json.dumps(ours.to_dict())))
    np.testing.assert_allclose(again.predict_proba(X), ours.predict_proba(X))
    with pytest.raises(ValueError):
        LogisticRegression().fit(X, np.zeros(400))


def test_int8_roundtrip_keeps_direction():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    back = decode_int8(json.loads(json.dumps(encode_int8(x))))
    assert ((back * x).sum(axis=1)).min() > 0.999


def test_default_reference_ships_and_names_its_model():
    ref = load_default_reference()
    assert ref.shape == (600, 384)
    np.testing.assert_allclose(np.linalg.norm(ref, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="supply your own reference"):
        load_default_reference("some-other-model")


def test_read_reference_jsonl(tmp_path):
    path = tmp_path / "ref.jsonl"
    path.write_text('{"text": "A careful essay."}\n\n{"text": "Another one."}\n')
    assert read_reference_texts(path) == ["A careful essay.", "Another one."]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"body": "x"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_reference_texts(bad)


def test_prototypicality_is_distance_to_nearest_centroid():
    centroids = np.eye(3, dtype=np.float32)
    x = np.array([[1, 0, 0], [1, 1, 0], [0, 0, -1]], dtype=np.float32)
    p = prototypicality(x, centroids)
    np.testing.assert_allclose(p, [0.0, 1 - 1 / np.sqrt(2), 1.0], atol=1e-6)


def test_combine_scores_weights_and_missing_values():
    s = combine_scores({"heuristic": [1.0, 0.0, np.nan], "reference": [0.0, 1.0, 0.5]},
                       {"heuristic": 3.0, "reference": 1.0})
    np.testing.assert_allclose(s, [0.75, 0.25, 0.5])
    # negative prototypicality weight favours typical documents
    s = combine_scores({"heuristic": [0.5, 0.5], "prototypicality": [0.1, 0.9]},
                       {"heuristic": 1.0, "prototypicality": -1.0})
    assert s[0] > s[1]
    with pytest.raises(ValueError):
        combine_scores({"heuristic": [1.0]}, {"reference": 1.0})


def test_reference_classifier_prefers_clean_prose_over_raw_web(corpora_dir):
    """Default reference vs a raw Common Crawl sample: held-out edited prose scores higher."""
    from curate.scorers.embedding import Embedder

    def texts(name, n, skip=0):
        with gzip.open(corpora_dir / name, "rt", encoding="utf-8") as f:
            rows = [json.loads(line)["text"] for line in f]
        rows = [t[:800] for t in rows if len(t.split()) >= 30]
        return rows[skip:skip + n]

    embedder = Embedder(device="cpu")
    raw_train = embedder.encode(texts("common_crawl_raw.jsonl.gz", 60))
    clf = ReferenceClassifier(C=1.0).fit(load_default_reference(), raw_train)
    raw_held = clf.score(embedder.encode(texts("common_crawl_raw.jsonl.gz", 25, skip=60)))
    prose_held = clf.score(embedder.encode(texts("wikipedia_30.jsonl.gz", 25)))
    assert np.all((0 <= raw_held) & (raw_held <= 1))
    assert prose_held.mean() > raw_held.mean() + 0.2, (prose_held.mean(), raw_held.mean())
    clone = ReferenceClassifier.from_dict(json.loads(json.dumps(clf.to_dict())))
    np.testing.assert_allclose(clone.score(raw_train[:3]), clf.score(raw_train[:3]), rtol=1e-6)

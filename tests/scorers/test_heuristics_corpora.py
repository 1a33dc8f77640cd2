"""Heuristic scores on real text: relationships between corpora that the rules
should produce, not hard-coded numbers. Small slices keep this fast."""
from __future__ import annotations

import gzip
import itertools
import json
import statistics

import pytest

from curate.scorers.heuristics import HeuristicScorer

SCORER = HeuristicScorer()


def _texts(corpora_dir, name, limit):
    with gzip.open(corpora_dir / f"{name}.jsonl.gz", "rt", encoding="utf-8") as fh:
        rows = (json.loads(line) for line in fh)
        return [r["text"] for r in itertools.islice(rows, limit) if r.get("text")]


@pytest.fixture(scope="module")
def scored(corpora_dir):
    limits = {"wikipedia_30": 30, "c4_sample_a": 300, "common_crawl_raw": 697,
              "news_articles": 400, "health_tweets": 2000}
    return {name: [SCORER.score(t) for t in _texts(corpora_dir, name, n)]
            for name, n in limits.items()}


def _mean_score(results):
    return statistics.fmean(r.score for r in results)


def _pass_rate(results, family):
    return statistics.fmean(r.passed[family] for r in results)


def test_mean_score_orders_wikipedia_over_c4_over_raw_common_crawl(scored):
    wiki, c4, raw = (_mean_score(scored[n]) for n in ("wikipedia_30", "c4_sample_a", "common_crawl_raw"))
    assert wiki > c4 > raw


def test_news_articles_outscore_tweets(scored):
    assert _mean_score(scored["news_articles"]) > _mean_score(scored["health_tweets"]) + 0.2


def test_wikipedia_mostly_passes_gopher_and_raw_crawl_fails_more(scored):
    for family in ("gopher_quality", "gopher_repetition"):
        assert _pass_rate(scored["wikipedia_30"], family) >= 0.9
        assert _pass_rate(scored["wikipedia_30"], family) > _pass_rate(scored["common_crawl_raw"], family)
    # C4 was filtered with (a variant of) these line rules, raw crawl was not.
    assert _pass_rate(scored["c4_sample_a"], "c4") > _pass_rate(scored["common_crawl_raw"], "c4")
    assert _pass_rate(scored["c4_sample_a"], "fineweb") > _pass_rate(scored["common_crawl_raw"], "fineweb")


def test_tweets_fail_gopher_for_word_count(scored):
    tweets = scored["health_tweets"]
    word_count_failures = sum("gopher_quality:word_count<50" in r.reasons for r in tweets)
    assert word_count_failures / len(tweets) > 0.99
    assert _pass_rate(tweets, "gopher_quality") < 0.01


def test_raw_crawl_navigation_pages_score_below_its_prose(scored):
    # Pages that are mostly short lines (menus, link lists) against the rest.
    raw = scored["common_crawl_raw"]
    nav = [r.score for r in raw if r.features["fineweb_short_line_ratio"] >= 0.67]
    prose = [r.score for r in raw if r.features["fineweb_short_line_ratio"] < 0.3]
    assert len(nav) >= 20 and len(prose) >= 20
    assert statistics.fmean(nav) < statistics.fmean(prose)


def test_every_real_document_has_finite_features_and_a_unit_score(scored):
    for results in scored.values():
        for r in results:
            assert 0.0 <= r.score <= 1.0
            assert len(r.features) == len(SCORER.feature_names)

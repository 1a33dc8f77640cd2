"""Score every document with the heuristic scorers, then apply the (separate) keep/drop rule.

Scoring never drops anything. The keep/drop rule comes from config:
    filter: {drop_failed: [rule families...], min_score: float | null}
The default drops nothing and lets the score decide the pool. A dropped document is counted
under exactly one reason: the first failed family in `drop_failed` order, else `min_score`.
"""
from __future__ import annotations

import json

import apache_beam as beam

from curate.pipelines import counters
from curate.pipelines.stage_configs import FilterConfig, ScoreConfig
from curate.scorers.text import estimate_tokens

FILTERED = "filtered"


def feature_column(name: str) -> str:
    return f"f_{name}"


class _Score(beam.DoFn):
    def __init__(self, heuristics_config: dict | None):
        self.heuristics_config = heuristics_config

    def setup(self):
        from curate.scorers.heuristics import HeuristicScorer

        self.scorer = HeuristicScorer(self.heuristics_config)

    def process(self, doc):
        result = self.scorer.score(doc["_norm"])
        out = {
            **doc,
            "chars": len(doc["text"]),
            "tokens": estimate_tokens(doc["text"]),
            "score": float(result.score),
            "failed_rules": ",".join(f for f, ok in result.passed.items() if not ok),
            "reasons": json.dumps(result.reasons),
        }
        for name, value in result.features.items():
            out[feature_column(name)] = float(value)
        yield out


def drop_reason(doc: dict, drop_failed: list[str], min_score: float | None) -> str | None:
    """The reason a scored document is dropped under the keep/drop rule, or None to keep it."""
    failed = set(doc["failed_rules"].split(",")) if doc["failed_rules"] else set()
    for family in drop_failed:
        if family in failed:
            return family
    if min_score is not None and doc["score"] < min_score:
        return "min_score"
    return None


class _KeepDrop(beam.DoFn):
    def __init__(self, drop_failed: list[str], min_score: float | None):
        self.drop_failed = list(drop_failed)
        self.min_score = min_score

    def process(self, doc):
        reason = drop_reason(doc, self.drop_failed, self.min_score)
        if reason is None:
            yield doc
            return
        counters.inc(counters.FILTERED_PREFIX + reason)
        yield beam.pvalue.TaggedOutput(FILTERED, {
            "id": doc["id"], "source": doc["source"], "reason": reason, "score": doc["score"]})


class Score(beam.PTransform):
    """documents -> scored documents (score, failed_rules, reasons, chars, tokens, f_*).

    ``heuristics_config`` is the `score.heuristics` mapping (see ScoreConfig); a bad one
    raises ValueError here, before any worker starts.
    """

    reads = ("text", "_norm")
    SCORE_FIELDS = ("chars", "tokens", "score", "failed_rules", "reasons")

    def __init__(self, heuristics_config: dict | None = None):
        super().__init__()
        config = ScoreConfig(heuristics=heuristics_config)
        self.heuristics_config = config.heuristics
        # the feature columns depend on the scorer, so `adds` is known per instance
        self.adds = (*self.SCORE_FIELDS, *(feature_column(n) for n in config.feature_names()))

    @classmethod
    def from_config(cls, config: ScoreConfig) -> "Score":
        return cls(config.heuristics)

    def expand(self, docs):
        return docs | "HeuristicScores" >> beam.ParDo(_Score(self.heuristics_config))


class KeepDropRule(beam.PTransform):
    """scored documents -> {"documents": kept, "filtered": rows for dropped documents}."""

    reads = ("id", "source", "score", "failed_rules")
    adds = ()

    def __init__(self, drop_failed: list[str] | None = None, min_score: float | None = None):
        super().__init__()
        self.drop_failed = list(drop_failed or [])
        self.min_score = min_score

    @classmethod
    def from_config(cls, config: FilterConfig) -> "KeepDropRule":
        return cls(list(config.drop_failed), config.min_score)

    def expand(self, docs):
        out = docs | "ApplyRule" >> beam.ParDo(_KeepDrop(self.drop_failed, self.min_score)).with_outputs(
            FILTERED, main="documents")
        return {"documents": out.documents, "filtered": out[FILTERED]}

"""KeepDropRule alone: drops nothing by default; a dropped document gets one filtered row and
one counter, under the first failed family in `drop_failed` order, else `min_score`."""
import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from curate.pipelines.scoring import KeepDropRule
from curate.pipelines.stage_configs import FilterConfig
from tests.pipelines.stage_helpers import fnapi_pipeline, run_counting


def scored(doc_id: str, failed_rules: str, score: float) -> dict:
    """The fields the rule reads, as the Score stage writes them, plus a feature."""
    return {"id": doc_id, "text": f"text of {doc_id}", "source": "web", "score": score,
            "failed_rules": failed_rules, "reasons": "[]", "f_word_count": 3.0}


DOCS = [
    scored("a", "", 0.9),
    scored("b", "c4", 0.7),
    scored("c", "gopher_quality,c4", 0.3),
    scored("d", "", 0.2),
    scored("e", "fineweb", 0.5),
    scored("f", "", 0.4),  # exactly at min_score below: kept (the rule is score < min_score)
]


def keep_drop(**settings) -> KeepDropRule:
    """The stage as `build_curation` makes it: from its typed `filter` config."""
    return KeepDropRule.from_config(FilterConfig(**settings))


def filtered_counters(found: dict) -> dict:
    return {k: v for k, v in found.items() if k.startswith("filtered.")}


def test_default_rule_drops_nothing():
    p = fnapi_pipeline()
    out = p | beam.Create(DOCS) | keep_drop()
    assert_that(out["documents"], equal_to(DOCS), label="AllKept")
    assert_that(out["filtered"], equal_to([]), label="NothingFiltered")
    assert filtered_counters(run_counting(p)) == {}


@pytest.mark.parametrize("drop_failed, c_reason", [
    (["c4", "gopher_quality"], "c4"),
    (["gopher_quality", "c4"], "gopher_quality"),  # the rule's order decides, not the document's
])
def test_each_dropped_document_is_counted_under_one_reason(drop_failed, c_reason):
    p = fnapi_pipeline()
    out = p | beam.Create(DOCS) | keep_drop(drop_failed=drop_failed, min_score=0.4)
    assert_that(out["documents"] | beam.Map(lambda d: d["id"]), equal_to(["a", "e", "f"]), label="Kept")
    assert_that(out["filtered"], equal_to([
        {"id": "b", "source": "web", "reason": "c4", "score": 0.7},
        {"id": "c", "source": "web", "reason": c_reason, "score": 0.3},
        {"id": "d", "source": "web", "reason": "min_score", "score": 0.2},
    ]), label="Filtered")
    expected = {"filtered.c4": 1, "filtered.min_score": 1}
    expected[f"filtered.{c_reason}"] = expected.get(f"filtered.{c_reason}", 0) + 1
    assert filtered_counters(run_counting(p)) == expected


def test_kept_documents_pass_through_unchanged():
    p = fnapi_pipeline()
    out = p | beam.Create(DOCS) | keep_drop(drop_failed=["fineweb"])
    assert_that(out["documents"], equal_to([d for d in DOCS if d["id"] != "e"]), label="Kept")
    assert_that(out["filtered"] | beam.Map(lambda r: (r["id"], r["reason"])),
                equal_to([("e", "fineweb")]), label="Filtered")
    assert filtered_counters(run_counting(p)) == {"filtered.fineweb": 1}

"""Score alone: every document comes out once, with features, per-family failures, reasons
and a combined score in [0, 1]; its heuristics config reaches the scorer."""
import json
import math

import apache_beam as beam
import pytest
from apache_beam.testing.util import BeamAssertException, assert_that, equal_to

from curate.pipelines.scoring import Score, feature_column
from curate.pipelines.stage_configs import ScoreConfig
from curate.scorers.heuristics import FAMILIES, FEATURE_NAMES
from curate.scorers.text import estimate_tokens
from tests.pipelines.stage_helpers import document, fnapi_pipeline

CLEAN = """The committee met on Tuesday to review the proposal for a new library in the town centre.
Several members argued that the old building could be repaired at a lower cost than a new one.
Others pointed out that the roof had leaked for years and that the wiring was no longer safe.
After a long discussion, the chair asked the engineers to prepare a detailed estimate by March.
Residents who attended the meeting said they would support any plan that kept the reading rooms open.
The council will publish the estimate online and invite comments before making a final decision."""
LOREM = CLEAN.replace("Tuesday", "Tuesday (lorem ipsum)")  # fails only the C4 lorem-ipsum rule
SPAM = "click here\n" * 30  # fails every family

DOCS = [document("clean", CLEAN), document("lorem", LOREM), document("spam", SPAM)]
FEATURES = [feature_column(n) for n in FEATURE_NAMES]


def well_formed(by_id, adds):
    """Matcher: one scored row per input, input fields kept plus exactly the stage's declared
    `adds`, every output field sane."""
    def check(rows):
        got = {r["id"]: r for r in rows}
        if len(rows) != len(DOCS) or set(got) != {d["id"] for d in DOCS}:
            raise BeamAssertException(f"scoring must keep every document once: {sorted(got)}")
        for doc in DOCS:
            row = got[doc["id"]]
            if any(row[k] != v for k, v in doc.items()):
                raise BeamAssertException(f"{doc['id']}: input fields changed")
            if set(row) != set(doc) | set(adds):
                raise BeamAssertException(f"{doc['id']}: added {sorted(set(row) - set(doc))}, declared {adds}")
            if row["chars"] != len(doc["text"]) or row["tokens"] != estimate_tokens(doc["text"]):
                raise BeamAssertException(f"{doc['id']}: chars/tokens {row['chars']}/{row['tokens']}")
            if not (isinstance(row["score"], float) and 0.0 <= row["score"] <= 1.0):
                raise BeamAssertException(f"{doc['id']}: score {row['score']!r} not in [0, 1]")
            features = [k for k in row if k.startswith("f_")]
            if features != FEATURES or not all(
                    isinstance(row[f], float) and math.isfinite(row[f]) for f in features):
                raise BeamAssertException(f"{doc['id']}: features {features}")
            failed = set(row["failed_rules"].split(",")) if row["failed_rules"] else set()
            reasons = json.loads(row["reasons"])
            if not failed <= set(FAMILIES) or {r.split(":")[0] for r in reasons} != failed:
                raise BeamAssertException(f"{doc['id']}: failed {failed} vs reasons {reasons}")
            by_id[doc["id"]](row)
    return check


def expect(failed_rules: str, reasons=None):
    def check(row):
        if row["failed_rules"] != failed_rules:
            raise BeamAssertException(f"{row['id']}: failed_rules {row['failed_rules']!r} != {failed_rules!r}")
        if reasons is not None and json.loads(row["reasons"]) != reasons:
            raise BeamAssertException(f"{row['id']}: reasons {row['reasons']}")
    return check


def test_scores_every_document_with_features_failures_and_reasons():
    p = fnapi_pipeline()
    stage = Score.from_config(ScoreConfig())
    scored = p | beam.Create(DOCS) | stage
    assert_that(scored, well_formed({
        "clean": expect("", []),
        "lorem": expect("c4", ["c4:lorem_ipsum"]),
        "spam": expect(",".join(FAMILIES)),  # in family order
    }, stage.adds), label="WellFormed")
    # the clean text scores above the one that fails C4, which scores above the spam
    assert_that(scored | beam.Map(lambda r: (r["id"], r["score"])) | beam.combiners.ToList()
                | beam.Map(lambda pairs: [i for i, _ in sorted(pairs, key=lambda x: -x[1])]),
                equal_to([["clean", "lorem", "spam"]]), label="Ranking")
    p.run().wait_until_finish()


def test_heuristics_config_reaches_the_scorer():
    config = {"rules": {"c4.lorem_ipsum": {"enabled": False}}}
    p = fnapi_pipeline()
    stage = Score.from_config(ScoreConfig(heuristics=config))
    scored = p | beam.Create(DOCS) | stage
    assert_that(scored, well_formed({
        "clean": expect(""),
        "lorem": expect("", []),  # the disabled rule no longer fails it
        "spam": expect(",".join(FAMILIES)),
    }, stage.adds))
    p.run().wait_until_finish()


def test_a_bad_heuristics_config_fails_before_any_pipeline():
    with pytest.raises(ValueError, match="unknown rule"):
        ScoreConfig(heuristics={"rules": {"c4.no_such_rule": {}}})
    with pytest.raises(ValueError, match="unknown rule"):
        Score({"rules": {"c4.no_such_rule": {}}})

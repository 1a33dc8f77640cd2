"""ExactDedup alone: groups by the normalised-text hash, the smallest id survives."""
import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from curate.pipelines.exact_dedup import ExactDedup
from tests.pipelines.stage_helpers import document, fnapi_pipeline, run_counting

TEXT = "The quick brown fox jumps over the lazy dog.\nA second line of prose."


def test_smallest_id_survives_and_every_copy_gets_a_removal_row():
    # three copies that differ only in whitespace (equal once normalised); ids compare as
    # strings, so "a10" < "a9" < "b7"
    copies = [
        document("b7", TEXT, position=0),
        document("a9", "  The quick  brown fox jumps over the lazy dog.\r\nA second line of prose.  "),
        document("a10", "The quick brown fox\tjumps over the lazy dog. \nA second line of prose.\n\n"),
    ]
    unique = document("c1", "Something else entirely, with its own words.")
    assert len({d["text_hash"] for d in copies}) == 1  # the test's premise
    survivor = copies[2]

    p = fnapi_pipeline()
    out = p | beam.Create(copies + [unique]) | ExactDedup()
    # the survivor passes through unchanged: original text (not the normalised one) and all fields
    assert_that(out["documents"], equal_to([survivor, unique]), label="Survivors")
    assert_that(out["dedup"], equal_to([
        {"removed_id": "a9", "kept_id": "a10", "method": "exact", "similarity": 1.0},
        {"removed_id": "b7", "kept_id": "a10", "method": "exact", "similarity": 1.0},
    ]), label="DedupRows")
    assert run_counting(p).get("removed.exact") == 2


def test_several_groups_are_deduplicated_independently():
    group_a = [document(f"a{i}", "alpha text " * 5) for i in (3, 1, 2)]
    group_b = [document(f"b{i}", "beta text " * 5) for i in (9, 8)]
    p = fnapi_pipeline()
    out = p | beam.Create(group_a + group_b) | ExactDedup()
    assert_that(out["documents"] | beam.Map(lambda d: d["id"]), equal_to(["a1", "b8"]), label="Survivors")
    assert_that(out["dedup"] | beam.Map(lambda r: (r["removed_id"], r["kept_id"])),
                equal_to([("a2", "a1"), ("a3", "a1"), ("b9", "b8")]), label="Pairs")
    assert run_counting(p).get("removed.exact") == 3


def test_distinct_texts_remove_nothing():
    # case and punctuation are not normalised away: these are three different texts
    docs = [document("1", "Hello world."), document("2", "hello world."), document("3", "Hello world!")]
    p = fnapi_pipeline()
    out = p | beam.Create(docs) | ExactDedup()
    assert_that(out["documents"], equal_to(docs), label="AllSurvive")
    assert_that(out["dedup"], equal_to([]), label="NoRows")
    assert run_counting(p).get("removed.exact", 0) == 0

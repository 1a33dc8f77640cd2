from curate.scorers.text import content_id, estimate_tokens, normalise_text, text_hash


def test_normalise_collapses_spaces_but_keeps_lines():
    raw = "Hello \t  world  \r\nsecond\u00a0line   \n\n\n\n\nthird"
    assert normalise_text(raw) == "Hello world\nsecond line\n\nthird"


def test_normalise_nfc_makes_composed_and_decomposed_equal():
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    assert composed != decomposed
    assert normalise_text(composed) == normalise_text(decomposed)
    assert text_hash(normalise_text(composed)) == text_hash(normalise_text(decomposed))


def test_normalise_strips_outer_blank_lines_and_is_idempotent():
    raw = "\n\n  a  b \n c\n\n"
    once = normalise_text(raw)
    assert once == "a b\nc"
    assert normalise_text(once) == once


def test_hash_distinguishes_case_and_words():
    assert text_hash("Hello") != text_hash("hello")
    assert len(text_hash("x")) == 32


def test_content_id_is_stable_and_text_derived():
    assert content_id("some text") == content_id("some text")
    assert content_id("some text") != content_id("other text")
    assert content_id("x").startswith("h") and len(content_id("x")) == 17


def test_estimate_tokens_is_words_times_1_3():
    assert estimate_tokens("one two three four five six seven eight nine ten") == 13
    assert estimate_tokens("") == 0

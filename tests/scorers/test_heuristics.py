"""Heuristic scorers: one hand-built text per rule that fails for the documented
reason, a clean text that passes everything, API invariants, and the n-gram
statistics against a brute-force reference."""
from __future__ import annotations

import math
import pickle
import random

import pytest

from curate.scorers.heuristics import FAMILIES, HeuristicScorer, default_rules, soft_score
from curate.scorers.heuristics.text_units import split_units

CLEAN = """The committee met on Tuesday to review the proposal for a new library in the town centre.
Several members argued that the old building could be repaired at a lower cost than a new one.
Others pointed out that the roof had leaked for years and that the wiring was no longer safe.
After a long discussion, the chair asked the engineers to prepare a detailed estimate by March.
Residents who attended the meeting said they would support any plan that kept the reading rooms open.
The council will publish the estimate online and invite comments before making a final decision."""

SCORER = HeuristicScorer()


def score(text, scorer=SCORER):
    return scorer.score(text)


def reasons_of(text, family=None, scorer=SCORER):
    result = scorer.score(text)
    return [r for r in result.reasons if family is None or r.startswith(family + ":")]


# ---------------------------------------------------------------- API invariants

EDGE_TEXTS = ["", " ", "\n\n\n", "#", "...", "{}", "a", "日本語のテキストです。" * 20,
              "🙂 " * 300, "x" * 5000, "word " * 20000, "\t\r\n \u2028 \u00a0",
              "1 2 3 4 5 6 7 8 9 10", CLEAN, CLEAN + "\n" + CLEAN]


@pytest.mark.parametrize("text", EDGE_TEXTS)
def test_every_feature_present_finite_and_score_in_unit_interval(text):
    result = score(text)
    assert list(result.features) == SCORER.feature_names
    assert all(isinstance(v, float) and math.isfinite(v) for v in result.features.values())
    assert set(result.passed) == set(FAMILIES)
    assert 0.0 <= result.score <= 1.0
    failed = {f for f, ok in result.passed.items() if not ok}
    assert {r.split(":")[0] for r in result.reasons} == failed
    for family, ok in result.passed.items():
        # A family passes iff its weakest rule is on the passing side of 0.5.
        assert (result.family_scores[family] >= 0.5) == ok


def test_feature_names_are_fixed_flat_and_unique():
    names = HeuristicScorer().feature_names
    assert len(names) == len(set(names)) > 20
    assert names == HeuristicScorer({"weights": {"c4": 0.0}}).feature_names
    assert {r.feature for r in default_rules()} <= set(names)


def test_clean_text_passes_every_family_with_a_high_score():
    result = score(CLEAN)
    assert result.reasons == []
    assert all(result.passed.values())
    assert result.score > 0.8


def test_pickle_round_trip_and_determinism():
    scorer = HeuristicScorer({"weights": {"fineweb": 2.0}})
    clone = pickle.loads(pickle.dumps(scorer))
    texts = [CLEAN, "short text", CLEAN.replace("\n", " ") * 3]
    for text in texts:
        a, b, c = scorer.score(text), clone.score(text), HeuristicScorer({"weights": {"fineweb": 2.0}}).score(text)
        assert a == b == c
    assert pickle.loads(pickle.dumps(scorer.score(CLEAN))) == scorer.score(CLEAN)


# ---------------------------------------------------------------- Gopher quality

def test_gopher_word_count_bounds():
    assert "gopher_quality:word_count<50" in reasons_of("The cat sat with the dog on the mat.")
    assert "gopher_quality:word_count<50" not in reasons_of(CLEAN)
    # 100,001 distinct-ish words: over Gopher's maximum.
    words = " ".join(f"w{i}x" for i in range(100_001))
    assert "gopher_quality:word_count>100000" in reasons_of(words, "gopher_quality")


def test_gopher_mean_word_length_bounds():
    short = " ".join(["to be or not to be it is so as we go up"] * 6)
    assert "gopher_quality:mean_word_length<3" in reasons_of(short)
    long = " ".join(f"internationalization{i} and the counterrevolutionaries" for i in range(40))
    assert "gopher_quality:mean_word_length>10" in reasons_of(long)


def test_gopher_symbol_ratios():
    hashes = CLEAN + " " + " ".join(f"#tag{i}" for i in range(20))
    assert "gopher_quality:hash_word_ratio>0.1" in reasons_of(hashes)
    dots = " ".join(w + ("..." if i % 4 == 0 else "") for i, w in enumerate(CLEAN.split(" ")))
    assert "gopher_quality:ellipsis_word_ratio>0.1" in reasons_of(dots)


def test_gopher_bullet_and_ellipsis_lines():
    lines = CLEAN.splitlines()
    bullets = "\n".join("\u2022 " + line for line in lines)
    assert "gopher_quality:bullet_lines_frac>0.9" in reasons_of(bullets)
    # 5 of 6 bulleted lines is 83 %: still within Gopher's 90 %.
    assert "gopher_quality:bullet_lines_frac>0.9" not in reasons_of("\n".join(["\u2022 " + l for l in lines[:5]] + lines[5:]))
    trailing = "\n".join(line[:-1] + " ..." if i % 2 else line for i, line in enumerate(lines))
    assert "gopher_quality:ellipsis_lines_frac>0.3" in reasons_of(trailing)


def test_gopher_alpha_words_and_stop_words():
    numbers = CLEAN + " " + " ".join(str(1000 + i) for i in range(60))
    assert "gopher_quality:alpha_words_frac<0.8" in reasons_of(numbers)
    no_stop = " ".join(f"Apples grow quickly near rivers{i}." for i in range(15))
    assert "gopher_quality:stop_words<2" in reasons_of(no_stop)
    # Case-insensitive: "The" and "And" count.
    assert "gopher_quality:stop_words<2" not in reasons_of(no_stop + " The dog And cat.")


# ---------------------------------------------------------------- Gopher repetition

def test_duplicate_lines_and_paragraphs():
    lines = CLEAN.splitlines()
    repeated_lines = "\n".join(lines + [lines[0]] * 4)
    got = reasons_of(repeated_lines, "gopher_repetition")
    assert "gopher_repetition:dup_line_frac>0.3" in got
    assert "gopher_repetition:dup_line_char_frac>0.2" in got
    paragraphs = "\n\n".join([CLEAN] + [lines[1]] * 3)
    assert "gopher_repetition:dup_para_frac>0.3" in reasons_of(paragraphs)
    # Blank lines are not lines: paragraph breaks alone are no repetition.
    spaced = "\n\n\n".join(lines)
    assert reasons_of(spaced, "gopher_repetition") == []


def test_top_and_duplicate_ngrams():
    spam = CLEAN + " " + "buy now " * 40
    assert "gopher_repetition:top_2gram_char_frac>0.2" in reasons_of(spam)
    copied = CLEAN + " " + CLEAN.replace("\n", " ")
    got = reasons_of(copied, "gopher_repetition")
    assert "gopher_repetition:dup_5gram_char_frac>0.15" in got
    assert "gopher_repetition:dup_10gram_char_frac>0.1" in got
    # A single occurrence of the most common n-gram is no repetition.
    features = score("alpha beta gamma delta epsilon").features
    assert features["gopher_top_2gram_char_frac"] == 0.0


def _reference_ngram_features(words):
    """Brute force, straight from the paper's definitions."""
    total = sum(map(len, words))
    out = {}
    for n in (2, 3, 4):
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        counts = {}
        for g in grams:
            counts[g] = counts.get(g, 0) + 1
        best = max(counts.values(), default=0)
        if best < 2:
            out[n] = 0.0
        else:
            first = next(g for g in grams if counts[g] == best)
            out[n] = best * sum(map(len, first)) / total
    for n in range(5, 11):
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        covered = [False] * len(words)
        for i, g in enumerate(grams):
            if grams.count(g) > 1:
                covered[i:i + n] = [True] * n
        out[n] = sum(len(w) for w, c in zip(words, covered) if c) / total
    return out


@pytest.mark.parametrize("seed", range(12))
def test_ngram_statistics_match_brute_force(seed):
    rng = random.Random(seed)
    vocabulary = ["a", "bb", "ccc", "dddd", "the", "of", "eeeee"][: rng.randint(2, 7)]
    words = [rng.choice(vocabulary) for _ in range(rng.randint(2, 120))]
    features = score(" ".join(words)).features
    expected = _reference_ngram_features(words)
    for n in (2, 3, 4):
        assert features[f"gopher_top_{n}gram_char_frac"] == pytest.approx(expected[n])
    for n in range(5, 11):
        assert features[f"gopher_dup_{n}gram_char_frac"] == pytest.approx(expected[n])


# ---------------------------------------------------------------- C4

def test_c4_drops_lines_without_terminal_punctuation_or_with_few_words():
    text = CLEAN + "\nHome | About | Contact\nRead more\nYes.\nSee the full report..."
    f = score(text).features
    assert f["c4_lines_kept_frac"] == pytest.approx(6 / 10)
    assert f["c4_drop_no_terminal_punct_frac"] == pytest.approx(3 / 10)  # incl. the ellipsis
    assert f["c4_drop_few_words_frac"] == pytest.approx(1 / 10)
    assert score(text).passed["c4"]  # C4 drops lines, not this page
    assert score(text).score < score(CLEAN).score


def test_c4_javascript_and_policy_lines_are_dropped():
    text = CLEAN + "\nPlease enable JavaScript to view the comments.\nThis site uses cookies to improve your experience."
    f = score(text).features
    assert f["c4_drop_javascript_frac"] == pytest.approx(1 / 8)
    assert f["c4_drop_policy_frac"] == pytest.approx(1 / 8)
    assert f["c4_lines_kept_frac"] == pytest.approx(6 / 8)


def test_c4_page_rules_lorem_ipsum_curly_bracket_and_sentences():
    assert "c4:lorem_ipsum" in reasons_of(CLEAN + "\nLorem ipsum dolor sit amet, consectetur.")
    assert "c4:curly_bracket" in reasons_of(CLEAN + "\nThe function returns {x: 1} when called.")
    # A curly bracket on a line C4 already dropped (no punctuation) does not count.
    assert "c4:curly_bracket" not in reasons_of(CLEAN + "\nfunction f() {")
    assert "c4:sentences<5" in reasons_of("\n".join(CLEAN.splitlines()[:3]))
    assert "c4:sentences<5" not in reasons_of("\n".join(CLEAN.splitlines()[:5]))


def test_c4_citations_are_removed_before_the_punctuation_check():
    f = score(CLEAN.replace(".\n", ".[12]\n")).features
    assert f["c4_lines_kept_frac"] == 1.0


def test_long_lines_are_judged_by_sentence():
    # One line without newlines, whose last "sentence" is boilerplate: the
    # sentences still count, only the tail is dropped.
    article = CLEAN.replace("\n", " ") + " Share this article Follow us on Twitter"
    assert len(article) > 500
    result = score(article)
    assert result.passed["c4"] and result.passed["fineweb"]
    assert 0.8 < result.features["c4_lines_kept_frac"] < 1.0
    whole_line = HeuristicScorer({"params": {"long_line_chars": 0}}).score(article)
    assert not whole_line.passed["c4"] and whole_line.features["c4_lines_kept_frac"] == 0.0


# ---------------------------------------------------------------- FineWeb

def test_fineweb_rules():
    menu = "\n".join(f"Section {i} of the site navigation menu" for i in range(20))
    assert "fineweb:line_punct_ratio<=0.12" in reasons_of(menu)
    short = CLEAN + "\n" + "\n".join(f"Item {i}." for i in range(14))
    got = reasons_of(short, "fineweb")
    assert "fineweb:short_line_ratio>=0.67" in got
    duplicated = CLEAN + "\n" + CLEAN.splitlines()[2]
    assert reasons_of(duplicated, "fineweb") == ["fineweb:dup_line_char_ratio>=0.01"]
    listy = "\n".join(f"Buy it now.\nYes." for _ in range(3)) + "\n" + CLEAN
    assert "fineweb:newline_word_ratio>0.3" not in reasons_of(listy)
    assert "fineweb:newline_word_ratio>0.3" in reasons_of("\n".join(f"Point {i}." for i in range(40)))


# ---------------------------------------------------------------- combined score and config

def test_soft_score_is_monotone_and_half_at_threshold():
    zs = [-50, -3, -1, -0.1, 0, 0.1, 1, 3, 20]
    values = [soft_score(z) for z in zs]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert soft_score(0) == 0.5 and 0 < values[0] < 0.5 < values[-1] < 1.0
    assert soft_score(-1e9) >= 0.0


def test_failing_documents_rank_lower_and_failures_are_graded():
    near_miss = " ".join(CLEAN.split()[:45]) + "."   # 45 words: just under 50
    far_miss = "Hello there, friend."
    scores = [score(t).score for t in (CLEAN, near_miss, far_miss)]
    assert scores[0] > scores[1] > scores[2]


def test_weights_change_the_combination():
    text = CLEAN + "\nHome | About | Contact"
    only_fineweb = HeuristicScorer({"weights": {f: 0.0 for f in ("gopher_quality", "gopher_repetition", "c4", "c4_lines_kept")}})
    result = only_fineweb.score(text)
    assert result.score == pytest.approx(result.family_scores["fineweb"])
    only_kept = HeuristicScorer({"weights": {"gopher_quality": 0, "gopher_repetition": 0, "c4": 0, "fineweb": 0}})
    assert only_kept.score(text).score == pytest.approx(6 / 7)


def test_rule_thresholds_are_configurable():
    text = "The cat sat with the dog on the mat."
    lenient = HeuristicScorer({"rules": {"gopher_quality.word_count": {"threshold": 5}}})
    assert "gopher_quality:word_count<50" in reasons_of(text)
    assert not any(r.startswith("gopher_quality:word_count") for r in reasons_of(text, scorer=lenient))


def test_a_rule_can_be_disabled():
    text = CLEAN + "\nThe function returns {x: 1} when called."
    assert "c4:curly_bracket" in reasons_of(text)
    relaxed = HeuristicScorer({"rules": {"c4.curly_bracket": {"enabled": False}}})
    result = relaxed.score(text)
    assert result.passed["c4"] and "c4:curly_bracket" not in result.reasons
    assert result.score > SCORER.score(text).score


@pytest.mark.parametrize("config", [
    ["not", "a", "mapping"],
    {"weight": {}},
    {"weights": {"gopher": 1}},
    {"weights": {f: 0 for f in ("gopher_quality", "gopher_repetition", "c4", "fineweb", "c4_lines_kept")}},
    {"rules": {"gopher_quality.nope": {"threshold": 1}}},
    {"rules": {"gopher_quality.word_count": {"thresh": 1}}},
    {"rules": {"gopher_quality.word_count": {"scale": 0}}},
    {"params": {"stopwords": []}},
])
def test_invalid_config_is_a_clear_value_error(config):
    with pytest.raises(ValueError, match="heuristics config"):
        HeuristicScorer(config)


def test_words_are_lowercased_regex_tokens():
    units = split_units("Don't STOP -- it's 6.10am, tie-breaking #1!")
    assert units.words == ["don't", "stop", "it's", "6.10am", "tie-breaking", "1"]


def test_sentence_split_keeps_closing_quotes():
    from curate.scorers.heuristics.text_units import split_sentences

    assert split_sentences('He said "Go."  Then he left! ok 3.5 times') == [
        'He said "Go."', "Then he left!", "ok 3.5 times"]


def test_strict_rule_failing_exactly_at_threshold_scores_below_half():
    # FineWeb fails a document when short lines are >= 67 %: 67 of 100 lines exactly.
    short = [f"Short line {i}." for i in range(67)]
    long = [f"Line {i} is comfortably longer than thirty characters." for i in range(33)]
    result = score("\n".join(short + long))
    assert result.features["fineweb_short_line_ratio"] == 0.67
    assert result.reasons.count("fineweb:short_line_ratio>=0.67") == 1
    assert [r for r in result.reasons if r.startswith("fineweb")] == ["fineweb:short_line_ratio>=0.67"]
    assert not result.passed["fineweb"] and result.family_scores["fineweb"] < 0.5

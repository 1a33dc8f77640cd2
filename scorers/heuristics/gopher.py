"""Gopher quality and repetition features (Rae et al. 2021, "Scaling Language
Models: Methods, Analysis & Insights from Training Gopher", Appendix A.1.1,
https://arxiv.org/abs/2112.11446).

Feature *values* are computed by the functions here; the families
(:class:`GopherQuality`, :class:`GopherRepetition`) pair them with the published
thresholds below, each of which can be overridden through the scorer's config.

Published quality rules (MassiveText): keep a document with 50..100,000 words,
mean word length 3..10 characters, a symbol-to-word ratio <= 0.1 for ``#`` and
for ellipses, <= 90 % of lines starting with a bullet, <= 30 % of lines ending
with an ellipsis, >= 80 % of words containing an alphabetic character and at
least 2 of the stop words (the, be, to, of, and, that, have, with).

Published repetition rules (Table A1): duplicate line fraction <= 0.30,
duplicate paragraph fraction <= 0.30, duplicate line character fraction
<= 0.20, duplicate paragraph character fraction <= 0.20, top 2/3/4-gram
character fraction <= 0.20/0.18/0.16, duplicate 5..10-gram character fraction
<= 0.15/0.14/0.13/0.12/0.11/0.10.

Differences from DataTrove's GopherQualityFilter / GopherRepetitionFilter,
on purpose:
- words come from one regex (see text_units), not NLTK's word_tokenize;
- stop words are matched case-insensitively;
- blank lines are ignored for the line statistics (DataTrove counts every
  blank line after the first as a duplicate line, so ordinary paragraph
  breaks fail ``dup_line_frac``);
- a "top n-gram" that occurs only once is no repetition and scores 0
  (DataTrove scores the single most common n-gram even at count 1, so every
  tweet fails the 2-gram rule);
- duplicate n-gram characters follow the paper: characters of words covered
  by any n-gram that occurs more than once, overlaps counted once, over all
  word characters (DataTrove's ``find_all_duplicate`` joins n consecutive
  n-grams instead).
"""
from __future__ import annotations

from itertools import filterfalse

import numpy as np

from .family import RuleFamily
from .rules import Rule
from .text_units import TextUnits, duplicate_counts, paragraphs_of, ratio

DEFAULT_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
# Gopher says "bullet point"; DataTrove checks only U+2022, Dolma adds * and -.
DEFAULT_BULLETS = ("\u2022", "\u25cf", "\u25aa", "\u2023", "\u25e6", "*", "-")
TOP_NGRAM_SIZES = (2, 3, 4)
DUP_NGRAM_SIZES = (5, 6, 7, 8, 9, 10)

QUALITY_FEATURES = (
    "gopher_word_count",
    "gopher_mean_word_length",
    "gopher_hash_word_ratio",
    "gopher_ellipsis_word_ratio",
    "gopher_bullet_lines_frac",
    "gopher_ellipsis_lines_frac",
    "gopher_alpha_words_frac",
    "gopher_stop_words",
)
REPETITION_FEATURES = (
    "gopher_dup_line_frac",
    "gopher_dup_para_frac",
    "gopher_dup_line_char_frac",
    "gopher_dup_para_char_frac",
    *(f"gopher_top_{n}gram_char_frac" for n in TOP_NGRAM_SIZES),
    *(f"gopher_dup_{n}gram_char_frac" for n in DUP_NGRAM_SIZES),
)

_ZERO_NGRAM_FEATURES = {name: 0.0 for name in REPETITION_FEATURES if "gram_" in name}


def quality_features(units: TextUnits, stop_words: frozenset[str],
                     bullets: tuple[str, ...]) -> dict[str, float]:
    """Feature values of the Gopher quality rules."""
    text, words, lines = units.text, units.words, units.lines
    n_words = len(words)
    n_lines = len(lines)
    # str.isalpha settles almost every word at C speed; only the rest
    # (digits, "6.10am", "x2") need a character scan.
    mixed = list(filterfalse(str.isalpha, words))
    alpha_words = n_words - len(mixed) + sum(1 for w in mixed if any(map(str.isalpha, w)))
    ellipses = text.count("...") + text.count("\u2026")
    bullet_lines = sum(1 for line in lines if line.lstrip().startswith(bullets))
    ellipsis_lines = sum(1 for line in lines if line.rstrip().endswith(("...", "\u2026")))
    return {
        "gopher_word_count": float(n_words),
        "gopher_mean_word_length": ratio(units.word_chars, n_words),
        # With no words at all the ratio is the raw symbol count: still finite
        # and still failing when symbols are present.
        "gopher_hash_word_ratio": ratio(text.count("#"), max(n_words, 1)),
        "gopher_ellipsis_word_ratio": ratio(ellipses, max(n_words, 1)),
        "gopher_bullet_lines_frac": ratio(bullet_lines, n_lines),
        "gopher_ellipsis_lines_frac": ratio(ellipsis_lines, n_lines),
        "gopher_alpha_words_frac": ratio(alpha_words, n_words),
        "gopher_stop_words": float(sum(map(stop_words.__contains__, words))),
    }


# Odd 64-bit multiplier of the polynomial n-gram hash (any large odd constant works).
_HASH_BASE = np.uint64(0x9E3779B97F4A7C15)


def _ngram_features(words: list[str], lengths: list[int], total: int) -> dict[str, float]:
    """Top n-gram (2-4) and duplicate n-gram (5-10) character fractions.

    N-grams are compared through a 64-bit polynomial hash of the words'
    hashes, built incrementally (hash of the n-gram = hash of the (n-1)-gram
    * base + hash of the next word), so each n costs a few numpy passes
    instead of a Python loop over tuples. A false match needs a 64-bit hash
    collision between two n-grams of one document (odds ~ W**2 / 2**64).
    """
    with np.errstate(over="ignore"):
        word_hash = np.fromiter(map(hash, words), dtype=np.int64, count=len(words)).view(np.uint64)
        length = np.asarray(lengths, dtype=np.int64)
        char_prefix = np.concatenate(([0], np.cumsum(length)))
        n_words = len(words)
        features: dict[str, float] = {}
        gram_hash = word_hash
        covered_any = True
        for n in range(2, DUP_NGRAM_SIZES[-1] + 1):
            starts = n_words - n + 1
            gram_hash = gram_hash[:starts] * _HASH_BASE + word_hash[n - 1:]
            if n in TOP_NGRAM_SIZES:
                features[f"gopher_top_{n}gram_char_frac"] = _top_gram_frac(
                    gram_hash, char_prefix, n, total) if starts > 1 else 0.0
            elif covered_any:
                value = _dup_gram_frac(gram_hash, length, n, total) if starts > 1 else 0.0
                covered_any = value > 0
                features[f"gopher_dup_{n}gram_char_frac"] = value
            else:
                # A repeated (n+1)-gram contains a repeated n-gram: coverage only shrinks with n.
                features[f"gopher_dup_{n}gram_char_frac"] = 0.0
    return features


def _top_gram_frac(gram_hash: np.ndarray, char_prefix: np.ndarray, n: int, total: int) -> float:
    """Characters in all occurrences of the most frequent n-gram, if it repeats."""
    _, inverse, counts = np.unique(gram_hash, return_inverse=True, return_counts=True)
    count_at = counts[inverse]
    top = int(count_at.max())
    if top < 2:
        return 0.0
    first = int(np.argmax(count_at == top))  # ties: the earliest n-gram, deterministic
    return top * int(char_prefix[first + n] - char_prefix[first]) / total


def _dup_gram_frac(gram_hash: np.ndarray, length: np.ndarray, n: int, total: int) -> float:
    """Characters of words inside any repeated n-gram (overlaps once) / all word chars."""
    _, inverse, counts = np.unique(gram_hash, return_inverse=True, return_counts=True)
    repeated_start = counts[inverse] > 1
    if not repeated_start.any():
        return 0.0
    # Word j is covered when a repeated n-gram starts anywhere in [j-n+1, j].
    starts_before = np.concatenate(([0], np.cumsum(repeated_start)))
    j = np.arange(len(length))
    hi = np.minimum(j, len(repeated_start) - 1) + 1
    lo = np.maximum(j - n + 1, 0)
    covered = starts_before[hi] > starts_before[lo]
    return int(length[covered].sum()) / total


def repetition_features(units: TextUnits) -> dict[str, float]:
    """Feature values of the Gopher repetition rules."""
    text, words, lengths, lines = units.text, units.words, units.word_lengths, units.lines
    total = units.word_chars
    paragraphs = paragraphs_of(text) if "\n" in text else ([text.strip()] if text.strip() else [])
    para_dups, para_dup_chars = duplicate_counts(paragraphs)
    line_dups, line_dup_chars = duplicate_counts(lines)
    features = {
        "gopher_dup_line_frac": ratio(line_dups, len(lines)),
        "gopher_dup_para_frac": ratio(para_dups, len(paragraphs)),
        "gopher_dup_line_char_frac": ratio(line_dup_chars, sum(map(len, lines))),
        "gopher_dup_para_char_frac": ratio(para_dup_chars, sum(map(len, paragraphs))),
    }
    # Fast path (most short documents): no bigram occurs twice, so no n-gram
    # with n >= 2 does, and every n-gram feature is 0.
    if not total or len(set(zip(words, words[1:]))) == len(words) - 1:
        features.update(_ZERO_NGRAM_FEATURES)
    else:
        features.update(_ngram_features(words, lengths, total))
    return features


class GopherQuality(RuleFamily):
    """Gopher quality rules (MassiveText); thresholds as published (module docstring)."""

    name = "gopher_quality"
    feature_names = QUALITY_FEATURES
    params = {"stop_words": list(DEFAULT_STOP_WORDS), "bullets": list(DEFAULT_BULLETS)}

    def prepare(self, params):
        return frozenset(w.lower() for w in params["stop_words"]), tuple(params["bullets"])

    def compute(self, units, prepared):
        stop_words, bullets = prepared
        return quality_features(units, stop_words, bullets)

    def rules(self) -> list[Rule]:
        f = self.name
        return [
            Rule(f, "word_count", "gopher_word_count", ">=", 50, 1.0, log=True),
            Rule(f, "word_count_max", "gopher_word_count", "<=", 100_000, 1.0, log=True,
                 label="word_count>100000"),
            Rule(f, "mean_word_length", "gopher_mean_word_length", ">=", 3, 0.5),
            Rule(f, "mean_word_length_max", "gopher_mean_word_length", "<=", 10, 1.0,
                 label="mean_word_length>10"),
            Rule(f, "hash_word_ratio", "gopher_hash_word_ratio", "<=", 0.1, 0.05),
            Rule(f, "ellipsis_word_ratio", "gopher_ellipsis_word_ratio", "<=", 0.1, 0.05),
            Rule(f, "bullet_lines_frac", "gopher_bullet_lines_frac", "<=", 0.9, 0.2),
            Rule(f, "ellipsis_lines_frac", "gopher_ellipsis_lines_frac", "<=", 0.3, 0.1),
            Rule(f, "alpha_words_frac", "gopher_alpha_words_frac", ">=", 0.8, 0.05),
            Rule(f, "stop_words", "gopher_stop_words", ">=", 2, 1.0, log=True),
        ]


class GopherRepetition(RuleFamily):
    """Gopher repetition rules (Table A1); thresholds as published (module docstring)."""

    name = "gopher_repetition"
    feature_names = REPETITION_FEATURES

    def compute(self, units, prepared):
        return repetition_features(units)

    def rules(self) -> list[Rule]:
        f = self.name
        rules = [
            Rule(f, "dup_line_frac", "gopher_dup_line_frac", "<=", 0.30, 0.15),
            Rule(f, "dup_para_frac", "gopher_dup_para_frac", "<=", 0.30, 0.15),
            Rule(f, "dup_line_char_frac", "gopher_dup_line_char_frac", "<=", 0.20, 0.10),
            Rule(f, "dup_para_char_frac", "gopher_dup_para_char_frac", "<=", 0.20, 0.10),
        ]
        for n, t in ((2, 0.20), (3, 0.18), (4, 0.16)):
            rules.append(Rule(f, f"top_{n}gram_char_frac", f"gopher_top_{n}gram_char_frac", "<=", t, t / 2))
        for n, t in ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)):
            rules.append(Rule(f, f"dup_{n}gram_char_frac", f"gopher_dup_{n}gram_char_frac", "<=", t, t / 2))
        return rules

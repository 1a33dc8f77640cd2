"""FineWeb quality rules (Penedo et al. 2024, "The FineWeb Datasets",
https://arxiv.org/abs/2406.17557, Section 3.3; DataTrove FineWebQualityFilter).

Published thresholds: a document fails when
- the fraction of lines ending in punctuation (``. ' " ! ?``) is <= 0.12;
- the fraction of lines of <= 30 characters is >= 0.67;
- the characters in duplicated lines are >= 1 % of the characters;
- newlines per word ("list-like" documents) is > 0.3.

The stop characters and the comparisons (``<=`` / ``>=``) are those of the code
FineWeb was built with. DataTrove 0.10.1 has since changed the filter: it
skips blank lines (as we do), counts a line as punctuated when it ends in any
of ~160 multilingual terminal punctuation marks but *not* a closing quote, and
compares with ``<`` / ``>``. On the news articles that makes ~10 % of verdicts
differ (articles ending in ``."``); benchmarks/results/pipeline.md measures
the agreement.

Differences from the FineWeb code, on purpose: blank lines are not lines here (FineWeb
was computed on trafilatura output, which has no blank lines; counting them
would make any text with paragraph breaks look short-lined and unpunctuated),
trailing whitespace is ignored when checking a line's last character, and a
line longer than ``long_line_chars`` (default 500) is judged sentence by
sentence, as for C4 (see :func:`scorers.heuristics.text_units.split_units`).
The newline-per-word ratio still counts the text's real newlines.
"""
from __future__ import annotations

from .family import RuleFamily
from .rules import Rule
from .text_units import TextUnits, duplicate_counts, ratio

STOP_CHARS = (".", "'", '"', "!", "?")

FEATURES = (
    "fineweb_line_punct_ratio",
    "fineweb_short_line_ratio",
    "fineweb_dup_line_char_ratio",
    "fineweb_newline_word_ratio",
)


def features(units: TextUnits, short_line_length: int = 30) -> dict[str, float]:
    """Feature values of the FineWeb rules (see module docstring)."""
    lines = [line.rstrip() for line in units.segments]
    n = len(lines)
    punct = sum(1 for line in lines if line.endswith(STOP_CHARS))
    short = sum(1 for line in lines if len(line) <= short_line_length)
    _, dup_chars = duplicate_counts(lines)
    text = units.text
    return {
        "fineweb_line_punct_ratio": ratio(punct, n),
        "fineweb_short_line_ratio": ratio(short, n),
        "fineweb_dup_line_char_ratio": ratio(dup_chars, len(text) - text.count("\n")),
        "fineweb_newline_word_ratio": ratio(text.count("\n"), max(len(units.words), 1)),
    }


class FineWeb(RuleFamily):
    """FineWeb's quality rules; thresholds as published (module docstring)."""

    name = "fineweb"
    feature_names = FEATURES
    params = {"fineweb_short_line_length": 30}

    def prepare(self, params):
        return int(params["fineweb_short_line_length"])

    def compute(self, units, prepared):
        return features(units, prepared)

    def rules(self) -> list[Rule]:
        f = self.name
        return [
            Rule(f, "line_punct_ratio", "fineweb_line_punct_ratio", ">", 0.12, 0.1),
            Rule(f, "short_line_ratio", "fineweb_short_line_ratio", "<", 0.67, 0.15),
            Rule(f, "dup_line_char_ratio", "fineweb_dup_line_char_ratio", "<", 0.01, 0.005),
            Rule(f, "newline_word_ratio", "fineweb_newline_word_ratio", "<=", 0.3, 0.1),
        ]

"""C4 line rules (Raffel et al. 2020, "Exploring the Limits of Transfer Learning
with a Unified Text-to-Text Transformer", Section 2.2,
https://jmlr.org/papers/v21/20-074.html; reference code: TFDS ``c4_utils``).

C4 *edits* pages: it drops lines and keeps the rest. We score instead, so we
report what C4 would do: the fraction of lines it would keep, why the others
go, and whether the whole page would be dropped.

"Lines" are the document's non-blank lines, except that a line longer than
``long_line_chars`` (default 500) is judged sentence by sentence; see
:func:`scorers.heuristics.text_units.split_units` for why.

Per line, in C4's order (a line stops at the first rule that drops it):
1. a word longer than 1,000 characters -> drop the line;
2. remove Wikipedia-style citations (``[1]``, ``[edit]``, ``[citation needed]``);
3. not ending in terminal punctuation (``. ! ? "`` or ``'``), or ending in an
   ellipsis -> drop the line;
4. fewer than 3 words -> drop the line;
5. contains "lorem ipsum" -> drop the page;
6. contains "javascript" -> drop the line;
7. contains a curly bracket ``{`` -> drop the page;
8. contains a cookie / terms-of-use / privacy-policy phrase -> drop the line.
Then a page with fewer than 5 sentences in its kept lines is dropped.

The bad-words page filter is not implemented (it needs a downloaded list and
is a content policy, not a quality signal). Sentences are counted with a
regex (terminal punctuation followed by whitespace or end of line) rather than
NLTK's punkt, so abbreviations like "Mr." count as sentence ends.
"""
from __future__ import annotations

import re

from .family import RuleFamily
from .rules import Rule
from .text_units import TextUnits, ratio

CITATION_RE = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]", re.IGNORECASE)
SENTENCE_END_RE = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(?=\s|$)")
TERMINAL_PUNCTUATION = (".", "?", "!", '"', "'")
POLICY_PHRASES = ("terms of use", "privacy policy", "cookie policy", "uses cookies",
                  "use of cookies", "use cookies")

FEATURES = (
    "c4_lines_kept_frac",
    "c4_sentences",
    "c4_lorem_ipsum",
    "c4_curly_bracket",
    "c4_drop_long_word_frac",
    "c4_drop_no_terminal_punct_frac",
    "c4_drop_few_words_frac",
    "c4_drop_javascript_frac",
    "c4_drop_policy_frac",
)


def features(units: TextUnits, min_words_per_line: int = 3,
             max_word_length: int = 1000) -> dict[str, float]:
    """Feature values of the C4 line rules (see module docstring)."""
    lines = units.segments
    kept = sentences = lorem = curly = 0
    long_word = no_punct = few_words = javascript = policy = 0
    for raw in lines:
        line = raw.strip()
        words = line.split()
        if 0 < max_word_length < len(line) and any(len(w) > max_word_length for w in words):
            long_word += 1
            continue
        if "[" in line:
            line = CITATION_RE.sub("", line)
        if not line.endswith(TERMINAL_PUNCTUATION) or line.endswith("..."):
            no_punct += 1
            continue
        if len(words) < min_words_per_line:
            few_words += 1
            continue
        lowered = line.lower()
        if "lorem ipsum" in lowered:
            lorem = 1  # C4 drops the page; we keep counting for the features
        if "javascript" in lowered:
            javascript += 1
            continue
        if "{" in line:
            curly = 1
        if any(p in lowered for p in POLICY_PHRASES):
            policy += 1
            continue
        kept += 1
        # A kept line ends in terminal punctuation, so it holds >= 1 sentence.
        sentences += max(1, len(SENTENCE_END_RE.findall(line)))
    n = len(lines)
    return {
        "c4_lines_kept_frac": ratio(kept, n),
        "c4_sentences": float(sentences),
        "c4_lorem_ipsum": float(lorem),
        "c4_curly_bracket": float(curly),
        "c4_drop_long_word_frac": ratio(long_word, n),
        "c4_drop_no_terminal_punct_frac": ratio(no_punct, n),
        "c4_drop_few_words_frac": ratio(few_words, n),
        "c4_drop_javascript_frac": ratio(javascript, n),
        "c4_drop_policy_frac": ratio(policy, n),
    }


class C4Lines(RuleFamily):
    """C4's page rules (lorem ipsum, curly bracket, >= 5 sentences); the share of lines C4
    would keep is a score component of its own (``c4_lines_kept``), not a rule: C4 never
    drops a page for it."""

    name = "c4"
    feature_names = FEATURES
    params = {"c4_min_words_per_line": 3, "c4_max_word_length": 1000}
    extra_components = {"c4_lines_kept": "c4_lines_kept_frac"}

    def prepare(self, params):
        return int(params["c4_min_words_per_line"]), int(params["c4_max_word_length"])

    def compute(self, units, prepared):
        min_words_per_line, max_word_length = prepared
        return features(units, min_words_per_line, max_word_length)

    def rules(self) -> list[Rule]:
        f = self.name
        return [
            # Flags are 0/1: "<= 0.5" is "must be 0" with a soft score far from 0.5.
            Rule(f, "lorem_ipsum", "c4_lorem_ipsum", "<=", 0.5, 0.1, label="lorem_ipsum"),
            Rule(f, "curly_bracket", "c4_curly_bracket", "<=", 0.5, 0.1, label="curly_bracket"),
            Rule(f, "sentences", "c4_sentences", ">=", 5, 0.5, log=True),
        ]

"""The published thresholds, as data: one :class:`Rule` per check.

A rule compares one feature with one threshold. ``op`` says which side passes:

- ``">="`` / ``">"``: the value must be at least / above the threshold;
- ``"<="`` / ``"<"``: the value must be at most / below the threshold.

``scale`` (and ``log``) set how fast the rule's soft score moves away from 0.5
as the value moves past the threshold; see :mod:`scorers.heuristics.combine`.
Sources for every threshold are in the docstrings of gopher.py, c4.py and
fineweb.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

FAMILIES = ("gopher_quality", "gopher_repetition", "c4", "fineweb")


@dataclass(frozen=True)
class Rule:
    family: str
    name: str            # unique within the family; config key is "family.name"
    feature: str
    op: str              # ">=", ">", "<=", "<": the side of the threshold that passes
    threshold: float
    scale: float         # soft-score width, in feature units (log1p units if log)
    log: bool = False    # compare log1p(value) with log1p(threshold): for counts
    label: str = ""      # reason text on failure; default "<name><failing op><threshold>"

    @property
    def key(self) -> str:
        return f"{self.family}.{self.name}"

    def passes(self, value: float) -> bool:
        t = self.threshold
        if self.op == ">=":
            return value >= t
        if self.op == ">":
            return value > t
        if self.op == "<=":
            return value <= t
        return value < t

    def margin(self, value: float) -> float:
        """Signed distance to the threshold in units of ``scale``; > 0 is the passing side."""
        if self.log:
            value, t = math.log1p(max(value, 0.0)), math.log1p(max(self.threshold, 0.0))
        else:
            t = self.threshold
        distance = value - t if self.op in (">=", ">") else t - value
        return distance / self.scale

    def reason(self) -> str:
        if self.label:
            return f"{self.family}:{self.label}"
        failing = {">=": "<", ">": "<=", "<=": ">", "<": ">="}[self.op]
        return f"{self.family}:{self.name}{failing}{self.threshold:g}"

    def with_overrides(self, overrides: dict) -> "Rule":
        unknown = set(overrides) - {"threshold", "scale"}
        if unknown:
            raise ValueError(f"heuristics config: rule {self.key}: unknown setting(s) "
                             f"{sorted(unknown)}; allowed: threshold, scale, enabled")
        rule = replace(self, **{k: float(v) for k, v in overrides.items()})
        if not rule.scale > 0:
            raise ValueError(f"heuristics config: rule {self.key}: scale must be > 0, got {rule.scale}")
        return rule


def _gopher_quality() -> list[Rule]:
    f = "gopher_quality"
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


def _gopher_repetition() -> list[Rule]:
    f = "gopher_repetition"
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


def _c4() -> list[Rule]:
    f = "c4"
    return [
        # Flags are 0/1: "<= 0.5" is "must be 0" with a soft score far from 0.5.
        Rule(f, "lorem_ipsum", "c4_lorem_ipsum", "<=", 0.5, 0.1, label="lorem_ipsum"),
        Rule(f, "curly_bracket", "c4_curly_bracket", "<=", 0.5, 0.1, label="curly_bracket"),
        Rule(f, "sentences", "c4_sentences", ">=", 5, 0.5, log=True),
    ]


def _fineweb() -> list[Rule]:
    f = "fineweb"
    return [
        Rule(f, "line_punct_ratio", "fineweb_line_punct_ratio", ">", 0.12, 0.1),
        Rule(f, "short_line_ratio", "fineweb_short_line_ratio", "<", 0.67, 0.15),
        Rule(f, "dup_line_char_ratio", "fineweb_dup_line_char_ratio", "<", 0.01, 0.005),
        Rule(f, "newline_word_ratio", "fineweb_newline_word_ratio", "<=", 0.3, 0.1),
    ]


def default_rules() -> tuple[Rule, ...]:
    """All rules with the published thresholds, grouped by family in FAMILIES order."""
    return tuple(_gopher_quality() + _gopher_repetition() + _c4() + _fineweb())

"""HeuristicScorer: every heuristic family on one document, one call."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .combine import COMPONENTS, DEFAULT_WEIGHTS, combined_score, soft_score
from .families import FAMILIES, FAMILY_PARAMS, FEATURE_NAMES, REGISTERED, default_rules
from .rules import Rule
from .text_units import DEFAULT_LONG_LINE_CHARS, split_units

# every family's params, then the shared one: how long a line may be before the line rules
# judge it sentence by sentence (text_units.split_units)
DEFAULT_PARAMS = {**FAMILY_PARAMS, "long_line_chars": DEFAULT_LONG_LINE_CHARS}
CONFIG_KEYS = {"weights", "rules", "params"}


@dataclass
class HeuristicResult:
    """Scores of one document.

    features: every name in ``HeuristicScorer.feature_names``, finite floats.
    passed:   per family (gopher_quality, gopher_repetition, c4, fineweb).
    reasons:  "family:rule" for every failed rule, in rule order ([] if all pass).
    family_scores: per family soft score in [0, 1]; >= 0.5 iff the family passed.
    score:    combined quality score in [0, 1], higher is better.
    """

    features: dict[str, float]
    passed: dict[str, bool]
    reasons: list[str]
    score: float
    family_scores: dict[str, float] = field(default_factory=dict)


class HeuristicScorer:
    """Every registered rule family (families.REGISTERED: Gopher quality + repetition, C4
    line rules, FineWeb rules) on one document, combined.

    ``config`` (all keys optional)::

        {"weights": {"gopher_quality": 1, "gopher_repetition": 1, "c4": 1,
                     "fineweb": 1, "c4_lines_kept": 1},
         "rules":   {"gopher_quality.word_count": {"threshold": 50, "scale": 1.0},
                     "c4.curly_bracket": {"enabled": False}, ...},
         "params":  {"stop_words": [...], "bullets": [...], "c4_min_words_per_line": 3,
                     "c4_max_word_length": 1000, "fineweb_short_line_length": 30,
                     "long_line_chars": 500}}

    Rule keys are ``family.name`` as listed by :attr:`rules`. Construction is
    cheap, the object holds only plain data (picklable) and ``score`` is a pure
    function of the text.
    """

    families: tuple[str, ...] = FAMILIES

    def __init__(self, config: dict | None = None):
        if config is not None and not isinstance(config, dict):
            raise ValueError(f"heuristics config must be a mapping, got {type(config).__name__}")
        config = dict(config or {})
        unknown = set(config) - CONFIG_KEYS
        if unknown:
            raise ValueError(f"heuristics config: unknown key(s) {sorted(unknown)}; "
                             f"allowed: {sorted(CONFIG_KEYS)}")
        self.weights = self._weights(config.get("weights") or {})
        self.rules = self._rules(config.get("rules") or {})
        # Per rule, what the hot loop in score() needs, precomputed.
        self._checks = tuple(
            (r.feature, r.family, r.op[0] == "<", len(r.op) == 1, r.threshold,
             math.log1p(max(r.threshold, 0.0)) if r.log else r.threshold,
             1.0 / r.scale, r.log, r.reason())
            for r in self.rules)
        params = dict(DEFAULT_PARAMS)
        extra = set(config.get("params") or {}) - set(DEFAULT_PARAMS)
        if extra:
            raise ValueError(f"heuristics config: unknown param(s) {sorted(extra)}; "
                             f"allowed: {sorted(DEFAULT_PARAMS)}")
        params.update(config.get("params") or {})
        self.long_line_chars = int(params["long_line_chars"])
        # (family, its prepared params), in FAMILIES order
        self._families = tuple((family, family.prepare(params)) for family in REGISTERED)

    @property
    def feature_names(self) -> list[str]:
        """The fixed, flat feature names, in the order of ``result.features``."""
        return list(FEATURE_NAMES)

    @staticmethod
    def _weights(overrides: dict) -> dict[str, float]:
        unknown = set(overrides) - set(COMPONENTS)
        if unknown:
            raise ValueError(f"heuristics config: unknown weight(s) {sorted(unknown)}; "
                             f"allowed: {list(COMPONENTS)}")
        weights = {**DEFAULT_WEIGHTS, **{k: float(v) for k, v in overrides.items()}}
        if any(w < 0 or not math.isfinite(w) for w in weights.values()) or not sum(weights.values()) > 0:
            raise ValueError(f"heuristics config: weights must be finite, >= 0 and not all 0: {weights}")
        return weights

    @staticmethod
    def _rules(overrides: dict) -> tuple[Rule, ...]:
        rules = default_rules()
        keys = {r.key for r in rules}
        unknown = set(overrides) - keys
        if unknown:
            raise ValueError(f"heuristics config: unknown rule(s) {sorted(unknown)}; "
                             f"known: {sorted(keys)}")
        out = []
        for rule in rules:
            settings = dict(overrides.get(rule.key) or {})
            if not settings.pop("enabled", True):
                continue  # a disabled rule neither fails documents nor moves the score
            out.append(rule.with_overrides(settings) if settings else rule)
        return tuple(out)

    def features(self, text: str) -> dict[str, float]:
        """All feature values of ``text``, in ``feature_names`` order."""
        units = split_units(text, self.long_line_chars)
        values: dict[str, float] = {}
        for family, prepared in self._families:
            values.update(family.compute(units, prepared))
        return values

    def score(self, text: str) -> HeuristicResult:
        """Features, per-family pass/fail with reasons, and the combined score."""
        values = self.features(text)
        passed = dict.fromkeys(FAMILIES, True)
        # soft_score is increasing in the margin, so a family's minimum soft
        # score is the soft score of its minimum margin: one exp per family.
        min_margin = dict.fromkeys(FAMILIES, math.inf)
        reasons = []
        log1p = math.log1p
        # The hot loop: Rule.passes and Rule.margin, inlined over precomputed tuples.
        for feature, family, upper, strict, t, t_cmp, inv_scale, log, reason in self._checks:
            value = values[feature]
            if upper:
                ok = value < t if strict else value <= t
            else:
                ok = value > t if strict else value >= t
            if not ok:
                passed[family] = False
                reasons.append(reason)
            if log:
                value = log1p(value) if value > 0 else 0.0
            z = ((t_cmp - value) if upper else (value - t_cmp)) * inv_scale
            if not ok and z >= 0.0:
                z = -1e-9  # a strict rule failing exactly at its threshold: keep soft < 0.5
            if z < min_margin[family]:
                min_margin[family] = z
        family_scores = {f: soft_score(z) for f, z in min_margin.items()}
        score = combined_score(family_scores, values, self.weights)
        return HeuristicResult(features=values, passed=passed, reasons=reasons,
                               score=score, family_scores=family_scores)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(weights={self.weights})"

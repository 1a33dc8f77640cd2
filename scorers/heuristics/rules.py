"""One threshold check on one feature, as data: :class:`Rule`.

Each rule family (gopher.py, c4.py, fineweb.py) lists its rules with the published
thresholds next to their sources; the scorer's config overrides threshold and scale per rule.

A rule compares one feature with one threshold. ``op`` says which side passes:

- ``">="`` / ``">"``: the value must be at least / above the threshold;
- ``"<="`` / ``"<"``: the value must be at most / below the threshold.

``scale`` (and ``log``) set how fast the rule's soft score moves away from 0.5
as the value moves past the threshold; see :mod:`scorers.heuristics.combine`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace


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

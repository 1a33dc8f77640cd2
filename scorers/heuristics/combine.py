"""Turning rule checks into one numeric quality score in [0, 1].

Formula (all pieces configurable through the scorer's config):

1. Each rule gets a *soft score* from its margin ``z`` (signed distance of the
   feature past its threshold, divided by the rule's ``scale``; ``z > 0`` on the
   passing side, measured in log1p space for count features)::

       soft(z) = 1 - exp(-z) / 2    if z >= 0     (passing: 0.5 .. 1)
       soft(z) = exp(z) / 2         if z <  0     (failing: 0 .. 0.5)

   It is continuous and strictly increasing in ``z``, equals 0.5 exactly at the
   threshold, so a rule's pass/fail is "soft >= 0.5" and the score still orders
   documents that all pass (or all fail) by how comfortably they do. (A strict
   rule, "> t" or "< t", that fails exactly at t gets z = -1e-9, just below 0.5.)
   ``scale`` per rule (rules.py) sets the width: e.g. word count 1.0 in log1p
   units, so 138 words give z = 1 (soft 0.82) and 18 words z = -1 (soft 0.18).
2. A family's soft score is the minimum over its rules: a family passes iff
   its weakest rule passes, so a family that fails scores below 0.5 and one
   that passes scores at least 0.5.
3. The combined score is the weighted mean of the family soft scores and of
   ``c4_lines_kept_frac`` (the share of lines C4 would keep; C4 never drops a
   page for it, so it enters as a value, not a rule). Default weights: 1 for
   each of gopher_quality, gopher_repetition, c4, fineweb and c4_lines_kept.

Scoring only: the keep/drop decision belongs to the pipeline's filter stage
and the pools.
"""
from __future__ import annotations

import math

from .families import EXTRA_COMPONENTS, FAMILIES

#: what the combined score weighs: each family's soft score, then extra components that
#: families declare (C4's kept-line share)
COMPONENTS = (*FAMILIES, *EXTRA_COMPONENTS)
DEFAULT_WEIGHTS = {name: 1.0 for name in COMPONENTS}


def soft_score(z: float) -> float:
    """Map a rule margin (in scale units, > 0 = passing side) to (0, 1); 0.5 at 0."""
    if z >= 0:
        return 1.0 - 0.5 * math.exp(-z)
    return 0.5 * math.exp(max(z, -700.0))


def combined_score(family_scores: dict[str, float], features: dict[str, float],
                   weights: dict[str, float]) -> float:
    """Weighted mean of the family soft scores and the extra components' feature values."""
    total = weight_sum = 0.0
    for name, weight in weights.items():
        if weight:
            value = family_scores[name] if name in family_scores else features[EXTRA_COMPONENTS[name]]
            total += weight * value
            weight_sum += weight
    return min(1.0, max(0.0, total / weight_sum))

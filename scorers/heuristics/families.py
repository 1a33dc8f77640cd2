"""The registered heuristic rule families, in scoring order: the one place to add a family.

A family is one :class:`~scorers.heuristics.family.RuleFamily` subclass (features, params,
rules); listing an instance here makes the scorer compute it, the combined score weigh it
and the config accept its rules, params and name in ``filter.drop_failed``.
"""
from __future__ import annotations

from .c4 import C4Lines
from .fineweb import FineWeb
from .gopher import GopherQuality, GopherRepetition
from .rules import Rule

REGISTERED = (GopherQuality(), GopherRepetition(), C4Lines(), FineWeb())

FAMILIES = tuple(f.name for f in REGISTERED)
FEATURE_NAMES = tuple(name for f in REGISTERED for name in f.feature_names)
#: extra score components (besides one per family) -> the feature holding their value
EXTRA_COMPONENTS = {c: feature for f in REGISTERED for c, feature in f.extra_components.items()}
#: defaults of every family's params (the scorer adds the shared ones)
FAMILY_PARAMS = {k: v for f in REGISTERED for k, v in f.params.items()}

# names are global: two families must not claim the same name, feature, param or component
for _kind, _names in (("family", FAMILIES), ("feature", FEATURE_NAMES),
                      ("param", [k for f in REGISTERED for k in f.params]),
                      ("component", [*FAMILIES, *(c for f in REGISTERED for c in f.extra_components)])):
    if len(set(_names)) != len(_names):
        raise ValueError(f"heuristic families: duplicate {_kind} names in {list(_names)}")


def default_rules() -> tuple[Rule, ...]:
    """All rules with the published thresholds, grouped by family in FAMILIES order."""
    return tuple(rule for family in REGISTERED for rule in family.rules())

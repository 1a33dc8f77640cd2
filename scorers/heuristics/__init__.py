"""Heuristic document-quality scorers: Gopher quality and repetition, C4 line
rules, FineWeb rules, and one combined score. Plain Python, no Beam.

    from curate.scorers.heuristics import HeuristicScorer
    scorer = HeuristicScorer()            # or HeuristicScorer(config_dict)
    result = scorer.score(text)           # .features .passed .reasons .score

A rule family is one :class:`RuleFamily` subclass, registered in ``families.REGISTERED``.
"""
from .combine import soft_score
from .families import FAMILIES, REGISTERED, default_rules
from .family import RuleFamily
from .rules import Rule
from .scorer import FEATURE_NAMES, HeuristicResult, HeuristicScorer

__all__ = ["FAMILIES", "FEATURE_NAMES", "REGISTERED", "HeuristicResult", "HeuristicScorer", "Rule",
           "RuleFamily", "default_rules", "soft_score"]

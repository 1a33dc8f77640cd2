"""Heuristic document-quality scorers: Gopher quality and repetition, C4 line
rules, FineWeb rules, and one combined score. Plain Python, no Beam.

    from curate.scorers.heuristics import HeuristicScorer
    scorer = HeuristicScorer()            # or HeuristicScorer(config_dict)
    result = scorer.score(text)           # .features .passed .reasons .score
"""
from .combine import soft_score
from .rules import FAMILIES, Rule, default_rules
from .scorer import FEATURE_NAMES, HeuristicResult, HeuristicScorer

__all__ = ["FAMILIES", "FEATURE_NAMES", "HeuristicResult", "HeuristicScorer", "Rule",
           "default_rules", "soft_score"]

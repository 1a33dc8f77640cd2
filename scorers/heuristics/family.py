"""What a heuristic rule family is, as one class: the features it computes from a document's
shared text units and the published thresholds on them.

Adding a family is writing one subclass and listing an instance in
:data:`scorers.heuristics.families.REGISTERED`; the scorer, the combined score's weights,
the config's ``rules`` / ``params`` keys and the pipeline's ``filter.drop_failed`` all
follow from that list.
"""
from __future__ import annotations

from typing import Any, ClassVar, Mapping

from .rules import Rule
from .text_units import TextUnits


class RuleFamily:
    """One family of rules (e.g. Gopher quality): features, their defaults, their thresholds.

    name:           the family's name: reason prefix, ``passed`` key, weight and rule-key prefix.
    feature_names:  the features :meth:`compute` returns, in order; names are global, so
                    prefix them with the family (``c4_...``).
    params:         defaults of its tunable parameters (the scorer config's ``params`` keys;
                    names are global too).
    extra_components: score components besides the family's own pass/fail soft score, as
                    {component name: feature whose value enters the combined score}.
    """

    name: ClassVar[str] = ""
    feature_names: ClassVar[tuple[str, ...]] = ()
    params: ClassVar[Mapping[str, Any]] = {}
    extra_components: ClassVar[Mapping[str, str]] = {}

    def prepare(self, params: Mapping[str, Any]) -> Any:
        """The resolved params (all families' params merged) -> what :meth:`compute` takes.

        Done once per scorer, so per-document work stays in :meth:`compute`.
        """
        return None

    def compute(self, units: TextUnits, prepared: Any) -> dict[str, float]:
        """Feature values of one document, keyed by ``feature_names``."""
        raise NotImplementedError

    def rules(self) -> list[Rule]:
        """The family's checks with their published thresholds (config key ``name.rule``)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

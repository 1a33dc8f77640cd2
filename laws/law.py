"""What every law of this package is: a value with named parameters that predicts.

:class:`Law` is a structural protocol (nothing inherits from it):
:class:`laws.qqt.QQTLaw`, :class:`laws.data_constrained.DataConstrainedLaw` and
:class:`laws.data_constrained.ChinchillaLaw` satisfy it. Code that handles laws of any kind
(bootstrap bands, plan robustness, law files) relies on this and nothing more:

* ``kind``: the law-file kind ("qqt", "data-constrained", "chinchilla");
* ``params``: every parameter by name (the names law files and ``--fix`` use);
* ``with_params(params)``: a copy with some parameters replaced (e.g. a bootstrap draw), the
  law itself unchanged.

Estimators are separate objects, scikit-learn style (parameters in ``__init__``,
``fit(observations)`` returns self, fitted values end in ``_``): :class:`laws.qqt_fit.QQTFit`
and :class:`laws.lm_fit.LMFit`.
"""
from __future__ import annotations

from typing import Mapping, Protocol, runtime_checkable


@runtime_checkable
class Law(Protocol):
    """A fitted law as a value (see the module docstring)."""

    kind: str

    @property
    def params(self) -> dict[str, float]:
        """Every parameter by name."""

    def with_params(self, params: Mapping[str, float]) -> "Law":
        """A copy with the named parameters replaced."""

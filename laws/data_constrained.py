"""Chinchilla and data-constrained (Muennighoff et al., NeurIPS 2023) language-model laws.

Chinchilla:          L(N, D) = E + A / N^alpha + B / D^beta
Data-constrained:    L(N, D, U_D) = E + A / N'^alpha + B / D'^beta, with

    R_D = max(D / U_D - 1, 0),       D' = U_D + U_D R*_D (1 - exp(-R_D / R*_D))
    U_N = min(N_opt(C(U_D)), N),     R_N = max(N / U_N - 1, 0),
    N'  = U_N + U_N R*_N (1 - exp(-R_N / R*_N))

    N_opt(C) = G (C / 6)^(beta / (alpha + beta)),  G = (alpha A / (beta B))^(1 / (alpha + beta)),
    C(U_D)   = 6 (G U_D)^((alpha + beta) / alpha)   (compute for which U_D is Chinchilla-optimal)

so N_opt(C(U_D)) = G (G U_D)^(beta / alpha). Predictions are computed in the log-sum-exp form
log L = LSE(log A - alpha log N', log B - beta log D', log E), the form the fits use.

Parameter names (law files, `--fix`): E, A, B, alpha, beta, R_D_star, R_N_star.
The formulas are in :mod:`laws.lm_formulas`, the fitting machinery in :mod:`laws.fitting`.
:meth:`ChinchillaLaw.fit` / :meth:`DataConstrainedLaw.fit` fit arrays (N, D[, U], y)
(scikit-learn style: ``fit`` returns self, fitted values end in _); fitting observations with
diagnostics and bootstrap, as `curate fit` does, is :class:`laws.lm_fit.LMFit`.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

# The formulas live in laws.lm_formulas (the fitting machinery needs them without the law
# classes); they are re-exported here, where the laws are described.
from curate.laws.lm_formulas import (  # noqa: F401
    CHINCHILLA_PARAMS,
    DATA_CONSTRAINED_PARAMS,
    PUBLISHED,
    chinchilla_loss,
    compute_for_unique,
    d_opt,
    data_constrained_loss,
    effective_data,
    effective_params,
    g_factor,
    lse_log_loss,
    n_opt,
    unique_params,
)

# ---------------------------------------------------------------------------------------------
# Estimators
# ---------------------------------------------------------------------------------------------

class _LMLaw:
    """Shared machinery: parameters by name, fitted state, Chinchilla optimum helpers."""

    kind = ""
    param_names: tuple[str, ...] = ()

    def __init__(self, **params):
        for name in self.param_names:
            setattr(self, name, params.get(name))

    # -- parameters ------------------------------------------------------------------------
    def get_params(self) -> dict[str, float | None]:
        """The constructor parameters (initial / fixed values), scikit-learn style."""
        return {name: getattr(self, name) for name in self.param_names}

    def to_params(self) -> dict[str, float]:
        """Current parameter values: the fitted ones after ``fit``, else the constructor's."""
        if hasattr(self, "params_"):
            return dict(self.params_)
        missing = [n for n, v in self.get_params().items() if v is None]
        if missing:
            raise ValueError(f"{self.kind} law has no value for {', '.join(missing)}: "
                             "pass them to the constructor or call fit() first")
        return {n: float(v) for n, v in self.get_params().items()}

    @property
    def params(self) -> dict[str, float]:
        """Every parameter by name (:meth:`to_params`; the :class:`laws.law.Law` protocol)."""
        return self.to_params()

    def with_params(self, params: Mapping[str, float]):
        """A new law with some parameters replaced (e.g. a bootstrap draw); unit and fixed kept."""
        moved = type(self).from_params({**self.to_params(),
                                        **{k: float(v) for k, v in params.items()}})
        for attr in ("unit", "fixed"):
            if hasattr(self, attr):
                setattr(moved, attr, getattr(self, attr))
        return moved

    @classmethod
    def from_params(cls, params: Mapping[str, float]):
        """A law with the given parameters (all names required; extra names are an error)."""
        unknown = sorted(set(params) - set(cls.param_names))
        if unknown:
            raise ValueError(f"unknown {cls.kind} parameter(s): {', '.join(unknown)}; "
                             f"expected {', '.join(cls.param_names)}")
        missing = [n for n in cls.param_names if n not in params]
        if missing:
            raise ValueError(f"{cls.kind} law is missing parameter(s): {', '.join(missing)}")
        return cls(**{n: float(params[n]) for n in cls.param_names})

    def __repr__(self) -> str:
        try:
            p = self.to_params()
        except ValueError:
            p = self.get_params()
        inner = ", ".join(f"{k}={v:.6g}" if v is not None else f"{k}=None" for k, v in p.items())
        return f"{type(self).__name__}({inner})"

    # -- compute-optimal helpers (the Chinchilla part of both laws) -------------------------
    def n_opt(self, C):
        """Compute-optimal parameters N_opt(C) of the Chinchilla part of the law."""
        p = self.to_params()
        return n_opt(C, p["A"], p["B"], p["alpha"], p["beta"])

    def d_opt(self, C):
        """Compute-optimal tokens D_opt(C) = C / (6 N_opt(C))."""
        p = self.to_params()
        return d_opt(C, p["A"], p["B"], p["alpha"], p["beta"])

    # -- fitting ---------------------------------------------------------------------------
    def _fit(self, data, y, fix, method, delta, **options):
        from curate.laws import fitting  # lazy: keeps the formulas importable without scipy

        # Constructor values double as initial values (e.g. A, B for U_N in the projection).
        options.setdefault("init", {n: v for n, v in self.get_params().items() if v is not None})
        result = fitting.fit_law(fitting.model_for(self.kind), data, y, fix=_resolve_fix(self, fix),
                                 method=method, delta=delta, **options)
        self.params_ = result.params
        self.objective_ = result.objective
        self.n_obs_ = int(np.asarray(y).size)
        self.fixed_ = tuple(sorted(result.fixed))
        self.method_ = result.method
        self.fit_result_ = result
        return self


def _resolve_fix(law: _LMLaw, fix) -> dict[str, float]:
    """fix may be a dict {name: value} or names whose values come from the constructor."""
    if fix is None:
        return {}
    if isinstance(fix, Mapping):
        out = dict(fix)
    else:
        out = {}
        for name in fix:
            value = getattr(law, name, None) if name in law.param_names else None
            if value is None:
                raise ValueError(f"cannot fix {name!r}: no value given for it")
            out[name] = value
    unknown = sorted(set(out) - set(law.param_names))
    if unknown:
        raise ValueError(f"unknown {law.kind} parameter(s) to fix: {', '.join(unknown)}; "
                         f"expected {', '.join(law.param_names)}")
    return {k: float(v) for k, v in out.items()}


class ChinchillaLaw(_LMLaw):
    """L = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022)."""

    kind = "chinchilla"
    param_names = CHINCHILLA_PARAMS

    def __init__(self, E=None, A=None, B=None, alpha=None, beta=None):
        super().__init__(E=E, A=A, B=B, alpha=alpha, beta=beta)

    def predict(self, N, D, U_D=None):
        """Loss for N parameters trained on D tokens (U_D is accepted and ignored)."""
        p = self.to_params()
        return chinchilla_loss(N, D, **p)

    def fit(self, N, D, y, *, fix=None, method="auto", delta=1e-3, **options):
        """Fit by Huber loss on log-loss residuals (see :func:`laws.fitting.fit_law`)."""
        return self._fit({"N": N, "D": D}, y, fix, method, delta, **options)


class DataConstrainedLaw(_LMLaw):
    """Data-constrained law L(N, D, U_D) of Muennighoff et al. (2023)."""

    kind = "data-constrained"
    param_names = DATA_CONSTRAINED_PARAMS

    def __init__(self, E=None, A=None, B=None, alpha=None, beta=None, R_D_star=None,
                 R_N_star=None):
        super().__init__(E=E, A=A, B=B, alpha=alpha, beta=beta, R_D_star=R_D_star,
                         R_N_star=R_N_star)

    def predict(self, N, D, U_D=None):
        """Loss for N parameters, D tokens seen of which U_D unique (U_D=None: all unique)."""
        p = self.to_params()
        if U_D is None:
            U_D = D
        return data_constrained_loss(N, D, U_D, **p)

    def fit(self, N, D, U, y, *, fix=None, method="auto", delta=1e-3, **options):
        """Fit by Huber loss on log-loss residuals (see :func:`laws.fitting.fit_law`).

        ``fix`` holds parameters fixed: {name: value}, or names taking the constructor's values.
        E.g. ``DataConstrainedLaw(**PUBLISHED).fit(N, D, U, y, fix=["E", "A", "B", "alpha",
        "beta"])`` refits only R*_D and R*_N.
        """
        return self._fit({"N": N, "D": D, "U": U}, y, fix, method, delta, **options)

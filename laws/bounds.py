"""Parameters at the bounds of the optimiser, conservative laws for planning, the epoch range.

A fitted parameter that ends at (or next to) a bound of its search box was not measured: the
data would have pushed it further. The most common case is a half-life (QQT ``tau[POOL]``,
bounded to [1e-2, 1e4] repetitions) or a decay constant (``R_D_star``, ``R_N_star``, [1e-2,
1e6]) at its *upper* bound: no decay was measured, and a plan that trusts the value repeats that
pool as if repetition were free. This module

* flags such parameters (:func:`flag_at_bounds`), for the fit, for its bootstrap draws and for
  the percentile interval, in the form law files store under ``fit.at_bound``::

      {name: {"bound": 1e4, "side": "upper", "value": 9999.7, "value_at_bound": true,
              "draw_share": 0.64, "interval_reaches": true, "box": [0.01, 1e4]}}

  (``draw_share`` / ``interval_reaches`` are None without bootstrap draws; ``box`` is the
  whole search box, None for an open side; the fit info's ``bound_scale`` is the data scale
  used for bounds of 0);
* writes one warning line per flagged parameter (:func:`bound_warnings`);
* gives the planner a conservative law (:func:`conservative_law`): every parameter whose
  bootstrap interval reaches its bound replaced by a conservative bootstrap quantile;
* reads the epoch range of the fit data (:func:`max_epochs`), which the fitters record in the
  fit info as ``max_epochs`` and, for QQT laws, ``max_epochs_by_pool``.

"At a bound" (tolerances, :func:`near_bound`): parameters the optimisers search in log
coordinates (a, tau, E, A, B, R*) are at a positive bound when within 1 % of it
(|log(v / bound)| <= 0.01); parameters searched as they are (d, b, alpha, beta) when within
0.1 % of the width of their box; a bound of 0 (d, and E whose log coordinate has no lower end)
is reached below 0.1 % of the data's scale (the smallest observed metric). These are
statements about the optimiser's box, not about noise: the TRF / L-BFGS-B optimisers stop at
the box (a start inside by 1e-9 of the box stays there), so a parameter that wants to leave it
lands well inside these tolerances, and one 1 % inside was estimated.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

#: |log(v / bound)| at or below which a log-coordinate parameter is at a positive bound.
LOG_TOL = 1e-2
#: |v - bound| / (box width) at or below which a linear-coordinate parameter is at a bound.
LINEAR_TOL = 1e-3
#: |v| / scale at or below which a parameter is at a bound of 0.
ZERO_TOL = 1e-3

#: Parameters the optimisers search as logarithms (QQT a, tau[POOL]; LM E, A, B, R*).
_LOG_NAMES = frozenset({"a", "E", "A", "B", "R_D_star", "R_N_star"})

#: Conservative direction per parameter kind: "lower" plans with the lower quantile of the
#: draws, "upper" with the upper one (see conservative_law for why).
_CONSERVATIVE = {"tau": "lower", "R_D_star": "lower", "R_N_star": "lower", "a": "lower",
                 "alpha": "lower", "beta": "lower", "b": "upper", "d": "upper", "E": "upper",
                 "A": "upper", "B": "upper"}


def param_kind(name: str) -> str:
    """"tau[pool]" -> "tau", "b[pool]" -> "b", others unchanged."""
    return name.split("[", 1)[0]


def is_log_param(name: str) -> bool:
    """Whether the optimisers search `name` in log coordinates (a, tau[..], E, A, B, R*)."""
    kind = param_kind(name)
    return kind == "tau" or kind in _LOG_NAMES


def conservative_side(name: str) -> str:
    """"lower" or "upper": which bootstrap quantile is conservative for this parameter."""
    try:
        return _CONSERVATIVE[param_kind(name)]
    except KeyError:
        raise ValueError(f"no conservative direction known for parameter {name!r}") from None


def near_bound(values, name: str, bound: float, side: str, width: float | None = None,
               scale: float = 1.0) -> np.ndarray:
    """Boolean array: which `values` of parameter `name` sit at `bound` (or beyond it).

    `side` is "lower" or "upper"; `width` the box width in the parameter's search coordinates
    (linear parameters; None = |bound| is the scale); `scale` the data scale for a bound of 0.
    Tolerances as in the module docstring.
    """
    v = np.asarray(values, dtype=float)
    sign = 1.0 if side == "upper" else -1.0
    bound = float(bound)
    if bound == 0.0:
        return sign * v >= -ZERO_TOL * abs(float(scale))
    if is_log_param(name) and bound > 0:
        with np.errstate(divide="ignore", invalid="ignore"):
            gap = sign * (np.log(np.maximum(v, 1e-300)) - math.log(bound))
        return gap >= -LOG_TOL
    tol = LINEAR_TOL * (float(width) if width is not None and math.isfinite(width)
                        else abs(bound))
    return sign * (v - bound) >= -tol


def _width(name: str, lo, hi) -> float | None:
    if lo is None or hi is None:
        return None
    if is_log_param(name) and lo > 0:
        return math.log(hi) - math.log(lo)
    return float(hi) - float(lo)


def flag_at_bounds(params: Mapping[str, float], bounds: Mapping[str, Sequence],
                   draws: Sequence[Mapping[str, float]] | None = None,
                   intervals: Mapping[str, Sequence[float]] | None = None,
                   scale: float = 1.0) -> dict[str, dict]:
    """The ``fit.at_bound`` entries of a fit: parameters at a bound of their search box.

    params: the fitted values; bounds: {name: (lo, hi)} of the free parameters in natural units
    (None for an open side); draws / intervals: the bootstrap draws and percentile intervals
    (optional); scale: the data scale for bounds of 0 (the smallest observed metric).

    A parameter is flagged when its fitted value is at a bound, or when its percentile interval
    reaches one (the fit is inside, but the data do not rule the bound out). Each entry gives
    the bound, its side, the value and whether it is at the bound, the share of draws at that
    bound and whether the interval reaches it (None, None without draws).
    """
    out: dict[str, dict] = {}
    for name, box in bounds.items():
        if name not in params:
            continue
        lo, hi = (None if b is None else float(b) for b in box)
        width = _width(name, lo, hi)
        value = float(params[name])
        vals = None
        if draws:
            vals = np.array([d[name] for d in draws if name in d], dtype=float)
            vals = vals if vals.size else None
        iv = None if not intervals or name not in intervals else intervals[name]
        candidates = []
        for side, bound in (("lower", lo), ("upper", hi)):
            if bound is None:
                continue
            at_value = bool(near_bound(value, name, bound, side, width, scale))
            share = None if vals is None else float(np.mean(near_bound(vals, name, bound, side,
                                                                       width, scale)))
            reaches = None
            if iv is not None:
                end = iv[0] if side == "lower" else iv[1]
                reaches = bool(near_bound(end, name, bound, side, width, scale))
            if at_value or reaches:
                candidates.append((at_value, share or 0.0, side, bound, share, reaches))
        if not candidates:
            continue
        at_value, _, side, bound, share, reaches = max(candidates, key=lambda c: (c[0], c[1]))
        out[name] = {"bound": bound, "side": side, "value": value, "value_at_bound": at_value,
                     "draw_share": share, "interval_reaches": reaches, "box": [lo, hi]}
    return out


def _meaning(name: str, side: str, at_value: bool) -> str:
    kind = param_kind(name)
    if kind in ("tau", "R_D_star", "R_N_star") and side == "upper":
        return ("no decay with repetition was measured, repeated data may be worth less than "
                "the law says" if at_value else "the data do not rule out no decay with "
                "repetition (repeated data may be worth less than the law says)")
    if kind in ("tau", "R_D_star", "R_N_star"):
        return "decay faster than the fit can resolve"
    if kind in ("d", "E") and side == "lower":
        return "no floor was measured" if at_value else "the data do not rule out no floor"
    if kind == "b" and side == "upper":
        return "no gain from more data was measured"
    return ("the data would push it beyond the search box" if at_value
            else "the data do not rule the bound out")


def bound_warnings(at_bound: Mapping[str, Mapping]) -> list[str]:
    """One line per flagged parameter, for stderr and the law file's fit warnings."""
    lines = []
    for name, f in at_bound.items():
        where = "is at" if f.get("value_at_bound") else "is inside, but its interval reaches"
        text = (f"{name} = {_fmt(f['value'])} {where} the {f['side']} bound "
                f"{_fmt(f['bound'])} of the fit: "
                f"{_meaning(name, f['side'], bool(f.get('value_at_bound')))}")
        if f.get("draw_share") is not None:
            text += f"; {_pct(f['draw_share'])} of bootstrap draws at the bound"
            text += ", the interval reaches it" if f.get("interval_reaches") else ""
        lines.append(text)
    return lines


def conservative_law(law, quantile: float = 0.1):
    """The law with each parameter whose bootstrap interval reaches its bound replaced by its
    conservative bootstrap quantile; returns (law, notes), one note per flagged parameter.

    Which quantile is conservative, per parameter kind ("less gain than the fit claims"):

    * half-lives tau[POOL] and decay constants R_D_star, R_N_star: the *lower* `quantile` of
      the draws. A smaller half-life means repeated data loses its value faster, so the plan
      repeats a pool less; the upper bound (1e4, R*: 1e6) means "no decay measured", the most
      optimistic value possible.
    * QQT scale a, LM exponents alpha, beta: the lower quantile (a smaller a or exponent
      means less improvement per sample / parameter).
    * QQT utility b (negative), floors d and E, LM coefficients A, B: the *upper* `1 -
      quantile` (a b closer to 0 is a flatter curve; a higher floor or coefficient a higher
      predicted loss).

    Only parameters flagged in ``law.fit_info["at_bound"]`` with ``interval_reaches`` true are
    touched, and only when the quantile is more conservative than the current value. When the
    quantile itself sits at the bound (most draws there) nothing can be planned more
    conservatively from the data: the value is kept and the note says so. A law without
    bootstrap draws or flags comes back unchanged with []. The returned law keeps the fit
    info (with ``conservative``: {name: {"from", "to", "quantile"}} added) and the draws.
    """
    if not 0 < quantile < 0.5:
        raise ValueError(f"quantile must be in (0, 0.5), got {quantile!r}")
    fit = getattr(law, "fit_info", None) or {}
    flags = fit.get("at_bound") or {}
    draws = (getattr(law, "bootstrap", None) or {}).get("draws") or []
    if not flags or not draws:
        return law, []
    current = law.params
    replace: dict[str, float] = {}
    record: dict[str, dict] = {}
    notes: list[str] = []
    for name, f in flags.items():
        if not f.get("interval_reaches") or name not in current:
            continue
        vals = np.array([d[name] for d in draws if name in d], dtype=float)
        if not vals.size:
            continue
        direction = conservative_side(name)
        q = quantile if direction == "lower" else 1.0 - quantile
        target = float(np.quantile(vals, q))
        value = float(current[name])
        share = f.get("draw_share")
        head = (f"{name} at the {_fmt(f['bound'])} bound"
                + (f" in {_pct(share)} of draws" if share is not None else ""))
        label = f"{round(100 * q):d}% quantile"
        at_bound = bool(near_bound(target, name, f["bound"], f["side"],
                                   _width_from_flags(name, f), _scale(fit)))
        more_conservative = target < value if direction == "lower" else target > value
        if at_bound and f["side"] != _optimistic_end(direction):
            # the bound reached is the pessimistic end: the value is conservative already
            continue
        if at_bound:
            notes.append(f"{head}: its {label} {_fmt(target)} is at the bound too; the data "
                         f"cannot say how much less to trust it, planning with {_fmt(value)}")
            continue
        if not more_conservative:
            continue
        replace[name] = target
        record[name] = {"from": value, "to": target, "quantile": q}
        notes.append(f"{head}: planning with its {label} {_fmt(target)}")
    if not replace:
        return law, notes
    moved = law.with_params(replace)
    # with_params keeps the parameters; the planner also needs provenance and the draws
    moved.fit_info = {**fit, "conservative": record}
    moved.bootstrap = getattr(law, "bootstrap", None)
    for attr in ("pool_sizes", "unit", "fixed"):
        if hasattr(law, attr) and not isinstance(getattr(type(law), attr, None), property):
            setattr(moved, attr, getattr(law, attr))
    return moved, notes


def max_epochs(law, pool: str | None = None) -> float | None:
    """The largest epoch count (samples seen / unique samples) in the law's fit data.

    With `pool`, that pool's own largest count (``max_epochs_by_pool``), falling back to the
    law-wide value when the pool has none; None when the law file predates these keys.
    """
    fit = getattr(law, "fit_info", None) or {}
    if pool is not None:
        by_pool = fit.get("max_epochs_by_pool") or {}
        if by_pool.get(pool) is not None:
            return float(by_pool[pool])
    value = fit.get("max_epochs")
    return None if value is None else float(value)


# -- helpers ----------------------------------------------------------------------------------

def _optimistic_end(direction: str) -> str:
    """The end of the box that claims the most gain: conservative 'lower' -> the upper end."""
    return "upper" if direction == "lower" else "lower"


def _width_from_flags(name: str, flag: Mapping) -> float | None:
    box = flag.get("box")
    return None if not box else _width(name, box[0], box[1])


def _scale(fit: Mapping) -> float:
    scale = fit.get("bound_scale")
    return 1.0 if scale is None else float(scale)


def _fmt(x) -> str:
    """4 significant digits, exponents without '+' and leading zeros: 1e4, 2.5e13, 0.0372."""
    if x is None:
        return "-"
    text = f"{float(x):.4g}"
    if "e" in text:
        mant, exp = text.split("e")
        text = f"{mant}e{int(exp)}"
    return text


def _pct(share) -> str:
    return f"{100 * float(share):.0f}%"


def bound_text(flag: dict, number=lambda x: f"{x:g}") -> str:
    """"at upper bound 1e+04 (64% of draws)" for one `at_bound` entry (fit tables, reports)."""
    where = "at" if flag.get("value_at_bound") else "interval reaches"
    text = f"{where} {flag.get('side', '?')} bound {number(flag.get('bound'))}"
    if flag.get("draw_share") is not None:
        text += f" ({100 * float(flag['draw_share']):.0f}% of draws)"
    return text


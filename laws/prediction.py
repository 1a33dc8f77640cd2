"""Predictions of a fitted law at given sample counts, with the bootstrap band: what `curate
predict` prints, as a plain dict (JSON-able), for any law kind.

    predict_table(law, [1e8, 2e8], pool="top10")
    predict_table(law, [3.2e7], mixture={"top10": 0.5, "top20": 0.5})
    predict_table(dc_law, [178e9], params=8.67e9, unique=25e9)

QQT laws take one `pool` (`unique`: another size for it) or a `mixture` (weights normalised;
sizes from the law); language-model laws take `params` (model size) and `unique` (defaults to
the samples: no repetition). Bad combinations raise ValueError with a one-line reason, and so
does a prediction or interval bound that is NaN or infinite (naming the input), as
:func:`require_finite_plan` does for a plan.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from curate.laws.bootstrap import prediction_band


def predict_table(law, samples: Sequence[float], *, pool: str | None = None,
                  mixture: Mapping[str, float] | None = None, params: float | None = None,
                  unique: float | None = None) -> dict:
    """{target..., samples, prediction, interval (+ level, n_draws)} for `law` at `samples`."""
    samples = np.asarray(samples, dtype=float)
    if not (samples.ndim == 1 and len(samples) and np.all(np.isfinite(samples)) and np.all(samples > 0)):
        raise ValueError("samples must be positive and finite")
    if unique is not None and not (np.isfinite(unique) and unique > 0):
        raise ValueError("--unique must be a positive number")
    unit = getattr(law, "unit", None) or ("samples" if law.kind == "qqt" else "tokens")
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # checked just below
        if law.kind == "qqt":
            result = _qqt(law, samples, pool, unique, mixture, params)
            what = f"pool {pool}" if pool else "mixture " + ", ".join(
                f"{p}={w:.3g}" for p, w in result["mixture"].items())
        else:
            if pool or mixture:
                raise ValueError(f"a {law.kind} law has no pools: drop --pool/--mixture")
            if params is None or not params > 0:
                raise ValueError(f"a {law.kind} law needs --params (model size N > 0)")
            result = _lm(law, samples, params, unique)
            what = f"N = {params:g} params"
    _require_finite_rows(result, what, unit)
    return result


def _qqt(law, samples, pool, size, mixture, params) -> dict:
    if not (pool or mixture):
        raise ValueError(f"a QQT law needs --pool NAME or --mixture NAME=WEIGHT,... "
                         f"(pools: {', '.join(law.pools)})")
    if params is not None:
        raise ValueError("--params does not apply to a QQT law")
    if pool:
        if pool not in law.pools:
            raise ValueError(f"unknown pool {pool!r}; the law knows {', '.join(law.pools)}")

        def predict(m):
            return m.predict(samples, pool=pool, size=size)
        target = {"pool": pool, "pool_size": size or law.pool_sizes[pool]}
    else:
        if size is not None:
            raise ValueError("--unique applies to --pool only (mixture sizes come from the law)")
        unknown = [p for p in mixture if p not in law.pools]
        if unknown:
            raise ValueError(f"--mixture: unknown pool(s) {unknown}; the law knows {', '.join(law.pools)}")
        weights = dict(mixture)

        def predict(m):
            return m.predict_mixture(weights, samples)
        target = {"mixture": weights}
    return {**target, "samples": samples.tolist(), "prediction": [float(v) for v in predict(law)],
            **_interval(law, predict)}


def _lm(law, samples, params, unique) -> dict:
    unique = samples if unique is None else np.full_like(samples, unique)
    if np.any(unique > samples * (1 + 1e-12)):
        raise ValueError("--unique must not exceed --samples")

    def predict(m):
        return np.asarray(m.predict(np.full_like(samples, params), samples, unique), dtype=float)

    return {"params": params, "samples": samples.tolist(), "unique": unique.tolist(),
            "prediction": [float(v) for v in predict(law)], **_interval(law, predict)}


def _interval(law, predict) -> dict:
    """Percentile interval over the law file's bootstrap draws (empty when there are none)."""
    boot = getattr(law, "bootstrap", None) or {}
    draws = boot.get("draws") or []
    if not draws:
        return {"interval": None}
    level = float(boot.get("level", 0.9))
    lo, hi = prediction_band(law, draws, predict, level)
    return {"level": level, "interval": [[float(a), float(b)] for a, b in zip(lo, hi)],
            "n_draws": len(draws)}


# ---------------------------------------------------------------------------------------------
# Non-finite predictions are errors (issue 17: `curate predict` printed a bare NaN / inf, and a
# plan table showed an infinite baseline), with one line saying which input produced them.
# ---------------------------------------------------------------------------------------------

_OVERFLOW = "its parameters overflow there (check the law file's params)"


def _require_finite_rows(result: dict, what: str, unit: str) -> None:
    """Every prediction and interval bound of a predict_table result is finite, else ValueError."""
    for i, n in enumerate(result["samples"]):
        values = [result["prediction"][i]] + list((result.get("interval") or [[]] * (i + 1))[i])
        bad = [v for v in values if not np.isfinite(v)]
        if bad:
            where = "prediction" if not np.isfinite(values[0]) else \
                f"{int(round(result['level'] * 100))}% interval"
            raise ValueError(f"the law's {where} for {what} at {n:g} {unit} is {bad[0]}: {_OVERFLOW}")


def require_finite_plan(plan: dict) -> None:
    """Raise ValueError naming the first non-finite number of a plan-file dict (a predicted
    loss, a baseline, an interval bound, a sweep point...), with the mixture and budget it is for."""
    found = _first_non_finite(plan, (), {})
    if found is None:
        return
    path, value, context = found
    what = context.get("name") or context.get("mixture")
    weights = context.get("weights")
    if weights:
        mix = ", ".join(f"{p}={w:.3g}" for p, w in weights.items() if w)
        what = f"{what} ({mix})" if what else mix
    budget = context.get("budget")
    unit = f" {plan['unit']}" if isinstance(plan.get("unit"), str) else ""
    at = f" at a budget of {budget:g}{unit}" if isinstance(budget, (int, float)) else ""
    raise ValueError(f"the law predicts {value} for {what or 'the plan'}{at} "
                     f"({'.'.join(map(str, path))}): {_OVERFLOW}")


def _first_non_finite(node, path: tuple, context: dict):
    if isinstance(node, float):
        return None if np.isfinite(node) else (path, node, context)
    if isinstance(node, dict):
        inner = dict(context)
        for key in ("name", "mixture", "weights", "budget"):
            if node.get(key) is not None:
                inner[key] = node[key]
        items = node.items()
    elif isinstance(node, (list, tuple)):
        inner, items = context, enumerate(node)
    else:
        return None
    for key, value in items:
        found = _first_non_finite(value, path + (key,), inner)
        if found is not None:
            return found
    return None

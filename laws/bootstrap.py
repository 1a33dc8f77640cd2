"""Bootstrap uncertainty for fitted laws: parameter draws, percentile intervals, prediction bands.

The fitter is passed in as a function of row indices, so this module works for every law
(Chinchilla, data-constrained, QQT) and every fitting method. Rows can be resampled in groups
(e.g. all checkpoints of one training run together): points of one run are not independent,
and resampling them one by one would make the intervals too narrow.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np


def resample_indices(rng: np.random.Generator, n_rows: int, groups=None) -> np.ndarray:
    """One bootstrap sample of row indices: rows with replacement, or whole groups."""
    if groups is None:
        return rng.integers(0, n_rows, size=n_rows)
    labels = np.asarray(groups)
    if labels.shape != (n_rows,):
        raise ValueError(f"groups must have one label per row ({n_rows}), got shape {labels.shape}")
    uniq, inverse = np.unique(labels, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(uniq.size)]
    drawn = rng.integers(0, uniq.size, size=uniq.size)
    return np.concatenate([members[g] for g in drawn])


def bootstrap_draws(fit_fn: Callable[[np.ndarray], Mapping[str, float]], n_rows: int,
                    n_boot: int, seed: int, groups=None,
                    max_failures: int | None = None) -> list[dict[str, float]]:
    """Refit on n_boot resamples; return one {name: value} dict per successful refit.

    fit_fn(row_indices) fits the law on those rows (indices repeat) and returns its parameters.
    A resample on which the fit fails (ValueError / RuntimeError, e.g. too few distinct points)
    is replaced by a new one; more than ``max_failures`` (default n_boot) failures is an error.
    Deterministic for a given seed.
    """
    if n_boot < 1:
        raise ValueError("n_boot must be at least 1")
    if n_rows < 2:
        raise ValueError("bootstrap needs at least 2 rows")
    rng = np.random.default_rng(seed)
    limit = n_boot if max_failures is None else max_failures
    draws: list[dict[str, float]] = []
    failures = 0
    last_error: Exception | None = None
    while len(draws) < n_boot:
        idx = resample_indices(rng, n_rows, groups)
        try:
            params = fit_fn(idx)
        except (ValueError, RuntimeError, FloatingPointError) as exc:
            failures += 1
            last_error = exc
            if failures > limit:
                raise RuntimeError(f"bootstrap: {failures} refits failed (last: {last_error})") \
                    from exc
            continue
        draws.append({k: float(v) for k, v in params.items()})
    return draws


def _tails(level: float) -> tuple[float, float]:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return 100 * (1 - level) / 2, 100 * (1 + level) / 2


def percentile_intervals(draws: Sequence[Mapping[str, float]], level: float = 0.9,
                         ) -> dict[str, tuple[float, float]]:
    """Equal-tailed percentile interval per parameter name from bootstrap draws."""
    if not draws:
        raise ValueError("no bootstrap draws")
    lo_q, hi_q = _tails(level)
    out = {}
    for name in draws[0]:
        vals = np.array([d[name] for d in draws], dtype=float)
        lo, hi = np.percentile(vals, [lo_q, hi_q])
        out[name] = (float(lo), float(hi))
    return out


def prediction_draws(draws: Sequence[Mapping[str, float]],
                     predict: Callable[[Mapping[str, float]], np.ndarray]) -> np.ndarray:
    """Predictions under every draw: array (n_draws, *prediction shape)."""
    return np.stack([np.asarray(predict(d), dtype=float) for d in draws])


def prediction_intervals(draws: Sequence[Mapping[str, float]],
                         predict: Callable[[Mapping[str, float]], np.ndarray],
                         level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise percentile band (lo, hi) of predict(params) over the draws.

    This is the uncertainty of the fitted *curve* (parameter uncertainty), not of a new
    observation, which would also carry the run-to-run noise.
    """
    preds = prediction_draws(draws, predict)
    lo_q, hi_q = _tails(level)
    lo, hi = np.percentile(preds, [lo_q, hi_q], axis=0)
    return lo, hi


def prediction_band(law, draws: Sequence[Mapping[str, float]], predict: Callable,
                    level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise percentile band (lo, hi) of ``predict(law.with_params(draw))`` over the draws.

    The one bootstrap band of this package: `law` is any :class:`laws.law.Law` (QQT,
    data-constrained, Chinchilla), `draws` its bootstrap parameter draws (free parameters only;
    the others keep the law's values) and `predict(law) -> array` what to band.
    """
    return prediction_intervals(draws, lambda d: predict(law.with_params(d)), level)

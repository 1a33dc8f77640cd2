"""Training observations for law fitting: one row per measured point, validated.

Columns (canonical names; `curate.probe.observations_io` maps other names onto these):

    pool            a pool name, or a mixture written `name=weight;name=weight`
    samples_seen    samples (documents or tokens) trained on, repetitions included   (> 0)
    unique_samples  distinct samples among them                        (> 0, <= samples_seen)
    metric          loss or error, lower is better                                    (> 0)
    params          model size N (optional; required by the LM laws)                  (> 0)
    run_id, step    optional: which training run / checkpoint a row comes from

Validation raises ValueError naming the 1-based data row and the problem (NaN, inf, missing or
non-numeric values, non-positive counts, values above the sane maxima below, unique > seen,
duplicate rows, bad mixture syntax, weights not summing to > 0) and, through
:func:`require_points`, too few points for a law.

Sane ranges: samples_seen, unique_samples, params and step at most :data:`MAX_COUNT` (1e15; the
largest LM runs train on ~1e13 tokens), metric at most :data:`MAX_METRIC`, and at most
:data:`MAX_EPOCHS` (1e5) passes over the unique samples. Why: the law kernels' work grows with
the passes a row makes, so one `samples_seen=1e308` row asked for gigabytes; a value outside
these ranges is a typo or a unit error, not a measurement.
Pure Python/numpy: reading files is the CLI's job.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

REQUIRED = {
    "qqt": ("pool", "samples_seen", "unique_samples", "metric"),
    "data-constrained": ("samples_seen", "unique_samples", "metric", "params"),
    "chinchilla": ("samples_seen", "metric", "params"),
}
NUMERIC = ("samples_seen", "unique_samples", "metric", "params", "step")
KNOWN = ("pool", "samples_seen", "unique_samples", "metric", "params", "run_id", "step")
#: Largest samples_seen / unique_samples / params / step accepted (see the module docstring).
MAX_COUNT = 1e15
#: Largest metric accepted (losses and error rates are far below; perplexities too).
MAX_METRIC = 1e15
#: Most passes over its unique samples a row may make (samples_seen / unique_samples); the
#: datablations runs go to 9,000.
MAX_EPOCHS = 1e5
_MAXIMA = {"samples_seen": MAX_COUNT, "unique_samples": MAX_COUNT, "params": MAX_COUNT,
           "step": MAX_COUNT, "metric": MAX_METRIC}


@dataclass
class Observations:
    """Validated observations (arrays aligned by row).

    `mixtures[i]` is None for a single-pool row, else {pool: weight} with weights normalised to
    sum to 1. `pool_names` lists every pool mentioned, in order of first appearance.
    """

    pool: list[str]
    samples_seen: np.ndarray
    unique_samples: np.ndarray
    metric: np.ndarray
    params: np.ndarray | None = None
    run_id: list[str] | None = None
    step: np.ndarray | None = None
    mixtures: list[dict[str, float] | None] | None = None

    def __post_init__(self):
        if self.mixtures is None:
            self.mixtures = [None] * len(self.pool)

    def __len__(self) -> int:
        return int(self.samples_seen.size)

    @property
    def pool_names(self) -> list[str]:
        """Pools the rows draw from (a pool only ever given weight 0 draws nothing: left out)."""
        seen: dict[str, None] = {}
        for name, mix in zip(self.pool, self.mixtures):
            for p in ([q for q, w in mix.items() if w > 0] if mix else [name]):
                seen.setdefault(p, None)
        return list(seen)

    @property
    def is_mixture(self) -> np.ndarray:
        return np.array([m is not None for m in self.mixtures], dtype=bool)

    def groups(self) -> np.ndarray | None:
        """Integer group per row for resampling whole runs (None without run ids)."""
        if self.run_id is None:
            return None
        _, codes = np.unique(np.asarray(self.run_id, dtype=object).astype(str), return_inverse=True)
        return codes

    def subset(self, rows) -> "Observations":
        """The observations at the given row indices (repeats allowed, e.g. bootstrap)."""
        idx = np.asarray(rows, dtype=int)
        pick = lambda xs: None if xs is None else [xs[i] for i in idx]  # noqa: E731
        arr = lambda xs: None if xs is None else xs[idx]  # noqa: E731
        return Observations(pool=pick(self.pool), samples_seen=self.samples_seen[idx],
                            unique_samples=self.unique_samples[idx], metric=self.metric[idx],
                            params=arr(self.params), run_id=pick(self.run_id),
                            step=arr(self.step), mixtures=pick(self.mixtures))

    def as_columns(self) -> dict[str, list]:
        """Plain columns (e.g. to write back out)."""
        out: dict[str, list] = {"pool": list(self.pool),
                                "samples_seen": self.samples_seen.tolist(),
                                "unique_samples": self.unique_samples.tolist(),
                                "metric": self.metric.tolist()}
        if self.params is not None:
            out["params"] = self.params.tolist()
        if self.run_id is not None:
            out["run_id"] = list(self.run_id)
        if self.step is not None:
            out["step"] = self.step.tolist()
        return out


def parse_mixture(text: str, where: str = "mixture") -> dict[str, float] | None:
    """`name=weight;name=weight` -> {name: weight normalised to sum 1}; a plain name -> None.

    Raises ValueError (prefixed by `where`) for bad syntax, non-numeric / negative / non-finite
    weights, repeated names, or weights that do not sum to > 0.
    """
    text = text.strip()
    if "=" not in text and ";" not in text:
        return None
    weights: dict[str, float] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            if text.endswith(";"):
                continue  # tolerate one trailing separator
            raise ValueError(f"{where}: bad mixture syntax {text!r} "
                             "(empty item; expected name=weight;name=weight)")
        if part.count("=") != 1:
            raise ValueError(f"{where}: bad mixture syntax {text!r} "
                             f"(item {part!r} is not name=weight)")
        name, raw = (s.strip() for s in part.split("="))
        if not name or any(c in name for c in "[],"):
            raise ValueError(f"{where}: bad pool name {name!r} in mixture {text!r}")
        try:
            w = float(raw)
        except ValueError:
            raise ValueError(f"{where}: mixture weight {raw!r} for pool {name!r} "
                             "is not a number") from None
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"{where}: mixture weight for pool {name!r} must be finite "
                             f"and >= 0, got {raw!r}")
        if name in weights:
            raise ValueError(f"{where}: pool {name!r} appears twice in mixture {text!r}")
        weights[name] = w
    total = sum(weights.values())
    if not weights or total <= 0:
        raise ValueError(f"{where}: mixture weights in {text!r} must sum to more than 0")
    return {k: v / total for k, v in weights.items()}


def validate_observations(columns: Mapping[str, Sequence], law: str | None = None) -> Observations:
    """Check raw columns (lists of numbers/strings/None) and build :class:`Observations`.

    `law` ("qqt", "data-constrained", "chinchilla" or None) decides the required columns. For
    the LM laws a missing `pool` column means one data source and a missing `unique_samples`
    (Chinchilla only) means all samples unique.
    """
    if law is not None and law not in REQUIRED:
        raise ValueError(f"unknown law {law!r}; expected one of {list(REQUIRED)}")
    required = REQUIRED[law] if law else ("samples_seen", "unique_samples", "metric")
    missing = [c for c in required if c not in columns]
    if missing:
        raise ValueError(f"observations lack column(s) {missing}; present: {sorted(columns)} "
                         "(use --columns canonical=source to map names)")
    lengths = {name: len(col) for name, col in columns.items() if name in KNOWN}
    n = lengths[required[0]]
    bad = {k: v for k, v in lengths.items() if v != n}
    if bad:
        raise ValueError(f"observation columns have different lengths: {lengths}")
    if n == 0:
        raise ValueError("observations are empty (no data rows)")

    numbers = {name: _numeric_column(name, columns[name]) for name in NUMERIC if name in columns}
    seen = numbers["samples_seen"]
    unique = numbers.get("unique_samples", seen.copy())
    for name in ("samples_seen", "unique_samples", "metric", "params"):
        if name in numbers:
            bad_rows = np.flatnonzero(numbers[name] <= 0)
            if bad_rows.size:
                r = int(bad_rows[0])
                raise ValueError(f"row {r + 1}: {name} must be positive, got {numbers[name][r]:g}")
    for name, top in _MAXIMA.items():
        if name in numbers:
            bad_rows = np.flatnonzero(np.abs(numbers[name]) > top)
            if bad_rows.size:
                r = int(bad_rows[0])
                raise ValueError(f"row {r + 1}: {name} {numbers[name][r]:g} is above the maximum "
                                 f"{top:g} (a typo or a unit error?)")
    over = np.flatnonzero(unique > seen * (1 + 1e-12))
    if over.size:
        r = int(over[0])
        raise ValueError(f"row {r + 1}: unique_samples ({unique[r]:g}) > samples_seen ({seen[r]:g})")
    over = np.flatnonzero(seen > unique * MAX_EPOCHS)
    if over.size:
        r = int(over[0])
        raise ValueError(f"row {r + 1}: samples_seen ({seen[r]:g}) is {seen[r] / unique[r]:.3g} passes "
                         f"over unique_samples ({unique[r]:g}); at most {MAX_EPOCHS:g} are accepted")

    pools = [_text(v, "pool", i) for i, v in enumerate(columns["pool"])] if "pool" in columns \
        else ["data"] * n
    mixtures = [parse_mixture(p, where=f"row {i + 1}") for i, p in enumerate(pools)]
    for i, (p, mix) in enumerate(zip(pools, mixtures)):
        if mix is None and (not p or any(c in p for c in "[],")):
            raise ValueError(f"row {i + 1}: bad pool name {p!r}")
    run_id = [_text(v, "run_id", i) for i, v in enumerate(columns["run_id"])] \
        if "run_id" in columns else None
    obs = Observations(pool=pools, samples_seen=seen, unique_samples=unique,
                       metric=numbers["metric"], params=numbers.get("params"), run_id=run_id,
                       step=numbers.get("step"), mixtures=mixtures)
    _check_duplicates(obs)
    return obs


def require_points(n_obs: int, n_free: int, law: str) -> None:
    """Too few points for the law: need more observations than free parameters."""
    if n_obs <= n_free:
        raise ValueError(f"too few points for the {law} law: {n_obs} observation(s) for "
                         f"{n_free} free parameter(s); need at least {n_free + 1} "
                         "(add runs or fix parameters with --fix)")


def _numeric_column(name: str, values: Sequence) -> np.ndarray:
    out = np.empty(len(values), dtype=float)
    for i, v in enumerate(values):
        if v is None or (isinstance(v, str) and not v.strip()):
            raise ValueError(f"row {i + 1}: {name} is missing")
        if isinstance(v, bool):
            raise ValueError(f"row {i + 1}: {name} must be a number, got {v!r}")
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"row {i + 1}: {name} must be a number, got {v!r}") from None
        if math.isnan(x):
            raise ValueError(f"row {i + 1}: {name} is NaN")
        if math.isinf(x):
            raise ValueError(f"row {i + 1}: {name} is infinite")
        out[i] = x
    return out


def _text(value, name: str, i: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise ValueError(f"row {i + 1}: {name} is missing")
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # pool 3 read as 3.0 -> "3"
    text = str(value).strip()
    if not text:
        raise ValueError(f"row {i + 1}: {name} is empty")
    return text


def _check_duplicates(obs: Observations) -> None:
    """Identical rows, or one (run_id, step) measured twice, are duplicates."""
    first: dict[tuple, int] = {}
    for i in range(len(obs)):
        key = (obs.pool[i], obs.samples_seen[i], obs.unique_samples[i], obs.metric[i],
               None if obs.params is None else obs.params[i],
               None if obs.run_id is None else obs.run_id[i],
               None if obs.step is None else obs.step[i])
        if key in first:
            raise ValueError(f"row {i + 1}: duplicate of row {first[key] + 1}")
        first[key] = i
    if obs.run_id is not None and obs.step is not None:
        runs: dict[tuple, int] = {}
        for i, key in enumerate(zip(obs.run_id, obs.step.tolist())):
            if key in runs:
                raise ValueError(f"row {i + 1}: run_id {key[0]!r} step {key[1]:g} already "
                                 f"measured in row {runs[key] + 1} (duplicate row)")
            runs[key] = i

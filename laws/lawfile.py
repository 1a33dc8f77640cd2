"""Law objects <-> the JSON law-file dict ("curate-law/1"), with validation.

Pure dict conversion (no file I/O here: the CLI reads and writes the JSON). This module sits
above the law classes (it imports them; they do not import it). The contract:

    {"format": "curate-law/1", "kind": "qqt" | "data-constrained" | "chinchilla",
     "variant": "utility" | "data" (qqt), "unit": "samples" | "documents" | "tokens",
     "normalizer": 1e5 (qqt), "params": {name: value}, "pools": [{"name", "size"}] (qqt),
     "fixed": [names], "fit": {...} (optional), "bootstrap": {...} (optional)}

QQT parameter names are `a`, `d`, `b[POOL]`, `tau[POOL]`; data-constrained ones are
`E, A, B, alpha, beta, R_D_star, R_N_star` (Chinchilla: the first five).
`law_from_dict` raises ValueError naming the missing or bad field.

The fit section (written by the fitters, free-form apart from these checked keys):

    "max_epochs": largest samples_seen / unique_samples of the fit data (> 0),
    "max_epochs_by_pool": {pool: largest epochs of that pool} (qqt; pools of the law),
    "at_bound": {name: {"bound", "side": "lower" | "upper", "value", "value_at_bound",
                        "draw_share": share or null, "interval_reaches": bool or null,
                        "box": [lo, hi]}}  parameters at the optimiser's box (laws.bounds),
    "bounds": {name: [lo, hi]}, "bound_scale": the data scale for bounds of 0,
    "warnings": [lines]

They are read back unchanged: a loaded law's ``fit_info`` holds them (``laws.bounds.max_epochs``
reads the epoch range; ``laws.bounds.conservative_law`` the flags). Files without them (older
fits) load too.
"""
from __future__ import annotations

import math

FORMAT = "curate-law/1"
KINDS = ("qqt", "data-constrained", "chinchilla")
UNITS = ("samples", "documents", "tokens")
CHINCHILLA_PARAMS = ("E", "A", "B", "alpha", "beta")
DATA_CONSTRAINED_PARAMS = CHINCHILLA_PARAMS + ("R_D_star", "R_N_star")
# Characters that would make a pool name ambiguous in `name=weight;name=weight` mixtures,
# in `b[POOL]` parameter names or in `--mixture a=0.5,b=0.5`.
_RESERVED_POOL_CHARS = set("=;,[]")


def law_kind(law) -> str:
    """The law-file kind of a law object."""
    kind = getattr(law, "kind", None)
    if kind in KINDS:
        return kind
    name = type(law).__name__
    if name == "QQTLaw":
        return "qqt"
    if name == "DataConstrainedLaw":
        return "data-constrained"
    if name == "ChinchillaLaw":
        return "chinchilla"
    raise ValueError(f"cannot serialise a {name}: not a known law type")


def law_to_dict(law) -> dict:
    """The law-file dict for a QQTLaw, DataConstrainedLaw or ChinchillaLaw."""
    kind = law_kind(law)
    out: dict = {"format": FORMAT, "kind": kind}
    if kind == "qqt":
        out["variant"] = law.variant
        out["unit"] = law.unit
        out["normalizer"] = float(law.normalizer)
        out["params"] = {k: float(v) for k, v in law.params.items()}
        # gap: where the pool's tau was measured (two presentations of a sample this many
        # samples apart); gamma: how tau stretches with the gap (laws/qqt.py)
        out["gamma"] = float(law.gamma)
        out["pools"] = [{"name": p, "size": _plain_number(n), "gap": _plain_number(g)}
                        for (p, n), g in zip(law.pool_sizes.items(), law.gaps)]
    else:
        out["unit"] = getattr(law, "unit", "tokens") or "tokens"
        out["params"] = {k: float(v) for k, v in _dc_params(law, kind).items()}
    fixed = getattr(law, "fixed", None)
    if fixed is None:  # an LM law fitted directly carries the fitted attribute fixed_ instead
        fixed = getattr(law, "fixed_", None) or []
    out["fixed"] = sorted(fixed) if kind != "qqt" else list(fixed)
    fit_info = getattr(law, "fit_info", None)
    if fit_info:
        out["fit"] = _jsonable(fit_info)
    boot = getattr(law, "bootstrap", None)
    if boot:
        out["bootstrap"] = _jsonable(boot)
    return out


def law_from_dict(data: dict):
    """Validate a law-file dict and build the law object it describes."""
    if not isinstance(data, dict):
        raise ValueError("law file: expected a JSON object at the top level")
    fmt = data.get("format")
    if fmt != FORMAT:
        raise ValueError(f"law file: field 'format' must be {FORMAT!r}, got {fmt!r}")
    kind = data.get("kind")
    if kind not in KINDS:
        raise ValueError(f"law file: field 'kind' must be one of {list(KINDS)}, got {kind!r}")
    unit = data.get("unit", "samples" if kind == "qqt" else "tokens")
    if unit not in UNITS:
        raise ValueError(f"law file: field 'unit' must be one of {list(UNITS)}, got {unit!r}")
    params = data.get("params")
    if not isinstance(params, dict) or not params:
        raise ValueError("law file: field 'params' is missing or not an object")
    for name, value in params.items():
        _finite(value, f"params.{name}")
    fixed = data.get("fixed", []) or []
    if not isinstance(fixed, list) or not all(isinstance(f, str) for f in fixed):
        raise ValueError("law file: field 'fixed' must be a list of parameter names")
    unknown_fixed = [f for f in fixed if f not in params]
    if unknown_fixed:
        raise ValueError(f"law file: field 'fixed' names unknown parameter(s) {unknown_fixed}")
    for section in ("fit", "bootstrap"):
        if section in data and data[section] is not None and not isinstance(data[section], dict):
            raise ValueError(f"law file: field {section!r} must be an object")
    if kind == "qqt":
        law = _qqt_from_dict(data, params, unit, fixed)
    else:
        law = _dc_from_dict(data, kind, params, unit, fixed)
    _check_bootstrap(data.get("bootstrap"), params)
    _check_fit(data.get("fit"), params, law.pools if kind == "qqt" else None)
    return law


# -- QQT ----------------------------------------------------------------------------------------

def _qqt_from_dict(data, params, unit, fixed):
    from curate.laws.qqt import LAW_VARIANTS, QQTLaw, a_name, b_name, tau_name

    variant = data.get("variant", "utility")
    if variant not in LAW_VARIANTS:
        raise ValueError(f"law file: field 'variant' must be one of {list(LAW_VARIANTS)}, got {variant!r}")
    gamma = _finite(data.get("gamma", 1.0), "gamma")
    if gamma < 0:
        raise ValueError(f"law file: field 'gamma' must be >= 0, got {gamma!r}")
    normalizer = _finite(data.get("normalizer", 1e5), "normalizer")
    if normalizer <= 0:
        raise ValueError(f"law file: field 'normalizer' must be positive, got {normalizer!r}")
    pools = data.get("pools")
    if not isinstance(pools, list) or not pools:
        raise ValueError("law file: field 'pools' must be a non-empty list of {name, size}")
    names, sizes, gaps = [], [], []
    for i, entry in enumerate(pools):
        where = f"pools[{i}]"
        if not isinstance(entry, dict) or "name" not in entry or "size" not in entry:
            raise ValueError(f"law file: {where} must be an object with 'name' and 'size'")
        name = entry["name"]
        check_pool_name(name, f"law file: {where}.name")
        size = _finite(entry["size"], f"{where}.size")
        if size <= 0:
            raise ValueError(f"law file: {where}.size must be positive, got {size!r}")
        gap = _finite(entry.get("gap", size), f"{where}.gap")
        if gap <= 0:
            raise ValueError(f"law file: {where}.gap must be positive, got {gap!r}")
        names.append(name)
        sizes.append(size)
        gaps.append(gap)
    if len(set(names)) != len(names):
        raise ValueError(f"law file: field 'pools' has duplicate names {names}")
    multiplier = variant == "multiplier"
    shared = ("b", "d") if multiplier else ("a", "d")
    per_pool = (a_name, tau_name) if multiplier else (b_name, tau_name)
    for name in shared:
        if name not in params:
            raise ValueError(f"law file: params.{name} is missing")
    if not multiplier and params["a"] <= 0:
        raise ValueError(f"law file: params.a must be positive, got {params['a']!r}")
    expected = set(shared)
    for p in names:
        for key in (f(p) for f in per_pool):
            if key not in params:
                raise ValueError(f"law file: params.{key} is missing (pool {p!r})")
            expected.add(key)
        for key in ((a_name(p), tau_name(p)) if multiplier else (tau_name(p),)):
            if params[key] <= 0:
                raise ValueError(f"law file: params.{key} must be positive")
    extra = sorted(set(params) - expected)
    if extra:
        raise ValueError(f"law file: params has unknown QQT parameter(s) {extra}")
    if multiplier:
        a, b = [params[a_name(p)] for p in names], params["b"]
    else:
        a, b = params["a"], [params[b_name(p)] for p in names]
    return QQTLaw(a, params["d"], names, b=b, tau=[params[tau_name(p)] for p in names],
                  sizes=sizes, variant=variant, normalizer=normalizer, unit=unit, fixed=fixed,
                  fit_info=data.get("fit"), bootstrap=data.get("bootstrap"), gaps=gaps, gamma=gamma)


def check_pool_name(name, where: str = "pool name") -> str:
    """Pool names must be non-empty strings without the mixture/parameter syntax characters."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}: must be a non-empty string, got {name!r}")
    bad = sorted(_RESERVED_POOL_CHARS & set(name))
    if bad or name != name.strip():
        raise ValueError(f"{where}: pool name {name!r} may not contain {''.join(bad) or 'edge spaces'}")
    return name


# -- data-constrained / Chinchilla ------------------------------------------------------------

def _dc_params(law, kind) -> dict:
    names = DATA_CONSTRAINED_PARAMS if kind == "data-constrained" else CHINCHILLA_PARAMS
    getter = getattr(law, "to_params", None)
    if callable(getter):
        got = dict(getter())
    else:
        got = {n: getattr(law, n) for n in names}
    return {n: got[n] for n in names}


def _dc_from_dict(data, kind, params, unit, fixed):
    from curate.laws import data_constrained as dc

    names = DATA_CONSTRAINED_PARAMS if kind == "data-constrained" else CHINCHILLA_PARAMS
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"law file: params.{missing[0]} is missing ({kind} law needs {list(names)})")
    extra = sorted(set(params) - set(names))
    if extra:
        raise ValueError(f"law file: params has unknown {kind} parameter(s) {extra}")
    cls = dc.DataConstrainedLaw if kind == "data-constrained" else dc.ChinchillaLaw
    law = cls(**{n: float(params[n]) for n in names})
    # Provenance travels with the object so that a loaded law can be written back unchanged.
    law.unit = unit
    law.fixed = list(fixed)
    law.fit_info = data.get("fit")
    law.bootstrap = data.get("bootstrap")
    # An LM law has no pools, but a file may name unique tokens per pool for planning.
    law.pool_sizes = {p["name"]: float(p["size"]) for p in data.get("pools", []) or []
                      if isinstance(p, dict) and "name" in p and "size" in p}
    return law


# -- helpers ----------------------------------------------------------------------------------

def _check_fit(fit, params, pools) -> None:
    """The fit keys the planner relies on: epoch range and bound flags (see the docstring)."""
    if not fit:
        return
    if fit.get("max_epochs") is not None:
        v = _finite(fit["max_epochs"], "fit.max_epochs")
        if v <= 0:
            raise ValueError(f"law file: fit.max_epochs must be positive, got {v!r}")
    by_pool = fit.get("max_epochs_by_pool")
    if by_pool is not None:
        if not isinstance(by_pool, dict):
            raise ValueError("law file: fit.max_epochs_by_pool must be an object {pool: epochs}")
        for pool, v in by_pool.items():
            if pools is not None and pool not in pools:
                raise ValueError(f"law file: fit.max_epochs_by_pool names unknown pool {pool!r}")
            if _finite(v, f"fit.max_epochs_by_pool.{pool}") <= 0:
                raise ValueError(f"law file: fit.max_epochs_by_pool.{pool} must be positive")
    flags = fit.get("at_bound")
    if flags is None:
        return
    if not isinstance(flags, dict):
        raise ValueError("law file: fit.at_bound must be an object {parameter: flag}")
    for name, flag in flags.items():
        where = f"fit.at_bound.{name}"
        if name not in params:
            raise ValueError(f"law file: {where} names an unknown parameter")
        if not isinstance(flag, dict):
            raise ValueError(f"law file: {where} must be an object")
        _finite(flag.get("bound"), f"{where}.bound")
        if flag.get("side") not in ("lower", "upper"):
            raise ValueError(f"law file: {where}.side must be 'lower' or 'upper', "
                             f"got {flag.get('side')!r}")
        share = flag.get("draw_share")
        if share is not None and not 0 <= _finite(share, f"{where}.draw_share") <= 1:
            raise ValueError(f"law file: {where}.draw_share must be in [0, 1], got {share!r}")
        reaches = flag.get("interval_reaches")
        if reaches is not None and not isinstance(reaches, bool):
            raise ValueError(f"law file: {where}.interval_reaches must be true, false or null")


def _check_bootstrap(boot, params) -> None:
    """Draws must name known parameters with numbers (predictions re-use them)."""
    if not boot:
        return
    level = boot.get("level", 0.9)
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(f"law file: bootstrap.level must be in (0, 1), got {level!r}")
    draws = boot.get("draws", [])
    if not isinstance(draws, list):
        raise ValueError("law file: bootstrap.draws must be a list of objects")
    for i, draw in enumerate(draws):
        if not isinstance(draw, dict):
            raise ValueError(f"law file: bootstrap.draws[{i}] must be an object")
        for name, value in draw.items():
            if name not in params:
                raise ValueError(f"law file: bootstrap.draws[{i}] names unknown parameter {name!r}")
            _finite(value, f"bootstrap.draws[{i}].{name}")


def _finite(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"law file: {where} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"law file: {where} must be finite, got {value!r}")
    return float(value)


def _plain_number(x: float):
    """Integral sizes as ints (readable JSON), others as floats."""
    x = float(x)
    return int(x) if x.is_integer() and abs(x) < 2**53 else x


def _jsonable(obj):
    """numpy scalars/arrays and tuples -> plain JSON types (NaN/inf -> None)."""
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj

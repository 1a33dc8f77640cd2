"""Close the loop on probe observations: fit QQT on the single-pool runs, predict the held-out
mixture and larger-budget runs, and measure the error (`curate probe --validate`).

Error measure: the mean absolute relative error of the *reducible* loss,
|predicted - observed| / (observed - d), with d the fitted floor. Reducible loss is what the
law actually models, and relative to it a 5 % error is a much stricter test than 5 % of the
total loss. Points at or below the fitted floor have no reducible loss to be relative to: they
get nan, are left out of the means and are counted in `below_floor`.

The fit is the laws package's (`curate.laws.qqt_fit.QQTFit`: Huber on log error, multi-start
TRF) on the single-pool rows (U, U/4 and fresh-data runs of every seed; gamma is fitted where
two subset sizes identify it); pool sizes are the largest `unique_samples` of each pool. The
law-free reference interpolates each pool's U runs only (the runs at the design's U).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from curate.laws.qqt import QQTLaw
from curate.probe.errors import ProbeError


def _parse_mixture(label: str) -> dict[str, float]:
    """"pool0=0.5;pool1=0.5" -> {"pool0": 0.5, "pool1": 0.5}; "pool0" -> {"pool0": 1.0}."""
    if "=" not in label:
        return {label: 1.0}
    out = {}
    for part in label.split(";"):
        name, w = part.split("=", 1)
        out[name.strip()] = float(w)
    return out


def fit_single_pool_law(rows: Sequence[dict], unit: str = "tokens", n_bootstrap: int = 0,
                        seed: int = 0) -> QQTLaw:
    """QQT law fitted on the single-pool rows (pool, samples_seen, unique_samples, metric)."""
    from curate.laws.observations import validate_observations
    from curate.laws.qqt_fit import QQTFit

    rows = [r for r in rows if "=" not in r["pool"]]
    if not rows:
        raise ProbeError("no single-pool observations to fit")
    cols = {k: [r[k] for r in rows] for k in ("pool", "samples_seen", "unique_samples", "metric")}
    obs = validate_observations(cols, "qqt")
    return QQTFit(unit=unit, n_bootstrap=n_bootstrap, seed=seed, diagnostics=False).fit(obs).law_


def predict_row(law: QQTLaw, row: dict) -> float:
    """Law prediction for one observation row.

    Single pool: the row is self-describing (unique < seen means the pool's size was
    `unique_samples`; otherwise nothing has repeated yet). Mixture: every pool's size is the
    law's (the probe gives a pool the same U-token subset in mixtures as alone).
    """
    weights = _parse_mixture(row["pool"])
    n = float(row["samples_seen"])
    if len(weights) == 1:
        (pool,) = weights
        return float(law.predict(n, pool, size=float(row["unique_samples"])))
    return float(law.predict_mixture(weights, n))


def _at_u(row: dict) -> bool:
    """A row of a pool's run at the design's U (not its U/4 or fresh-data control run)."""
    return not str(row.get("run_id", "")).endswith(("-small", "-fresh"))


def naive_prediction(row: dict, fit_rows: Sequence[dict]) -> float:
    """A law-free reference: the weighted mean of the row's pools' own single-pool curves at
    the same number of tokens (interpolated in log tokens, held flat beyond the measured
    range). A law that cannot beat this is not telling us anything about mixtures or more
    unique data."""
    weights = _parse_mixture(row["pool"])
    total = sum(weights.values())
    n = math.log(float(row["samples_seen"]))
    out = 0.0
    for pool, w in weights.items():
        pts = sorted((math.log(float(r["samples_seen"])), float(r["metric"]))
                     for r in fit_rows if r["pool"] == pool and _at_u(r))
        if not pts:
            return float("nan")
        xs, ys = zip(*pts)
        out += w / total * float(np.interp(n, xs, ys))
    return out


def validate(fit_rows: Sequence[dict], holdout_rows: Sequence[dict], unit: str = "tokens",
             n_bootstrap: int = 0, seed: int = 0) -> dict:
    """Fit on `fit_rows`, predict `holdout_rows`; errors of the reducible loss by role."""
    law = fit_single_pool_law(fit_rows, unit=unit, n_bootstrap=n_bootstrap, seed=seed)
    details = []
    for r in list(fit_rows) + list(holdout_rows):
        pred = predict_row(law, r)
        reducible = r["metric"] - law.d
        # A point at or below the fitted floor has no reducible loss to be relative to: it is
        # reported (nan) and left out of the means, and counted in `below_floor`.
        err = abs(pred - r["metric"]) / reducible if reducible > 1e-9 else float("nan")
        naive = naive_prediction(r, fit_rows)
        naive_err = abs(naive - r["metric"]) / reducible if reducible > 1e-9 else float("nan")
        details.append({"run_id": r["run_id"], "role": r.get("role", "fit"), "pool": r["pool"],
                        "samples_seen": r["samples_seen"], "observed": r["metric"],
                        "predicted": pred, "rel_err_reducible": err,
                        "naive": naive, "naive_rel_err_reducible": naive_err})

    def mare(role_prefix: str, key: str = "rel_err_reducible") -> float | None:
        errs = [x[key] for x in details if x["role"].startswith(role_prefix)]
        errs = [e for e in errs if math.isfinite(e)]
        return float(np.mean(errs)) if errs else None

    return {"law": law, "details": details,
            "mare_fit": mare("fit"),
            "mare_holdout_mixture": mare("holdout-mixture"),
            "mare_holdout_large": mare("holdout-large"),
            "mare_holdout": mare("holdout"),
            "mae_holdout_nats": (float(np.mean([abs(x["predicted"] - x["observed"]) for x in details
                                                if x["role"] != "fit"]))
                                 if len(details) > len(fit_rows) else None),
            "naive_mare_holdout_mixture": mare("holdout-mixture", "naive_rel_err_reducible"),
            "naive_mare_holdout_large": mare("holdout-large", "naive_rel_err_reducible"),
            "below_floor": sum(1 for x in details if not math.isfinite(x["rel_err_reducible"]))}


def validation_report(fit_rows: Sequence[dict], holdout_rows: Sequence[dict],
                      unit: str = "tokens") -> dict:
    """`validate` as plain values, what `curate probe --validate` prints or writes as JSON:
    the fitted d, a, and b and tau by pool, the mean errors, `below_floor` and per-row
    `details`, where an error with no reducible loss to be relative to (nan) becomes None."""
    result = validate(fit_rows, holdout_rows, unit=unit)
    law = result.pop("law")
    return {
        "d": law.d, "a": law.a,
        "b": dict(zip(law.pools, map(float, law.b))),
        "tau": dict(zip(law.pools, map(float, law.tau))),
        **{k: v for k, v in result.items() if k.startswith(("mare", "naive", "mae"))},
        "below_floor": result["below_floor"],
        "details": [{k: (None if isinstance(v, float) and v != v else v) for k, v in x.items()}
                    for x in result["details"]],
    }

"""Fit a scaling law to training observations and write a law file (JSON).

Examples:
  curate fit runs.csv --law qqt --fix d=0.1 --bootstrap 200 -o law.json
  curate fit runs.parquet --law qqt --variant data --pool-size top10=12.8e6 -o law.json
  curate fit runs.csv --law data-constrained --unit tokens \\
      --columns samples_seen=tokens,unique_samples=unique_tokens,metric=val_loss \\
      --fix E=1.869 --fix A=521 -o dc.json --plot fit.png
  curate fit catalog.duckdb:probe_runs --law chinchilla -o chin.json --json

Observations: one row per measured point with columns pool (a pool name or a mixture
`name=weight;name=weight`), samples_seen, unique_samples, metric (lower is better), and for the
language-model laws params (model size N); optional run_id (bootstrap resamples whole runs)
and step. --columns maps other column names. Parameter names for --fix: QQT a, d, b[POOL],
tau[POOL] (multiplier form: a[POOL], b, d, tau[POOL]); data-constrained / Chinchilla E, A, B,
alpha, beta, R_D_star, R_N_star. QQT forms (--variant): `multiplier` (one slope, a per-pool
worth of a sample; unit-invariant: the default for `curate probe` output), `utility` (the
paper's, the default otherwise), `data`; the others are fitted too and their held-out errors
shown (`auto` uses the best).
Values are checked row by row: finite, positive, samples_seen / unique_samples / params at most
1e15 and at most 1e5 passes over the unique samples (a row outside is a typo or a unit error).
Prints a table of parameters (with bootstrap intervals) and fit diagnostics -- cross-validated
error by leave-one-out up to 100 rows, 10-fold above (the table says which) -- or JSON with
--json.

Parameters at a bound of the optimiser's search box are flagged: in the table ("<- at upper
bound 1e+04"), as one warning line each on stderr, and in the law file (fit.at_bound: bound,
side, share of bootstrap draws at it, whether the interval reaches it). Boxes: QQT tau in
[0.01, 1e4] (at 1e4: no decay with repetition measured), d in [0, smallest metric] (at 0: no
floor measured), b in [-5, 0); data-constrained R_D_star, R_N_star in [0.01, 1e6], alpha,
beta in [0.01, 3], E > 0; --bound replaces a box. `curate plan` plans with a lower bootstrap
quantile of a half-life whose interval reaches its bound. The law file also records the
largest epoch count of the data (fit.max_epochs, and per pool for QQT): the plan's default
epoch cap.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from curate.orchestration.catalog_hooks import add_workspace_argument, register_written_file

HELP = __doc__
LAWS = ("qqt", "data-constrained", "chinchilla")
VARIANTS = ("multiplier", "utility", "data", "auto")
UNITS = ("samples", "documents", "tokens")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workspace_argument(parser)
    parser.add_argument("--bound", action="append", default=[], metavar="NAME=LO:HI",
                        help="search a data-constrained/Chinchilla parameter only in [LO, HI] "
                             "(repeatable; either side may be empty), e.g. --bound R_D_star=0.01:20 "
                             "to stay in the published fit's start range")
    parser.add_argument("observations", metavar="OBS",
                        help="observations: FILE.csv, FILE.parquet or FILE.duckdb:TABLE")
    parser.add_argument("--law", choices=LAWS, default="qqt", help="law to fit (default qqt)")
    parser.add_argument("--variant", choices=VARIANTS, default=None,
                        help="QQT form: multiplier (one slope, per-pool worth of a sample a[POOL]: "
                             "unit-invariant; default for `curate probe` observations), utility "
                             "(the paper's; default otherwise), data (effective data), or auto "
                             "(the one with the smallest held-out error). With diagnostics on, "
                             "the others are fitted too and compared by held-out error in a table")
    parser.add_argument("--heldout", default=None, metavar="OBS",
                        help="runs not to fit on, to compare the QQT forms by (default: a probe's "
                             "OBS.holdout.parquet beside OBS: its mixtures, larger-budget and "
                             "fresh-data runs)")
    parser.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE",
                        help="hold a parameter fixed; repeatable (e.g. --fix d=0.1)")
    parser.add_argument("--pool-size", action="append", default=[], metavar="NAME=COUNT",
                        help="QQT pool size in --unit (default: largest unique_samples seen "
                             "for the pool); repeatable")
    parser.add_argument("--bootstrap", type=int, default=0, metavar="N",
                        help="bootstrap refits for confidence intervals (default 0: none)")
    parser.add_argument("--level", type=float, default=0.9, help="interval level (default 0.9)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--unit", choices=UNITS, default=None,
                        help="what a sample is (default: samples for qqt, tokens otherwise)")
    parser.add_argument("--columns", default=None, metavar="CANON=SRC,...",
                        help="map column names, e.g. samples_seen=tokens,metric=val_loss")
    parser.add_argument("--huber-delta", type=float, default=None,
                        help="Huber threshold on log residuals (default 0.01 qqt, 1e-3 LM laws)")
    parser.add_argument("--no-cv", action="store_true",
                        help="skip cross-validation (leave-one-out up to 100 rows, 10-fold above) "
                             "and hold-out-largest refits")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="LAW.json",
                        help="where to write the law file")
    parser.add_argument("--json", action="store_true", help="print the law file JSON")
    parser.add_argument("--plot", type=Path, default=None, metavar="FIT.png",
                        help="plot observations, fitted curves and intervals")


def run(args: argparse.Namespace) -> int:
    from curate.laws.lawfile import law_to_dict
    from curate.orchestration.errors import CurateError
    from curate.probe.observations_io import load_observations, parse_column_map, probe_metadata

    if args.bootstrap < 0:
        raise CurateError("--bootstrap must be >= 0")
    if not 0 < args.level < 1:
        raise CurateError(f"--level must be between 0 and 1, got {args.level:g}")
    if args.huber_delta is not None and not args.huber_delta > 0:
        raise CurateError("--huber-delta must be positive")
    fix = parse_assignments(args.fix, "--fix")
    if args.bound and args.law == "qqt":
        raise CurateError("--bound applies to --law data-constrained or chinchilla")
    sizes = parse_assignments(args.pool_size, "--pool-size")
    if sizes and args.law != "qqt":
        raise CurateError("--pool-size applies to --law qqt only")
    if args.variant is not None and args.law != "qqt":
        raise CurateError("--variant applies to --law qqt only")
    probe = probe_metadata(args.observations)
    if args.variant is None:  # LM probes: the unit-invariant form; other data: the paper's
        args.variant = "multiplier" if probe else "utility"
    if args.law == "qqt" and not sizes and probe.get("pool_bytes"):
        # Probe output: pool sizes are the full pools (in bytes), not the probe's subsets.
        sizes = {name: float(v) for name, v in probe["pool_bytes"].items()}
    unit = args.unit or probe.get("unit") or ("samples" if args.law == "qqt" else "tokens")
    obs = load_observations(args.observations, parse_column_map(args.columns), law=args.law)
    try:
        if args.law == "qqt":
            law = _fit_qqt(obs, fix, sizes, unit, args)
        else:
            from curate.laws.lm_fit import LMFit

            law = LMFit(kind=args.law, fix=fix, unit=unit, n_bootstrap=args.bootstrap,
                        level=args.level, seed=args.seed, diagnostics=not args.no_cv,
                        huber_delta=args.huber_delta,
                        bounds=parse_bounds(args.bound)).fit(obs).law_
    except (RuntimeError, FloatingPointError) as exc:  # optimiser gave up: still one line
        raise CurateError(f"fitting the {args.law} law failed: {exc}") from None
    if probe and getattr(law, "fit_info", None) is not None:
        law.fit_info["token_unit"] = "bytes"  # a probe's tokens are UTF-8 bytes (plan --pools-from)
    data = law_to_dict(law)
    for warning in (data.get("fit") or {}).get("warnings") or []:
        print(f"curate fit: warning: {warning}", file=sys.stderr)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(data, indent=2) + "\n")
    register_written_file("law", args.output, args.workspace, "fit")
    if args.plot is not None:
        from curate.orchestration.fit_plot import plot_fit

        plot_fit(law, obs, args.plot, level=args.level)
    if args.json:
        json.dump(data, sys.stdout, indent=2)
        print()
    else:
        print(render_table(data))
        print(f"law written to {args.output}")
    return 0


def _fit_qqt(obs, fix, sizes, unit, args):
    from curate.laws.qqt_fit import DEFAULT_HUBER_DELTA, QQTFit, compare_variants
    from curate.orchestration.errors import CurateError

    unknown = sorted(set(sizes) - set(obs.pool_names))
    if unknown:
        raise CurateError(f"--pool-size names pool(s) {unknown} absent from the observations "
                          f"(pools: {obs.pool_names})")
    options = dict(fix=fix, sizes=sizes or None, unit=unit,
                   huber_delta=args.huber_delta or DEFAULT_HUBER_DELTA,
                   n_bootstrap=args.bootstrap, level=args.level, seed=args.seed)
    if args.variant == "auto" and (args.no_cv or fix):
        raise CurateError("--variant auto compares held-out errors: it needs the diagnostics "
                          "(drop --no-cv) and no --fix (parameter names differ between forms)")
    if args.no_cv or fix:  # nothing to compare by, or names that only one form has
        return QQTFit(variant=args.variant, diagnostics=not args.no_cv, **options).fit(obs).law_
    chosen = None if args.variant == "auto" else args.variant
    return compare_variants(obs, chosen, heldout=_heldout(args), **options)[0].law_


def _heldout(args):
    """Held-out runs for the comparison: --heldout, else a probe's OBS.holdout.parquet beside OBS."""
    from curate.probe.observations_io import load_observations, parse_column_map

    path = args.heldout
    if path is None:
        guess = Path(args.observations)
        guess = guess.with_name(guess.name[: -len(".parquet")] + ".holdout.parquet") \
            if guess.name.endswith(".parquet") else None
        path = str(guess) if guess is not None and guess.is_file() else None
    if path is None:
        return None
    return load_observations(path, parse_column_map(args.columns), law="qqt")


def parse_bounds(items) -> dict[str, tuple]:
    """["R_D_star=0.01:20", "alpha=:1"] -> {"R_D_star": (0.01, 20.0), "alpha": (None, 1.0)}."""
    from curate.orchestration.errors import CurateError

    out: dict[str, tuple] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        lo_raw, colon, hi_raw = raw.partition(":")
        if not sep or not name.strip() or not colon:
            raise CurateError(f"--bound: expected NAME=LO:HI, got {item!r}")
        try:
            lo = float(lo_raw) if lo_raw.strip() else None
            hi = float(hi_raw) if hi_raw.strip() else None
        except ValueError:
            raise CurateError(f"--bound: {item!r} has a bound that is not a number") from None
        if lo is not None and hi is not None and not lo < hi:
            raise CurateError(f"--bound: {item!r} needs LO < HI")
        out[name.strip()] = (lo, hi)
    return out


def parse_assignments(items, option: str) -> dict[str, float]:
    """["d=0.1", "b[top10]=-0.2"] -> {"d": 0.1, "b[top10]": -0.2} (one-line errors)."""
    from curate.orchestration.errors import CurateError

    out: dict[str, float] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise CurateError(f"{option}: expected NAME=VALUE, got {item!r}")
        try:
            value = float(raw)
        except ValueError:
            raise CurateError(f"{option}: value for {name} is not a number: {raw!r}") from None
        if not math.isfinite(value):
            raise CurateError(f"{option}: value for {name} must be finite, got {raw!r}")
        if name in out:
            raise CurateError(f"{option}: {name} given twice")
        out[name] = value
    return out


def render_table(data: dict) -> str:
    """Human-readable summary of a law-file dict."""
    lines = []
    head = f"{data['kind']} law"
    if data["kind"] == "qqt":
        head += f" ({data['variant']} variant)"
    lines.append(f"{head}, unit: {data['unit']}")
    boot = data.get("bootstrap") or {}
    intervals = boot.get("intervals", {})
    level = boot.get("level")
    fixed = set(data.get("fixed", []))
    iv_head = f"{int(round(level * 100))}% interval" if intervals else ""
    width = max(len(k) for k in data["params"]) + 2
    lines.append(f"  {'parameter':<{width}} {'value':>14}  {iv_head}")
    flags = (data.get("fit") or {}).get("at_bound") or {}
    for name, value in data["params"].items():
        note = "fixed" if name in fixed else ""
        if name in intervals:
            lo, hi = intervals[name]
            note = f"[{_num(lo)}, {_num(hi)}]"
        if name in flags:
            note = (note + "  " if note else "") + _bound_note(flags[name])
        lines.append(f"  {name:<{width}} {_num(value):>14}  {note}".rstrip())
    if data["kind"] == "qqt":
        sizes = ", ".join(f"{p['name']}={_num(p['size'])}" for p in data["pools"])
        lines.append(f"  pool sizes: {sizes}")
    fit = data.get("fit") or {}
    if fit:
        parts = []
        cv_key = "cv_error" if "cv_error" in fit else "loo_error"  # older law files: loo only
        cv_label = _cv_label(fit.get("cv_method") or "leave-one-out")
        for key, label in (("n_obs", "observations"), ("objective", "Huber objective"),
                           ("r2", "R^2"), ("rmse", "RMSE"), (cv_key, f"{cv_label} rel. error"),
                           ("holdout_largest_error", "hold-out-largest rel. error")):
            if fit.get(key) is not None:
                parts.append(f"{label} {_num(fit[key])}")
        lines.append("  fit: " + ", ".join(parts))
        if fit.get("method"):
            lines.append(f"  method: {fit['method']}")
        selection = fit.get("model_selection") or {}
        if selection.get("candidates"):
            lines.append(f"  forms compared ({selection['by']}):")
            rows = selection["candidates"]
            method = next((r["cv_method"] for r in rows if r.get("cv_method")), "leave-one-out")
            lines.append(f"    {'variant':<11} {'held-out runs':>13} {'hold-out-largest':>16} "
                         f"{_cv_label(method):>14} {'parameters':>10}")
            for row in rows:
                mark = "  <- used" if row["chosen"] else ""
                cv = row.get("cv_error", row.get("loo_error"))
                lines.append(f"    {row['variant']:<11} {_num(row.get('heldout_runs_error')):>13} "
                             f"{_num(row['holdout_largest_error']):>16} "
                             f"{_num(cv):>14} {row['free_parameters']:>10}{mark}")
        if fit.get("max_epochs") is not None:
            by_pool = fit.get("max_epochs_by_pool") or {}
            per = ", ".join(f"{p} {_num(v)}" for p, v in by_pool.items())
            lines.append(f"  epochs in the fit data: at most {_num(fit['max_epochs'])}"
                         + (f" (by pool: {per})" if per else ""))
    if boot:
        lines.append(f"  bootstrap: {len(boot.get('draws', []))} refits")
    return "\n".join(lines)


def _cv_label(method: str) -> str:
    """"leave-one-out" stays; "10-fold" -> "10-fold CV"."""
    return method if method == "leave-one-out" else f"{method} CV"


def _bound_note(flag: dict) -> str:
    """"<- at upper bound 1e+04 (64% of draws)" for a fit.at_bound entry."""
    from curate.laws.bounds import bound_text

    return "<- " + bound_text(flag, _num)


def _num(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e15):
        return f"{int(x):d}" if abs(x) < 1e6 else f"{x:.4g}"
    return f"{x:.6g}"

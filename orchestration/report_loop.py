"""The loop sections of `curate report`: probe observations, the fitted law, the plan, replays.

`curate report RUN_DIR --observations OBS --law LAW.json --plan PLAN.json --replay R.json`
adds one section per file given, each drawn only from that file (no catalog look-ups):

* fit (law file, plus observations when given): the law's form, parameters with bootstrap
  intervals and at-bound flags (fit.at_bound), the QQT forms compared by held-out error
  (fit.model_selection), the epoch range of the fit data, per-pool fitted curves with their
  bootstrap bands over the observations (`orchestration/fit_plot.py`), and per pool the
  law's prediction (`law.predict`, `law.predict_interval`) beside the measured points;
* observations alone: what was measured per pool (rows, runs, tokens, epochs, metric);
* plan: pools with weight, epochs, cap and whether it binds; baselines with predicted loss and
  feasibility; the recommendation (plan.claim) with its error bar and source; robustness over
  bootstrap draws; warnings; the budget sweep (table and figure) when the plan has one;
* replay (`curate validate` output, "curate-replay/1"; repeatable, e.g. two budgets): per
  candidate the predicted and measured loss, seed spread, and the verdict with what it
  validates. Unknown layouts are shown as key/value rows, never dropped.

Consistency between the files is checked and any mismatch is a note, e.g. a replay of another
plan, or a plan whose claim did not use the replay given. Every number cell carries
`data-group`/`data-key`/`data-value` (the exact value) like the run sections.
"""
from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from curate.orchestration.errors import CurateError

e = html.escape
REPLAY_ROW_KEYS = ("candidates", "rows", "results")
FORMS = {
    "multiplier": "E(n) = d + (&Sigma;<sub>i</sub> a<sub>i</sub> D'<sub>i</sub> / s)<sup>b</sup>: one slope b, "
                  "a per-pool worth a<sub>i</sub> of a sample, D'<sub>i</sub> pool i's samples discounted by "
                  "0.5<sup>k/&tau;<sub>i</sub></sup> on pass k",
    "utility": "E(n) = [(a&middot;min(n, N)/s)<sup>b<sub>i</sub></sup> + d] &middot; &Pi;<sub>k</sub> "
               "(min(n, (k+1)N)/(kN))<sup>b<sub>k</sub></sup>, b<sub>k</sub> = b<sub>i</sub>&middot;"
               "0.5<sup>k/&tau;<sub>i</sub></sup>: shared scale a, per-pool utility b<sub>i</sub> (the paper's)",
    "data": "E(n) = (a&middot;n<sub>eff</sub>/s)<sup>b<sub>i</sub></sup> + d, n<sub>eff</sub> = &Sigma;<sub>k</sub> "
            "(samples in pass k)&middot;0.5<sup>k/&tau;<sub>i</sub></sup>: effective data (the paper's)",
}


@dataclass
class LoopData:
    """What the loop sections show, read from the files given (None where not given)."""

    observations_path: str | None = None
    observations: object | None = None      # laws.observations.Observations
    law_path: str | None = None
    law_dict: dict | None = None
    law: object | None = None
    plan_path: str | None = None
    plan: dict | None = None
    replays: list[tuple[str, dict]] = field(default_factory=list)
    observed: list[dict] = field(default_factory=list)   # per pool/mixture: what was measured
    curves: list[dict] = field(default_factory=list)     # per pool: law vs the measured points
    notes: list[str] = field(default_factory=list)

    @property
    def sections(self) -> list[str]:
        out = []
        if self.law_dict is not None:
            out.append("fit")
        elif self.observations is not None:
            out.append("observations")
        if self.plan is not None:
            out.append("plan")
            if self.plan.get("sweep"):
                out.append("sweep")
        if self.replays:
            out.append("replay")
        return out

    def summary(self) -> dict:
        """The loop at a glance, as plain values (printed by `curate report --json`)."""
        out: dict = {"sections": self.sections}
        if self.law_dict is not None:
            fit = self.law_dict.get("fit") or {}
            out["law"] = {"kind": self.law_dict.get("kind"), "variant": self.law_dict.get("variant"),
                          "at_bound": sorted((fit.get("at_bound") or {})),
                          "max_epochs": fit.get("max_epochs")}
        if self.plan is not None and self.plan.get("plan"):
            p = self.plan["plan"]
            claim = p.get("claim") or {}
            out["plan"] = {"budget": p.get("budget"), "mixture": p.get("mixture"),
                           "weights": {r["pool"]: r["weight"] for r in p.get("pools") or []},
                           "predicted": p.get("predicted"), "recommended": claim.get("recommended"),
                           "validated": claim.get("validated")}
        if self.replays:
            out["replays"] = [{"file": path, "verdict": r.get("verdict"),
                               "plan_at_most_best_plus_sd": r.get("plan_at_most_best_plus_sd"),
                               "measured_difference": r.get("measured_difference"), "sd": r.get("sd")}
                              for path, r in self.replays]
        out["notes"] = list(self.notes)
        return out


# ---------------------------------------------------------------------------------------------
# reading the files
# ---------------------------------------------------------------------------------------------

def _read_json(path, what: str) -> dict:
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CurateError(f"{what} {p}: no such file") from None
    except json.JSONDecodeError as exc:
        raise CurateError(f"{what} {p}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise CurateError(f"{what} {p}: expected a JSON object at the top level")
    return data


def collect_loop(observations=None, law=None, plan=None, replays=()) -> LoopData:
    """Read the loop's files (each optional) into LoopData; CurateError names a bad file."""
    data = LoopData()
    if law is not None:
        from curate.laws.lawfile import law_from_dict

        data.law_path, data.law_dict = str(law), _read_json(law, "law file")
        try:
            data.law = law_from_dict(data.law_dict)
        except ValueError as exc:
            raise CurateError(f"{law}: {exc}") from None
    if observations is not None:
        from curate.probe.observations_io import load_observations

        kind = (data.law_dict or {}).get("kind")
        data.observations_path = str(observations)
        data.observations = load_observations(str(observations), law=kind)
        data.observed = _observed(data.observations)
    if data.law is not None and data.observations is not None and getattr(data.law, "kind", "") == "qqt":
        data.curves = _curves(data.law, data.observations, data.notes)
    if plan is not None:
        data.plan_path, data.plan = str(plan), _read_json(plan, "plan file")
        if data.plan.get("plan") is None and data.plan.get("sweep") is None:
            raise CurateError(f"plan file {plan}: neither a plan nor a sweep in it (a `curate plan -o` file?)")
    for path in replays:
        data.replays.append((str(path), _read_json(path, "replay file")))
    _cross_checks(data)
    return data


def _observed(obs) -> list[dict]:
    import numpy as np

    rows = []
    for label in dict.fromkeys(obs.pool):
        idx = np.array([i for i, p in enumerate(obs.pool) if p == label])
        n, u, y = obs.samples_seen[idx], obs.unique_samples[idx], obs.metric[idx]
        runs = None if obs.run_id is None else len({obs.run_id[i] for i in idx})
        rows.append({"pool": label, "rows": int(idx.size), "runs": runs,
                     "samples_min": float(n.min()), "samples_max": float(n.max()),
                     "unique_max": float(u.max()), "epochs_max": float(np.max(n / u)),
                     "metric_min": float(y.min()), "metric_max": float(y.max())})
    return rows


def _curves(law, obs, notes: list[str]) -> list[dict]:
    """Per pool of the law with single-pool rows: the law at the pool's largest measured point
    (law.predict / law.predict_interval, the pool's size in the law) beside the measured mean
    there, and the relative RMS error over all its rows (laws.qqt_fit.heldout_error)."""
    import numpy as np

    from curate.laws.qqt_fit import heldout_error

    has_draws = bool((getattr(law, "bootstrap", None) or {}).get("draws"))
    out = []
    for pool in law.pools:
        idx = [i for i, p in enumerate(obs.pool) if p == pool and obs.mixtures[i] is None]
        if not idx:
            continue
        n = obs.samples_seen[idx]
        top = float(n.max())
        at_top = [i for i in idx if obs.samples_seen[i] == top]
        row = {"pool": pool, "samples": top, "measured": float(np.mean(obs.metric[at_top])),
               "measured_rows": len(at_top), "predicted": float(law.predict(top, pool=pool)),
               "lo": None, "hi": None, "rel_rmse": heldout_error(law, obs.subset(idx))}
        if has_draws:
            lo, hi = law.predict_interval(top, pool=pool)
            row["lo"], row["hi"] = float(lo), float(hi)
        out.append(row)
    unknown = sorted({p for p, m in zip(obs.pool, obs.mixtures) if m is None} - set(law.pools))
    if unknown:
        notes.append(f"observations hold pools the law does not know: {', '.join(unknown)}")
    return out


def _cross_checks(data: LoopData) -> None:
    from curate.laws.planning import replays_this_plan

    notes = data.notes
    plan = data.plan or {}
    p = plan.get("plan") or {}
    if data.law_dict is not None and plan:
        law_pools = {q["name"] for q in data.law_dict.get("pools") or [] if isinstance(q, dict)}
        plan_pools = {r.get("pool") for r in p.get("pools") or []}
        if law_pools and plan_pools and not plan_pools <= law_pools:
            notes.append(f"the plan uses pools the law file does not have "
                         f"({', '.join(sorted(map(str, plan_pools - law_pools)))}): another law's plan?")
        if plan.get("kind") and plan.get("kind") != data.law_dict.get("kind"):
            notes.append(f"the plan was made with a {plan.get('kind')} law, the law file is "
                         f"{data.law_dict.get('kind')}")
    interval = p.get("interval")
    if interval and p.get("predicted") is not None and not interval[0] <= p["predicted"] <= interval[1]:
        used = ", ".join(sorted(plan.get("conservative") or {}))
        notes.append(f"the plan's predicted {plan.get('metric', 'loss')} {_g(p['predicted'])} lies outside its own "
                     f"bootstrap interval {_g(interval[0])} .. {_g(interval[1])}"
                     + (f": the prediction uses conservative parameters ({used}), the interval the draws'"
                        if used else ""))
    for path, rep in data.replays:
        name = Path(path).name
        if rep.get("format") not in (None, "curate-replay/1"):
            notes.append(f"replay {name}: format {rep.get('format')!r} is not curate-replay/1; shown as given")
        rp = rep.get("plan") if isinstance(rep.get("plan"), dict) else {}
        if p and rp:
            if not replays_this_plan(p, rep):
                notes.append(f"replay {name} trained another plan (budget {_g(rp.get('budget'))}, "
                             f"mixture {rp.get('mixture')}) than the plan file's (budget "
                             f"{_g(p.get('budget'))}, mixture {p.get('mixture')}); its numbers do not "
                             "validate that plan")
            else:
                claim = p.get("claim") or {}
                compared = claim.get("predicted_gain") not in (None, 0, 0.0)  # a baseline itself: nothing
                if compared and not str(claim.get("error_source") or "").startswith("replay"):
                    notes.append(f"the plan's claim does not rest on replay {name} (its error bar: "
                                 f"{claim.get('error_source') or 'none'}); re-plan with "
                                 f"`curate plan --replay {name}` to use the measured error")


def _cv(row: dict):
    return row.get("cv_error") if row.get("cv_error") is not None else row.get("loo_error")


def _cv_text(row: dict) -> str:
    value = _cv(row)
    method = row.get("cv_method") or ("leave-one-out" if value is not None else None)
    return _pct(value) + (f" ({method})" if method and value is not None else "")


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------

def loop_figures(data: LoopData) -> dict[str, bytes]:
    """PNG bytes: fit (curves and bands over the points), plan (weights and baselines), sweep."""
    figures: dict[str, bytes] = {}
    if data.law is not None:
        from curate.orchestration.fit_plot import render_fit

        fit = (data.law_dict or {}).get("fit") or {}
        level = float(((data.law_dict or {}).get("bootstrap") or {}).get("level", 0.9))
        png = render_fit(data.law, data.observations, level=level,
                         samples_range=fit.get("samples_range"))
        if png is not None:
            figures["fit"] = png
    elif data.observations is not None:
        figures["observations"] = _observations_png(data.observations)
    if data.plan is not None:
        import tempfile

        from curate.orchestration.commands._plan_output import plot

        with tempfile.TemporaryDirectory() as tmp:
            wanted = []
            if data.plan.get("plan"):
                wanted.append(("plan", {**data.plan, "sweep": None}))
            if data.plan.get("sweep") and data.plan["sweep"].get("plans"):
                wanted.append(("sweep", data.plan))
            for name, result in wanted:
                path = Path(tmp) / f"{name}.png"
                plot(result, path)
                figures[name] = path.read_bytes()
    return figures


def _observations_png(obs) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for label in dict.fromkeys(obs.pool):
        rows = [i for i, p in enumerate(obs.pool) if p == label]
        ax.scatter(obs.samples_seen[rows], obs.metric[rows], s=18, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("samples seen")
    ax.set_ylabel("metric (lower is better)")
    ax.set_title("observations (no law given)")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------

def _g(x, digits: int = 6) -> str:
    """A number as text with `digits` significant digits (no HTML)."""
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(v):
        return "–"
    if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
        return f"{v:.{max(1, digits - 2)}g}"
    return f"{v:,.{digits}g}"


def cell(group: str, key: str, value, text: str | None = None, cls: str = "num") -> str:
    """A table cell whose exact value is readable from the DOM (data-group/-key/-value)."""
    if value is None:
        raw = ""
    elif isinstance(value, bool):
        raw = "true" if value else "false"
    elif isinstance(value, float):
        raw = repr(value)
    elif isinstance(value, (int, str)):
        raw = str(value)
    else:
        raw = json.dumps(value, sort_keys=True, default=str)
    shown = _g(value) if text is None else text
    return (f"<td class='{cls}' data-group='{e(group, quote=True)}' data-key='{e(str(key), quote=True)}' "
            f"data-value='{e(raw, quote=True)}'>{e(shown)}</td>")


def _td(text) -> str:
    return f"<td>{e(str(text))}</td>"


def _pct(x) -> str:
    return "–" if x is None else f"{100 * float(x):.2f}%"


def _img(figures: dict, name: str, alt: str) -> str:
    import base64

    if name not in figures:
        return ""
    return (f"<img id='fig-{name}' alt='{e(alt, quote=True)}' "
            f"src='data:image/png;base64,{base64.b64encode(figures[name]).decode('ascii')}'>")


def _notes(lines, title: str = "Notes", ident: str | None = None) -> str:
    if not lines:
        return ""
    attr = f" id='{ident}'" if ident else ""
    return (f"<div class='warn'{attr}><b>{e(title)}</b><ul>" + "".join(f"<li>{e(str(w))}</li>" for w in lines)
            + "</ul></div>")


def nav_entries(data: LoopData) -> list[tuple[str, str]]:
    names = {"fit": "probe and fit", "observations": "observations", "plan": "plan",
             "sweep": "budget sweep", "replay": "replay"}
    return [(s, names[s]) for s in data.sections]


def render_loop(data: LoopData, figures: dict[str, bytes]) -> str:
    parts: list[str] = []
    if not data.sections:
        return ""
    parts.append(_glance(data))
    if data.law_dict is not None:
        parts.append(_fit_section(data, figures))
    elif data.observations is not None:
        parts.append(_observations_section(data, figures))
    if data.plan is not None:
        parts.append(_plan_section(data, figures))
    if data.replays:
        parts.append(_replay_section(data))
    return "".join(parts)


def _glance(data: LoopData) -> str:
    s = data.summary()
    items = []
    if "law" in s:
        flags = s["law"]["at_bound"]
        items.append(f"law: {s['law']['kind']}" + (f" ({s['law']['variant']} form)" if s["law"]["variant"] else "")
                     + (f"; parameters at a bound of the fit: {', '.join(flags)}" if flags else ""))
    if "plan" in s:
        pl = s["plan"]
        label = _recommended_label(data.plan)
        items.append(f"plan at {_g(pl['budget'])} {data.plan.get('unit', '')}: {pl['mixture']}, predicted "
                     f"{_g(pl['predicted'])}; recommended: {label}"
                     + ("" if pl["validated"] else " (not validated by a replay)"))
    for r in s.get("replays", []):
        items.append(f"replay {Path(r['file']).name}: " + (r["verdict"] or "no verdict in the file")
                     + ("" if r["measured_difference"] is None else
                        f" (plan - best baseline measured {r['measured_difference']:+.4g}, seed sd {_g(r['sd'], 3)})"))
    head = ("<h2 id='loop'>The loop at a glance</h2><p class='meta'>Sections below come only from the files "
            "given: " + ", ".join(e(f"{k} {v}") for k, v in (("observations", data.observations_path),
                                                              ("law", data.law_path), ("plan", data.plan_path))
                                  if v)
            + "".join(e(f", replay {p}") for p, _ in data.replays) + "</p>")
    return head + "<ul id='glance'>" + "".join(f"<li>{e(i)}</li>" for i in items) + "</ul>" + _notes(
        data.notes, "Consistency between the files", "loop-notes")


def _recommended_label(plan: dict) -> str:
    p = plan.get("plan") or {}
    claim = p.get("claim") or {}
    rec = claim.get("recommended")
    if rec is None:
        return "–"
    if rec == "plan":
        return "the plan"
    return str(((p.get("baselines") or {}).get(rec) or {}).get("name") or rec)


def _observations_table(data: LoopData) -> str:
    out = ["<table id='observed'><tr><th>pool / mixture</th><th>rows</th><th>runs</th><th>samples seen</th>"
           "<th>largest unique</th><th>epochs (max)</th><th>metric min</th><th>metric max</th></tr>"]
    for r in data.observed:
        k = r["pool"]
        out.append(f"<tr>{_td(k)}{cell('obs-rows', k, r['rows'])}{cell('obs-runs', k, r['runs'])}"
                   f"<td class='num'>{e(_g(r['samples_min']))} .. {e(_g(r['samples_max']))}</td>"
                   f"{cell('obs-unique', k, r['unique_max'])}{cell('obs-epochs', k, r['epochs_max'])}"
                   f"{cell('obs-metric-min', k, r['metric_min'])}{cell('obs-metric-max', k, r['metric_max'])}</tr>")
    out.append("</table>")
    return "".join(out)


def _observations_section(data: LoopData, figures) -> str:
    return (f"<h2 id='observations'>Observations</h2><p class='meta'>{e(data.observations_path or '')}: "
            f"{len(data.observations)} rows (no law file given: no fit shown)</p>"
            + _observations_table(data) + _img(figures, "observations", "observations chart"))


def _bound_text(flag: dict) -> str:
    from curate.laws.bounds import bound_text

    return bound_text(flag, _g)


def _fit_section(data: LoopData, figures) -> str:
    d = data.law_dict
    fit = d.get("fit") or {}
    boot = d.get("bootstrap") or {}
    intervals = boot.get("intervals") or {}
    flags = fit.get("at_bound") or {}
    fixed = set(d.get("fixed") or [])
    level = boot.get("level")
    parts = [f"<h2 id='fit'>Probe and fit: the law</h2><p class='meta'>{e(data.law_path or '')}</p>"]
    kind, variant = d.get("kind"), d.get("variant")
    form = FORMS.get(variant, "") if kind == "qqt" else ""
    parts.append(f"<p id='law-form' data-kind='{e(str(kind), quote=True)}' data-variant='{e(str(variant), quote=True)}'>"
                 f"<b>{e(str(kind))}</b>" + (f", {e(str(variant))} form" if variant else "")
                 + f", unit {e(str(d.get('unit')))}"
                 + (f": {form}" if form else "")  # FORMS are trusted markup of this module
                 + (f"; s = {e(_g(d.get('normalizer')))}" if d.get("normalizer") else "")
                 + (f"; gamma = {e(_g(d.get('gamma')))}" if d.get("gamma") is not None else "") + "</p>")
    gamma = fit.get("gamma")
    if isinstance(gamma, dict) and gamma.get("note"):
        parts.append(f"<p class='meta'>gamma ({'fitted' if gamma.get('fitted') else 'not fitted'}): "
                     f"{e(str(gamma['note']))}</p>")
    ihead = f"{int(round(100 * float(level)))}% bootstrap interval" if level else "bootstrap interval"
    parts.append(f"<table id='law-params'><tr><th>parameter</th><th>value</th><th>{e(ihead)} low</th>"
                 f"<th>high</th><th>note</th></tr>")
    for name, value in (d.get("params") or {}).items():
        lo, hi = (intervals.get(name) or [None, None])[:2]
        flag = flags.get(name)
        note = "fixed" if name in fixed else ""
        row_cls = " class='flagged'" if flag else ""
        flag_cell = (cell("law-flag", name, flag.get("side"), _bound_text(flag), cls="bad") if flag
                     else f"<td>{e(note)}</td>")
        parts.append(f"<tr{row_cls}>{_td(name)}{cell('law', name, value)}{cell('law-lo', name, lo)}"
                     f"{cell('law-hi', name, hi)}{flag_cell}</tr>")
    parts.append("</table>")
    if boot.get("n") or boot.get("draws"):
        parts.append(f"<p class='meta'>bootstrap: {e(_g(boot.get('n') or len(boot.get('draws') or [])))} refits, "
                     f"seed {e(str(boot.get('seed')))}</p>")
    else:
        parts.append("<p class='meta'>no bootstrap draws in the law file: no intervals or bands "
                     "(fit with --bootstrap N)</p>")
    # pools: size, gap, epoch range of the fit data
    pools = d.get("pools") or []
    by_pool = fit.get("max_epochs_by_pool") or {}
    if pools:
        parts.append("<table id='law-pools'><tr><th>pool</th><th>size</th><th>gap where &tau; was measured</th>"
                     "<th>epochs in the fit data (max)</th></tr>")
        for q in pools:
            name = str(q.get("name"))
            parts.append(f"<tr>{_td(name)}{cell('law-size', name, q.get('size'))}{cell('law-gap', name, q.get('gap'))}"
                         f"{cell('law-epochs', name, by_pool.get(name))}</tr>")
        parts.append("</table>")
    cv_key = "cv_error" if fit.get("cv_error") is not None else "loo_error"  # law files before cv_error
    cv_label = f"{fit.get('cv_method') or 'leave-one-out'} rel. error"
    diag = [(k, label) for k, label in (("n_obs", "observations"), ("r2", "R²"), ("rmse", "RMSE"),
                                        (cv_key, cv_label),
                                        ("holdout_largest_error", "hold-out-largest rel. error"),
                                        ("max_epochs", "epochs in the fit data (max)"),
                                        ("gap_ratio_max", "largest gap ratio measured")) if fit.get(k) is not None]
    if diag or fit.get("samples_range"):
        parts.append("<table id='fit-diagnostics'><tr><th>fit diagnostic</th><th>value</th></tr>")
        for k, label in diag:
            parts.append(f"<tr>{_td(label)}{cell('fit', k, fit[k])}</tr>")
        rng = fit.get("samples_range")
        if rng:
            unit_label = f"{d.get('unit', '?')} range of the fit data"
            parts.append(f"<tr>{_td(unit_label)}"
                         f"<td class='num'>{e(_g(rng[0]))} .. {e(_g(rng[1]))}</td></tr>")
        parts.append("</table>")
    sel = fit.get("model_selection") or {}
    if sel.get("candidates"):
        parts.append(f"<h3 id='fit-comparison'>Forms compared by held-out error</h3><p class='meta'>"
                     f"chosen by: {e(str(sel.get('by')))}; held-out runs: {e(str(sel.get('heldout_runs')))}</p>"
                     "<table id='model-selection'><tr><th>form</th><th>held-out runs</th><th>hold-out-largest</th>"
                     "<th>cross-validation</th><th>free parameters</th><th>used</th></tr>")
        for row in sel["candidates"]:
            v = str(row.get("variant"))
            used = bool(row.get("chosen"))
            parts.append(f"<tr{' class=kept' if used else ''}>{_td(v)}"
                         f"{cell('selection-heldout', v, row.get('heldout_runs_error'), _pct(row.get('heldout_runs_error')))}"
                         f"{cell('selection-largest', v, row.get('holdout_largest_error'), _pct(row.get('holdout_largest_error')))}"
                         f"{cell('selection-loo', v, _cv(row), _cv_text(row))}"
                         f"{cell('selection-params', v, row.get('free_parameters'))}"
                         f"{cell('selection-chosen', v, used, 'used' if used else '')}</tr>")
        parts.append("</table>")
    parts.append(_notes(fit.get("warnings") or [], "Fit warnings"))
    # curves over the observations
    parts.append("<h3 id='fit-curves'>Fitted curves over the measured points</h3>")
    if data.observations is None:
        parts.append("<p class='meta'>no observations given (--observations OBS): curves over the fit's "
                     "samples range, without the measured points</p>")
    else:
        parts.append(f"<p class='meta'>points: {e(data.observations_path or '')} ({len(data.observations)} rows)</p>"
                     + _observations_table(data))
    if data.curves:
        lvl = f"{int(round(100 * float(level)))}% " if level else ""
        parts.append("<table id='law-curves'><tr><th>pool</th><th>at samples seen (its largest)</th>"
                     f"<th>measured (mean of rows)</th><th>law predicts</th><th>{e(lvl)}band low</th><th>high</th>"
                     "<th>rel. RMS error, all its rows</th></tr>")
        for r in data.curves:
            k = r["pool"]
            parts.append(f"<tr>{_td(k)}{cell('curve-samples', k, r['samples'])}"
                         f"{cell('curve-measured', k, r['measured'])}{cell('curve-predicted', k, r['predicted'])}"
                         f"{cell('curve-lo', k, r['lo'])}{cell('curve-hi', k, r['hi'])}"
                         f"{cell('curve-error', k, r['rel_rmse'], _pct(r['rel_rmse']))}</tr>")
        parts.append("</table><p class='meta'>The band is the spread of the fitted curve over the bootstrap "
                     "draws, not of a new run (which also has seed noise).</p>")
    parts.append(_img(figures, "fit", "fitted curves with bootstrap bands"))
    return "".join(parts)


def _plan_section(data: LoopData, figures) -> str:
    result = data.plan
    unit, metric = result.get("unit", ""), result.get("metric", "loss")
    parts = [f"<h2 id='plan'>Plan</h2><p class='meta'>{e(data.plan_path or '')}"
             + (f" &middot; law {e(str(result.get('law')))}" if result.get("law") else "") + "</p>"]
    p = result.get("plan")
    if p:
        interval = p.get("interval")
        rob = result.get("robustness") or {}
        level = rob.get("level", 0.9)
        budget_text = f"{_g(p.get('budget'))} {unit}"
        parts.append("<table id='plan-head'><tr><th>budget</th><th>mixture</th><th>predicted "
                     f"{e(str(metric))}</th><th>{int(round(100 * float(level)))}% bootstrap interval</th></tr><tr>"
                     f"{cell('plan', 'budget', p.get('budget'), budget_text)}"
                     f"{cell('plan', 'mixture', p.get('mixture'), str(p.get('mixture')), cls='')}"
                     f"{cell('plan', 'predicted', p.get('predicted'))}"
                     f"<td class='num'>{e(_g(interval[0]) + ' .. ' + _g(interval[1])) if interval else '–'}</td>"
                     "</tr></table>")
        parts.append("<table id='plan-pools'><tr><th>pool</th><th>weight</th><th>samples</th><th>unique</th>"
                     "<th>epochs</th><th>epoch cap</th><th>cap binds</th></tr>")
        for r in p.get("pools") or []:
            k = str(r.get("pool"))
            binds = bool(r.get("cap_binding"))
            weight_text = f"{float(r.get('weight') or 0):.4f}"
            parts.append(f"<tr{' class=unused' if not r.get('weight') else ''}>{_td(k)}"
                         f"{cell('plan-weight', k, r.get('weight'), weight_text)}"
                         f"{cell('plan-samples', k, r.get('samples'))}{cell('plan-unique', k, r.get('unique'))}"
                         f"{cell('plan-epochs', k, r.get('epochs'))}{cell('plan-cap', k, r.get('epoch_cap'))}"
                         f"{cell('plan-binds', k, binds, 'binds' if binds else '', cls='bad' if binds else '')}</tr>")
        parts.append("</table>")
        c = result.get("constraints") or {}
        src = c.get("epoch_cap_source")
        caps = ("epoch caps: none (the law carries no measured epoch range)" if src is None else
                f"epoch caps: from the law's fit data (measured up to {_g(c.get('measured_max_epochs'))} epochs)"
                if src == "fit data" else f"epoch caps: --max-epochs {_g(c.get('max_epochs'))}"
                + (f" (the fit data reach {_g(c.get('measured_max_epochs'))} epochs)"
                   if c.get("measured_max_epochs") is not None else ""))
        parts.append(f"<p>{e(caps)}</p>")
        if p.get("top_m_order"):
            parts.append(f"<p class='meta'>pools by predicted {e(str(metric))} alone at this budget: "
                         f"{e(', '.join(map(str, p['top_m_order'])))}</p>")
        # baselines
        parts.append("<h3 id='baselines'>Baselines</h3><table id='plan-baselines'><tr><th>baseline</th>"
                     f"<th>predicted {e(str(metric))}</th><th>minus the plan's</th><th>feasible</th><th>weights</th></tr>")
        for key, b in (p.get("baselines") or {}).items():
            loss = b.get("loss")
            delta = None if loss is None or p.get("predicted") is None else float(loss) - float(p["predicted"])
            feas = bool(b.get("feasible"))
            weights = ", ".join(f"{q} {float(w):.3f}" for q, w in (b.get("weights") or {}).items())
            parts.append(f"<tr>{_td(b.get('name', key))}{cell('baseline-loss', key, loss)}"
                         f"{cell('baseline-delta', key, delta, '–' if delta is None else f'{delta:+.4g}')}"
                         f"{cell('baseline-feasible', key, feas, 'yes' if feas else 'no: violates the constraints', cls='' if feas else 'bad')}"
                         f"<td class='snippet'>{e(weights)}</td></tr>")
        parts.append("</table>")
        parts.append(_claim(p))
        if rob:
            parts.append("<h3 id='robustness'>Bootstrap agreement</h3><table id='plan-robustness'>"
                         "<tr><th>draws</th><th>same mixture chosen</th><th>plan within tolerance of the draw's optimum</th>"
                         "<th>tolerance</th><th>median regret</th></tr><tr>"
                         f"{cell('robustness', 'draws', rob.get('draws'))}"
                         f"{cell('robustness', 'same_choice', rob.get('same_choice'), _pct(rob.get('same_choice')))}"
                         f"{cell('robustness', 'stays_optimal', rob.get('stays_optimal'), _pct(rob.get('stays_optimal')))}"
                         f"{cell('robustness', 'tolerance', rob.get('tolerance'), _pct(rob.get('tolerance')))}"
                         f"{cell('robustness', 'regret_median', rob.get('regret_median'))}</tr></table>"
                         "<p class='meta'>Re-planned on each bootstrap draw of the law: agreement across refits of "
                         "one fit's data, not across probe seeds.</p>")
        cons = result.get("conservative") or {}
        if cons:
            parts.append("<p>planned with conservative parameters: " + e("; ".join(
                f"{k} {_g(v.get('from'))} -> {_g(v.get('to'))} (quantile {_g(v.get('quantile'))})"
                for k, v in cons.items() if isinstance(v, dict))) + "</p>")
    else:
        parts.append("<p>The plan file holds a sweep only (no single budget planned).</p>")
    parts.append(_notes(result.get("warnings") or [], "Plan warnings", "plan-warnings"))
    parts.append(_img(figures, "plan", "plan weights and baselines"))
    extra = {k: v for k, v in result.items() if k not in _PLAN_KEYS}
    if extra:
        parts.append("<details id='plan-extra'><summary>other fields of the plan file</summary>"
                     + _kv_table("plan-extra", extra) + "</details>")
    sweep = result.get("sweep")
    if sweep:
        parts.append(_sweep_section(sweep, unit, metric, figures))
    return "".join(parts)


_PLAN_KEYS = {"format", "law", "kind", "unit", "metric", "top_m_only", "constraints", "quality",
              "conservative", "plan", "sweep", "robustness", "warnings"}


def _claim(p: dict) -> str:
    claim = p.get("claim")
    if not claim:
        return "<p id='claim' class='meta'>the plan file carries no claim (an older `curate plan`)</p>"
    rec = claim.get("recommended")
    label = "the plan" if rec == "plan" else str(((p.get("baselines") or {}).get(rec) or {}).get("name") or rec)
    validated = claim.get("validated")
    status = ("validated by a replay" if validated else
              "not validated by a replay" if validated is False else "")
    return ("<h3 id='recommendation'>Recommendation</h3><table id='claim'><tr><th>recommended</th>"
            "<th>predicted gain over the best feasible baseline</th><th>error bar</th><th>error source</th>"
            "<th>validated</th></tr><tr>"
            + cell("claim", "recommended", rec, label, cls="ok" if rec == "plan" else "")
            + cell("claim", "predicted_gain", claim.get("predicted_gain"))
            + cell("claim", "error_bar", claim.get("error_bar"))
            + cell("claim", "error_source", claim.get("error_source"), str(claim.get("error_source") or "none"), cls="")
            + cell("claim", "validated", validated, status, cls="ok" if validated else "bad")
            + f"</tr></table><p id='claim-why'><b>why:</b> {e(str(claim.get('why') or ''))}</p>")


def _sweep_section(sweep: dict, unit: str, metric: str, figures) -> str:
    plans = sweep.get("plans") or []
    pools = list((plans[0].get("weights") or {}) if plans else [])
    parts = [f"<h2 id='sweep'>Budget sweep: which mixture is best as the budget grows</h2>"
             f"<table id='sweep-table'><tr><th>budget ({e(str(unit))})</th><th>mixture</th><th>predicted "
             f"{e(str(metric))}</th><th>best top-m</th>" + "".join(f"<th>{e(str(q))}</th>" for q in pools)
             + "<th>cap binds</th></tr>"]
    for i, r in enumerate(plans):
        key = str(i)
        parts.append(f"<tr>{cell('sweep-budget', key, r.get('budget'))}{cell('sweep-mixture', key, r.get('mixture'), str(r.get('mixture')), cls='')}"
                     f"{cell('sweep-predicted', key, r.get('predicted'))}{cell('sweep-top-m', key, r.get('best_top_m'))}"
                     + "".join(cell(f"sweep-weight:{q}", key, (r.get("weights") or {}).get(q),
                                    f"{float((r.get('weights') or {}).get(q) or 0):.3f}") for q in pools)
                     + f"<td>{e(', '.join(map(str, r.get('cap_binding') or [])))}</td></tr>")
    parts.append("</table>")
    switches = sweep.get("switches") or []
    if switches:
        parts.append("<p id='sweep-switches'>the choice switches at: " + e("; ".join(
            f"{_g(s.get('budget'))} {unit}: {s.get('from')} -> {s.get('to')}" for s in switches)) + "</p>")
    else:
        parts.append("<p id='sweep-switches'>the choice does not switch in this range</p>")
    infeasible = sweep.get("infeasible") or []
    if infeasible:
        parts.append(_notes([f"{_g(r.get('budget'))} {unit}: {r.get('reason')}" for r in infeasible],
                            "Budgets that cannot be planned"))
    parts.append(_img(figures, "sweep", "budget sweep"))
    return "".join(parts)


def _replay_rows(rep: dict) -> list[dict] | None:
    for key in REPLAY_ROW_KEYS:
        rows = rep.get(key)
        if isinstance(rows, list) and all(isinstance(r, dict) for r in rows):
            return rows
    return None


def _first(row: dict, *keys):
    for k in keys:
        if row.get(k) is not None:
            return row[k]
    return None


def _replay_section(data: LoopData) -> str:
    parts = ["<h2 id='replay'>Replay: the plan and its baselines trained</h2>"]
    for n, (path, rep) in enumerate(data.replays):
        rid = f"replay{n}"
        rp = rep.get("plan") if isinstance(rep.get("plan"), dict) else {}
        parts.append(f"<div class='replay' id='{rid}'><h3>{e(Path(path).name)}"
                     + (f": budget {e(_g(rp.get('budget')))} {e(str(rp.get('unit') or ''))}" if rp.get("budget") else "")
                     + "</h3>")
        if rep.get("validates"):
            parts.append(f"<p><b>what this validates:</b> {e(str(rep['validates']))}</p>")
        facts = []
        if rep.get("scale_k") is not None:
            facts.append(f"scale 1/{_g(rep['scale_k'])}")
        if rep.get("replay_budget_tokens") is not None:
            facts.append(f"{_g(rep['replay_budget_tokens'])} tokens per run")
        if rep.get("seeds") is not None:
            facts.append(f"seeds {', '.join(map(str, rep['seeds']))}")
        proxy = rep.get("proxy")
        if isinstance(proxy, dict) and proxy.get("params") is not None:
            facts.append(f"proxy {_g(proxy['params'])} parameters ({proxy.get('source', '?')})")
        target = rep.get("target")
        if isinstance(target, dict) and target.get("source"):
            facts.append(f"target {target['source']}")
        if rep.get("device"):
            facts.append(f"device {rep['device']}")
        if facts:
            parts.append(f"<p class='meta'>{e('; '.join(facts))}</p>")
        rows = _replay_rows(rep)
        if rows is None:
            parts.append("<p class='meta'>no candidate rows recognised in this file; its fields as given:</p>"
                         + _kv_table(f"{rid}-field", rep))
        else:
            parts.append(_replay_table(rid, rows, rep.get("best_baseline"), rep.get("seeds")))
        verdict = rep.get("verdict")
        if verdict is not None:
            best = next((r for r in rows or [] if r.get("key") == rep.get("best_baseline")), {})
            ok = rep.get("plan_at_most_best_plus_sd")
            parts.append(
                f"<table id='{rid}-verdict'><tr><th>verdict</th><th>best baseline (measured)</th>"
                "<th>plan - best baseline, measured</th><th>predicted</th><th>seed sd</th>"
                "<th>plan mean &le; best + one sd</th></tr><tr>"
                + cell(f"{rid}-verdict", "verdict", verdict, str(verdict), cls="ok" if verdict == "plan wins" else "bad" if verdict == "loses" else "")
                + cell(f"{rid}-verdict", "best_baseline", rep.get("best_baseline"), str(best.get("name") or rep.get("best_baseline")), cls="")
                + cell(f"{rid}-verdict", "measured_difference", rep.get("measured_difference"))
                + cell(f"{rid}-verdict", "predicted_difference", rep.get("predicted_difference"))
                + cell(f"{rid}-verdict", "sd", rep.get("sd"))
                + cell(f"{rid}-verdict", "plan_at_most_best_plus_sd", ok, "–" if ok is None else ("yes" if ok else "no"),
                       cls="ok" if ok else "bad")
                + "</tr></table>")
            paired = rep.get("paired_difference")
            if isinstance(paired, dict) and paired.get("mean") is not None:
                parts.append(f"<p class='meta'>paired by seed: plan - best baseline {e(_g(paired['mean']))} "
                             f"(sd {e(_g(paired.get('sd')))})</p>")
        if rep.get("difference_error") is not None:
            parts.append(f"<p>error of predicted differences (what `curate plan --replay` uses as its error bar): "
                         f"{e(_g(rep['difference_error']))}</p>")
        parts.append(_notes(rep.get("notes") or [], "Replay notes"))
        parts.append("</div>")
    return "".join(parts)


def _replay_table(rid: str, rows: list[dict], best_key, seed_ids=None) -> str:
    seeds = max((len(r.get("losses") or []) for r in rows), default=0)
    ids = list(seed_ids) if isinstance(seed_ids, list) and len(seed_ids) == seeds else list(range(1, seeds + 1))
    out = [f"<table id='{rid}-candidates'><tr><th>candidate</th><th>predicted</th><th>measured (mean)</th>"
           "<th>seed sd</th>" + "".join(f"<th>seed {e(str(i))}</th>" for i in ids)
           + "<th>epochs per pool</th><th>feasible</th><th>note</th></tr>"]
    for i, r in enumerate(rows):
        key = str(_first(r, "key", "name") or i)
        name = str(_first(r, "name", "key") or key)
        feasible = r.get("feasible")
        losses = list(r.get("losses") or [])
        note = "; ".join(str(x) for x in (r.get("note"), f"same epochs as {r['same_as']} (trained once)"
                                          if r.get("same_as") else None) if x)
        epochs = r.get("epochs") or {}
        ep = ", ".join(f"{q} {float(v):.2f}" for q, v in epochs.items()) if isinstance(epochs, dict) else str(epochs)
        cls = " class='kept'" if key == "plan" else (" class='input'" if key == best_key else "")
        out.append(f"<tr{cls}>{_td(name)}"
                   f"{cell(f'{rid}-predicted', key, _first(r, 'predicted', 'predicted_loss'))}"
                   f"{cell(f'{rid}-measured', key, _first(r, 'mean', 'measured_mean', 'measured'))}"
                   f"{cell(f'{rid}-sd', key, _first(r, 'sd', 'measured_sd', 'seed_sd'))}"
                   + "".join(cell(f"{rid}-seed{j}", key, losses[j] if j < len(losses) else None) for j in range(seeds))
                   + f"<td class='snippet'>{e(ep)}</td>"
                   + (f"<td>{'' if feasible is None else ('yes' if feasible else 'no')}</td>")
                   + f"<td>{e(note)}</td></tr>")
        extra = {k: v for k, v in r.items() if k not in _REPLAY_ROW_KNOWN}
        if extra and not any(k in r for k in ("mean", "measured_mean", "measured")):
            out.append(f"<tr><td colspan='{6 + seeds}'>{_kv_table(f'{rid}-row{i}', extra)}</td></tr>")
    out.append("</table>")
    return "".join(out)


_REPLAY_ROW_KNOWN = {"key", "name", "baseline", "weights", "epochs", "predicted", "predicted_loss", "feasible",
                     "same_as", "note", "losses", "mean", "measured_mean", "measured", "sd", "measured_sd",
                     "seed_sd", "replay_tokens", "replay_epochs", "max_epoch_error", "verdict"}


def _kv_table(group: str, mapping: dict) -> str:
    out = ["<table><tr><th>field</th><th>value</th></tr>"]
    for k, v in mapping.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(f"<tr>{_td(k)}{cell(group, str(k), v)}</tr>")
        else:
            text = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
            out.append(f"<tr>{_td(k)}<td class='snippet' data-group='{e(group, quote=True)}' "
                       f"data-key='{e(str(k), quote=True)}' data-value='{e(text[:2000], quote=True)}'>"
                       f"{e(text[:2000])}</td></tr>")
    out.append("</table>")
    return "".join(out)

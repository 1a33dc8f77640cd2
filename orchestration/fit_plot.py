"""Plot of a fitted law: observations, fitted curves and bootstrap intervals (matplotlib, Agg).

QQT: metric against samples seen (log x), one colour per pool or mixture, the fitted curve and,
when the law has bootstrap draws, its prediction band. Language-model laws: observed against
predicted loss (the y = x line is a perfect fit), with bootstrap prediction intervals as error
bars, coloured by model size. Parameters at a bound of the fit are named (a pool's legend
entry for its half-life, the title for LM parameters).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from curate.laws.bootstrap import prediction_band

MAX_DRAWS = 100  # draws used for the bands (enough for 90 % percentiles, keeps plotting quick)


def plot_fit(law, obs, path: Path, level: float = 0.9) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(render_fit(law, obs, level))
    return path


def render_fit(law, obs, level: float = 0.9, samples_range=None) -> bytes | None:
    """The figure as PNG bytes. `obs` may be None for a QQT law: its pools' curves (and bands)
    over `samples_range` (the fit's, from the law file) without points; None when there is
    nothing to draw (a language-model law without observations, or no range)."""
    import io

    qqt = getattr(law, "kind", "") == "qqt"
    if obs is None and not (qqt and samples_range):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    if qqt:
        _plot_qqt(ax, law, obs, level, samples_range)
    else:
        _plot_lm(ax, law, obs, level)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def _draw_laws(law):
    boot = getattr(law, "bootstrap", None) or {}
    draws = boot.get("draws") or []
    step = max(1, len(draws) // MAX_DRAWS)
    return draws[::step]


def _plot_qqt(ax, law, obs, level, samples_range=None):
    if obs is None:
        labels = list(law.pools)
        lo_n, hi_n = float(samples_range[0]), float(samples_range[1])
    else:
        labels = list(dict.fromkeys(obs.pool))
        lo_n, hi_n = float(obs.samples_seen.min()), float(obs.samples_seen.max())
    colours = _colours(len(labels))
    grid = np.geomspace(lo_n / 1.5, hi_n * 1.5, 60)
    draws = _draw_laws(law)
    for label, colour in zip(labels, colours):
        if obs is None:
            mix = None
        else:
            rows = [i for i, p in enumerate(obs.pool) if p == label]
            ax.scatter(obs.samples_seen[rows], obs.metric[rows], color=colour, s=22, zorder=3)
            mix = obs.mixtures[rows[0]]
        if mix is None and label not in law.pools:
            continue  # a pool the law does not know: points only

        def curve(m, mix=mix, label=label):
            return m.predict(grid, pool=label) if mix is None else m.predict_mixture(mix, grid)

        flags = [f"{name.split('[')[0]} at {f['side']} bound {f['bound']:g}"
                 for name, f in _flags(law).items() if name.endswith(f"[{label}]")]
        shown = label if not flags else f"{label} ({', '.join(flags)})"
        ax.plot(grid, curve(law), color=colour, lw=1.6, label=shown)
        if draws:
            lo, hi = prediction_band(law, draws, curve, level)
            ax.fill_between(grid, lo, hi, color=colour, alpha=0.18, lw=0)
    ax.set_xscale("log")
    ax.set_xlabel(f"{law.unit} seen")
    ax.set_ylabel("metric (lower is better)")
    title = f"QQT fit ({law.variant} variant)"
    if draws:
        title += f", {int(round(level * 100))}% bootstrap bands"
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best")
    ax.grid(True, which="both", alpha=0.3)


def _plot_lm(ax, law, obs, level):
    pred = np.asarray(law.predict(obs.params, obs.samples_seen, obs.unique_samples), dtype=float)
    draws = _draw_laws(law)
    sizes = obs.params
    sc = ax.scatter(pred, obs.metric, c=np.log10(sizes), cmap="viridis", s=18, zorder=3)
    if draws:
        lo, hi = prediction_band(law, draws, lambda m: m.predict(
            obs.params, obs.samples_seen, obs.unique_samples), level)
        ax.errorbar(pred, obs.metric, xerr=[pred - lo, hi - pred], fmt="none", ecolor="grey",
                    alpha=0.5, lw=0.8)
    lims = [min(pred.min(), obs.metric.min()), max(pred.max(), obs.metric.max())]
    ax.plot(lims, lims, color="black", lw=1, ls="--", label="y = x")
    ax.set_xlabel("predicted loss")
    ax.set_ylabel("observed loss")
    suffix = f", {int(round(level * 100))}% bootstrap intervals" if draws else ""
    flagged = ", ".join(f"{k} at {f['side']} bound {f['bound']:g}" for k, f in _flags(law).items())
    ax.set_title(f"{law.kind} law fit{suffix}" + (f"\n{flagged}" if flagged else ""), fontsize=10)
    ax.figure.colorbar(sc, ax=ax, label="log10 params")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)


def _flags(law) -> dict:
    """The law's parameters at a bound of the fit (fit.at_bound, laws.bounds)."""
    return (getattr(law, "fit_info", None) or {}).get("at_bound") or {}


def _colours(n):
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "viridis"]
    return [cmap(i if n <= 10 else i / max(1, n - 1)) for i in range(n)]

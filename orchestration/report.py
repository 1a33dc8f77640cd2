"""`curate report`: a self-contained HTML report (plus PNG figures) of one run directory, and
optionally of the whole loop built on it (probe observations, law, plan, replays).

Run sections: the funnel (where every input record went), pool sizes and token counts, score
distributions per pool, the largest duplicate clusters with examples, and a per-source breakdown.
Every number comes from the run's own files: manifest.json counts (the funnel), stats.parquet
(pool table) and the Parquet/JSONL outputs (histograms, clusters, sources). Loop sections
(`orchestration/report_loop.py`) appear exactly when their file is given and come from it alone. Numbers in the HTML
carry `data-key`/`data-value` attributes so tests (and scripts) can read them back exactly.

The HTML has inline CSS and base64 PNGs, so it opens anywhere with no network; the same PNGs are
written next to it in `<name>-figures/`.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

# Manifest `counts` layout written by `curate run` ("curate-run/1"):
#   {"input_records": N, "dead_letter": {reason: n}, "removed": {"exact": n, "near": n, ...},
#    "filtered": {reason: n}, "kept": N}
# Duplicate methods in pipeline order (others follow alphabetically).
DEDUP_METHODS = ("exact", "near", "semantic")
DEDUP_LABELS = {"exact": "exact duplicates", "near": "near duplicates (MinHash-LSH)",
                "semantic": "semantic duplicates (embeddings)"}
TOP_CLUSTERS = 10
HIST_BINS = 30


@dataclass
class ReportData:
    """Everything the report shows, as plain Python values."""

    run_dir: str
    manifest: dict
    funnel: list[dict]              # {key, label, count}; first input, last kept
    funnel_reconciles: bool | None
    pools: list[dict]               # stats.parquet rows
    histograms: dict                # {"edges": [...], "pools": {pool: [counts]}}
    score_quantiles: list[dict]     # {pool, p10, p50, p90}
    clusters: list[dict]            # {kept_id, size, methods, mean_similarity, kept_text, removed_ids}
    sources: list[dict]             # {source, pools: {pool: n}, kept, filtered, dead_letter}
    warnings: list[str] = field(default_factory=list)


@dataclass
class ReportResult:
    html_path: Path
    figures: dict[str, Path]
    data: ReportData
    loop: object | None = None  # report_loop.LoopData when any loop file was given


# ---------------------------------------------------------------------- data
def collect(run_dir: str | Path) -> ReportData:
    """Read a run directory into ReportData (no plotting)."""
    import duckdb

    from curate.pools.rundir import RunDir

    run = RunDir(run_dir)
    manifest, pools = run.manifest, run.stats()
    con = duckdb.connect()
    try:
        for name, view in (("docs", "docs"), ("dedup", "duplicates"), ("dead", "dead_letter"),
                           ("filtered", "filtered")):
            con.execute(f"CREATE TEMP VIEW {name} AS {run.select(view)}")
        funnel, reconciles, warnings = _funnel(manifest.get("counts") or {}, con, pools)
        histograms, quantiles = _score_distributions(con)
        clusters = _clusters(con)
        sources = _sources(con)
    finally:
        con.close()
    return ReportData(str(run_dir), manifest, funnel, reconciles, pools, histograms, quantiles, clusters,
                      sources, warnings)


def _reason_counts(value) -> dict[str, int] | None:
    """{reason: n} from a manifest entry that is a dict of counts (None when it is not one)."""
    if isinstance(value, dict) and all(isinstance(v, int) and not isinstance(v, bool) for v in value.values()):
        return {str(k): int(v) for k, v in value.items()}
    return None


def _funnel(counts: dict, con, pools: list[dict]):
    """Funnel rows from the manifest counts, cross-checked against the run's files.

    Stages the manifest lacks are counted from the files (and noted); disagreements between
    manifest and files are listed as warnings, never silently replaced.
    """
    warnings: list[str] = []

    def grouped(sql) -> dict[str, int]:
        return {str(k): int(n) for k, n in con.execute(sql).fetchall()}

    files_dead = grouped("SELECT coalesce(reason, '?'), count(*) FROM dead GROUP BY 1")
    files_dup = grouped("SELECT coalesce(method, '?'), count(*) FROM dedup GROUP BY 1")
    files_filtered = grouped("SELECT coalesce(reason, '?'), count(*) FROM filtered GROUP BY 1")
    files_kept = sum(int(p["docs"]) for p in pools)

    def stage(name, manifest_value, from_files):
        found = _reason_counts(manifest_value)
        if found is None and isinstance(manifest_value, int) and not isinstance(manifest_value, bool):
            found = {"all": manifest_value} if manifest_value else {}
        if found is None:
            if sum(from_files.values()):
                warnings.append(f"{name}: not in the manifest, counted from the run's files")
            return dict(from_files)
        if sum(found.values()) != sum(from_files.values()):
            warnings.append(f"{name}: manifest says {sum(found.values()):,}, "
                            f"the run's files hold {sum(from_files.values()):,}")
        return found

    dead = stage("dead-lettered", counts.get("dead_letter"), files_dead)
    removed = counts.get("removed")
    if removed is None:  # older/other layouts: exact_duplicates, near_duplicates, ... at top level
        removed = {m: counts[f"{m}_duplicates"] for m in DEDUP_METHODS if isinstance(counts.get(f"{m}_duplicates"), int)} or None
    dups = stage("duplicates", removed, files_dup)
    filtered = stage("filtered", counts.get("filtered"), files_filtered)

    total = counts.get("input_records")
    rows = [{"key": "input_records", "label": "input records", "count": total, "kind": "input"}]
    for reason, n in sorted(dead.items()):
        rows.append({"key": f"dead_letter:{reason}", "label": f"dead-lettered: {reason}", "count": n, "kind": "removed"})
    order = [m for m in DEDUP_METHODS if m in dups] + sorted(m for m in dups if m not in DEDUP_METHODS)
    for method in order:
        rows.append({"key": f"removed:{method}", "label": DEDUP_LABELS.get(method, f"{method} duplicates"),
                     "count": dups[method], "kind": "removed"})
    for reason, n in sorted(filtered.items()):
        rows.append({"key": f"filtered:{reason}", "label": f"filter: {reason}", "count": n, "kind": "removed"})
    kept = counts.get("kept")
    if not isinstance(kept, int):
        kept = files_kept
        warnings.append("kept: not in the manifest, taken from stats.parquet")
    elif kept != files_kept:
        warnings.append(f"kept: manifest says {kept:,}, stats.parquet holds {files_kept:,}")
    rows.append({"key": "kept", "label": "kept in pools", "count": kept, "kind": "kept"})
    removed_total = sum(r["count"] for r in rows if r["kind"] == "removed")
    if not isinstance(total, int):
        total = removed_total + kept
        rows[0]["count"] = total
        warnings.append("input records: not in the manifest, computed as removed + kept")
    reconciles = total == removed_total + kept
    if not reconciles:
        warnings.append(f"counts do not reconcile: {total:,} input != {removed_total:,} removed + {kept:,} kept")
    return rows, reconciles, warnings


def _score_distributions(con):
    lo, hi = con.execute("SELECT min(score), max(score) FROM docs").fetchone()
    if lo is None:
        return {"edges": [], "pools": {}}, []
    if hi <= lo:
        hi = lo + 1.0
    width = (hi - lo) / HIST_BINS
    rows = con.execute(
        f"SELECT pool, least(floor((score - {lo!r}) / {width!r}), {HIST_BINS - 1})::INT AS bin, count(*) "
        "FROM docs WHERE score IS NOT NULL GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    pools: dict[int, list[int]] = {}
    for pool, b, n in rows:
        pools.setdefault(int(pool), [0] * HIST_BINS)[b] = int(n)
    edges = [lo + i * width for i in range(HIST_BINS + 1)]
    quantiles = [
        {"pool": int(p), "p10": q10, "p50": q50, "p90": q90}
        for p, q10, q50, q90 in con.execute(
            "SELECT pool, quantile_cont(score, 0.1), quantile_cont(score, 0.5), quantile_cont(score, 0.9) "
            "FROM docs GROUP BY pool ORDER BY pool"
        ).fetchall()
    ]
    return {"edges": edges, "pools": pools}, quantiles


def _clusters(con) -> list[dict]:
    """The largest groups of removed duplicates per surviving document, with example texts.

    The kept document's text comes from the pools; a removed copy's text is shown only when the
    dedup rows carry one (a `removed_text`/`snippet`/`text` column), since removed documents are
    not stored elsewhere in the run directory.
    """
    columns = {row[0] for row in con.execute("DESCRIBE dedup").fetchall()}
    text_col = next((c for c in ("removed_text", "removed_snippet", "snippet", "text") if c in columns), None)
    removed_text = f"arg_min({text_col}, removed_id)" if text_col else "NULL::VARCHAR"
    rows = con.execute(
        f"""SELECT c.kept_id, c.size, c.methods, c.mean_similarity, c.examples, c.removed_text, d.text, d.pool
            FROM (SELECT kept_id, count(*) AS size, string_agg(DISTINCT method, ', ' ORDER BY method) AS methods,
                         avg(similarity) AS mean_similarity,
                         list(removed_id ORDER BY removed_id)[1:5] AS examples,
                         {removed_text} AS removed_text
                  FROM dedup GROUP BY kept_id ORDER BY size DESC, kept_id LIMIT {TOP_CLUSTERS}) c
            LEFT JOIN docs d ON d.id = c.kept_id
            ORDER BY c.size DESC, c.kept_id"""
    ).fetchall()
    return [
        {"kept_id": k, "size": int(n), "methods": m, "mean_similarity": s, "removed_ids": list(ex or []),
         "removed_text": rt, "kept_text": t, "kept_pool": None if p is None else int(p)}
        for k, n, m, s, ex, rt, t, p in rows
    ]


def _sources(con) -> list[dict]:
    out: dict[str, dict] = {}

    def entry(source):
        return out.setdefault(source or "?", {"source": source or "?", "pools": {}, "kept": 0, "filtered": 0,
                                             "dead_letter": 0})

    for source, pool, n in con.execute("SELECT source, pool, count(*) FROM docs GROUP BY ALL").fetchall():
        e = entry(source)
        e["pools"][int(pool)] = int(n)
        e["kept"] += int(n)
    for source, n in con.execute("SELECT source, count(*) FROM filtered GROUP BY ALL").fetchall():
        entry(source)["filtered"] += int(n)
    for source, n in con.execute("SELECT source, count(*) FROM dead GROUP BY ALL").fetchall():
        entry(source)["dead_letter"] += int(n)
    return sorted(out.values(), key=lambda e: (-e["kept"], e["source"]))


# ---------------------------------------------------------------------- figures
def make_figures(data: ReportData) -> dict[str, bytes]:
    """PNG bytes per figure name (matplotlib, Agg backend)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = {}

    def save(fig, name):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        figures[name] = buf.getvalue()

    # Funnel: records remaining after each stage, and what each stage removed.
    stages = [r for r in data.funnel if r["kind"] == "removed"]
    remaining = data.funnel[0]["count"] or 0
    labels, left, widths, colors = ["input records"], [0], [remaining], ["#4c72b0"]
    for r in stages:
        remaining -= r["count"]
        labels.append(r["label"])
        left.append(remaining)
        widths.append(r["count"])
        colors.append("#dd8452")
    labels.append("kept in pools")
    left.append(0)
    widths.append(data.funnel[-1]["count"])
    colors.append("#55a868")
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(labels) + 1))
    y = list(range(len(labels)))[::-1]
    ax.barh(y, widths, left=left, color=colors)
    for yi, l, w in zip(y, left, widths):
        ax.text(l + w, yi, f" {w:,}", va="center", fontsize=9)
    ax.set_yticks(y, labels)
    ax.set_xlabel("records")
    ax.set_title("Where every input record went")
    ax.margins(x=0.15)
    save(fig, "funnel")

    # Pool sizes and token counts.
    pools = [int(p["pool"]) for p in data.pools]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    axes[0].bar([str(p) for p in pools], [int(p["docs"]) for p in data.pools], color="#4c72b0")
    axes[0].set_title("documents per pool")
    axes[1].bar([str(p) for p in pools], [int(p["tokens"] or 0) for p in data.pools], color="#8172b3")
    axes[1].set_title("tokens per pool (estimate)")
    for ax in axes:
        ax.set_xlabel("pool (0 = best)")
    save(fig, "pools")

    # Score distributions per pool.
    fig, ax = plt.subplots(figsize=(8, 3.4))
    edges = data.histograms["edges"]
    for pool, counts in sorted(data.histograms["pools"].items()):
        ax.stairs(counts, edges, label=f"pool {pool}", fill=True, alpha=0.45)
    ax.set_xlabel("quality score")
    ax.set_ylabel("documents")
    ax.set_title("Score distribution per pool")
    if data.histograms["pools"]:
        ax.legend()
    save(fig, "scores")

    # Per-source breakdown: kept documents by pool, stacked.
    if data.sources:
        top = data.sources[:15]
        fig, ax = plt.subplots(figsize=(8, 0.4 * len(top) + 1.2))
        names = [_short(s["source"], 40) for s in top][::-1]
        base = [0] * len(top)
        for pool in pools:
            vals = [s["pools"].get(pool, 0) for s in top][::-1]
            ax.barh(names, vals, left=base, label=f"pool {pool}")
            base = [b + v for b, v in zip(base, vals)]
        ax.set_xlabel("kept documents")
        ax.set_title("Kept documents per source and pool")
        ax.legend(fontsize=8)
        save(fig, "sources")
    return figures


# ---------------------------------------------------------------------- HTML
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.meta{color:#666;font-size:.9rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#f4f4f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.kept td{font-weight:600;background:#eef7ee}tr.input td{font-weight:600;background:#eef2f8}
.ok{color:#2a7a2a;font-weight:600}.bad{color:#b22;font-weight:600}
.warn{background:#fff7e0;border:1px solid #f0d890;padding:.4rem .8rem;font-size:.9rem}
img{max-width:100%;height:auto;display:block;margin:.5rem 0}
.snippet{font-family:ui-monospace,monospace;font-size:.8rem;color:#333;max-width:520px;white-space:pre-wrap;word-break:break-word}
.grid{display:flex;flex-wrap:wrap;gap:1.5rem;align-items:flex-start}
h3{font-size:1.05rem;margin-top:1.4rem}tr.flagged td{background:#fff1f0}tr.unused td{color:#888}
nav a{margin:0 .2rem}
"""


def render_html(data: ReportData, figures: dict[str, bytes], loop=None) -> str:
    m = data.manifest
    e = html.escape
    run_id = m.get("run_id") or Path(data.run_dir).name
    when = next((m[k] for k in ("finished_utc", "finished_at", "created_utc", "created_at", "time") if m.get(k)), "")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>curate report: {e(str(run_id))}</title><style>{_CSS}</style></head><body>",
        f"<h1>curate run report: <span id='run-id'>{e(str(run_id))}</span></h1>",
        f"<p class='meta'>{e(str(data.run_dir))}" + (f" &middot; finished {e(str(when))}" if when else "")
        + f" &middot; report generated {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC}</p>",
    ]
    sections = [("funnel", "funnel"), ("pools", "pools"), ("scores", "scores"), ("clusters", "duplicates"),
                ("sources", "sources")]
    if loop is not None and loop.sections:
        from curate.orchestration.report_loop import nav_entries

        sections += [("loop", "loop")] + nav_entries(loop)
    parts.append("<nav class='meta' id='contents'>" + " &middot; ".join(
        f"<a href='#{k}'>{e(v)}</a>" for k, v in sections) + "</nav>")
    if data.warnings:
        parts.append("<div class='warn'><b>Notes</b><ul>" + "".join(f"<li>{e(w)}</li>" for w in data.warnings)
                     + "</ul></div>")

    # Funnel
    status = ("<span class='ok' id='reconciles' data-value='true'>counts reconcile</span>" if data.funnel_reconciles
              else "<span class='bad' id='reconciles' data-value='false'>counts do NOT reconcile</span>")
    parts.append(f"<h2 id='funnel'>Funnel: where every record went</h2><p>{status}: input = "
                 "dead-lettered + duplicates + filtered + kept.</p><div class='grid'><table>"
                 "<tr><th>stage</th><th>records</th><th>share of input</th></tr>")
    total = data.funnel[0]["count"] or 0
    for r in data.funnel:
        share = f"{100 * r['count'] / total:.1f}%" if total else ""
        parts.append(f"<tr class='{r['kind']}'><td>{e(r['label'])}</td>{_num('funnel', r['key'], r['count'])}"
                     f"<td class='num'>{share}</td></tr>")
    parts.append("</table>" + _img(figures, "funnel", "funnel chart") + "</div>")

    # Pools
    parts.append("<h2 id='pools'>Pools</h2><table><tr><th>pool</th><th>documents</th><th>characters</th>"
                 "<th>tokens (est.)</th><th>score min</th><th>score mean</th><th>score max</th><th>sources</th></tr>")
    for p in data.pools:
        k = int(p["pool"])
        parts.append(
            f"<tr><td>{k}</td>{_num(f'pool{k}', 'docs', p['docs'])}{_num(f'pool{k}', 'chars', p['chars'])}"
            f"{_num(f'pool{k}', 'tokens', p['tokens'])}{_num(f'pool{k}', 'score_min', p['score_min'])}"
            f"{_num(f'pool{k}', 'score_mean', p['score_mean'])}{_num(f'pool{k}', 'score_max', p['score_max'])}"
            f"<td>{e(_share_text(p.get('source_share')))}</td></tr>"
        )
    totals = {key: sum(int(p[key] or 0) for p in data.pools) for key in ("docs", "chars", "tokens")}
    parts.append(f"<tr class='kept'><td>all</td>{_num('total', 'docs', totals['docs'])}"
                 f"{_num('total', 'chars', totals['chars'])}{_num('total', 'tokens', totals['tokens'])}"
                 "<td></td><td></td><td></td><td></td></tr></table>")
    parts.append(_img(figures, "pools", "pool sizes chart"))

    # Scores
    parts.append("<h2 id='scores'>Score distributions per pool</h2>")
    if data.score_quantiles:
        parts.append("<table><tr><th>pool</th><th>p10</th><th>median</th><th>p90</th></tr>")
        for q in data.score_quantiles:
            k = q["pool"]
            parts.append(f"<tr><td>{k}</td>{_num(f'pool{k}', 'p10', q['p10'])}{_num(f'pool{k}', 'p50', q['p50'])}"
                         f"{_num(f'pool{k}', 'p90', q['p90'])}</tr>")
        parts.append("</table>")
    parts.append(_img(figures, "scores", "score distribution chart"))

    # Duplicate clusters
    parts.append(f"<h2 id='clusters'>Largest duplicate clusters (top {TOP_CLUSTERS})</h2>")
    if data.clusters:
        parts.append("<table><tr><th>kept document</th><th>removed copies</th><th>method</th><th>mean similarity</th>"
                     "<th>kept text (start)</th><th>removed ids (first 5)</th></tr>")
        for c in data.clusters:
            pool = f" (pool {c['kept_pool']})" if c["kept_pool"] is not None else " (not in the pools)"
            parts.append(
                f"<tr><td>{e(str(c['kept_id']))}{pool}</td>{_num('cluster', str(c['kept_id']), c['size'])}"
                f"<td>{e(str(c['methods']))}</td><td class='num'>{_fmt(c['mean_similarity'])}</td>"
                f"<td class='snippet'>{e(_short(' '.join((c['kept_text'] or '').split()), 240))}</td>"
                f"<td class='snippet'>{e(', '.join(map(str, c['removed_ids'])))}"
                + (f"<br><i>first copy:</i> {e(_short(' '.join(str(c['removed_text']).split()), 240))}"
                   if c.get("removed_text") else "")
                + "</td></tr>"
            )
        parts.append("</table>")
    else:
        parts.append("<p>No duplicates were removed.</p>")

    # Sources
    pools = [int(p["pool"]) for p in data.pools]
    parts.append("<h2 id='sources'>Per-source breakdown</h2><table><tr><th>source</th>"
                 + "".join(f"<th>pool {k}</th>" for k in pools)
                 + "<th>kept</th><th>filtered</th><th>dead-lettered</th></tr>")
    for s in data.sources:
        key = s["source"]
        parts.append(f"<tr><td>{e(_short(key, 80))}</td>"
                     + "".join(_num(f"source:{key}", f"pool{k}", s["pools"].get(k, 0)) for k in pools)
                     + _num(f"source:{key}", "kept", s["kept"]) + _num(f"source:{key}", "filtered", s["filtered"])
                     + _num(f"source:{key}", "dead_letter", s["dead_letter"]) + "</tr>")
    parts.append("</table>" + _img(figures, "sources", "per-source chart"))

    if loop is not None and loop.sections:
        from curate.orchestration.report_loop import render_loop

        parts.append(render_loop(loop, figures))

    # Run configuration
    parts.append("<h2 id='config'>Configuration and versions</h2><details><summary>manifest config</summary>"
                 f"<pre class='snippet'>{e(json.dumps(m.get('config'), indent=2, sort_keys=True, default=str))}</pre>"
                 "</details><details><summary>versions</summary>"
                 f"<pre class='snippet'>{e(json.dumps(m.get('versions'), indent=2, sort_keys=True, default=str))}</pre>"
                 "</details>"
                 # Records, once loaded, how many figures decoded (read by the browser test via --dump-dom).
                 "<script>window.addEventListener('load',function(){var i=document.images,n=0;"
                 "for(var k=0;k<i.length;k++){if(i[k].complete&&i[k].naturalWidth>0){n++;}}"
                 "document.body.setAttribute('data-images-loaded',n+'/'+i.length);});</script>"
                 "</body></html>")
    return "".join(parts)


def _num(group: str, key: str, value) -> str:
    """A numeric cell whose exact value is readable from the DOM (data-group/data-key/data-value)."""
    raw = "" if value is None else (repr(float(value)) if isinstance(value, float) else str(value))
    return (f"<td class='num' data-group='{html.escape(group, quote=True)}' data-key='{html.escape(key, quote=True)}' "
            f"data-value='{html.escape(raw, quote=True)}'>{_fmt(value)}</td>")


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return html.escape(str(value))


def _img(figures: dict[str, bytes], name: str, alt: str) -> str:
    if name not in figures:
        return ""
    data = base64.b64encode(figures[name]).decode("ascii")
    return f"<img id='fig-{name}' alt='{alt}' src='data:image/png;base64,{data}'>"


def _share_text(share) -> str:
    if isinstance(share, str):
        try:
            share = json.loads(share)
        except json.JSONDecodeError:
            return share
    if isinstance(share, dict):
        return ", ".join(f"{_short(Path(str(k)).name, 30)} {100 * float(v):.0f}%" for k, v in
                         sorted(share.items(), key=lambda kv: -float(kv[1])))
    if isinstance(share, list):
        return ", ".join(str(x) for x in share)
    return ""


def _short(text: str, n: int) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


# ---------------------------------------------------------------------- entry point
def write_report(run_dir: str | Path, output: str | Path | None = None, *, observations=None,
                 law=None, plan=None, replays=()) -> ReportResult:
    """Write OUTPUT (default RUN_DIR/report.html) and its PNGs in OUTPUT's `<stem>-figures/`.

    observations (a table `curate fit` reads), law (a law file), plan (a plan file) and replays
    (`curate validate` JSON files) each add their sections (report_loop); every file is read
    before anything is written, so a bad one leaves no report behind.
    """
    loop = None
    if observations is not None or law is not None or plan is not None or replays:
        from curate.orchestration.report_loop import collect_loop

        loop = collect_loop(observations=observations, law=law, plan=plan, replays=tuple(replays))
    data = collect(run_dir)
    figures = make_figures(data)
    if loop is not None:
        from curate.orchestration.report_loop import loop_figures

        figures.update(loop_figures(loop))
    html_path = Path(output) if output else Path(run_dir) / "report.html"
    html_path.parent.mkdir(parents=True, exist_ok=True)
    fig_dir = html_path.parent / f"{html_path.stem}-figures"
    fig_dir.mkdir(exist_ok=True)
    paths = {}
    for name, png in figures.items():
        paths[name] = fig_dir / f"{name}.png"
        paths[name].write_bytes(png)
    tmp = html_path.with_name(html_path.name + ".tmp")
    tmp.write_text(render_html(data, figures, loop), encoding="utf-8")
    tmp.replace(html_path)  # readers never see a half-written report
    return ReportResult(html_path, paths, data, loop)

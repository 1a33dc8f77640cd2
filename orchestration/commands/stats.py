"""Show the per-pool table of a finished run (read from DIR/stats.parquet with DuckDB).

Columns: pool (0 = best), docs, chars, tokens (estimate: whitespace words x 1.3),
score min/mean/max, and each source's share of the pool's documents. Below the table: what
dedup removed (semantic dedup with its cosine threshold and clusters) and, when embedding
scores were on, how the pool score was combined and how well the reference classifier
separated the reference from the corpus.

--json prints {"run", "pools": [rows], "removed", "embeddings", "semantic_dedup",
"embedding_scores"} (the last three null when those stages were off).
"""
from __future__ import annotations

import argparse

HELP = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="DIR", help="output directory of `curate run`")
    parser.add_argument("--json", action="store_true", help="print the table and run summary as JSON")


def _fmt(value, digits=3):
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def _table(rows: list[dict]) -> str:
    import json
    import os

    header = ["pool", "docs", "chars", "tokens", "score_min", "score_mean", "score_max", "top sources"]
    lines = []
    for r in rows:
        share = json.loads(r["source_share"] or "{}")
        top = sorted(share.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        sources = ", ".join(f"{os.path.basename(s.rstrip('/'))} {v:.0%}" for s, v in top)
        lines.append([str(r["pool"]), str(r["docs"]), str(r["chars"]), str(r["tokens"]),
                      _fmt(r["score_min"]), _fmt(r["score_mean"]), _fmt(r["score_max"]), sources])
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in lines]
    return "\n".join(out)


def _summary_lines(manifest: dict) -> list[str]:
    removed = _removed(manifest)
    parts = [f"{k} {v}" for k, v in removed.items()]
    sem = manifest.get("semantic_dedup")
    if sem:
        clusters = sem.get("clusters") if isinstance(sem.get("clusters"), dict) else {}
        threshold = sem.get("similarity_threshold")
        threshold = f"{threshold:g}" if isinstance(threshold, (int, float)) else "?"
        parts = [p for p in parts if not p.startswith("semantic ")]
        parts.append(f"semantic {sem.get('removed', '?')} (cosine > {threshold}, ranking "
                     f"{sem.get('ranking', '?')}, {clusters.get('n_leaves', '?')} clusters)")
    lines = ["removed: " + (", ".join(parts) or "none")]
    es = manifest.get("embedding_scores")
    if es:
        weights = es.get("weights") if isinstance(es.get("weights"), dict) else {}
        weights = " + ".join(f"{w:g} {k}" for k, w in weights.items() if isinstance(w, (int, float)) and w)
        lines.append(f"pool score = ({weights}) / sum |w|; reference {es.get('reference')} "
                     f"({es.get('n_reference')} texts vs {es.get('n_negatives')} corpus docs, "
                     f"training AUC {_fmt(es.get('training_auc'))})")
    emb = manifest.get("embeddings")
    if emb and emb.get("dir"):
        lines.append(f"embeddings: {emb.get('rows_written', '?')} x {emb.get('model', '?')} "
                     f"({emb.get('dtype', '?')}) in {emb['dir']}")
    return lines


def _removed(manifest: dict) -> dict:
    """counts.removed by method (RunDir checked the types: a count or an object of counts)."""
    removed = manifest["counts"].get("removed", {})
    return removed if isinstance(removed, dict) else {"all": removed}


def run(args: argparse.Namespace) -> int:
    import json

    from curate.pools.rundir import RunDir

    run_dir = RunDir(args.run_dir)
    rows, manifest = run_dir.stats(), run_dir.manifest
    if args.json:
        for r in rows:
            r["source_share"] = json.loads(r["source_share"] or "{}")
        print(json.dumps({"run": args.run_dir, "pools": rows,
                          "removed": _removed(manifest),
                          **{k: manifest.get(k) for k in ("embeddings", "semantic_dedup", "embedding_scores")}},
                         indent=2))
    else:
        print(_table(rows))
        print("\n".join(_summary_lines(manifest)))
    return 0

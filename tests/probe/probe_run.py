"""A small run directory for probe tests, built from slices of the shared corpora (news +
Wikipedia as the good pool, C4 as the middle one, health tweets as the bad one) and written the
way `curate run` writes its pools: RUN/pools/pool=K/part-0.parquet. Also the tiny proxy and
design the probe tests train with."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curate.probe.design import ProbeDesign, default_mixtures
from curate.probe.proxy_lm import ProxyConfig
from tests.pools.runfixture import publish_manifest

TINY = ProxyConfig(d_model=32, n_layers=1, n_heads=2, context=32, batch_size=4, lr=3e-3,
                   warmup_steps=2)


def _read(path: Path, limit: int) -> list[tuple[str, str]]:
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh):
            if len(out) >= limit:
                break
            text = json.loads(line).get("text") or ""
            if text:
                out.append((f"{path.name.split('.')[0]}-{n}", text))
    return out


def write_probe_run(corpora_dir: Path, root: Path) -> Path:
    """Three pools (65, 120 and 2,000 documents) under ROOT/pools/pool=K/part-0.parquet, published."""
    pools = [
        _read(corpora_dir / "wikipedia_30.jsonl.gz", 5) + _read(corpora_dir / "news_articles.jsonl.gz", 60),
        _read(corpora_dir / "c4_sample_c.jsonl.gz", 120),
        _read(corpora_dir / "health_tweets.jsonl.gz", 2000),
    ]
    for k, docs in enumerate(pools):
        d = root / "pools" / f"pool={k}"
        d.mkdir(parents=True)
        pq.write_table(pa.table({"id": [i for i, _ in docs], "text": [t for _, t in docs],
                                 "score": [1.0 - k] * len(docs), "pool": [k] * len(docs)}),
                       d / "part-0.parquet")
    publish_manifest(root, {"counts": {"kept": sum(len(docs) for docs in pools)}})
    return root


def tiny_design(seed=0, **kw) -> ProbeDesign:
    """The TINY proxy on U = 2048 tokens per pool of the three-pool run, evaluated at 0.5 .. 4 U."""
    names = ["pool0", "pool1", "pool2"]
    base = dict(config=TINY, unique_tokens=2048, multiples=(0.5, 1.0, 2.0, 4.0),
                mixtures=default_mixtures(names), large_pool="pool0", target_tokens=2048, seed=seed)
    base.update(kw)
    return ProbeDesign(**base)

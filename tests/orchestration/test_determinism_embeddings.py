"""Issue 17 item 8: with --semantic-dedup --embedding-scores, pools and dedup decisions are the
same across repeats and worker counts (real documents, real `curate run` processes, no cache).

Three runs of ~300 real C4/news documents plus planted reordered copies (so semantic dedup has
something to decide): one worker twice, then two worker processes. Each is a separate
`curate` process with the embedding cache off, so every run embeds from scratch.
"""
from __future__ import annotations

import gzip
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow

SPLIT = re.compile(r"(?<=[.!?])\s+")
HEADER = "Home | News | Sports | Subscribe to our newsletter. Advertisement\n\n"


def _corpus(corpora: Path, out: Path) -> Path:
    docs = []
    for name, n in (("c4_sample_c.jsonl.gz", 200), ("news_articles.jsonl.gz", 100)):
        with gzip.open(corpora / name, "rt", encoding="utf-8") as f:
            for i, line in zip(range(n), f):
                docs.append({"id": f"{name.split('.')[0]}-{i}", "text": json.loads(line)["text"][:3000]})
    rng = random.Random(17)
    # planted copies that MinHash misses and embeddings catch (as in the semantic-dedup
    # acceptance test): an 8-sentence news paragraph, its sentences shuffled under a header
    for k, doc in enumerate(rng.sample(docs[200:], 12)):
        sentences = SPLIT.split(doc["text"].strip())[:8]
        doc["text"] = " ".join(sentences)
        shuffled = sentences[:]
        while shuffled == sentences and len(sentences) > 1:
            rng.shuffle(shuffled)
        docs.append({"id": f"copy-{k}", "text": HEADER + " ".join(shuffled)})
    path = out / "corpus.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


def _run(data: Path, out: Path, *extra: str) -> None:
    # near dedup off: MinHash would remove the planted copies before semantic dedup sees them
    config = data.parent / "config.json"
    config.write_text(json.dumps({"near_dedup": {"enabled": False}}))
    cmd = [sys.executable, "-m", "curate.orchestration.cli", "run", "--input", str(data), "--output", str(out),
           "--config", str(config), "--semantic-dedup", "--embedding-scores", "--pools", "4", "--cache-dir", "none", "--no-catalog",
           "--quiet", "--runner=FnApiRunner", *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]


def _decisions(out: Path) -> dict:
    import pandas as pd

    # files one by one: the hive folder name pool=K and the pool column would not merge
    pools = pd.concat([pq.read_table(f).to_pandas() for f in sorted((out / "pools").rglob("*.parquet"))])
    dedup = pd.concat([pq.read_table(f).to_pandas() for f in sorted((out / "dedup").rglob("*.parquet"))])
    semantic = dedup[dedup["method"] == "semantic"]
    manifest = json.loads((out / "manifest.json").read_text())
    return {
        "pools": {int(p): sorted(g["id"]) for p, g in pools.groupby("pool")},
        "scores": dict(zip(pools["id"], pools["score"])),
        "removed": sorted(zip(semantic["removed_id"], semantic["kept_id"])),
        "precision": manifest["config"]["embed"]["precision"],
    }


def test_pools_and_dedup_identical_across_repeats_and_workers(corpora_dir, tmp_path):
    data = _corpus(corpora_dir, tmp_path)
    runs = {}
    for name, extra in (("one_a", []), ("one_b", []),
                        ("two", ["--direct_num_workers=2", "--direct_running_mode=multi_processing"])):
        _run(data, tmp_path / name, *extra)
        runs[name] = _decisions(tmp_path / name)
    first = runs["one_a"]
    assert first["precision"] == "fp32"  # fixed on the launcher, recorded in the manifest
    for name in ("one_b", "two"):
        assert runs[name]["pools"] == first["pools"], name
        assert runs[name]["removed"] == first["removed"], name
        # the vectors are bitwise equal, so the scores are too
        assert runs[name]["scores"] == first["scores"], name
    assert len(first["removed"]) >= 5, first["removed"]  # planted copies found: a real decision
    assert sum(len(ids) for ids in first["pools"].values()) >= 250

"""Helpers shared by the run fault/resume/progress tests: synthetic corpora, the CLI as a
subprocess, and reading a run's pools back as (id, pool) rows."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

WORDS = [f"w{i}" for i in range(5000)]  # a large vocabulary: random texts are never near-dups


def random_text(rng: random.Random, n_words: int = 60) -> str:
    """Distinct-looking prose: random words with sentence punctuation."""
    words = [rng.choice(WORDS) for _ in range(n_words)]
    sentences = [" ".join(words[i:i + 12]).capitalize() + "." for i in range(0, n_words, 12)]
    return " ".join(sentences)


def write_jsonl(path: Path, records: list) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def synthetic_corpus(folder: Path, n: int = 200, seed: int = 0, n_exact: int = 10) -> Path:
    """n random documents plus n_exact exact copies (new ids): a small corpus with dedup work."""
    rng = random.Random(seed)
    docs = [{"id": f"d{i}", "text": random_text(rng)} for i in range(n)]
    docs += [{"id": f"copy{i}", "text": docs[i]["text"]} for i in range(n_exact)]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "corpus.jsonl"
    write_jsonl(path, docs)
    return path


def cli_env(workspace: Path | None = None) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("CURATE_DEBUG", None)
    if workspace is not None:
        env["CURATE_WORKSPACE"] = str(workspace)
    return env


def curate_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "curate.orchestration.cli", *map(str, args)]


def run_cli(*args, workspace: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(curate_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          env=cli_env(workspace))


def pool_rows(run_dir: Path) -> list[tuple[str, int]]:
    """Sorted (id, pool) of every document in the run's pools."""
    rows = []
    for part in sorted((run_dir / "pools").glob("pool=*/*.parquet")):
        pool = int(part.parent.name.split("=")[1])
        rows += [(i, pool) for i in pq.read_table(part, columns=["id"]).column("id").to_pylist()]
    return sorted(rows)


def table_rows(run_dir: Path, sub: str, sort_key: str) -> list[dict]:
    rows = []
    for part in sorted((run_dir / sub).rglob("*.parquet")):
        rows += pq.read_table(part).to_pylist()
    return sorted(rows, key=lambda r: str(r[sort_key]))


def visible_state(run_dir: Path) -> str:
    """"published", "empty" (nothing a reader would take for a run) or a description of a
    partial state that a reader could see (the failure the tests look for)."""
    from curate.pipelines.publish import is_published

    if is_published(str(run_dir)):
        return "published"
    readable = [n for n in ("manifest.json", "stats.parquet") if (run_dir / n).exists()]
    return f"PARTIAL: {readable}" if readable else "empty"

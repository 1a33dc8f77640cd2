"""A published run directory and plan files for the materialize tests, written directly (real
Parquet, real manifest and _SUCCESS marker as `curate run` publishes them), so each test does
not pay for a curation pipeline."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curate.pools.rundir import MANIFEST, STATS, SUCCESS, marker_bytes

WORDS = ["alpha", "beta", "gamma", "delta", "ünïcode", "zeta", "eta", "theta", "iota", "kappa"]


def make_run(root: Path, docs_per_pool=(40, 30, 20), seed: int = 0) -> Path:
    """A run with len(docs_per_pool) pools; texts of varied length (some non-ASCII)."""
    rng = random.Random(seed)
    stats = []
    for k, n in enumerate(docs_per_pool):
        rows = []
        for i in range(n):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60)))
            rows.append({"id": f"p{k}-d{i:04d}", "text": text, "source": f"src{i % 3}",
                         "score": round(1.0 - 0.1 * k - i / (10 * n), 6), "chars": len(text),
                         "tokens": int(len(text.split()) * 1.3), "pool": k})
        folder = root / "pools" / f"pool={k}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), folder / "part-00000-of-00001.parquet")
        stats.append({"pool": k, "docs": n, "chars": sum(r["chars"] for r in rows),
                      "tokens": sum(r["tokens"] for r in rows), "score_min": 0.0, "score_mean": 0.5,
                      "score_max": 1.0, "source_share": "{}"})
    pq.write_table(pa.Table.from_pylist(stats), root / STATS)
    manifest = json.dumps({"format": "test-run", "counts": {}}).encode()
    (root / SUCCESS).write_bytes(marker_bytes(manifest, f"fp-{seed}-{docs_per_pool}"))
    (root / MANIFEST).write_bytes(manifest)
    return root


def pool_bytes(run: Path) -> dict[str, int]:
    out = {}
    for part in sorted((run / "pools").glob("pool=*/*.parquet")):
        k = int(part.parent.name.split("=")[1])
        out[f"pool{k}"] = sum(len(t.encode()) for t in pq.read_table(part, columns=["text"]).column("text").to_pylist())
    return out


def write_plan(path: Path, unit: str, pools: dict[str, tuple[float, float, float]],
               size_unit: str | None = None) -> Path:
    """A curate-plan/1 file; pools: {name: (size, unique, epochs)}; `size_unit` recorded when
    given (plan files written before it was recorded lack it)."""
    rows, draws = [], 0.0
    for name, (size, unique, epochs) in pools.items():
        samples = unique * epochs
        draws += samples
        rows.append({"pool": name, "weight": 0.0, "samples": samples, "unique": unique,
                     "epochs": epochs, "size": size, "epoch_cap": 8.0, "cap_binding": False})
    for r in rows:
        r["weight"] = r["samples"] / draws if draws else 0.0
    plan = {"format": "curate-plan/1", "law": "law.json", "kind": "qqt", "unit": unit, "metric": "loss",
            "plan": {"budget": draws, "draws": draws, "pools": rows, "mixture": "test"}}
    if size_unit is not None:
        plan["size_unit"] = size_unit
    path.write_text(json.dumps(plan, indent=2))
    return path


def train_tokenizer(path: Path, texts: list[str]) -> Path:
    """A tiny byte-level BPE trained here (nothing downloaded), saved as tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.save(str(path))
    return path

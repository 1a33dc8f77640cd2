"""Embedding throughput: plain SentenceTransformer.encode vs curate's encode path vs the Beam stage.

Same documents (news paragraphs of ~140 tokens), same process, interleaved trials, best of
``--trials``.  On a CUDA machine the same script measures the GPU path (fp16).
Usage: python benchmarks/bench_embed.py [--docs 256] [--trials 2] [--out benchmarks/results/embed_cpu.json]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
CORPUS = Path(os.environ.get("CURATE_SHARED", ROOT.parent / "shared")) / "corpora" / "news_articles.jsonl.gz"


def paragraphs(n: int) -> list[str]:
    out: list[str] = []
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        for line in f:
            for para in json.loads(line)["text"].split("\n"):
                if 400 <= len(para) <= 1000:
                    out.append(para)
    out = list(dict.fromkeys(out))
    reps = -(-n // len(out))
    return (out * reps)[:n]


def timed(fn):
    t = time.perf_counter()
    value = fn()
    return time.perf_counter() - t, value


def beam_stage(texts: list[str], device: str) -> float:
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from pipelines.embed import EmbedDocuments

    docs = [{"id": f"d{i}", "text": t} for i, t in enumerate(texts)]
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        with beam.Pipeline(runner=FnApiRunner()) as p:
            (p | beam.Create(docs, reshuffle=False)
             | EmbedDocuments(mode="truncate", device=device, max_batch_size=256, min_batch_size=256)
             | beam.Map(lambda d: len(d["embedding"])) | beam.io.WriteToText(f"{tmp}/n"))
        return time.perf_counter() - t


def main() -> int:
    import torch

    from scorers.embedding import Embedder

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--docs", type=int, default=256)
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/embed_cpu.json")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    texts = paragraphs(args.docs)
    fast = Embedder(device=device, mode="truncate")
    model = fast.model
    tokens = float(np.mean([min(len(x), 256) for x in model.tokenizer(texts, verbose=False)["input_ids"]]))
    plain32 = None
    if cuda:  # the plain baseline in fp32 needs its own model object
        from sentence_transformers import SentenceTransformer

        from scorers.embedding import resolve_model_path

        plain32 = SentenceTransformer(resolve_model_path(), device="cuda")
    naive_model = plain32 or model
    naive_model.encode(texts[:32])
    fast.encode(texts[:32])
    results: dict[str, list[float]] = {}
    naive_emb = fast_emb = None
    for _ in range(args.trials):
        dt, naive_emb = timed(lambda: naive_model.encode(texts, batch_size=32, normalize_embeddings=True))
        results.setdefault("plain_encode_fp32_bs32", []).append(len(texts) / dt)
        dt, fast_emb = timed(lambda: fast.encode(texts))
        results.setdefault(f"curate_encode_{fast.precision}", []).append(len(texts) / dt)
        if not cuda:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                dt, _ = timed(lambda: model.encode(texts, batch_size=32))
            results.setdefault("plain_encode_bf16_autocast", []).append(len(texts) / dt)
        sent = Embedder(device=device, mode="sentences")
        dt, _ = timed(lambda: sent.encode(texts))
        results.setdefault("curate_encode_sentence_mode", []).append(len(texts) / dt)
        dt = beam_stage(texts, device)
        results.setdefault("beam_stage_truncate", []).append(len(texts) / dt)
    cos = (np.asarray(fast_emb) * np.asarray(naive_emb)).sum(axis=1)
    summary = {
        "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(), "n_docs": len(texts), "mean_tokens": round(tokens, 1),
        "docs_per_s_best": {k: round(max(v), 1) for k, v in results.items()},
        "docs_per_s_all": {k: [round(x, 1) for x in v] for k, v in results.items()},
        "cosine_fast_vs_plain_min": float(cos.min()),
        "note": "shared machine; other processes were running during the CPU measurement" if not cuda else "",
    }
    print(json.dumps(summary, indent=1))
    Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

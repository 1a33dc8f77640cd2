"""Embedding throughput: plain SentenceTransformer.encode vs curate's encode path vs the Beam stage.

Same documents (news paragraphs of ~140 tokens), same process, interleaved trials, best of
``--trials``.  On a CUDA machine the same script measures the GPU path (fp16).
Usage: python benchmarks/bench_embed.py [--docs 256] [--trials 2] [--out benchmarks/results/embed_cpu.json]
       python benchmarks/bench_embed.py --backends-only [--backends-out benchmarks/results/embed_cpu_backends.json]
(--backends-only: plain encode vs the fast CPU backends of scorers/embedding_backends.py, interleaved,
with per-document cosine to the fp32 reference in "truncate" and "sentences" modes.)
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

    from curate.pipelines.embed import EmbedDocuments

    docs = [{"id": f"d{i}", "text": t} for i, t in enumerate(texts)]
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        with beam.Pipeline(runner=FnApiRunner()) as p:
            (p | beam.Create(docs, reshuffle=False)
             | EmbedDocuments(mode="truncate", device=device, max_batch_size=256, min_batch_size=256)
             | beam.Map(lambda d: len(d["embedding"])) | beam.io.WriteToText(f"{tmp}/n"))
        return time.perf_counter() - t


def backend_trials(texts: list[str], trials: int, out: str) -> dict:
    """Plain fp32 encode vs each installed fast backend, interleaved; cosine per document."""
    import subprocess

    import torch

    from curate.scorers import embedding_backends as eb
    from curate.scorers.embedding import Embedder

    ref_t = Embedder(device="cpu", mode="truncate")
    ref_s = Embedder(device="cpu", mode="sentences")
    plain = ref_t.model
    backends = [b for b in eb.BACKENDS if b != "torch" and eb.backend_available(b)]
    paths = {"plain_encode_fp32_bs32": lambda: plain.encode(texts, batch_size=32, normalize_embeddings=True),
             "curate_torch_truncate": lambda: ref_t.encode(texts),
             "curate_torch_sentences": lambda: ref_s.encode(texts)}
    fast = {}
    for b in backends:
        for mode in ("truncate", "sentences"):
            fast[(b, mode)] = Embedder(device="cpu", mode=mode, backend=b)
            t0 = time.perf_counter()
            fast[(b, mode)].encode(texts[:8])  # builds (first use) or loads the cached model
            print(f"{b} {mode}: ready in {time.perf_counter() - t0:.1f} s", flush=True)
            paths[f"{b}_{mode}"] = (lambda e=fast[(b, mode)]: e.encode(texts))
    plain.encode(texts[:32])
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    speed: dict[str, list[float]] = {k: [] for k in paths}
    emb: dict[str, np.ndarray] = {}
    for _ in range(trials):
        for name, fn in paths.items():
            dt, emb[name] = timed(fn)
            speed[name].append(len(texts) / dt)
    ref = {"truncate": emb["plain_encode_fp32_bs32"], "sentences": emb["curate_torch_sentences"]}
    cosine = {}
    for (b, mode) in fast:
        c = (emb[f"{b}_{mode}"] * ref[mode]).sum(axis=1)
        cosine[f"{b}_{mode}"] = {"min": float(c.min()), "median": float(np.median(c)), "p1": float(np.quantile(c, 0.01))}
    best_plain = max(speed["plain_encode_fp32_bs32"])
    summary = {
        "cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
        "n_docs": len(texts), "trials": trials,
        "uptime_before": uptime_before,
        "docs_per_s_best": {k: round(max(v), 1) for k, v in speed.items()},
        "ratio_to_plain": {k: round(max(v) / best_plain, 2) for k, v in speed.items()},
        "docs_per_s_median": {k: round(float(np.median(v)), 1) for k, v in speed.items()},
        # each trial's ratio to the plain encode run just before it: robust to slow drifts in load
        "ratio_to_plain_median_of_trials": {
            k: round(float(np.median(np.asarray(v) / np.asarray(speed["plain_encode_fp32_bs32"]))), 2)
            for k, v in speed.items()},
        "docs_per_s_all": {k: [round(x, 1) for x in v] for k, v in speed.items()},
        "cosine_vs_fp32": cosine,
        "reference": "truncate: plain SentenceTransformer.encode fp32; sentences: curate torch fp32 sentence mode",
    }
    summary["uptime_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(json.dumps(summary, indent=1))
    Path(out).write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main() -> int:
    import torch

    from curate.scorers.embedding import Embedder

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--docs", type=int, default=256)
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/embed_cpu.json")
    ap.add_argument("--backends-only", action="store_true", help="only plain encode vs the fast CPU backends")
    ap.add_argument("--backends-out", default="benchmarks/results/embed_cpu_backends.json")
    args = ap.parse_args()
    if args.backends_only:
        backend_trials(paragraphs(args.docs), max(args.trials, 3), args.backends_out)
        return 0
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    texts = paragraphs(args.docs)
    fast = Embedder(device=device, mode="truncate")
    model = fast.model
    tokens = float(np.mean([min(len(x), 256) for x in model.tokenizer(texts, verbose=False)["input_ids"]]))
    plain32 = None
    if cuda:  # the plain baseline in fp32 needs its own model object
        from sentence_transformers import SentenceTransformer

        from curate.scorers.embedding import resolve_model_path

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

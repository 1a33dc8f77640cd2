"""Probe data: the evaluation target and each pool's packed U-token training subset.

Evaluation target
-----------------
Default: a held-out sample across all pools. Documents are ordered by a seeded hash of their id;
from each pool the first documents (each truncated to `TARGET_DOC_BYTES`) are taken until the
pool's equal share of `target_tokens` is filled. Those documents are removed from every
training subset, so the target never overlaps training data. Honest caveat: this target asks
"how well does training on pool K model the whole corpus, every pool weighted equally", so a
pool of low quality but of a distinctive style (tweets) still helps on its own share of the
target; utilities measure transfer to this corpus, not an external notion of quality. Pass
`--target PATH` (JSONL with a "text" field, optionally .gz) to measure against what the model
should be good at; training documents whose text equals a target text are then dropped.

Training subsets
----------------
Each pool's remaining documents, in another seeded hash order, are packed into context windows
(`probe.sequences.pack_sequences`) until U tokens are filled (large_factor * U for the pool of
the larger-budget run, whose first U tokens are the pool's ordinary subset). Every subset of a
pool is a prefix of the same packed sequence: the small subset is the first U / small_factor
tokens of U, and a fresh-data control run reads the first `fresh_tokens` (U among them). A pool
too small for its fresh-data run keeps its other runs; `ProbeData.fresh_short` says how many
tokens it has, and the run is left out (`probe.training.run_probe`, `curate probe` says so).
"""
from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from curate.probe.design import ProbeDesign
from curate.probe.errors import ProbeError
from curate.probe.sequences import pack_sequences

TARGET_DOC_BYTES = 1024  # cap per target document, so the target spans many documents


def _hash_order(docs: Sequence[tuple[str, str]], salt: str) -> list[tuple[str, str]]:
    """Documents ordered by a salted hash of their id: a seeded, order-independent shuffle."""
    return sorted(docs, key=lambda d: hashlib.sha1(f"{salt}\x00{d[0]}".encode()).digest())


def read_target_file(path: str | Path) -> list[str]:
    """Texts of a JSONL file (field "text"; .gz allowed)."""
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    texts = []
    with opener(p, "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ProbeError(f"{p}:{n}: not JSON ({exc.msg})") from None
            text = rec.get("text") if isinstance(rec, dict) else None
            if isinstance(text, str) and text:
                texts.append(text)
    if not texts:
        raise ProbeError(f"{p}: no records with a non-empty 'text' field")
    return texts


@dataclass
class ProbeData:
    """Packed sequences for every run, plus the target."""

    target: np.ndarray  # (n, context + 1)
    target_source: str
    subsets: dict[str, np.ndarray]  # pool -> its U-token subset (sequences)
    large_subset: np.ndarray | None  # the large run's 2U subset (its first U = subsets[pool])
    pool_bytes: dict[str, int]  # bytes (tokens) per pool, target documents excluded
    target_ids: set[str] = field(default_factory=set)  # documents held out as the target
    train_ids: dict[str, list[str]] = field(default_factory=dict)  # documents packed per pool
    fresh_subsets: dict[str, np.ndarray] = field(default_factory=dict)  # pool -> fresh-run data
    fresh_short: dict[str, int] = field(default_factory=dict)  # pool -> tokens it has, too few

    def sequences(self, pool: str, subset: str) -> np.ndarray:
        """Packed windows a run reads: "main" / "small" (a prefix of the U subset), "fresh",
        "large"."""
        if subset == "fresh":
            return self.fresh_subsets[pool]
        if subset == "large":
            return self.large_subset
        return self.subsets[pool]


def prepare_data(pools: dict[str, list[tuple[str, str]]], design: ProbeDesign,
                 target_texts: list[str] | None = None) -> ProbeData:
    """Select the target, exclude it from training, pack each pool's U-token subset."""
    ctx = design.config.context
    salt = f"curate-probe-{design.seed}"
    excluded: set[str] = set()
    if target_texts is None:
        per_pool = max(1, design.target_tokens // len(pools))
        texts = []
        for name, docs in pools.items():
            got = 0
            for doc_id, text in _hash_order(docs, salt + "-target"):
                if got >= per_pool:
                    break
                piece = text.encode("utf-8")[:TARGET_DOC_BYTES].decode("utf-8", errors="ignore")
                texts.append(piece)
                excluded.add(doc_id)
                got += len(piece.encode("utf-8")) + 1
        target_source = (f"held-out sample across all {len(pools)} pools "
                         f"(~{per_pool} bytes each, seed {design.seed})")
        target = pack_sequences(texts, ctx)
        target_hashes: set[bytes] = set()
    else:
        target = pack_sequences(target_texts, ctx, design.target_tokens // ctx)
        target_source = "user target file"
        target_hashes = {hashlib.sha1(t.encode()).digest() for t in target_texts}
    if len(target) == 0:
        raise ProbeError("the evaluation target holds less than one context window of text")

    subsets, pool_bytes, train_ids = {}, {}, {}
    large_subset = None
    fresh_subsets: dict[str, np.ndarray] = {}
    fresh_short: dict[str, int] = {}
    n_seq = design.unique_tokens // ctx
    for name, docs in pools.items():
        train_docs = [(i, t) for i, t in _hash_order(docs, salt + "-train")
                      if i not in excluded
                      and (not target_hashes or hashlib.sha1(t.encode()).digest() not in target_hashes)]
        pool_bytes[name] = sum(len(t.encode("utf-8")) for _, t in train_docs)
        need = n_seq * (design.large_factor if name == design.large_pool else 1)
        fresh_seq = design.fresh_tokens // ctx if name in design.fresh_pools else 0
        want = max(need, fresh_seq)
        seqs = pack_sequences((t for _, t in train_docs), ctx, want)
        used, got = [], 0
        for doc_id, text in train_docs:  # the documents pack_sequences consumed
            if got >= want * ctx + 1:
                break
            used.append(doc_id)
            got += 1 + len(text.encode("utf-8"))
        train_ids[name] = used
        if fresh_seq:
            if len(seqs) >= fresh_seq:
                fresh_subsets[name] = seqs[:fresh_seq]
            else:
                fresh_short[name] = int(len(seqs) * ctx)
        if len(seqs) < need:
            raise ProbeError(
                f"pool {name} has only {len(seqs) * ctx:,} training bytes; the probe design needs "
                f"{need * ctx:,} (lower the time budget or use a larger corpus)")
        subsets[name] = seqs[:n_seq]
        if name == design.large_pool:
            large_subset = seqs[:need]
    return ProbeData(target, target_source, subsets, large_subset, pool_bytes, excluded, train_ids,
                     fresh_subsets, fresh_short)

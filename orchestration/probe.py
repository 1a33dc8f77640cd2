"""Probe design and execution: small proxy LM runs per pool -> QQT observations.

What a probe measures
---------------------
For every pool K it trains one proxy LM (scorers.proxy_lm) on a fixed subset of U unique tokens
of that pool, repeated epoch after epoch, and evaluates the loss on an evaluation target at
multiples of U (0.25x .. 8x by default: up to 8 epochs). Because the LR is constant after a
short warm-up, the checkpoint at n tokens stands for a run of n tokens, so one run yields a
whole curve: early points (n <= U, no repetition) pin the pool's utility b, later points
(n > U) its repetition half-life tau.

Held out from fitting, to test the law (see `validate`):
* mixture runs (default: the top-2 pools mixed uniformly, and all pools mixed uniformly),
  each pool contributing the same U-token subset as in its single-pool run, so pool i has been
  passed over w_i n / U times after n tokens (exactly the quantity the QQT mixture rule uses)
  and the pool sizes of a law fitted on the single-pool runs apply unchanged; mixtures are
  evaluated at the same 0.25U .. 8U tokens (so a pool of a top-2 mix reaches 4 epochs);
* one larger-budget run: the best pool with 2U unique tokens trained for 8 epochs (16U tokens,
  twice the largest single-pool budget).

Unit
----
The sample unit is the **token, i.e. a UTF-8 byte** (the proxy's tokenizer is byte-level).
`samples_seen` counts training tokens predicted, `unique_samples` the distinct tokens among
them (min(n, U) for a single pool: the observation contract requires unique <= seen), so once
past the first epoch samples_seen / unique_samples is the number of epochs. Documents were not used as the
unit because document lengths differ by 30x between pools (tweets vs. articles): a "document" of
one pool is not the same amount of training signal as one of another. A law fitted on probe
observations is therefore in tokens (bytes), and pool sizes given to the planner must be in
bytes too (`pool_bytes` in the probe metadata).

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
"""
from __future__ import annotations

import copy
import gzip
import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from curate.scorers.proxy_lm import ProxyConfig, ProxyTrainer, SequenceStream, pack_sequences

DEFAULT_MULTIPLES = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
TARGET_DOC_BYTES = 1024  # cap per target document, so the target spans many documents
OBS_COLUMNS = ("pool", "samples_seen", "unique_samples", "metric", "params", "run_id", "step",
               "role", "epochs")


# ---------------------------------------------------------------------------------------------
# Pools and target
# ---------------------------------------------------------------------------------------------

def pool_name(k: int) -> str:
    return f"pool{k}"


def load_pools(run_dir: str | Path) -> dict[str, list[tuple[str, str]]]:
    """{pool name: [(id, text), ...]} from RUN/pools/pool=K/*.parquet, pool 0 first."""
    import pyarrow.parquet as pq

    root = Path(run_dir) / "pools"
    if not root.is_dir():
        raise ValueError(f"{run_dir} has no pools/ directory: is it a `curate run` output?")
    pools: dict[str, list[tuple[str, str]]] = {}
    dirs = []
    for d in root.iterdir():
        if d.is_dir() and d.name.startswith("pool="):
            try:
                dirs.append((int(d.name.split("=", 1)[1]), d))
            except ValueError:
                continue
    for k, d in sorted(dirs):
        docs: list[tuple[str, str]] = []
        for f in sorted(d.glob("*.parquet")):
            table = pq.read_table(f, columns=["id", "text"])
            docs.extend(zip((str(i) for i in table.column("id").to_pylist()),
                            (t or "" for t in table.column("text").to_pylist())))
        docs = [(i, t) for i, t in docs if t]
        if docs:
            pools[pool_name(k)] = docs
    if not pools:
        raise ValueError(f"no documents under {root}/pool=K/*.parquet")
    return pools


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
                raise ValueError(f"{p}:{n}: not JSON ({exc.msg})") from None
            text = rec.get("text") if isinstance(rec, dict) else None
            if isinstance(text, str) and text:
                texts.append(text)
    if not texts:
        raise ValueError(f"{p}: no records with a non-empty 'text' field")
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


def prepare_data(pools: dict[str, list[tuple[str, str]]], design: "ProbeDesign",
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
        raise ValueError("the evaluation target holds less than one context window of text")

    subsets, pool_bytes, train_ids = {}, {}, {}
    large_subset = None
    n_seq = design.unique_tokens // ctx
    for name, docs in pools.items():
        train_docs = [(i, t) for i, t in _hash_order(docs, salt + "-train")
                      if i not in excluded
                      and (not target_hashes or hashlib.sha1(t.encode()).digest() not in target_hashes)]
        pool_bytes[name] = sum(len(t.encode("utf-8")) for _, t in train_docs)
        want = n_seq * (design.large_factor if name == design.large_pool else 1)
        seqs = pack_sequences((t for _, t in train_docs), ctx, want)
        used, got = [], 0
        for doc_id, text in train_docs:  # the documents pack_sequences consumed
            if got >= want * ctx + 1:
                break
            used.append(doc_id)
            got += 1 + len(text.encode("utf-8"))
        train_ids[name] = used
        if len(seqs) < want:
            raise ValueError(
                f"pool {name} has only {len(seqs) * ctx:,} training bytes; the probe design needs "
                f"{want * ctx:,} (lower the time budget or use a larger corpus)")
        subsets[name] = seqs[:n_seq]
        if name == design.large_pool:
            large_subset = seqs
    return ProbeData(target, target_source, subsets, large_subset, pool_bytes, excluded, train_ids)


# ---------------------------------------------------------------------------------------------
# Design
# ---------------------------------------------------------------------------------------------

@dataclass
class ProbeDesign:
    """Everything that determines a probe's observations (with the data and the seed).

    unique_tokens : U, tokens per pool subset (rounded down to whole context windows).
    multiples : evaluation points as multiples of each run's unique tokens.
    mixtures : held-out mixture runs, each {pool: weight}.
    large_pool, large_factor : the held-out larger-budget run: `large_pool` with
        large_factor * U unique tokens, evaluated at the same multiples (so up to
        8 * large_factor * U tokens). large_pool None: no such run.
    target_tokens : size of the default evaluation target, in tokens.
    """

    config: ProxyConfig = field(default_factory=ProxyConfig)
    unique_tokens: int = 65_536
    multiples: tuple[float, ...] = DEFAULT_MULTIPLES
    mixtures: list[dict[str, float]] = field(default_factory=list)
    large_pool: str | None = None
    large_factor: int = 2
    target_tokens: int = 16_384
    seed: int = 0

    def runs(self, pools: Sequence[str]) -> list["RunSpec"]:
        """The training runs, single-pool runs first."""
        U = (self.unique_tokens // self.config.context) * self.config.context
        out = [RunSpec(f"s{self.seed}-{p}", "fit", {p: 1.0}, {p: U}) for p in pools]
        for j, mix in enumerate(self.mixtures):
            unknown = [p for p in mix if p not in pools]
            if unknown:
                raise ValueError(f"mixture names unknown pool(s) {unknown}; pools are {list(pools)}")
            w = {p: float(v) for p, v in mix.items() if v > 0}
            # Every pool brings its single-pool subset (U tokens): the pool sizes of the law
            # fitted on single-pool runs hold for the mixture too.
            out.append(RunSpec(f"s{self.seed}-mix{j}", "holdout-mixture", w, {p: U for p in w}))
        if self.large_pool is not None:
            if self.large_pool not in pools:
                raise ValueError(f"large-run pool {self.large_pool!r} is not one of {list(pools)}")
            out.append(RunSpec(f"s{self.seed}-large-{self.large_pool}", "holdout-large",
                               {self.large_pool: 1.0}, {self.large_pool: U * self.large_factor}))
        return out

    @property
    def min_eval_step(self) -> int:
        """No evaluation before twice the warm-up: the LR is not yet constant there and the
        loss still falls through the unigram plateau, so a checkpoint there is not a
        measurement of a run of that length. Points before it are dropped (the design
        warns when that happens, see `min_steps_per_unit`)."""
        return 2 * self.config.warmup_steps

    def steps_at(self, unique: int) -> list[int]:
        """Optimiser steps of the evaluation points: `multiples` of `unique` tokens, from
        `min_eval_step` on (the last point is always kept)."""
        tps = self.config.tokens_per_step
        steps = sorted({max(1, int(round(m * unique / tps))) for m in self.multiples})
        return [s for s in steps if s >= self.min_eval_step] or steps[-1:]

    def total_train_tokens(self, pools: Sequence[str]) -> int:
        return sum(self.steps_at(r.base)[-1] * self.config.tokens_per_step
                   for r in self.runs(pools))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["config"] = self.config.to_dict()
        d["multiples"] = list(self.multiples)
        return d


@dataclass
class RunSpec:
    run_id: str
    role: str  # "fit" | "holdout-mixture" | "holdout-large"
    weights: dict[str, float]
    unique: dict[str, int]  # unique tokens per pool in this run

    @property
    def base(self) -> int:
        """Tokens the evaluation multiples refer to: the largest pool subset of the run
        (U for single pools and mixtures, large_factor * U for the larger-budget run)."""
        return int(max(self.unique.values()))

    @property
    def unique_total(self) -> int:
        return int(sum(self.unique.values()))

    @property
    def pool_label(self) -> str:
        """Observation `pool` value: "pool0", or "pool0=0.5;pool1=0.5" for a mixture."""
        if len(self.weights) == 1:
            return next(iter(self.weights))
        total = sum(self.weights.values())
        return ";".join(f"{p}={w / total:g}" for p, w in self.weights.items())


def default_mixtures(pools: Sequence[str]) -> list[dict[str, float]]:
    """Held-out mixtures: top-2 uniform, and all pools uniform when there are more than 2."""
    out = []
    if len(pools) >= 2:
        out.append({pools[0]: 0.5, pools[1]: 0.5})
    if len(pools) >= 3:
        out.append({p: 1.0 / len(pools) for p in pools})
    return out


# Proxy sizes by growing cost. A budget picks the largest one that still leaves
# `min_steps_per_unit(cfg)` optimiser steps per U, so the first point (0.25U) comes well after
# the warm-up and every point is a measurement of a constant-LR run.
LADDER = (
    ProxyConfig(d_model=64, n_layers=2, n_heads=2, context=64, batch_size=8, lr=2e-3, warmup_steps=8),
    ProxyConfig(d_model=96, n_layers=2, n_heads=4, context=64, batch_size=16, lr=2e-3, warmup_steps=8),
    ProxyConfig(d_model=128, n_layers=3, n_heads=4, context=128, batch_size=16, lr=1.5e-3, warmup_steps=12),
    ProxyConfig(d_model=192, n_layers=4, n_heads=4, context=128, batch_size=16, lr=1e-3, warmup_steps=16),
    ProxyConfig(d_model=256, n_layers=6, n_heads=8, context=256, batch_size=32, lr=1e-3, warmup_steps=24),
    ProxyConfig(d_model=512, n_layers=8, n_heads=8, context=512, batch_size=32, lr=6e-4, warmup_steps=32),
)
PROXY_NAMES = ("xs", "s", "m", "l", "xl", "xxl")
MIN_STEPS_PER_UNIT = 96


def min_steps_per_unit(cfg: ProxyConfig) -> int:
    """Steps per U below which a design is not trusted: >= 96, and 0.25U after the first
    allowed evaluation step (2 x warm-up), so no multiple is dropped."""
    return max(MIN_STEPS_PER_UNIT, 8 * cfg.warmup_steps)


def proxy_by_name(name: str) -> ProxyConfig:
    """A ladder proxy by name (xs .. xxl)."""
    if name not in PROXY_NAMES:
        raise ValueError(f"unknown proxy size {name!r}; expected one of {', '.join(PROXY_NAMES)}")
    return LADDER[PROXY_NAMES.index(name)]


def default_target_tokens(unique_tokens: int) -> int:
    """Target size: U/4 tokens, between 8 Ki and 64 Ki (evaluation costs ~10 % of training)."""
    return int(min(65_536, max(8_192, unique_tokens // 4)))


def holdout_path(obs_path: str | Path) -> Path:
    """Where the held-out runs of OBS.parquet go: OBS.holdout.parquet."""
    p = Path(obs_path)
    return p.with_name(p.stem + ".holdout" + (p.suffix or ".parquet"))


def design_for_budget(pools: Sequence[str], seconds: float, tokens_per_second: Callable[[ProxyConfig], float],
                      seed: int = 0, max_pool_tokens: int | None = None,
                      eval_overhead: float = 0.15, cooldown_steps: int = 0,
                      startup_s: float = 0.0) -> ProbeDesign:
    """The largest ladder proxy, and its U, that fit `seconds` of training.

    `tokens_per_second(cfg)` is the measured training throughput of all workers together for
    a config (see ThroughputMeter); it is only called for a config that the previous one's FLOP rate says could fit, so a
    budget never pays for timing a model far too large for it. The number of optimiser steps
    is what makes the measurement meaningful (a 0.25U point must come after the warm-up), so
    the model only grows while U keeps at least `min_steps_per_unit(cfg)` steps.
    `startup_s` is time the probe spends outside training (worker start-up, data packing).
    """
    mixtures = default_mixtures(pools)
    chosen = None
    flop_rate = None  # training FLOP/s of the last measured config

    def unique_for(cfg, tokens_per_s):
        rate = tokens_per_s / (1.0 + eval_overhead)
        probe = ProbeDesign(config=cfg, unique_tokens=cfg.tokens_per_step, mixtures=mixtures,
                            large_pool=pools[0], seed=seed)
        runs = probe.runs(pools)
        per_U = probe.total_train_tokens(pools) / probe.unique_tokens  # tokens per unit of U
        fixed = len(runs) * len(probe.multiples) * cooldown_steps * cfg.tokens_per_step
        U = int(((seconds - startup_s) * rate - fixed) / per_U)
        if max_pool_tokens is not None:
            U = min(U, max_pool_tokens // probe.large_factor)
        return U

    for cfg in LADDER:
        enough = min_steps_per_unit(cfg) * cfg.tokens_per_step
        if flop_rate is not None:
            guess = flop_rate / cfg.train_flops_per_step() * cfg.tokens_per_step
            if unique_for(cfg, 1.5 * guess) < enough:  # even 1.5x faster than FLOPs say
                break
        tps = tokens_per_second(cfg)
        flop_rate = tps / cfg.tokens_per_step * cfg.train_flops_per_step()
        U = unique_for(cfg, tps)
        if chosen is None or U >= enough:
            chosen = (cfg, U)
        else:
            break
    cfg, U = chosen
    U = max(cfg.context * cfg.batch_size, (U // cfg.context) * cfg.context)
    return ProbeDesign(config=replace(cfg, cooldown_steps=cooldown_steps), unique_tokens=U,
                       mixtures=mixtures, large_pool=pools[0],
                       target_tokens=default_target_tokens(U), seed=seed)


def measure_throughput(cfg: ProxyConfig, min_seconds: float = 1.5, min_steps: int = 2,
                       device: str = "cpu") -> float:
    """Training tokens per second of one worker (1 thread on CPU), after one warm-up step.

    Steps until both `min_steps` steps and `min_seconds` have passed, so that concurrent
    measurements in several workers overlap in time.
    """
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, size=(cfg.batch_size, cfg.context + 1))
    trainer = ProxyTrainer(cfg, seed=0, device=device, threads=1 if device == "cpu" else None)
    trainer.train_step(batch)
    if device == "cuda":
        import torch
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    steps = 0
    while steps < min_steps or time.perf_counter() - t0 < min_seconds:
        trainer.train_step(batch)
        steps += 1
        if device == "cuda":
            torch.cuda.synchronize()
    return steps * cfg.tokens_per_step / (time.perf_counter() - t0)


class ThroughputMeter:
    """Aggregate training throughput of `workers` concurrent workers, measured, not assumed.

    On a shared or busy machine two processes do not run twice as fast as one, so the probe
    times all its workers at once (in the same spawned processes layout as the real runs) and
    sums their rates (times `safety`). Use as a context manager; calling it with a config
    returns tokens/s.
    """

    def __init__(self, workers: int = 1, device: str = "cpu", min_seconds: float = 2.5,
                 safety: float = 0.8):
        self.workers = max(1, int(workers))
        self.device = device
        self.min_seconds = min_seconds
        # A few seconds of timing on a machine whose load changes overestimate the rate of a
        # ten-minute run more often than not (measured here: 12k tok/s timed, ~5k sustained
        # while other jobs ran), so the budget plans with `safety` times the timed rate.
        self.safety = safety
        self._pool = None
        self.measured: dict[str, float] = {}

    def __enter__(self):
        if self.workers > 1 and self.device == "cpu":
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(max_workers=self.workers,
                                             mp_context=mp.get_context("spawn"))
        return self

    def __exit__(self, *exc):
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __call__(self, cfg: ProxyConfig) -> float:
        if self._pool is None:
            rate = measure_throughput(cfg, self.min_seconds, device=self.device)
        else:
            futures = [self._pool.submit(measure_throughput, cfg, self.min_seconds)
                       for _ in range(self.workers)]
            rate = sum(f.result() for f in futures)
        rate *= self.safety
        self.measured[f"d{cfg.d_model}xL{cfg.n_layers}xT{cfg.context}xB{cfg.batch_size}"] = rate
        return rate


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------

def train_run(spec: RunSpec, design: ProbeDesign, data: ProbeData, device: str = "cpu",
              progress: Callable[[str, int, int], None] | None = None) -> list[dict]:
    """Train one proxy run and return its observation rows (one per evaluation point)."""
    cfg = design.config
    pools = list(spec.weights)
    if spec.role == "holdout-large":
        sources = [data.large_subset]
    else:
        sources = [data.subsets[p][:spec.unique[p] // cfg.context] for p in pools]
    # The run's seed fixes both initialisation and data order; the same initial weights for
    # every run (seed) make runs differ only by their data.
    order_seed = int.from_bytes(hashlib.sha1(f"{design.seed}-{spec.run_id}".encode()).digest()[:4], "little")
    stream = SequenceStream(sources, [spec.weights[p] for p in pools], seed=order_seed)
    trainer = ProxyTrainer(cfg, seed=design.seed, device=device,
                           threads=1 if device == "cpu" else None)
    eval_steps = design.steps_at(spec.base)
    windows = [len(s) for s in sources]
    n_params = cfg.n_params()
    rows = []
    for target_step in eval_steps:
        while trainer.step < target_step:
            trainer.train_step(stream.next_batch(cfg.batch_size))
            if progress is not None:
                progress(spec.run_id, trainer.step, eval_steps[-1])
        if cfg.cooldown_steps > 0:
            # Peek the next batches on a copy of the stream: the branch sees the data the main
            # run would see next, and the main run's data order is unchanged.
            peek = copy.deepcopy(stream)
            batches = [peek.next_batch(cfg.batch_size) for _ in range(cfg.cooldown_steps)]
            loss = trainer.cooldown_loss(data.target, batches)
        else:
            loss = trainer.evaluate(data.target)
        seen = trainer.tokens_seen
        # distinct tokens among those seen: every source is read epoch by epoch, so it has
        # shown min(taken, its size) distinct windows
        distinct = int(sum(min(int(t), n) for t, n in zip(stream.taken, windows)) * cfg.context)
        rows.append({"pool": spec.pool_label, "samples_seen": int(seen),
                     "unique_samples": distinct, "metric": float(loss),
                     "params": int(n_params), "run_id": spec.run_id, "step": int(trainer.step),
                     "role": spec.role, "epochs": seen / spec.unique_total})
    return rows


class Progress:
    """Progress line on stderr: run, steps, tokens/s, ETA (quiet: nothing)."""

    def __init__(self, total_steps: int, tokens_per_step: int, quiet: bool = False, stream=None):
        self.total = total_steps
        self.tps = tokens_per_step
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.current: dict[str, int] = {}
        self.last_print = 0.0

    def __call__(self, run_id: str, step: int, run_steps: int) -> None:
        self.current[run_id] = step
        now = time.perf_counter()
        if self.quiet or (now - self.last_print < 2.0 and step < run_steps):
            return
        self.last_print = now
        done = sum(self.current.values())
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        print(f"\rprobe: {run_id} step {step}/{run_steps} | all runs {done}/{self.total} steps "
              f"| {rate * self.tps:,.0f} tok/s | ETA {eta:,.0f}s   ", end="", file=self.stream,
              flush=True)

    def finish(self) -> None:
        if not self.quiet:
            print(f"\rprobe: done in {time.perf_counter() - self.start:,.0f}s" + " " * 60,
                  file=self.stream, flush=True)


_PROGRESS_QUEUE = None  # set in each worker process by _init_worker


def _init_worker(progress_queue) -> None:
    # A plain multiprocessing queue handed over at process start: a Manager queue would not do,
    # because apache_beam.utils.multi_process_shared patches multiprocessing.managers.AutoProxy
    # when imported, after which Manager proxies no longer pickle in spawned processes.
    global _PROGRESS_QUEUE
    _PROGRESS_QUEUE = progress_queue


def _worker(args):
    spec, design, data, device = args
    queue = _PROGRESS_QUEUE

    def report(run_id, step, run_steps, _last=[0.0]):
        now = time.perf_counter()
        if now - _last[0] >= 1.0 or step == run_steps:
            _last[0] = now
            queue.put((run_id, step, run_steps))

    return train_run(spec, design, data, device, report)


def run_probe(pools: dict[str, list[tuple[str, str]]], design: ProbeDesign,
              target_texts: list[str] | None = None, device: str = "cpu", workers: int = 1,
              quiet: bool = False) -> tuple[list[dict], ProbeData]:
    """Train every run of the design; return all observation rows and the data used.

    Each run is single-threaded on CPU and depends only on (design, data, its run id), so the
    rows are identical whatever `workers` is. workers > 1 trains that many runs at once in
    separate processes (one process per core scales better than intra-op threads for a model
    this small). Callers using workers > 1 from a script need the usual
    `if __name__ == "__main__":` guard (processes are spawned, not forked).
    """
    data = prepare_data(pools, design, target_texts)
    specs = design.runs(list(pools))
    total_steps = sum(design.steps_at(s.base)[-1] for s in specs)
    progress = Progress(total_steps, design.config.tokens_per_step, quiet=quiet)
    rows: list[dict] = []
    if workers <= 1 or device != "cpu" or len(specs) == 1:
        for spec in specs:
            rows.extend(train_run(spec, design, data, device, progress))
    else:
        import multiprocessing as mp
        import queue as queue_mod
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        ctx = mp.get_context("spawn")  # fork after torch has started threads is unsafe
        q = ctx.Queue()
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(q,)) as ex:
            # Longest runs first (shorter makespan); rows are still gathered in spec order.
            order = sorted(range(len(specs)), key=lambda i: -specs[i].base)
            submitted = {i: ex.submit(_worker, (specs[i], design, data, device)) for i in order}
            futures = [submitted[i] for i in range(len(specs))]
            pending = set(futures)
            while pending:
                _, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                while True:
                    try:
                        progress(*q.get_nowait())
                    except queue_mod.Empty:
                        break
            for fut in futures:  # submission order: the row order is deterministic
                rows.extend(fut.result())
    progress.finish()
    return rows, data


def observations_table(rows: list[dict], metadata: dict | None = None):
    """A pyarrow table with the observation columns (+ probe metadata in the schema)."""
    import pyarrow as pa

    schema = pa.schema([("pool", pa.string()), ("samples_seen", pa.int64()),
                        ("unique_samples", pa.int64()), ("metric", pa.float64()),
                        ("params", pa.int64()), ("run_id", pa.string()), ("step", pa.int64()),
                        ("role", pa.string()), ("epochs", pa.float64())])
    if metadata is not None:
        schema = schema.with_metadata({"curate.probe": json.dumps(metadata, sort_keys=True)})
    cols = {name: [r[name] for r in rows] for name in OBS_COLUMNS}
    return pa.Table.from_pydict(cols, schema=schema)

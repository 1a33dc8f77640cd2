"""Training the probe's runs: one proxy LM per run of the design, observation rows at each
evaluation point, runs spread over worker processes.

Each run is single-threaded on CPU and its result depends only on (design, data, run id), so
the rows are identical whatever the number of workers.
"""
from __future__ import annotations

import copy
import hashlib
import sys
import time
from typing import Callable

from curate.probe.data import ProbeData, prepare_data
from curate.probe.design import ProbeDesign, RunSpec
from curate.probe.proxy_lm import ProxyTrainer
from curate.probe.sequences import SequenceStream


def train_run(spec: RunSpec, design: ProbeDesign, data: ProbeData, device: str = "cpu",
              progress: Callable[[str, int, int], None] | None = None) -> list[dict]:
    """Train one proxy run and return its observation rows (one per evaluation point)."""
    cfg = design.config
    pools = list(spec.weights)
    sources = [data.sequences(p, spec.subset)[:spec.unique[p] // cfg.context] for p in pools]
    # The run's seed fixes its initialisation (the same initial weights for every run of one
    # seed, so they differ only by their data); the data order is a hash of the probe's seed
    # and the run id (which names the seed).
    order_seed = int.from_bytes(hashlib.sha1(f"{design.seed}-{spec.run_id}".encode()).digest()[:4], "little")
    stream = SequenceStream(sources, [spec.weights[p] for p in pools], seed=order_seed)
    trainer = ProxyTrainer(cfg, seed=spec.seed, device=device,
                           threads=1 if device == "cpu" else None)
    eval_steps = design.eval_steps(spec)
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


def effective_design(design: ProbeDesign, data: ProbeData) -> ProbeDesign:
    """The design that can run on `data`: without the fresh-data runs of pools too small."""
    if not data.fresh_short:
        return design
    from dataclasses import replace

    return replace(design, fresh_pools=[p for p in design.fresh_pools if p not in data.fresh_short])


def run_probe(pools: dict[str, list[tuple[str, str]]], design: ProbeDesign,
              target_texts: list[str] | None = None, device: str = "cpu", workers: int = 1,
              quiet: bool = False, data: ProbeData | None = None) -> tuple[list[dict], ProbeData]:
    """Train every run of the design; return all observation rows and the data used.

    Each run is single-threaded on CPU and depends only on (design, data, its run id), so the
    rows are identical whatever `workers` is. workers > 1 trains that many runs at once in
    separate processes (one process per core scales better than intra-op threads for a model
    this small). Callers using workers > 1 from a script need the usual
    `if __name__ == "__main__":` guard (processes are spawned, not forked).
    `data`: the design's data if already prepared (`prepare_data`). A fresh-data run of a pool
    too small for it (`data.fresh_short`) is left out (`effective_design`).
    """
    if data is None:
        data = prepare_data(pools, design, target_texts)
    design = effective_design(design, data)
    specs = design.runs(list(pools))
    total_steps = sum(design.eval_steps(s)[-1] for s in specs)
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
            order = sorted(range(len(specs)), key=lambda i: -design.eval_steps(specs[i])[-1])
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

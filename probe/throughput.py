"""Measured training throughput of the proxy: what a time budget is converted with.

The rate is timed on this machine, with all workers at once, because on a shared or busy
machine two processes do not run twice as fast as one.
"""
from __future__ import annotations

import time

import numpy as np

from curate.probe.proxy_lm import ProxyConfig, ProxyTrainer


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

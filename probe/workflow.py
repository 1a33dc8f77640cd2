"""A whole probe, as `curate probe` runs it: read the pools, fix the design (given, or sized to a
time budget by timing the proxies), train every run, write OBS.parquet and OBS.holdout.parquet.

    outcome = probe_to_files(ProbeSettings(run_dir, Path("obs.parquet"), time_budget_s=600))

Registering the files in a workspace catalog and printing are the caller's (the CLI's) job;
`probe.validation.validation_report(outcome.fit_rows, outcome.holdout_rows)` is the
`--validate` check. Same settings and seed with a fixed design (`proxy` set): same files.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from curate.probe.data import ProbeData, prepare_data, read_target_file
from curate.probe.design import (DEFAULT_SEEDS, ProbeDesign, default_mixtures,
                                 default_target_tokens, design_for_budget, identifying_options,
                                 min_steps_per_unit, proxy_by_name)
from curate.probe.errors import ProbeError
from curate.probe.outputs import holdout_path, write_observations
from curate.probe.run_pools import load_pools

# Share of the time budget the design may spend on training: the rest is kept for loading,
# calibration, evaluation slack and fitting.
TRAINING_SHARE = 0.88


@dataclass(frozen=True)
class ProbeSettings:
    """What a probe is asked to do (the options of `curate probe`).

    run_dir : a `curate run` output (RUN/pools/pool=K/*.parquet).
    output : OBS.parquet; held-out rows go to its sibling OBS.holdout.parquet.
    target : JSONL (.gz ok) of evaluation texts; None: a held-out sample across all pools.
    time_budget_s : wall-clock budget the design is sized to (unless `proxy` is given).
    device : "auto", "cpu" or "cuda".
    workers : runs trained at once on CPU, one process each; None: min(2, cores).
    proxy, unique_tokens : fix the proxy size (a ladder name, xs .. xxl) and / or U instead of
        sizing them to the budget.
    cooldown_steps : evaluate each point on a branch cooled down over this many steps (0: off).
    holdout : train the held-out mixture and larger-budget runs.
    seeds : replicate runs of every fit run (distinct run ids: the fit's bootstrap resamples
        them), default 3.
    controls : per pool a second, smaller subset (U/4, up to 32 epochs: identifies gamma) and a
        fresh-data run (never repeated, as many tokens as the longest fit run); False: one
        subset size per pool, as before.
    quiet : no progress line on stderr.
    """

    run_dir: Path
    output: Path
    target: Path | None = None
    time_budget_s: float = 600.0
    device: str = "auto"
    seed: int = 0
    workers: int | None = None
    proxy: str | None = None
    unique_tokens: int | None = None
    cooldown_steps: int = 0
    holdout: bool = True
    seeds: int = DEFAULT_SEEDS
    controls: bool = True
    quiet: bool = False


@dataclass
class ProbeOutcome:
    """What a probe did: its design, the rows it wrote and where."""

    design: ProbeDesign
    device: str
    data: ProbeData
    fit_rows: list[dict]
    holdout_rows: list[dict]
    metadata: dict  # written into both files' schema (key `curate.probe`)
    output: Path
    holdout_output: Path  # OBS.holdout.parquet, written only when there are held-out rows


def probe_to_files(settings: ProbeSettings, log: Callable[[str], None] | None = None) -> ProbeOutcome:
    """Run a probe and write its observation files; `log` receives one-line progress notes."""
    from curate.probe.proxy_lm import resolve_device
    from curate.probe.training import run_probe

    say = log or (lambda msg: None)
    t_start = time.perf_counter()
    device = resolve_device(settings.device)
    workers = settings.workers if settings.workers is not None else min(2, os.cpu_count() or 1)
    pools = load_pools(settings.run_dir)
    names = list(pools)
    target_texts = read_target_file(settings.target) if settings.target else None
    say(f"{len(names)} pools ({', '.join(f'{n}: {len(d):,} docs' for n, d in pools.items())}); device {device}")

    if settings.seeds < 1:
        raise ProbeError(f"seeds must be >= 1, got {settings.seeds}")
    design = _choose_design(settings, pools, device, workers, t_start, say)
    data = prepare_data(pools, design, target_texts)
    if data.fresh_short:
        say("no fresh-data control run for " + ", ".join(
            f"{p} ({n:,} training tokens, {design.fresh_tokens:,} needed)"
            for p, n in data.fresh_short.items())
            + ": loss beyond U without repetition is not observed for "
            + ("it" if len(data.fresh_short) == 1 else "them"))
    from curate.probe.training import effective_design

    design = effective_design(design, data)
    cfg = design.config
    steps_per_unit = design.unique_tokens // cfg.tokens_per_step
    if steps_per_unit < min_steps_per_unit(cfg):
        say(f"warning: U is only {steps_per_unit} optimiser steps (fewer than "
            f"{min_steps_per_unit(cfg)}): points before step {design.min_eval_step} (twice the "
            "warm-up) are dropped and early ones are noisy; a larger --time-budget or "
            "--unique-tokens gives better measurements")
    say(f"proxy {cfg.n_params() / 1e6:.2f}M params (d{cfg.d_model} x {cfg.n_layers} layers, "
        f"context {cfg.context}, batch {cfg.batch_size}); U = {design.unique_tokens:,} tokens per pool")
    say("design: " + design.describe(names))
    if not design.small_factor:
        say("one subset size per pool: the gap exponent gamma is not identified (fit keeps it at 1)")

    rows, data = run_probe(pools, design, target_texts, device=device, workers=workers,
                           quiet=settings.quiet, data=data)
    fit_rows = [r for r in rows if r["role"] == "fit"]
    holdout_rows = [r for r in rows if r["role"] != "fit"]
    meta = {"unit": "tokens", "tokenizer": "utf-8 bytes", "metric": "target loss, nats per byte",
            "design": design.to_dict(), "design_summary": design.summary(names), "device": device, "target": data.target_source,
            "target_tokens": int(data.target.shape[0] * cfg.context), "pool_bytes": data.pool_bytes,
            "elapsed_s": round(time.perf_counter() - t_start, 1)}
    settings.output.parent.mkdir(parents=True, exist_ok=True)
    write_observations(settings.output, fit_rows, meta)
    held_path = holdout_path(settings.output)
    if holdout_rows:
        write_observations(held_path, holdout_rows, meta)
    return ProbeOutcome(design, device, data, fit_rows, holdout_rows, meta, settings.output,
                        held_path)


def _choose_design(settings: ProbeSettings, pools: dict, device: str, workers: int,
                   t_start: float, say: Callable[[str], None]) -> ProbeDesign:
    """The design of `settings`: a fixed proxy, or the largest that fits the time budget."""
    names = list(pools)
    options = (identifying_options(names, settings.seeds) if settings.controls
               else {"seeds": int(settings.seeds)})
    if settings.proxy is not None:
        cfg = proxy_by_name(settings.proxy)
        U = settings.unique_tokens or 64 * cfg.tokens_per_step
        design = ProbeDesign(config=cfg, unique_tokens=U, mixtures=default_mixtures(names),
                             large_pool=names[0], target_tokens=default_target_tokens(U),
                             seed=settings.seed, **options)
    else:
        from curate.probe.throughput import ThroughputMeter

        max_pool = min(sum(len(t.encode('utf-8')) for _, t in docs) for docs in pools.values())
        with ThroughputMeter(workers if device == "cpu" else 1, device) as meter:
            design = design_for_budget(
                names, settings.time_budget_s * TRAINING_SHARE - (time.perf_counter() - t_start),
                meter, seed=settings.seed, max_pool_tokens=int(max_pool * 0.8),
                cooldown_steps=settings.cooldown_steps,
                startup_s=_startup_estimate(workers, device, len(names)), options=options)
        say("measured throughput (tokens/s, all workers): "
            + ", ".join(f"{k} {v:,.0f}" for k, v in meter.measured.items()))
        if settings.unique_tokens:
            design = replace(design, unique_tokens=settings.unique_tokens,
                             target_tokens=default_target_tokens(settings.unique_tokens))
    design = replace(design, config=replace(design.config, cooldown_steps=settings.cooldown_steps))
    if not settings.holdout:
        design = replace(design, mixtures=[], large_pool=None)
    return design


def _startup_estimate(workers: int, device: str, n_pools: int) -> float:
    """Seconds outside training: spawning workers (each imports torch, ~5 s on a busy 2-core
    machine), packing data, and the QQT fit of --validate (a few seconds per pool)."""
    spawn = 5.0 * min(workers, 2) if device == "cpu" and workers > 1 else 0.0
    return spawn + 5.0 + 3.0 * n_pools

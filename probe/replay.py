"""Closed-loop replay of a plan: train the probe's proxy on the plan and on its baselines, measure.

    report = replay_plan(plan_dict, load_pools(run_dir), ReplaySettings(scale=32, seeds=(0, 1)))

What it validates: **a reduced-scale (1/k) replay of the plan's epochs per pool on this target;
not the full-scale loss.** A plan (`curate plan -o`, format in `laws.planning`) says how many
tokens to draw from each pool, i.e. how many epochs of each pool to train on. The replay trains
the same byte-level proxy the probe used on every candidate mixture at budget / k, with every
pool subsampled to 1/k of its size (documents in a seeded hash order, packed into context
windows), so each pool is seen the same number of times as in the plan and the repetition the
law extrapolated to is actually trained. It then evaluates every trained proxy on the same
target text (the probe's own, rebuilt with `probe.data.prepare_data` from the probe's design,
or `--target`), for >= 2 seeds.

Candidates: the plan; every baseline of the plan file (best top-m by predicted loss, all pools
size-proportional, best single pool); and, when the plan was allowed beyond the epochs the law
was fitted on (`--max-epochs`), the plan re-capped at the measured epochs (re-planned with the
law when the law file is at hand, else the plan's weights with every pool clipped at the cap and
the excess given to the pools under it, in proportion to their weights: no prediction then).
Candidates with the same epochs per pool are trained once.

Verdict: with s the larger of the two seed standard deviations, the plan "wins" when its mean
measured loss is more than s below the best baseline's (the one with the lowest measured mean),
"within noise" within +-s, and "loses" when more than s above; `plan_at_most_best_plus_sd` is
the acceptance criterion of the issue (plan mean <= best baseline mean + s). The measured
difference plan - best baseline is reported beside the predicted one (from the plan file), so
the error of predicted *differences* is on record.

Determinism: every run's initialisation and data order depend only on (seed, candidate), each run
is single-threaded on CPU, so the report is the same for a fixed seed list whatever `workers` is.
A `time_budget_s` replay picks k from the measured throughput, so k depends on the machine; a
fixed `scale` reproduces it exactly.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from curate.probe.design import (PROXY_NAMES, ProbeDesign, default_target_tokens,
                                 proxy_by_name)
from curate.probe.errors import ProbeError
from curate.probe.proxy_lm import ProxyConfig
from curate.probe.sequences import SequenceStream, pack_sequences

FORMAT = "curate-replay/1"
VALIDATES = ("a reduced-scale (1/k) replay of the plan's epochs per pool on this target; "
             "not the full-scale loss")
TIME_SHARE = 0.85  # share of --time-budget planned for training (loading, evaluation: the rest)
BASELINE_KEYS = ("best_top_m", "all_once", "best_pool_only")


@dataclass(frozen=True)
class ReplaySettings:
    """How to replay (the options of `curate validate`).

    scale : k, the reduction factor (budget / k, every pool subsampled to 1/k); None: chosen so
        the replay fits `time_budget_s` (training throughput measured first).
    seeds : training seeds (>= 2 for a seed spread).
    proxy : a ladder name (xs .. xxl) to train instead of the probe's proxy; None: the probe's
        (from `probe_meta`), else the smallest ladder proxy.
    config : an explicit proxy config (tests); wins over `proxy` and the probe's.
    probe_meta : the `curate.probe` metadata of the probe's observations (design, target, ...).
    law : the law (a value from `laws.lawfile.law_from_dict`) to re-plan the capped candidate
        with; None: clip the plan's weights instead (no prediction for it).
    """

    scale: float | None = None
    time_budget_s: float = 600.0
    seeds: tuple[int, ...] = (0, 1)
    proxy: str | None = None
    config: ProxyConfig | None = None
    probe_meta: dict | None = None
    law: object | None = None
    device: str = "cpu"
    workers: int = 1
    quiet: bool = True


@dataclass
class Candidate:
    key: str
    name: str
    epochs: dict[str, float]  # per pool, pools with weight > 0
    weights: dict[str, float]
    predicted: float | None
    feasible: bool = True
    note: str | None = None
    same_as: str | None = None  # trained once: same epochs per pool as this candidate
    runs: list[dict] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# The plan file
# ---------------------------------------------------------------------------------------------

def plan_candidates(plan: dict, run_pools: Sequence[str], law=None) -> tuple[list[Candidate], dict, list[str]]:
    """The candidates of a plan file: (candidates, {pool: size}, notes).

    Checks that the plan is a single-budget plan counted in tokens (bytes) and that its pools are
    pools of the run.
    """
    if not isinstance(plan, dict) or plan.get("format") != "curate-plan/1":
        raise ProbeError("not a plan file (format curate-plan/1): write one with `curate plan -o`")
    pd = plan.get("plan")
    if not pd:
        raise ProbeError("the plan file has no single-budget plan (a --sweep only?): "
                         "make one with `curate plan --budget B -o PLAN.json`")
    if plan.get("unit") == "samples":
        raise ProbeError("the plan counts samples (documents); the replay trains a byte-level "
                         "proxy and needs a plan in tokens (a law fitted on `curate probe` "
                         "observations, unit tokens = bytes)")
    rows = pd.get("pools") or []
    sizes = {r["pool"]: float(r["size"]) for r in rows}
    missing = sorted(p for p in sizes if p not in set(run_pools))
    if missing:
        raise ProbeError(f"the plan's pool(s) {', '.join(missing)} are not pools of the run "
                         f"(it has {', '.join(run_pools)}): replay a plan made for this run "
                         "(`curate plan --pools-from RUN`)")
    draws = float(pd["draws"])
    notes: list[str] = []

    def epochs_of(weights: dict[str, float]) -> dict[str, float]:
        return {p: float(w) * draws / sizes[p] for p, w in weights.items() if w > 0}

    plan_w = {r["pool"]: float(r["weight"]) for r in rows if float(r["weight"]) > 0}
    cands = [Candidate("plan", f"plan ({pd.get('mixture') or '+'.join(plan_w)})",
                       {r["pool"]: float(r["epochs"]) for r in rows if float(r["weight"]) > 0},
                       plan_w, _num(pd.get("predicted")))]
    for key in BASELINE_KEYS:
        b = (pd.get("baselines") or {}).get(key)
        if not b:
            continue
        w = {p: float(v) for p, v in b["weights"].items()}
        cands.append(Candidate(key, b.get("name", key), epochs_of(w), w, _num(b.get("loss")),
                               feasible=bool(b.get("feasible", True))))
    capped = _capped_candidate(plan, cands[0], sizes, draws, law, notes)
    if capped is not None:
        cands.append(capped)
    return cands, sizes, notes


def _num(x) -> float | None:
    return None if x is None else float(x)


def _capped_candidate(plan, cand, sizes, draws, law, notes) -> Candidate | None:
    """The plan re-capped at the measured epochs, when it was allowed beyond them."""
    cons = plan.get("constraints") or {}
    measured = cons.get("measured_max_epochs")
    over = {p: e for p, e in cand.epochs.items() if measured is not None and e > measured * (1 + 1e-6)}
    if measured is None:
        if cons.get("epoch_cap_source") != "fit data":
            notes.append("the law records no measured epoch range, so no capped plan is replayed")
        return None
    if not over:
        return None
    name = f"plan capped at the measured {measured:g} epochs"
    if law is not None:
        try:
            from curate.laws.planning import make_plan

            pd = plan["plan"]
            re = make_plan(law, float(pd["budget"]), unit=plan.get("unit"),
                           pool_sizes=sizes, min_share=cons.get("min_share") or {},
                           max_share=cons.get("max_share") or {},
                           exclude=cons.get("exclude") or [], max_epochs=float(measured),
                           top_m=bool(plan.get("top_m_only")), max_draws=0,
                           quality=plan.get("quality") or None)["plan"]
            w = {r["pool"]: float(r["weight"]) for r in re["pools"] if float(r["weight"]) > 0}
            return Candidate("plan_capped", name + " (re-planned with the law)",
                             {r["pool"]: float(r["epochs"]) for r in re["pools"] if float(r["weight"]) > 0},
                             w, _num(re.get("predicted")))
        except (ValueError, KeyError, TypeError) as exc:
            notes.append(f"could not re-plan at the measured epochs with the law ({exc}); "
                         "the capped plan clips the plan's weights instead")
    # Water-filling: clip the pools over the cap, give the excess to the others in proportion to
    # their weights, repeat until no pool is over (or every pool is at its cap).
    cap_w = {p: measured * sizes[p] / draws for p in sizes}
    w = dict(cand.weights)
    for _ in range(len(sizes) + 1):
        excess = sum(max(0.0, w[p] - cap_w[p]) for p in w)
        if excess <= 1e-12:
            break
        w = {p: min(v, cap_w[p]) for p, v in w.items()}
        free = {p: v for p, v in w.items() if v < cap_w[p] * (1 - 1e-9)}
        if not free:
            notes.append("the plan's pools cannot supply the budget within the measured epochs; "
                         "no capped plan is replayed")
            return None
        tot = sum(free.values())
        for p, v in free.items():
            w[p] = v + excess * v / tot
    epochs = {p: v * draws / sizes[p] for p, v in w.items() if v > 0}
    return Candidate("plan_capped", name + " (weights clipped, not re-planned)", epochs, w, None,
                     note="no prediction: pass --law to re-plan it with the law")


# ---------------------------------------------------------------------------------------------
# Data: the target and the 1/k subsets
# ---------------------------------------------------------------------------------------------

def design_from_meta(meta: dict | None) -> ProbeDesign | None:
    """The probe's design from its `curate.probe` metadata (unknown keys ignored)."""
    if not meta or not isinstance(meta.get("design"), dict):
        return None
    d = dict(meta["design"])
    cfg_fields = {f.name for f in dataclasses.fields(ProxyConfig)}
    cfg = ProxyConfig(**{k: v for k, v in (d.get("config") or {}).items() if k in cfg_fields})
    names = {f.name for f in dataclasses.fields(ProbeDesign)}
    kw = {k: v for k, v in d.items() if k in names and k != "config"}
    if "multiples" in kw:
        kw["multiples"] = tuple(kw["multiples"])
    return ProbeDesign(config=cfg, **kw)


def replay_target(pools: dict[str, list[tuple[str, str]]], design: ProbeDesign,
                  target_texts: list[str] | None):
    """The evaluation target exactly as the probe builds it (`probe.data.prepare_data` with the
    probe's seed and target size): (target sequences, description, ids to exclude from training,
    texts to exclude from training)."""
    from curate.probe.data import prepare_data

    d = replace(design, unique_tokens=0, mixtures=[], large_pool=None)
    data = prepare_data(pools, d, target_texts)
    return data.target, data.target_source, set(data.target_ids), set(target_texts or ())


def _hash_key(salt: str, doc_id: str) -> bytes:
    return hashlib.sha1(f"{salt}\x00{doc_id}".encode()).digest()


def subsample(docs: Sequence[tuple[str, str]], k: float, context: int, salt: str
              ) -> tuple[np.ndarray, int, int]:
    """1/k of a pool: its documents in a seeded hash order, packed into context windows
    (`probe.sequences.pack_sequences`, as the probe packs), cut at round(bytes / (k context))
    windows (at least one).

    Returns (windows, documents read, bytes of the pool); bytes count one separator per
    document, as packing does, so the subset holds the pool's bytes / k to within one window.
    """
    total = sum(len(t.encode("utf-8")) + 1 for _, t in docs)
    n = max(1, int(round(total / (k * context))))
    order = sorted(docs, key=lambda d: _hash_key(salt, d[0]))
    seqs = pack_sequences((t for _, t in order), context, n)
    need, got, used = n * context + 1, 0, 0
    for _, t in order:
        if got >= need:
            break
        used += 1
        got += len(t.encode("utf-8")) + 1
    return seqs, used, total


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

@dataclass
class _Job:
    key: str
    seed: int
    pools: list[str]
    epochs: list[float]
    windows: list[int]


def run_steps(cfg: ProxyConfig, epochs: Sequence[float], windows: Sequence[int]) -> int:
    """Optimiser steps of a candidate: sum_i epochs_i x windows_i x context tokens."""
    tokens = sum(e * n for e, n in zip(epochs, windows)) * cfg.context
    return max(1, int(round(tokens / cfg.tokens_per_step)))


def train_candidate(job: _Job, cfg: ProxyConfig, subsets: dict[str, np.ndarray],
                    target: np.ndarray, device: str = "cpu") -> dict:
    """Train one proxy on a candidate's subsets for its epochs; evaluate on the target."""
    from curate.probe.proxy_lm import ProxyTrainer

    sources = [subsets[p] for p in job.pools]
    weights = [e * n for e, n in zip(job.epochs, job.windows)]
    order_seed = int.from_bytes(hashlib.sha1(f"replay-{job.seed}-{job.key}".encode()).digest()[:4],
                                "little")
    stream = SequenceStream(sources, weights, seed=order_seed)
    trainer = ProxyTrainer(cfg, seed=job.seed, device=device, threads=1 if device == "cpu" else None)
    steps = run_steps(cfg, job.epochs, job.windows)
    t0 = time.perf_counter()
    while trainer.step < steps:
        trainer.train_step(stream.next_batch(cfg.batch_size))
    if cfg.cooldown_steps > 0:
        peek = copy.deepcopy(stream)
        batches = [peek.next_batch(cfg.batch_size) for _ in range(cfg.cooldown_steps)]
        loss = trainer.cooldown_loss(target, batches)
    else:
        loss = trainer.evaluate(target)
    return {"seed": job.seed, "loss": float(loss), "steps": int(steps),
            "tokens": int(trainer.tokens_seen),
            "epochs": {p: float(t) / n for p, t, n in zip(job.pools, stream.taken, job.windows)},
            "seconds": time.perf_counter() - t0}


def _worker(args):
    return train_candidate(*args)


# ---------------------------------------------------------------------------------------------
# The replay
# ---------------------------------------------------------------------------------------------

def choose_scale(total_tokens_full: float, tokens_per_s: float, time_budget_s: float) -> int:
    """Smallest integer k >= 1 whose replay (total_tokens_full / k tokens) fits the budget."""
    if tokens_per_s <= 0 or time_budget_s <= 0:
        raise ProbeError("the time budget and the measured throughput must be positive")
    return max(1, math.ceil(total_tokens_full / (tokens_per_s * time_budget_s * TIME_SHARE)))


def parse_scale(text: str) -> float:
    """'1/32', '32' or '0.03125' -> k = 32."""
    s = str(text).strip()
    try:
        if "/" in s:
            num, den = s.split("/", 1)
            frac = float(num) / float(den)
        else:
            v = float(s)
            frac = v if v <= 1 else 1.0 / v
    except (ValueError, ZeroDivisionError):
        raise ProbeError(f"--scale: cannot read {text!r} (use e.g. 1/32)") from None
    if not (math.isfinite(frac) and 0 < frac <= 1):
        raise ProbeError(f"--scale must be a fraction in (0, 1], e.g. 1/32; got {text!r}")
    return 1.0 / frac


def replay_plan(plan: dict, pools: dict[str, list[tuple[str, str]]], settings: ReplaySettings,
                target_texts: list[str] | None = None,
                log: Callable[[str], None] | None = None) -> dict:
    """Replay `plan` on `pools` (from `probe.run_pools.load_pools`); the report dict (JSON-able).

    See the module docstring for what it validates, the candidates and the verdict.
    """
    say = log or (lambda msg: None)
    seeds = tuple(int(s) for s in settings.seeds)
    if len(seeds) < 1 or len(set(seeds)) != len(seeds):
        raise ProbeError("--seeds: give distinct seeds (>= 2 for a seed spread)")
    meta = settings.probe_meta or {}
    design = design_from_meta(meta)
    notes: list[str] = []
    if settings.config is not None:
        cfg, proxy_src = settings.config, "given config"
    elif settings.proxy is not None:
        cfg, proxy_src = proxy_by_name(settings.proxy), f"--proxy {settings.proxy}"
        if design is not None and cfg != replace(design.config, cooldown_steps=cfg.cooldown_steps):
            notes.append(f"--proxy {settings.proxy} differs from the probe's proxy: the replay "
                         "measures another model than the law was fitted on")
        if design is not None:
            cfg = replace(cfg, cooldown_steps=design.config.cooldown_steps)
    elif design is not None:
        cfg, proxy_src = design.config, "the probe's (observations metadata)"
    else:
        cfg, proxy_src = proxy_by_name(PROXY_NAMES[0]), f"smallest ladder proxy ({PROXY_NAMES[0]})"
        notes.append("no --observations: the proxy is the smallest ladder proxy and the target "
                     "is rebuilt with seed 0 and the default size, which need not be the probe's")
    if design is None:
        U = 64 * cfg.tokens_per_step
        design = ProbeDesign(config=cfg, unique_tokens=U, mixtures=[], large_pool=None,
                             target_tokens=default_target_tokens(U), seed=0)
    if target_texts is None and "user target" in str(meta.get("target", "")):
        raise ProbeError("the probe measured on a --target file: pass the same --target, so the "
                         "replay measures what the law predicted")

    run_names = list(pools)
    cands, sizes, plan_notes = plan_candidates(plan, run_names, settings.law)
    notes.extend(plan_notes)
    target, target_source, target_ids, target_set = replay_target(pools, design, target_texts)
    train_pools = {p: [(i, t) for i, t in docs if i not in target_ids and t not in target_set]
                   for p, docs in pools.items()}
    off = []
    for p in sizes:
        run_bytes = sum(len(t.encode("utf-8")) for _, t in train_pools[p])
        if abs(run_bytes - sizes[p]) > 0.02 * max(sizes[p], 1):
            off.append(f"{p} {sizes[p]:,.0f} vs {run_bytes:,}")
    if off:
        notes.append("the plan's pool sizes differ from the run's training bytes (target held "
                     f"out) by more than 2 % ({'; '.join(off)}): epochs per pool follow the plan, "
                     "so the replay's tokens are not exactly budget / k")

    # Candidates with the same epochs per pool are trained once.
    unique: dict[tuple, str] = {}
    for c in cands:
        sig = tuple(sorted((p, round(e, 9)) for p, e in c.epochs.items()))
        if sig in unique:
            c.same_as = unique[sig]
        else:
            unique[sig] = c.key
    trained = [c for c in cands if c.same_as is None]

    draws = float(plan["plan"]["draws"])
    used = sorted({p for c in trained for p in c.epochs}, key=run_names.index)
    tokens_full = sum(sum(e * sizes[p] for p, e in c.epochs.items()) for c in trained) * len(seeds)
    throughput = None
    if settings.scale is not None:
        k = float(settings.scale)
        if not (math.isfinite(k) and k >= 1):
            raise ProbeError(f"--scale must be at most 1 (k >= 1), got 1/{k:g}")
    else:
        from curate.probe.throughput import ThroughputMeter

        with ThroughputMeter(settings.workers if settings.device == "cpu" else 1,
                             settings.device) as meter:
            throughput = meter(cfg)
        k = float(choose_scale(tokens_full, throughput, settings.time_budget_s))
        say(f"measured throughput {throughput:,.0f} tokens/s (all workers); "
            f"{tokens_full:,.0f} tokens at full scale -> k = {k:g}")

    # Subsets: 1/k of every used pool, per seed (the subset is part of what a seed varies).
    subsets: dict[int, dict[str, np.ndarray]] = {}
    subset_info: dict[int, dict[str, dict]] = {}
    for s in seeds:
        subsets[s], subset_info[s] = {}, {}
        for p in used:
            seqs, n_docs, total = subsample(train_pools[p], k, cfg.context, f"curate-replay-{s}-{p}")
            if len(seqs) == 0 or total / k < 0.5 * cfg.context:
                raise ProbeError(f"at scale 1/{k:g} pool {p} keeps {total / k:,.0f} bytes, less "
                                 f"than one context window ({cfg.context}): use a smaller k "
                                 "(--scale) or a larger --time-budget")
            subsets[s][p] = seqs
            subset_info[s][p] = {"docs": n_docs, "bytes": int(len(seqs) * cfg.context),
                                 "pool_bytes": int(total), "windows": int(len(seqs))}

    jobs = []
    for c in trained:
        ps = [p for p in used if p in c.epochs]
        for s in seeds:
            jobs.append(_Job(c.key, s, ps, [c.epochs[p] for p in ps],
                             [subset_info[s][p]["windows"] for p in ps]))
    min_steps = min(run_steps(cfg, j.epochs, j.windows) for j in jobs)
    if min_steps < 4 * max(cfg.warmup_steps, 1):
        notes.append(f"the shortest replay run has only {min_steps} optimiser steps (warm-up "
                     f"{cfg.warmup_steps}): measurements this short are noisy; use a smaller k")
    total_steps = sum(run_steps(cfg, j.epochs, j.windows) for j in jobs)
    say(f"replay at 1/{k:g} scale: {len(trained)} mixtures x {len(seeds)} seeds = {len(jobs)} runs, "
        f"{total_steps * cfg.tokens_per_step:,} training tokens; proxy "
        f"{cfg.n_params() / 1e6:.2f}M params (d{cfg.d_model} x {cfg.n_layers}); device {settings.device}")
    results = _train_all(jobs, cfg, subsets, target, settings, say)
    by_key = {c.key: c for c in cands}
    for job, res in zip(jobs, results):
        by_key[job.key].runs.append(res)
    for c in cands:
        if c.same_as is not None:
            c.runs = by_key[c.same_as].runs
    first = subset_info[seeds[0]]
    at_scale = scaled_predictions(settings.law, plan, cands,
                                  {p: v["windows"] * cfg.context for p, v in first.items()}, notes)
    return _report(plan, cands, k, seeds, cfg, proxy_src, target_source, int(target.size - len(target)),
                   settings, subset_info, draws, throughput, notes, at_scale)


def scaled_predictions(law, plan: dict, cands: Sequence[Candidate], subset_bytes: dict[str, int],
                       notes: list[str]) -> dict[str, float]:
    """The law's prediction for every candidate as the replay trained it: each pool's size the
    replay subset's bytes, its tokens epochs x that size (QQT laws; the plan's conservative
    parameters applied as the plan did).

    This is the number a measured replay loss is comparable with; the plan file's predictions
    are at full scale. Checked first: the law must reproduce the plan's own prediction at full
    scale, else nothing is predicted (and a note says why).
    """
    if law is None or getattr(law, "kind", None) != "qqt":
        return {}
    try:
        from curate.laws.planner_objectives import QQTObjective

        cons = plan.get("conservative") or {}
        if cons:
            from curate.laws.bounds import conservative_law

            q = next(iter(cons.values())).get("quantile", 0.1)
            law, _ = conservative_law(law, quantile=float(q))
        pd = plan["plan"]
        sizes = {r["pool"]: float(r["size"]) for r in pd["pools"]}
        pools = list(law.pools)
        if set(sizes) - set(pools):
            notes.append("the law's pools are not the plan's: no predictions at the replay scale")
            return {}
        full = [sizes.get(p, float(n)) for p, n in zip(pools, law.sizes)]
        w_plan = np.array([[cands[0].weights.get(p, 0.0) for p in pools]])
        at_full = QQTObjective(law, full).loss_batch(w_plan, float(pd["draws"]))[0]
        if pd.get("predicted") is None or abs(at_full - pd["predicted"]) > 1e-6 * max(1.0, abs(at_full)):
            notes.append(f"the law file predicts {at_full:.4f} for the plan at full scale, the plan "
                         f"file {pd.get('predicted')}: not the law the plan was made with, so no "
                         "predictions at the replay scale")
            return {}
        small = [float(subset_bytes.get(p, 0)) or float(n) for p, n in zip(pools, full)]
        obj = QQTObjective(law, small)
        out = {}
        for c in cands:
            tokens = np.array([c.epochs.get(p, 0.0) * n for p, n in zip(pools, small)])
            out[c.key] = float(obj.loss_batch((tokens / tokens.sum())[None, :], tokens.sum())[0])
        return out
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        notes.append(f"no predictions at the replay scale ({exc})")
        return {}


def _train_all(jobs, cfg, subsets, target, settings, say) -> list[dict]:
    t0 = time.perf_counter()
    out: list[dict | None] = [None] * len(jobs)

    def done(i, res, n_done):
        if not settings.quiet:
            say(f"{jobs[i].key} seed {jobs[i].seed}: loss {res['loss']:.4f} ({res['steps']} steps) "
                f"[{n_done}/{len(jobs)} runs, {time.perf_counter() - t0:,.0f}s]")

    if settings.workers <= 1 or settings.device != "cpu" or len(jobs) == 1:
        for i, job in enumerate(jobs):
            out[i] = train_candidate(job, cfg, subsets[job.seed], target, settings.device)
            done(i, out[i], i + 1)
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=settings.workers,
                                 mp_context=mp.get_context("spawn")) as ex:
            futs = {ex.submit(_worker, (job, cfg, subsets[job.seed], target, "cpu")): i
                    for i, job in enumerate(jobs)}
            for n, fut in enumerate(as_completed(futs), 1):
                i = futs[fut]
                out[i] = fut.result()
                done(i, out[i], n)
    return out  # type: ignore[return-value]


def _stats(values: Sequence[float]) -> tuple[float, float | None]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), (float(v.std(ddof=1)) if v.size >= 2 else None)


def _report(plan, cands, k, seeds, cfg, proxy_src, target_source, target_tokens, settings,
            subset_info, draws, throughput, notes, at_scale=None) -> dict:
    at_scale = at_scale or {}
    rows = []
    for c in cands:
        losses = [r["loss"] for r in sorted(c.runs, key=lambda r: seeds.index(r["seed"]))]
        mean, sd = _stats(losses)
        worst = max((abs(r["epochs"][p] - c.epochs[p]) for r in c.runs for p in c.epochs), default=0.0)
        rows.append({"key": c.key, "name": c.name, "baseline": c.key != "plan",
                     "weights": c.weights, "epochs": c.epochs, "predicted": c.predicted,
                     "predicted_at_scale": at_scale.get(c.key),
                     "feasible": c.feasible, "same_as": c.same_as, "note": c.note,
                     "losses": losses, "mean": mean, "sd": sd,
                     "replay_tokens": int(np.mean([r["tokens"] for r in c.runs])),
                     "replay_epochs": [r["epochs"] for r in c.runs],
                     "max_epoch_error": worst})
    plan_row = rows[0]
    base_rows = [r for r in rows[1:]]
    result = {"format": FORMAT, "validates": VALIDATES,
              "plan": {"law": plan.get("law"), "budget": plan["plan"]["budget"],
                       "unit": plan.get("unit"), "draws": draws,
                       "mixture": plan["plan"].get("mixture")},
              "scale_k": k, "replay_budget_tokens": draws / k, "seeds": list(seeds),
              "proxy": {"source": proxy_src, "params": cfg.n_params(), **cfg.to_dict()},
              "device": settings.device, "throughput_tokens_per_s": throughput,
              "target": {"source": target_source, "tokens": target_tokens},
              "subsets": {str(s): info for s, info in subset_info.items()},
              "candidates": rows, "best_baseline": None, "verdict": None,
              "measured_difference": None, "predicted_difference": None, "sd": None,
              "difference_error": None,
              "paired_difference": None, "predicted_difference_at_scale": None,
              "plan_at_most_best_plus_sd": None, "notes": list(notes)}
    if base_rows:
        best = min(base_rows, key=lambda r: (r["mean"], r["key"]))
        sds = [x for x in (plan_row["sd"], best["sd"]) if x is not None]
        s = max(sds) if sds else 0.0
        diff = plan_row["mean"] - best["mean"]
        pdiff = (None if plan_row["predicted"] is None or best["predicted"] is None
                 else plan_row["predicted"] - best["predicted"])
        pdiff_k = (None if best["predicted_at_scale"] is None or plan_row["predicted_at_scale"] is None
                   else plan_row["predicted_at_scale"] - best["predicted_at_scale"])
        paired = None
        if best["key"] != "plan" and len(seeds) >= 2:
            d = np.asarray(plan_row["losses"]) - np.asarray(best["losses"])
            paired = {"mean": float(d.mean()), "sd": float(d.std(ddof=1))}
        verdict = "plan wins" if diff < -s else ("loses" if diff > s else "within noise")
        if best["same_as"] == "plan":
            result["notes"].append(f"the best baseline ({best['name']}) is the plan's own mixture")
        result.update(best_baseline=best["key"], verdict=verdict, measured_difference=diff,
                      predicted_difference=pdiff,
                      predicted_difference_at_scale=pdiff_k, sd=s, paired_difference=paired,
                      plan_at_most_best_plus_sd=bool(diff <= s),
                      difference_error=_difference_error(plan_row, base_rows))
        if len(seeds) < 2:
            result["notes"].append("one seed: no seed spread, the verdict compares means only")
    return result


def _difference_error(plan_row: dict, base_rows: list[dict]) -> float | None:
    """The validated error of predicted differences: the largest |measured (plan - baseline) -
    predicted (plan - baseline)| over the baselines with a prediction (at the replay's 1/k scale
    where the law gives one, else full scale). `curate plan --replay` holds the plan's predicted
    gain to this bar."""
    errors = []
    for b in base_rows:
        for key in ("predicted_at_scale", "predicted"):
            if plan_row.get(key) is not None and b.get(key) is not None:
                predicted = plan_row[key] - b[key]
                errors.append(abs((plan_row["mean"] - b["mean"]) - predicted))
                break
    return max(errors) if errors else None


def format_report(rep: dict) -> str:
    """The replay as a text table (what `curate validate` prints)."""
    plan_tokens = rep["candidates"][0]["replay_tokens"]
    lines = [f"replay of the plan at 1/{rep['scale_k']:g} scale: every pool subsampled to "
             f"1/{rep['scale_k']:g} and trained for the plan's epochs; the plan trained on "
             f"{plan_tokens:,} tokens (budget / k = {rep['replay_budget_tokens']:,.0f}), "
             f"seeds {', '.join(map(str, rep['seeds']))}",
             f"validates: {rep['validates']}",
             f"proxy {rep['proxy']['params'] / 1e6:.2f}M params ({rep['proxy']['source']}); "
             f"target: {rep['target']['source']} ({rep['target']['tokens']:,} tokens)",
             "predicted: the plan file's (full scale); at 1/k: the law at the replay's subset sizes "
             "and tokens, the number a measured loss compares with",
             "",
             f"  {'candidate':<44}{'predicted':>10}{'at 1/k':>9}{'measured':>10}{'seed sd':>9}  epochs per pool"]
    for r in rep["candidates"]:
        pred = "-" if r["predicted"] is None else f"{r['predicted']:.4f}"
        sd = "-" if r["sd"] is None else f"{r['sd']:.4f}"
        pk = "-" if r.get("predicted_at_scale") is None else f"{r['predicted_at_scale']:.4f}"
        ep = ", ".join(f"{p} {e:.2f}" for p, e in r["epochs"].items())
        flag = "" if r["feasible"] else " (infeasible)"
        lines.append(f"  {(r['name'] + flag)[:43]:<44}{pred:>10}{pk:>9}{r['mean']:>10.4f}{sd:>9}  {ep}")
    if rep["verdict"] is not None:
        best = next(r for r in rep["candidates"] if r["key"] == rep["best_baseline"])
        pd = rep["predicted_difference"]
        lines += ["",
                  f"best baseline (measured): {best['name']}",
                  f"plan - best baseline: measured {rep['measured_difference']:+.4f} "
                  f"(seed sd {rep['sd']:.4f}), predicted "
                  + ("n/a" if pd is None else f"{pd:+.4f}")
                  + ("" if rep.get("predicted_difference_at_scale") is None
                     else f" (at 1/{rep['scale_k']:g} scale {rep['predicted_difference_at_scale']:+.4f})"),
                  f"verdict: {rep['verdict'].upper()} (plan mean "
                  + ("<=" if rep["plan_at_most_best_plus_sd"] else ">")
                  + " best baseline + one seed sd)"]
    for n in rep["notes"]:
        lines.append(f"note: {n}")
    return "\n".join(lines)


def replay_files(plan_path, run_dir, settings: ReplaySettings, observations=None, target=None,
                 law_path=None, log: Callable[[str], None] | None = None) -> dict:
    """`curate validate` as one call: read the plan file, the run's pools (through
    `probe.run_pools.load_pools`), the probe's metadata (`observations`), the target file and
    the law (`law_path`, else the plan's `law` when it names an existing file), then
    :func:`replay_plan`."""
    import json
    from pathlib import Path

    from curate.probe.run_pools import load_pools

    path = Path(plan_path)
    if not path.is_file():
        raise ProbeError(f"plan file {path} does not exist (write one with `curate plan -o`)")
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProbeError(f"{path}: not a JSON plan file ({exc})") from None
    meta = None
    if observations is not None:
        from curate.probe.observations_io import probe_metadata

        if not Path(observations).is_file():
            raise ProbeError(f"observations file {observations} does not exist")
        meta = probe_metadata(str(observations))
        if not meta:
            raise ProbeError(f"{observations}: no `curate probe` metadata (is it a probe's OBS.parquet?)")
    law = None
    law_file = Path(law_path) if law_path is not None else None
    if law_file is None and isinstance(plan, dict) and isinstance(plan.get("law"), str):
        for cand in (Path(plan["law"]), path.parent / plan["law"]):
            if cand.is_file():
                law_file = cand
                break
    elif law_file is not None and not law_file.is_file():
        raise ProbeError(f"law file {law_file} does not exist")
    if law_file is not None:
        from curate.laws.lawfile import law_from_dict

        try:
            law = law_from_dict(json.loads(law_file.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as exc:
            if law_path is not None:
                raise ProbeError(f"{law_file}: not a law file ({exc})") from None
            law = None
    texts = None
    if target is not None:
        from curate.probe.data import read_target_file

        texts = read_target_file(target)
    pools = load_pools(run_dir)
    settings = replace(settings, probe_meta=meta, law=law)
    rep = replay_plan(plan, pools, settings, texts, log)
    rep["plan"]["file"] = str(plan_path)
    rep["run"] = str(run_dir)
    rep["observations"] = None if observations is None else str(observations)
    rep["law_file"] = None if law_file is None or law is None else str(law_file)
    return rep

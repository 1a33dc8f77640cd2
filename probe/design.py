"""Probe design: which proxy runs a probe trains, and how a time budget sizes them.

What a probe measures
---------------------
For every pool K it trains a proxy LM (probe.proxy_lm) on a fixed subset of U unique tokens
of that pool, repeated epoch after epoch, and evaluates the loss on an evaluation target at
multiples of U (0.25x .. 8x by default: up to 8 epochs). Because the LR is constant after a
short warm-up, the checkpoint at n tokens stands for a run of n tokens, so one run yields a
whole curve: early points (n <= U, no repetition) pin the pool's utility b, later points
(n > U) its repetition half-life tau. The design that identifies the law (`identifying_options`,
the default of `curate probe`) adds, per pool: replicate seeds of every fit run (distinct run
ids, so the fit's bootstrap resamples runs), a second subset of U / 4 repeated up to 32 epochs
(two subset sizes identify the gap exponent gamma), and a fresh-data control run (as many
unique tokens as the longest fit run: loss beyond U without repetition). `ProbeDesign.summary`
is the design in numbers.

Held out from fitting, to test the law (see `probe.validation.validate`):
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
past the first epoch samples_seen / unique_samples is the number of epochs. Documents were not
used as the unit because document lengths differ by 30x between pools (tweets vs. articles): a
"document" of one pool is not the same amount of training signal as one of another. A law fitted on probe
observations is therefore in tokens (bytes), and pool sizes given to the planner must be in
bytes too (`pool_bytes` in the probe metadata).

Sizing
------
`design_for_budget` picks the largest proxy of the `LADDER` that still leaves
`min_steps_per_unit` optimiser steps per U within the budget, then the largest U that fits; the
training rate it plans with comes from a callable (`probe.throughput.ThroughputMeter` times it).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Sequence

from curate.probe.errors import ProbeError
from curate.probe.proxy_lm import ProxyConfig

DEFAULT_MULTIPLES = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
#: Evaluation points of the small-subset run, in passes over its subset: up to 32 epochs, so
#: the loss can be seen to turn up and the fit data (and so the planner's epoch cap) reaches 32.
SMALL_MULTIPLES = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0)
#: The identifying design's defaults (`identifying_options`): seeds per run, subset ratio.
DEFAULT_SEEDS = 3
DEFAULT_SMALL_FACTOR = 4


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
    seed : the probe's seed: target, subsets, and the first replicate's initialisation.
    seeds : replicate runs of every fit run (seeds seed, seed + 1, ...): other initialisation
        and data order, same subsets; each a distinct run id, so the fit's bootstrap resamples
        runs, not checkpoints of one curve. Held-out runs use the first seed only.
    small_factor, small_multiples : per pool a second fit run on its first U / small_factor
        tokens, evaluated at `small_multiples` passes over them (0: none). Two subset sizes per
        pool are what identify the mixture rule's gap exponent gamma (laws.qqt_fit).
    fresh_pools : pools that get a fresh-data control run: `fresh_tokens` unique tokens (the
        largest token count of any fit run), evaluated at the U run's points, so loss beyond U
        without repetition is observed (it pins b and separates decay from slowing learning).
    """

    config: ProxyConfig = field(default_factory=ProxyConfig)
    unique_tokens: int = 65_536
    multiples: tuple[float, ...] = DEFAULT_MULTIPLES
    mixtures: list[dict[str, float]] = field(default_factory=list)
    large_pool: str | None = None
    large_factor: int = 2
    target_tokens: int = 16_384
    seed: int = 0
    seeds: int = 1
    small_factor: int = 0
    small_multiples: tuple[float, ...] = SMALL_MULTIPLES
    fresh_pools: list[str] = field(default_factory=list)

    def __post_init__(self):
        # metadata round trips give lists; keep tuples (hashable, comparable with the defaults)
        self.multiples = tuple(float(m) for m in self.multiples)
        self.small_multiples = tuple(float(m) for m in self.small_multiples)
        self.fresh_pools = list(self.fresh_pools)
        if int(self.seeds) < 1:
            raise ProbeError(f"seeds must be >= 1, got {self.seeds}")
        if int(self.small_factor) < 0 or int(self.small_factor) == 1:
            raise ProbeError(f"small_factor must be 0 (none) or >= 2, got {self.small_factor}")

    # -- sizes --------------------------------------------------------------------------------
    @property
    def unit(self) -> int:
        """U in whole context windows."""
        return (self.unique_tokens // self.config.context) * self.config.context

    @property
    def small_tokens(self) -> int:
        """Tokens of the small subset (whole windows, at least one); 0 without one."""
        if not self.small_factor or self.unit <= 0:
            return 0
        ctx = self.config.context
        return max(ctx, (self.unit // self.small_factor // ctx) * ctx)

    @property
    def fresh_tokens(self) -> int:
        """Unique tokens of a fresh-data control run: the largest token count of the fit runs
        (whole windows), so it never repeats a sample."""
        ctx = self.config.context
        most = max(self.multiples) * self.unit
        if self.small_factor:
            most = max(most, max(self.small_multiples) * self.small_tokens)
        return int(math.ceil(most / ctx)) * ctx

    def runs(self, pools: Sequence[str]) -> list["RunSpec"]:
        """The training runs: fit runs (per seed: every pool's U run, small-subset run and
        fresh-data run), then the held-out mixtures and the larger-budget run."""
        U = self.unit
        out = []
        for k in range(int(self.seeds)):
            s = self.seed + k
            out += [RunSpec(f"s{s}-{p}", "fit", {p: 1.0}, {p: U}, seed=s) for p in pools]
            if self.small_factor:
                out += [RunSpec(f"s{s}-{p}-small", "fit", {p: 1.0}, {p: self.small_tokens},
                                seed=s, subset="small", multiples=self.small_multiples)
                        for p in pools]
            unknown = [p for p in self.fresh_pools if p not in pools]
            if unknown:
                raise ProbeError(f"fresh-data run for unknown pool(s) {unknown}; pools are {list(pools)}")
            # evaluated at the U run's points, and up to its own size if that is larger
            fresh_mult = tuple(sorted(set(self.multiples) | {self.fresh_tokens / U})) if U else None
            out += [RunSpec(f"s{s}-{p}-fresh", "fit", {p: 1.0}, {p: self.fresh_tokens}, seed=s,
                            subset="fresh", eval_unit=U, multiples=fresh_mult)
                    for p in pools if p in self.fresh_pools]
        for j, mix in enumerate(self.mixtures):
            unknown = [p for p in mix if p not in pools]
            if unknown:
                raise ProbeError(f"mixture names unknown pool(s) {unknown}; pools are {list(pools)}")
            w = {p: float(v) for p, v in mix.items() if v > 0}
            # Every pool brings its single-pool subset (U tokens): the pool sizes of the law
            # fitted on single-pool runs hold for the mixture too.
            out.append(RunSpec(f"s{self.seed}-mix{j}", "holdout-mixture", w, {p: U for p in w},
                               seed=self.seed))
        if self.large_pool is not None:
            if self.large_pool not in pools:
                raise ProbeError(f"large-run pool {self.large_pool!r} is not one of {list(pools)}")
            out.append(RunSpec(f"s{self.seed}-large-{self.large_pool}", "holdout-large",
                               {self.large_pool: 1.0}, {self.large_pool: U * self.large_factor},
                               seed=self.seed, subset="large"))
        return out

    @property
    def min_eval_step(self) -> int:
        """No evaluation before twice the warm-up: the LR is not yet constant there and the
        loss still falls through the unigram plateau, so a checkpoint there is not a
        measurement of a run of that length. Points before it are dropped (the design
        warns when that happens, see `min_steps_per_unit`)."""
        return 2 * self.config.warmup_steps

    def steps_at(self, unique: int, multiples: Sequence[float] | None = None) -> list[int]:
        """Optimiser steps of the evaluation points: `multiples` (default: the design's) of
        `unique` tokens, from `min_eval_step` on (the last point is always kept)."""
        tps = self.config.tokens_per_step
        mult = self.multiples if multiples is None else multiples
        steps = sorted({max(1, int(round(m * unique / tps))) for m in mult})
        return [s for s in steps if s >= self.min_eval_step] or steps[-1:]

    def eval_steps(self, spec: "RunSpec") -> list[int]:
        """Evaluation steps of one run (its multiples of its evaluation unit)."""
        return self.steps_at(spec.eval_unit or spec.base, spec.multiples)

    def total_train_tokens(self, pools: Sequence[str]) -> int:
        return sum(self.eval_steps(r)[-1] * self.config.tokens_per_step
                   for r in self.runs(pools))

    def summary(self, pools: Sequence[str]) -> dict:
        """The design in numbers (printed by `curate probe`, stored in its metadata): runs by
        kind, seeds, subset sizes, epochs and tokens."""
        runs = self.runs(pools)
        tps = self.config.tokens_per_step
        kinds: dict[str, dict] = {}
        for r in runs:
            kind = r.subset if r.role == "fit" else r.role
            k = kinds.setdefault(kind, {"runs": 0, "unique_tokens": r.unique_total,
                                        "max_tokens": 0, "max_epochs": 0.0, "tokens": 0})
            last = self.eval_steps(r)[-1] * tps
            k["runs"] += 1
            k["tokens"] += last
            k["max_tokens"] = max(k["max_tokens"], last)
            k["max_epochs"] = max(k["max_epochs"], round(last / r.unique_total, 3))
        return {"seeds": [self.seed + k for k in range(int(self.seeds))],
                "runs": len(runs), "fit_runs": sum(r.role == "fit" for r in runs),
                "train_tokens": sum(k["tokens"] for k in kinds.values()),
                "subset_tokens": {"main": self.unit, **({"small": self.small_tokens}
                                                        if self.small_factor else {}),
                                  **({"fresh": self.fresh_tokens} if self.fresh_pools else {})},
                "fresh_pools": list(self.fresh_pools),
                "no_fresh_run": [p for p in pools if p not in self.fresh_pools],
                "by_kind": kinds}

    def describe(self, pools: Sequence[str]) -> str:
        """One line per kind of run, for the log."""
        s = self.summary(pools)
        parts = []
        for kind, k in s["by_kind"].items():
            parts.append(f"{kind}: {k['runs']} runs x {k['unique_tokens']:,} unique tokens, up to "
                         f"{k['max_epochs']:g} epochs ({k['max_tokens']:,} tokens)")
        seeds = s["seeds"]
        return (f"{s['runs']} runs ({s['fit_runs']} fit runs over seeds "
                f"{', '.join(map(str, seeds))}), {s['train_tokens']:,} training tokens; "
                + "; ".join(parts))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["config"] = self.config.to_dict()
        d["multiples"] = list(self.multiples)
        d["small_multiples"] = list(self.small_multiples)
        return d


@dataclass
class RunSpec:
    run_id: str
    role: str  # "fit" | "holdout-mixture" | "holdout-large"
    weights: dict[str, float]
    unique: dict[str, int]  # unique tokens per pool in this run
    seed: int = 0  # initialisation seed (data order: a hash of the probe's seed and run id)
    subset: str = "main"  # which packed subset the run reads: main, small, fresh, large
    multiples: tuple[float, ...] | None = None  # evaluation points (None: the design's)
    eval_unit: int = 0  # tokens the multiples refer to (0: `base`)

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


def identifying_options(pools: Sequence[str], seeds: int = DEFAULT_SEEDS) -> dict:
    """The design options that identify the law (the default of `curate probe`): `seeds`
    replicates, a second subset of U / 4 repeated up to 32 epochs, a fresh-data run per pool."""
    return {"seeds": int(seeds), "small_factor": DEFAULT_SMALL_FACTOR,
            "fresh_pools": list(pools)}


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
        raise ProbeError(f"unknown proxy size {name!r}; expected one of {', '.join(PROXY_NAMES)}")
    return LADDER[PROXY_NAMES.index(name)]


def default_target_tokens(unique_tokens: int) -> int:
    """Target size: U/4 tokens, between 8 Ki and 64 Ki (evaluation costs ~10 % of training)."""
    return int(min(65_536, max(8_192, unique_tokens // 4)))


def design_for_budget(pools: Sequence[str], seconds: float, tokens_per_second: Callable[[ProxyConfig], float],
                      seed: int = 0, max_pool_tokens: int | None = None,
                      eval_overhead: float = 0.15, cooldown_steps: int = 0,
                      startup_s: float = 0.0, options: dict | None = None) -> ProbeDesign:
    """The largest ladder proxy, and its U, that fit `seconds` of training.

    `tokens_per_second(cfg)` is the measured training throughput of all workers together for
    a config (see probe.throughput.ThroughputMeter); it is only called for a config that the previous one's FLOP rate says could fit, so a
    budget never pays for timing a model far too large for it. The number of optimiser steps
    is what makes the measurement meaningful (a 0.25U point must come after the warm-up), so
    the model only grows while U keeps at least `min_steps_per_unit(cfg)` steps.
    `startup_s` is time the probe spends outside training (worker start-up, data packing).
    `options`: further ProbeDesign fields (seeds, small_factor, fresh_pools: see
    `identifying_options`); every run they add is paid for out of the same budget, so U shrinks.
    """
    options = dict(options or {})
    mixtures = default_mixtures(pools)
    chosen = None
    flop_rate = None  # training FLOP/s of the last measured config

    def unique_for(cfg, tokens_per_s):
        rate = tokens_per_s / (1.0 + eval_overhead)
        probe = ProbeDesign(config=cfg, unique_tokens=64 * cfg.tokens_per_step, mixtures=mixtures,
                            large_pool=pools[0], seed=seed, **options)
        runs = probe.runs(pools)
        per_U = probe.total_train_tokens(pools) / probe.unique_tokens  # tokens per unit of U
        points = sum(len(probe.eval_steps(r)) for r in runs)
        fixed = points * cooldown_steps * cfg.tokens_per_step
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
                       target_tokens=default_target_tokens(U), seed=seed, **options)

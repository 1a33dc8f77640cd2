"""Match a plan file (`curate-plan/1`) to a published run and turn it into per-pool targets.

Beam-free. A plan counts pools in its law's unit and names them `poolK` (pool K of the run it
was planned for). A plan file records what its sizes count (`size_unit`: docs, bytes, chars or
tokens; `laws.planning.size_unit`), and that unit is used. Plan files written before it was
recorded are read in the unit found by comparing their pool sizes with what the run measures:

* a plan in `samples` counts documents;
* a plan in `tokens` (or FLOPs, whose pools are drawn in tokens) counts UTF-8 bytes (laws
  fitted on `curate probe` observations), characters or the run's token estimate: the one
  the plan's sizes match best, within `tolerance` (default 2 %: a probe leaves its target
  documents out of the sizes it reports), unless the caller names the unit.

Every check that can fail does so here, before anything is written: plan format, pool names,
sizes (a plan for another run) and unique units beyond what a pool holds.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from curate.pipelines.materialize_core import UNITS, PoolTarget
from curate.pools.rundir import RunDir

PLAN_FORMAT = "curate-plan/1"
DEFAULT_TOLERANCE = 0.02
_POOL_NAME = re.compile(r"^pool(\d+)$")


class MaterializeError(ValueError):
    """A plan, run or option that cannot be materialised: one line for the user."""


@dataclass(frozen=True)
class MatchedPlan:
    plan_path: str
    plan_sha256: str
    plan: dict
    unit: str
    unit_source: str             # "--unit" or how it was inferred
    size_deviation: float        # largest relative deviation of the plan's sizes from the run's
    targets: tuple[PoolTarget, ...]
    files: dict                  # pool name -> the run's Parquet files of that pool
    run_units: dict              # pool name -> the run's units of that pool
    budget: float                # units drawn in all (the plan's draws)


def read_plan(path: str | Path) -> tuple[dict, str]:
    """(the plan dict, sha256 of the file) or MaterializeError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MaterializeError(f"plan file {path} not found") from None
    except OSError as exc:
        raise MaterializeError(f"cannot read plan file {path}: {exc.strerror or exc}") from None
    try:
        plan = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MaterializeError(f"plan file {path} is not valid JSON ({exc})") from None
    if not isinstance(plan, dict) or plan.get("format") != PLAN_FORMAT:
        raise MaterializeError(f"{path} is not a curate plan file (format {PLAN_FORMAT}; write one "
                               "with `curate plan ... -o PLAN.json`)")
    body = plan.get("plan")
    if not isinstance(body, dict) or not isinstance(body.get("pools"), list) or not body["pools"]:
        raise MaterializeError(f"{path} holds no plan at one budget (a sweep-only plan cannot be "
                               "materialised: plan with --budget)")
    return plan, hashlib.sha256(raw).hexdigest()


def run_measures(run: RunDir) -> dict[int, dict[str, float]]:
    """{pool index: {docs, chars, tokens, bytes}} of a published run."""
    import duckdb

    measures = {int(r["pool"]): {"docs": float(r["docs"] or 0), "chars": float(r["chars"] or 0),
                                 "tokens": float(r["tokens"] or 0), "bytes": 0.0}
                for r in run.stats()}
    con = duckdb.connect()
    try:
        sql = (f"SELECT pool, sum(strlen(text)) FROM ({run.select('docs', 'pool, text')}) "
               "GROUP BY pool")
        for pool, nbytes in con.execute(sql).fetchall():
            measures.setdefault(int(pool), {"docs": 0.0, "chars": 0.0, "tokens": 0.0})["bytes"] = float(nbytes or 0)
    finally:
        con.close()
    return measures


def _candidates(plan_unit: str) -> tuple[str, ...]:
    if plan_unit == "samples":
        return ("docs",)
    if plan_unit in ("tokens", "flops"):
        return ("bytes", "chars", "tokens")
    raise MaterializeError(f"plan unit {plan_unit!r} is not one of samples, tokens, flops")


def _deviation(sizes: dict[str, float], run_units: dict[str, float]) -> float:
    worst = 0.0
    for name, size in sizes.items():
        have = run_units.get(name, 0.0)
        worst = max(worst, abs(size - have) / max(have, size, 1.0))
    return worst


def match_plan(plan_path: str | Path, run_dir: str | Path, *, unit: str | None = None,
               tolerance: float = DEFAULT_TOLERANCE) -> MatchedPlan:
    """The plan's per-pool targets on this run, or MaterializeError saying what does not fit."""
    if unit is not None and unit not in UNITS:
        raise MaterializeError(f"--unit must be one of {', '.join(UNITS)}, got {unit!r}")
    if not 0 <= tolerance < 1:
        raise MaterializeError(f"--size-tolerance must be in [0, 1), got {tolerance!r}")
    plan, sha = read_plan(plan_path)
    run = RunDir(run_dir)
    pools = [p for p in plan["plan"]["pools"] if isinstance(p, dict)]
    measures = run_measures(run)
    run_names = {f"pool{k}": k for k in measures}
    names = [str(p.get("pool")) for p in pools]
    foreign = [n for n in names if n not in run_names]
    if foreign:
        raise MaterializeError(f"the plan is for another run: its pools {', '.join(names)} are not "
                               f"all in {run_dir} (pools {', '.join(sorted(run_names))})")
    sizes = {}
    for p in pools:
        try:
            sizes[str(p["pool"])] = float(p.get("size", p["unique"]))
            float(p["unique"]), float(p["samples"]), float(p["epochs"])
        except (KeyError, TypeError, ValueError):
            raise MaterializeError(f"plan pool {p.get('pool')!r} lacks numeric size/unique/samples/epochs") from None

    def units_of(u: str) -> dict[str, float]:
        return {n: measures[k][u] for n, k in run_names.items()}

    plan_unit = str(plan.get("unit"))
    recorded = plan.get("size_unit")
    if unit is None and recorded is not None:
        if recorded not in UNITS:
            raise MaterializeError(f"plan size_unit {recorded!r} is not one of {', '.join(UNITS)}")
        unit, source = recorded, "the plan's size_unit"
    elif unit is None:
        uniques = {str(p["pool"]): float(p["unique"]) for p in pools}

        def rank(u: str):
            have = units_of(u)
            # a unit in which the plan would not fit the pools is the less likely reading
            too_big = any(uniques[n] > have[n] * (1 + 1e-9) for n in uniques)
            deviation = _deviation(sizes, have)
            return (deviation > tolerance, too_big, deviation, _candidates(plan_unit).index(u))

        unit = min(_candidates(plan_unit), key=rank)
        source = f"the plan's {plan_unit} matched to the run's pool {unit}"
    else:
        source = "--unit"
    deviation = _deviation(sizes, units_of(unit))
    if deviation > tolerance:
        detail = "; ".join(f"{n} {sizes[n]:.6g} vs {units_of(unit)[n]:.6g}" for n in sizes)
        raise MaterializeError(f"the plan is for another run: its pool sizes differ from {run_dir}'s "
                               f"pool {unit} by up to {deviation:.1%} (> {tolerance:.1%}: {detail})")
    targets, have = [], units_of(unit)
    for p in pools:
        name = str(p["pool"])
        unique, samples = float(p["unique"]), float(p["samples"])
        if unique > have[name] * (1 + 1e-9):
            raise MaterializeError(f"the plan is larger than the pools allow: {name} needs {unique:.6g} "
                                   f"unique {unit}, {run_dir} has {have[name]:.6g}")
        if samples < 0 or unique < 0:
            raise MaterializeError(f"plan pool {name} has negative samples or unique units")
        epochs = samples / unique if unique > 0 else 0.0
        targets.append(PoolTarget(name, run_names[name], unique, samples, epochs))
    files = {n: [] for n in names}
    for f in run.files.pools:
        match = re.search(r"(?:^|/)pool=(\d+)/", f)
        if match and f"pool{int(match.group(1))}" in files:
            files[f"pool{int(match.group(1))}"].append(f)
    budget = float(plan["plan"].get("draws") or sum(t.samples for t in targets))
    return MatchedPlan(str(plan_path), sha, plan, unit, source, deviation, tuple(targets),
                       {n: tuple(v) for n, v in files.items()}, have, budget)


def pool_file_sizes(files: dict) -> int:
    """Total bytes of the pool files (for progress)."""
    import os

    return sum(os.path.getsize(f) for fs in files.values() for f in fs)


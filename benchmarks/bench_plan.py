"""Planning time: one plan for 4, 10 and 50 pools, and a 100-point budget sweep.

Run: .venv/bin/python benchmarks/bench_plan.py [--quick] [--out benchmarks/results/plan.json]
Target (issue 5): one 10-pool plan well under a second, a full sweep in seconds.

Pools are synthetic but law-shaped: QQT parameters drawn around the published T-MARS fit
(b in [-0.2, -0.07], better pools first; half-lives 1.5..9 passes), pool sizes 3e6..3e7
samples. Budgets: 10x and 100x the mean pool size (moderate and heavy repetition).
The sweep uses the four published T-MARS pools from 1e7 to 1e10 samples.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curate.laws.planner import plan_mixture, plan_sweep  # noqa: E402
from curate.laws.planner_objectives import QQTObjective  # noqa: E402
from curate.laws.qqt import QQTLaw  # noqa: E402

TMARS = dict(a=0.025, d=0.1, b=[-0.16, -0.125, -0.1, -0.085],
             tau=[6.7272727272727275, 8.545454545454547, 5.2727272727272725, 2.2727272727272725])


def synthetic_law(n_pools: int, seed: int = 0) -> QQTLaw:
    rng = np.random.default_rng(seed)
    return QQTLaw(0.025, 0.1, [f"pool{i}" for i in range(n_pools)],
                  b=np.sort(-rng.uniform(0.07, 0.2, n_pools)), tau=rng.uniform(1.5, 9.0, n_pools),
                  sizes=rng.uniform(3e6, 3e7, n_pools))


def timed(fn, repeats: int) -> tuple[float, float, object]:
    """(best wall seconds, best CPU seconds of this process, result) over `repeats` runs.

    CPU time is reported too because the benchmark machine may be shared (wall > CPU).
    """
    best, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - c)
    return best, best_cpu, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one repeat, smaller sweep")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "plan.json")
    args = ap.parse_args()
    repeats = 1 if args.quick else 3
    rows = []
    for P in (4, 10, 50):
        law = synthetic_law(P)
        obj = QQTObjective(law)
        for mult in (10, 100):
            budget = float(mult * law.sizes.mean())
            secs, cpu, plan = timed(lambda: plan_mixture(obj, budget), repeats)
            top_secs, _, top = timed(lambda: plan_mixture(obj, budget, top_m_only=True), repeats)
            row = {"pools": P, "budget": budget, "budget_over_mean_pool": mult,
                   "plan_seconds": round(secs, 4), "plan_cpu_seconds": round(cpu, 4),
                   "top_m_seconds": round(top_secs, 4),
                   "pools_used": len(plan.support), "predicted": plan.loss,
                   "best_top_m": top.loss, "gain_over_top_m": top.loss - plan.loss}
            rows.append(row)
            print(json.dumps(row))
    tm = QQTObjective(QQTLaw(TMARS["a"], TMARS["d"], [f"pool{i}" for i in range(4)], b=TMARS["b"],
                             tau=TMARS["tau"], sizes=[12.8e6] * 4))
    points = 30 if args.quick else 100
    budgets = np.geomspace(1e7, 1e10, points)
    sweeps = []
    for top_only in (True, False):
        secs, cpu, sweep = timed(lambda: plan_sweep(tm, budgets, top_m_only=top_only), 1)
        row = {"sweep_points": points, "top_m_only": top_only, "seconds": round(secs, 3),
               "cpu_seconds": round(cpu, 3),
               "switches": [s.to_dict() for s in sweep.switches]}
        sweeps.append(row)
        print(json.dumps(row))
    result = {"benchmark": "curate plan", "python": platform.python_version(),
              "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cpus",
              "plans": rows, "sweeps": sweeps}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

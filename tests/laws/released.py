"""The released QQT parameter sets (../shared/reference/qqt_parameter_values.jsonl) as laws."""
from __future__ import annotations

import json
from pathlib import Path

from curate.laws.qqt import QQTLaw

POOL = 12.8e6  # every released pool: 12.8M DataComp-medium samples


def released_parameters(reference_dir: Path) -> dict[str, dict]:
    """The raw parameter records keyed by variant ("utility", "data")."""
    out = {}
    for line in (reference_dir / "qqt_parameter_values.jsonl").read_text().splitlines():
        p = json.loads(line)
        out["data" if p["id"].endswith("_data") else "utility"] = p
    return out


def released_law(reference_dir: Path, variant: str = "utility", n_pools: int | None = None,
                 names: list[str] | None = None) -> QQTLaw:
    """A released parameter set as a QQTLaw (the first `n_pools` pools, optionally renamed)."""
    p = released_parameters(reference_dir)[variant]
    k = len(p["names"]) if n_pools is None else n_pools
    return QQTLaw(p["best_a"], p.get("d_value", 0.1), names or p["names"][:k], b=p["b_values"][:k],
                  tau=p["c_values"][:k], sizes=[POOL] * k, variant=variant)


def tmars_top4(reference_dir: Path) -> QQTLaw:
    """tmars_imagenet1k_utility restricted to its four disjoint, ordered pools, named pool0..3."""
    return released_law(reference_dir, "utility", 4, [f"pool{i}" for i in range(4)])

"""Run fingerprints: what decides whether an earlier run's result can be reused.

fingerprint = sha256(config + input fingerprints + code version). The code version is the
curate package version plus a hash of the source of the packages that compute results
(pipelines, scorers, pools), so editing a scorer invalidates old results.
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

RESULT_PACKAGES = ("pipelines", "scorers", "pools")


@lru_cache(maxsize=1)
def code_version() -> str:
    from importlib import import_module
    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("curate")
    except PackageNotFoundError:
        release = "unknown"
    digest = hashlib.sha256()
    for package in RESULT_PACKAGES:
        # the folders install as curate.<package>; paths below stay relative to the source root
        root = Path(import_module(f"curate.{package}").__file__).parent
        # sources and shipped data (e.g. the default quality reference) decide results
        for path in sorted([*root.rglob("*.py"), *root.rglob("data/*.json")]):
            digest.update(str(path.relative_to(root.parent)).encode())
            digest.update(path.read_bytes())
    return f"{release}+{digest.hexdigest()[:12]}"


def _sha(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def run_fingerprint(config: dict, inputs: list[dict]) -> dict:
    """{"config", "inputs", "code", "run"}: the first three hashed, `run` over all of them."""
    parts = {"config": _sha(config), "inputs": _sha(inputs), "code": code_version()}
    return {**parts, "run": _sha(parts)}

"""Shared test fixtures: locations of ../shared data, offline model settings."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# `curate run` defaults to one worker process per CPU (pipelines.options.with_local_workers);
# tests run in-process unless they ask for workers (starting processes per run costs seconds)
os.environ.setdefault("CURATE_LOCAL_WORKERS", "1")
# tests that run `curate run` without --workspace must not share caches (MinHash signatures,
# embeddings) or a catalog with the developer's ./curate-workspace or with earlier test runs
if "CURATE_WORKSPACE" not in os.environ:
    import tempfile

    os.environ["CURATE_WORKSPACE"] = tempfile.mkdtemp(prefix="curate-tests-")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CURATE_SHARED", ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data directory {SHARED} is absent (CI always has it)")
    return SHARED


@pytest.fixture(scope="session")
def corpora_dir(shared_dir: Path) -> Path:
    path = shared_dir / "corpora"
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="session")
def reference_dir(shared_dir: Path) -> Path:
    path = shared_dir / "reference"
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path

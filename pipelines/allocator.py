"""Keep glibc's malloc arenas few in the local runner's worker processes.

Measured (benchmarks/results/scale.md and the issue 16 notes): a Beam worker has many threads
(gRPC, progress, bundle processing), glibc gives each thread an arena of its own, and each
arena keeps its high-water mark: two multi-processing workers grew to ~1.2 GB each on 280k
documents while holding one chunk at a time, and plateaued at ~0.6 GB with MALLOC_ARENA_MAX=2.

`limit_arenas()` runs on the launcher before the runner starts its worker processes: they
inherit the environment, and glibc reads it when a process starts (changing arenas or trimming
at run time, from another thread, crashed a test process: only the environment is used).
Remote workers get it from their image (docker/Dockerfile.*: ENV MALLOC_ARENA_MAX=2).
"""
from __future__ import annotations

import os

ARENAS = 2


def limit_arenas(arenas: int = ARENAS) -> None:
    """MALLOC_ARENA_MAX for the worker processes started from here (unless the user set it)."""
    os.environ.setdefault("MALLOC_ARENA_MAX", str(arenas))

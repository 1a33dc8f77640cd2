"""glibc malloc settings for the local runner's processes: memory freed is memory returned.

Measured (benchmarks/results/scale.md and the issue 16 notes): a Beam worker has many threads
(gRPC, progress, bundle processing), glibc gives each thread an arena of its own, and each
arena keeps its high-water mark: two multi-processing workers grew to ~1.2 GB each on 280k
documents while holding one chunk at a time, and plateaued at ~0.6 GB with MALLOC_ARENA_MAX=2.
Beyond the arenas, glibc raises its mmap threshold as a process frees large blocks (up to
32 MB), so later blobs, Arrow buffers and lists land in the heap, where one live block pins
the pages below it; a fixed threshold of 128 KB keeps every large block in its own mapping,
unmapped when freed, and Arrow's own jemalloc pool (which holds freed pages for reuse) gives
way to the system allocator. On 1.1M documents with 2 workers: peak PSS of the process tree
3,037 -> 2,449 MB with these settings alone (same code; benchmarks/results/scale.md).

`tune_allocator()` runs on the launcher before the runner starts its worker processes: they
inherit the environment, and glibc reads it when a process starts; the launcher itself, already
running, gets the same values through mallopt (before the runner's threads exist). Changing
arenas or trimming from another thread at run time crashed a test process once: only these
start-up settings are used. A user's own setting of any of these variables wins. Remote workers
get them from their image (docker/Dockerfile.*).
"""
from __future__ import annotations

import os

ARENAS = 2
MMAP_THRESHOLD = 128 * 1024
TRIM_THRESHOLD = 1024 * 1024

WORKER_ENV = {
    "MALLOC_ARENA_MAX": str(ARENAS),
    "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
    "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD),
    "ARROW_DEFAULT_MEMORY_POOL": "system",
}
# mallopt parameter numbers (glibc malloc.h) for the launcher's own process
_MALLOPT = {"MALLOC_ARENA_MAX": -8, "MALLOC_MMAP_THRESHOLD_": -3, "MALLOC_TRIM_THRESHOLD_": -1}


def tune_allocator() -> dict:
    """WORKER_ENV for the worker processes started from here (unless the user set a variable),
    and the malloc ones for this process too; returns what was applied here via mallopt."""
    unset = [name for name in WORKER_ENV if name not in os.environ]
    for name in unset:
        os.environ[name] = WORKER_ENV[name]
    return _mallopt({name: int(WORKER_ENV[name]) for name in unset if name in _MALLOPT})


def _mallopt(values: dict) -> dict:
    import ctypes
    import platform

    if not values or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return {}
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return {}
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return {name: value for name, value in values.items() if mallopt(_MALLOPT[name], value) == 1}

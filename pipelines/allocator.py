"""Keep the C allocator from holding freed memory (glibc only; a no-op elsewhere).

Measured (benchmarks/results/scale.md): a Beam worker has many threads (gRPC, progress,
bundle processing), glibc gives each a malloc arena of its own, and the per-chunk work
(texts, shingle sets, Arrow tables) leaves each arena holding its high-water mark: two
multi-processing workers grew to ~1.2 GB each on 280k documents while holding one chunk at a
time. Two arenas per process and a trim after each chunk give the memory back.

`limit_arenas()` runs on the launcher: it sets MALLOC_ARENA_MAX for worker processes the local
runner starts (they inherit the environment), applies the same limit to this process and trims
it every few seconds (the in-process runner holds and frees the shuffles there).
Remote workers get it from their image (docker/Dockerfile.*: ENV MALLOC_ARENA_MAX=2).
`release_free_memory()` runs in a worker after a chunk.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter number


def _glibc():
    try:
        name = ctypes.util.find_library("c")
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    if libc is None or not hasattr(libc, "malloc_trim") or not hasattr(libc, "mallopt"):
        return None
    return libc


_LIBC = _glibc()


TRIM_INTERVAL_S = 5.0
_trimmer: threading.Thread | None = None


def limit_arenas(arenas: int = ARENAS) -> None:
    """MALLOC_ARENA_MAX for child processes (unless the user set it) and for this one, and a
    daemon thread returning this process's free memory every few seconds: the local runner's
    main process decodes and frees every shuffle's elements and otherwise keeps the high-water
    mark."""
    global _trimmer  # noqa: PLW0603 - one trimmer per process, started on first use
    os.environ.setdefault("MALLOC_ARENA_MAX", str(arenas))
    if _LIBC is None:
        return
    _LIBC.mallopt(_M_ARENA_MAX, int(os.environ["MALLOC_ARENA_MAX"]))
    if _trimmer is None:
        _trimmer = threading.Thread(target=_trim_forever, name="curate-malloc-trim", daemon=True)
        _trimmer.start()


def _trim_forever() -> None:
    while True:
        time.sleep(TRIM_INTERVAL_S)
        release_free_memory()


def release_free_memory() -> None:
    """Return the allocator's free pages to the OS (after a chunk: ~ms against seconds)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)

"""The allocator settings the launcher passes to local Beam workers (pipelines.allocator)."""
from __future__ import annotations

import os
import subprocess
import sys

from curate.pipelines import allocator


def test_arena_limit_reaches_child_processes_and_respects_the_user(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    allocator.limit_arenas()
    assert os.environ["MALLOC_ARENA_MAX"] == str(allocator.ARENAS)
    child = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('MALLOC_ARENA_MAX'))"],
                           capture_output=True, text=True, check=True)
    assert child.stdout.strip() == str(allocator.ARENAS)  # what a local worker process inherits

    monkeypatch.setenv("MALLOC_ARENA_MAX", "7")  # a user's own setting wins
    allocator.limit_arenas()
    assert os.environ["MALLOC_ARENA_MAX"] == "7"


def test_release_free_memory_is_safe_to_call_anywhere():
    data = [bytes(1000) for _ in range(10_000)]
    del data
    allocator.release_free_memory()  # glibc: malloc_trim; elsewhere a no-op


def test_the_launcher_trims_itself_in_one_background_thread(monkeypatch):
    import threading

    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    allocator.limit_arenas()
    allocator.limit_arenas()
    trimmers = [t for t in threading.enumerate() if t.name == "curate-malloc-trim"]
    if allocator._LIBC is not None:
        assert len(trimmers) == 1 and trimmers[0].daemon
    else:
        assert not trimmers

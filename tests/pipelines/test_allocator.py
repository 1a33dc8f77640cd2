"""The allocator setting the launcher passes to local Beam workers (pipelines.allocator)."""
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

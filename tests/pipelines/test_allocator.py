"""The allocator settings the launcher passes to local Beam workers (pipelines.allocator)."""
from __future__ import annotations

import os
import platform
import subprocess
import sys

from curate.pipelines import allocator


def test_settings_reach_child_processes_and_respect_the_user(monkeypatch):
    for name in allocator.WORKER_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "7")  # a user's own setting wins
    applied = allocator.tune_allocator()
    assert "MALLOC_TRIM_THRESHOLD_" not in applied
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "7"
    for name, value in allocator.WORKER_ENV.items():
        if name != "MALLOC_TRIM_THRESHOLD_":
            assert os.environ[name] == value
    names = sorted(allocator.WORKER_ENV)
    child = subprocess.run([sys.executable, "-c", f"import os; print([os.environ.get(n) for n in {names!r}])"],
                           capture_output=True, text=True, check=True)  # what a local worker inherits
    assert child.stdout.strip() == str([os.environ[n] for n in names])
    if sys.platform == "linux" and platform.libc_ver()[0] == "glibc":
        # glibc: the launcher's own process got the malloc ones through mallopt
        assert set(applied) == {"MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_"}


def test_a_second_call_changes_nothing(monkeypatch):
    for name in allocator.WORKER_ENV:
        monkeypatch.delenv(name, raising=False)
    allocator.tune_allocator()
    assert allocator.tune_allocator() == {}  # every variable is set now: nothing to apply

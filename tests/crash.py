"""Simulated kills for fault tests: a stand-in for a function that dies on its n-th call."""
from __future__ import annotations


def crash_on_call(real, n):
    """Call `real` until the n-th call, which raises KeyboardInterrupt (what a kill leaves)."""
    calls = []

    def crash(*args, **kwargs):
        calls.append(args)
        if len(calls) >= n:
            raise KeyboardInterrupt("simulated kill during publish")
        return real(*args, **kwargs)
    return crash

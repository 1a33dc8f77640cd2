"""An exclusive lock on a run directory, so two `curate run`s never write the same output.

`fcntl.flock` on DIR/_curate.lock: the kernel drops the lock when the holder dies (even by
SIGKILL), so a crashed run never leaves a stale lock behind. A replacing publish swaps DIR with a
new directory; the lock file is hard-linked into the new one first, so the lock held is still
DIR's own afterwards (pipelines/publish.py). Object-store outputs (gs://...) have no such
primitive; there the lock is skipped (documented limitation).
"""
from __future__ import annotations

import os

from curate.orchestration.errors import CurateError
from curate.pools.rundir import LOCK as LOCK_NAME


class RunLock:
    """Context manager; raises CurateError (one line) when another process holds the lock."""

    def __init__(self, run_dir: str):
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, LOCK_NAME)
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        if "://" in self.run_dir:
            return self
        import fcntl

        os.makedirs(self.run_dir, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise CurateError(f"{self.run_dir} is being written by another curate run (pid {holder}); "
                              "wait for it to finish or choose another --output") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None

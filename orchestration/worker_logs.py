"""Keep Beam worker subprocess chatter off the terminal.

With --direct_running_mode=multi_processing the FnApiRunner starts `python -m
apache_beam.runners.worker.sdk_worker_main` children that inherit stderr and log every
bundle at INFO there (the runner passes them no pipeline options, so no Beam flag lowers the
level). While the pipeline runs, fd 2 is pointed at a pipe; a thread drops lines that look
like Python logging records at DEBUG/INFO/WARNING level and holds the rest (errors,
tracebacks) until the pipeline ends: a failure that the CLI reports as one line (disk full,
read-only folder: `errors.environment_failure`) drops them, any other outcome shows them.
`hold_beam_errors` does the same for the tracebacks Beam logs in this process. The context
yields a stream on the real stderr for progress. CURATE_DEBUG=1 turns the filter off.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import threading
from contextlib import contextmanager

NOISE = re.compile(rb"^(DEBUG|INFO|WARNING):[\w.<>-]+:")


# Held worker output is shown anyway once it passes this size, so memory stays bounded.
HOLD_LIMIT_BYTES = 256 * 1024


class _HeldLines:
    """Worker lines kept until the pipeline's outcome decides whether they are shown."""

    def __init__(self, out):
        self.out = out
        self.lines: list[bytes] = []
        self.size = 0
        self.lock = threading.Lock()
        self.shown: bool | None = None  # decided at the end; lines arriving later follow it

    def _write(self, data: bytes) -> None:
        try:
            self.out.write(data)
            self.out.flush()
        except (OSError, ValueError):
            pass  # stderr gone or full: keep draining the pipe, or the workers block on it

    def add(self, line: bytes) -> None:
        with self.lock:
            if self.shown is not None:  # a worker still writing after the pipeline ended
                if self.shown:
                    self._write(line)
                return
            self.lines.append(line)
            self.size += len(line)
            if self.size > HOLD_LIMIT_BYTES:
                self._release()

    def passthrough(self, data: bytes) -> None:
        with self.lock:
            self._write(data)

    def _release(self) -> None:
        if self.lines:
            self._write(b"".join(self.lines))
        self.lines, self.size = [], 0

    def finish(self, show: bool) -> None:
        with self.lock:
            if show:
                self._release()
            self.lines, self.size = [], 0
            self.shown = show


def _forward(read_fd: int, held: _HeldLines) -> None:
    buffer = b""
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        while True:
            chunk = pipe.read(65536)
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if not NOISE.match(line):
                    held.add(line + b"\n")
            if buffer and b"\r" in buffer:  # a progress line rewritten in place: pass it on now
                held.passthrough(buffer)
                buffer = b""
    if buffer and not NOISE.match(buffer):
        held.add(buffer)


def _shown(exc: BaseException | None) -> bool:
    """Show held error output unless the run failed in a way the CLI reports in one line."""
    if exc is None:
        return True
    from curate.orchestration.errors import environment_failure

    return environment_failure(exc) is None


@contextmanager
def quiet_worker_stderr(enabled: bool):
    """Filter fd 2 while the block runs; yields a text stream on the original stderr."""
    if not enabled or os.environ.get("CURATE_DEBUG") == "1":
        yield sys.stderr
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield sys.stderr  # no real stderr (embedded use): nothing to filter
        return
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    raw_out = os.fdopen(os.dup(saved), "wb", buffering=0)
    held = _HeldLines(raw_out)
    thread = threading.Thread(target=_forward, args=(read_fd, held), name="curate-stderr", daemon=True)
    thread.start()
    text_out = os.fdopen(os.dup(saved), "w", buffering=1)
    failure = None
    try:
        yield text_out
    except BaseException as exc:
        failure = exc
        raise
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)  # closes our end of the pipe; EOF once the workers are gone too
        os.close(saved)
        thread.join(timeout=5)
        held.finish(_shown(failure))
        text_out.close()
        if not thread.is_alive():  # else a worker still writes: the thread keeps forwarding
            raw_out.close()


# Loggers through which Beam reports a failing step in this process: the step's traceback
# (runners.common) and, in multi_processing mode, the workers' error records (local_job_service).
BEAM_ERROR_LOGGERS = ("apache_beam.runners.common", "apache_beam.runners.portability.local_job_service",
                      "apache_beam.runners.worker.sdk_worker")


class _Holding(logging.Handler):
    def __init__(self):
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) < 1000:  # bounded: a runaway stream of errors is cut, not kept
            self.records.append(record)


@contextmanager
def hold_beam_errors():
    """Hold what Beam logs about a failing step until the block ends: dropped when the block
    fails with an environment failure (reported in one line), re-emitted otherwise."""
    if os.environ.get("CURATE_DEBUG") == "1":
        yield
        return
    loggers = [logging.getLogger(name) for name in BEAM_ERROR_LOGGERS]
    handler = _Holding()
    saved = [(lg, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.propagate = False
        lg.addHandler(handler)
    failure = None
    try:
        yield
    except BaseException as exc:
        failure = exc
        raise
    finally:
        for lg, propagate in saved:
            lg.removeHandler(handler)
            lg.propagate = propagate
        if _shown(failure):
            for record in handler.records:
                logging.getLogger(record.name).handle(record)

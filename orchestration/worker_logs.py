"""Keep Beam worker subprocess chatter off the terminal.

With --direct_running_mode=multi_processing the FnApiRunner starts `python -m
apache_beam.runners.worker.sdk_worker_main` children that inherit stderr and log every
bundle at INFO there (the runner passes them no pipeline options, so no Beam flag lowers the
level). While the pipeline runs, fd 2 is pointed at a pipe; a thread forwards everything
except lines that look like Python logging records at DEBUG/INFO/WARNING level, so errors
and tracebacks still show. The context yields a stream on the real stderr for progress.
CURATE_DEBUG=1 turns the filter off.
"""
from __future__ import annotations

import os
import re
import sys
import threading
from contextlib import contextmanager

NOISE = re.compile(rb"^(DEBUG|INFO|WARNING):[\w.<>-]+:")


def _forward(read_fd: int, out) -> None:
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
                    out.write(line + b"\n")
            if buffer and b"\r" in buffer:  # a progress line rewritten in place: pass it on now
                out.write(buffer)
                buffer = b""
            out.flush()
    if buffer and not NOISE.match(buffer):
        out.write(buffer)
        out.flush()


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
    thread = threading.Thread(target=_forward, args=(read_fd, raw_out), name="curate-stderr", daemon=True)
    thread.start()
    text_out = os.fdopen(os.dup(saved), "w", buffering=1)
    try:
        yield text_out
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)  # closes our end of the pipe; EOF once the workers are gone too
        os.close(saved)
        thread.join(timeout=5)
        text_out.close()

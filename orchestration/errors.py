"""The one exception type the CLI turns into a one-line error message, and the recognition of
pipeline failures that are the machine's, not the code's (disk full, read-only folder...)."""
from __future__ import annotations

import errno
import re
from dataclasses import dataclass


class CurateError(Exception):
    """A user-facing error: bad input, bad configuration, impossible request."""


# errnos that say the environment refused an operation (space, quota, permissions, a path that
# is not a folder, a file removed underneath): the user can act on them. Others (EBADF, EINVAL,
# ...) point at a bug and keep their traceback.
ENVIRONMENT_ERRNOS = frozenset(
    getattr(errno, name) for name in (
        "ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EACCES", "EPERM", "ENOTDIR", "EISDIR", "ENOENT",
        "EIO", "EMFILE", "ENFILE", "ENAMETOOLONG", "ESTALE")
    if hasattr(errno, name))

# Beam tags an exception raised in a DoFn with the step it ran in; from a worker subprocess
# only the text arrives (the whole traceback), so the OSError is recognised from its last line.
_STEP = re.compile(r"\[while running '([^']*)'\]")
_OS_ERROR_LINE = re.compile(
    r"^(?:[\w.]+\.)?\w*Error: \[Errno (\d+)\] (.+?)(?:: '((?:[^'\\]|\\.)*)')?(?: \[while running '[^']*'\])?\s*$",
    re.MULTILINE)


@dataclass(frozen=True)
class EnvironmentFailure:
    """An OSError raised inside a pipeline stage, as far as its text tells."""

    errno: int
    reason: str  # strerror, e.g. "No space left on device"
    filename: str | None  # the path the OS named, when it named one
    step: str | None  # the Beam step that raised it


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def environment_failure(exc: BaseException) -> EnvironmentFailure | None:
    """The OS refusal behind a failed pipeline run, or None when it is anything else.

    Only failures Beam tagged with a step count (the run got as far as the pipeline); an
    OSError before that is already one line in the CLI.
    """
    texts = [str(e) for e in _chain(exc)]
    step = next((m.group(1) for t in texts for m in [_STEP.search(t)] if m), None)
    if step is None:
        return None
    for e in _chain(exc):  # in-process: the original OSError is in the chain
        if isinstance(e, OSError) and e.errno in ENVIRONMENT_ERRNOS:
            return EnvironmentFailure(e.errno, e.strerror or str(e), e.filename, step)
    for text in texts:  # from a worker process: only its traceback text
        for m in _OS_ERROR_LINE.finditer(text):
            code = int(m.group(1))
            if code in ENVIRONMENT_ERRNOS:
                return EnvironmentFailure(code, m.group(2).strip(), m.group(3), step)
    return None


def pipeline_failure_message(exc: BaseException, output: str, cache_dir: str | None) -> str | None:
    """One line for a pipeline run that the environment stopped (None: not such a failure).

    Names the file when the OS named it, else the folder being written (the cache for the
    cache-writing steps, the run's output otherwise), the reason and the step.
    """
    failure = environment_failure(exc)
    if failure is None:
        return None
    where = failure.filename
    if not where:
        where = cache_dir if cache_dir and "cache" in (failure.step or "").lower() else output
    code = errno.errorcode.get(failure.errno, str(failure.errno))
    return (f"{where}: {failure.reason} ({code}, in step {failure.step}); the run stopped and nothing "
            f"was published to {output}: fix that and run the same command again")

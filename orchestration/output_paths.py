"""Checks that an output path can be written, made before a command does any work.

A probe or a replay runs for minutes; finding at the end that `-o` names a folder, or a
folder that cannot be written, lost all of it. Standard library only (command modules use it).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from curate.orchestration.errors import CurateError


def unwritable_dir(directory: str | os.PathLike) -> str | None:
    """Why `directory` cannot take new files (created if missing), or None when it can.

    Tried with a real file, not os.access: that says yes to root on a read-only mount and
    no to an ACL that allows. Object-store URIs are not checked (no cheap, honest test).
    """
    if "://" in str(directory):
        return None
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return _write_probe(Path(directory))


def _write_probe(directory: Path) -> str | None:
    """Create and remove one file in the existing `directory`: None, or why it failed."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".curate-write-check-", dir=directory)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_file(path: str | os.PathLike, option: str) -> None:
    """CurateError (one line) unless `path` can be written as a file: not a folder, and its
    folder (or the nearest one that exists, where the command creates the rest) writable.
    Nothing is created."""
    if "://" in str(path):
        return
    p = Path(path)
    if p.is_dir():
        raise CurateError(f"{option} {path} is a folder; give a file name")
    base = _existing_ancestor(p.parent)
    if not base.is_dir():
        raise CurateError(f"{option} {path}: {base} is a file, not a folder")
    why = _write_probe(base)
    if why:
        raise CurateError(f"{option} {path}: cannot write into {base} ({why})")


def check_output_dir(path: str | os.PathLike, option: str) -> None:
    """CurateError unless `path` is a folder or can become one (nothing is created)."""
    if "://" in str(path):
        return
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CurateError(f"{option} {path} exists and is not a folder")
    base = _existing_ancestor(p)
    if not base.is_dir():
        raise CurateError(f"{option} {path}: {base} is a file, not a folder")
    why = _write_probe(base)
    if why:
        raise CurateError(f"{option} {path}: cannot write into {base} ({why})")

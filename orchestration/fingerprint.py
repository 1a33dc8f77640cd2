"""Run fingerprints: what decides whether an earlier run's result can be reused.

fingerprint = sha256(config + input fingerprints + code version). The code version is the
curate package version plus a hash of the source of the packages that compute results
(pipelines, scorers, pools), so editing a scorer invalidates old results.

An input's fingerprint is the SHA-256 of its whole content, streamed in 1 MiB chunks (a hash
of the first MiB plus size and mtime reused a run whose input had changed after its first
MiB). Hashing every input on every run costs a read of it, so local files' hashes are kept in
CACHE_DIR/input-sha256.json under their stat (device, inode, size, mtime and ctime in ns):
only a hint to skip re-hashing. ctime is set by the kernel on every write and on every mtime
change, so a file edited with its size and mtime put back no longer matches; an entry made
within RACY_SECONDS of the file's last change is not kept (a second edit in the same clock
tick would leave the stat unchanged); every entry carries a checksum and one that does not
match is hashed again.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from functools import lru_cache
from pathlib import Path

RESULT_PACKAGES = ("pipelines", "scorers", "pools")


@lru_cache(maxsize=1)
def code_version() -> str:
    from importlib import import_module
    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("curate")
    except PackageNotFoundError:
        release = "unknown"
    digest = hashlib.sha256()
    for package in RESULT_PACKAGES:
        # the folders install as curate.<package>; paths below stay relative to the source root
        root = Path(import_module(f"curate.{package}").__file__).parent
        # sources and shipped data (e.g. the default quality reference) decide results
        for path in sorted([*root.rglob("*.py"), *root.rglob("data/*.json")]):
            digest.update(str(path.relative_to(root.parent)).encode())
            digest.update(path.read_bytes())
    return f"{release}+{digest.hexdigest()[:12]}"


def _sha(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def run_fingerprint(config: dict, inputs: list[dict]) -> dict:
    """{"config", "inputs", "code", "run"}: the first three hashed, `run` over all of them."""
    parts = {"config": _sha(config), "inputs": _sha(inputs), "code": code_version()}
    return {**parts, "run": _sha(parts)}


HASH_CACHE_FILE = "input-sha256.json"
HASH_CACHE_FORMAT = "curate-input-sha256/1"
RACY_SECONDS = 2.0


def _local_stat(path: str) -> dict | None:
    if "://" in path:
        return None  # object stores: no ctime to trust, always hashed
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}


def _entry_check(path: str, stat: dict, hashes: dict) -> str:
    body = json.dumps([path, stat, hashes], sort_keys=True)
    return hashlib.blake2b(body.encode("utf-8"), digest_size=16).hexdigest()


class InputHashCache:
    """CACHE_DIR/input-sha256.json: {path: {"stat", "hashes", "check"}}; a hint, never the truth.

    Unreadable or foreign content is ignored with a warning and rewritten; writes go through
    a temporary file and a rename, so a reader never sees half a file (concurrent runs: the
    last writer wins, and a lost entry only costs a re-hash).
    """

    def __init__(self, cache_dir: str | None):
        self.path = (os.path.join(cache_dir, HASH_CACHE_FILE)
                     if cache_dir and "://" not in cache_dir else None)
        self.entries: dict = {}
        self.dirty = False
        if self.path and os.path.exists(self.path):
            try:
                with open(self.path, encoding="utf-8") as fh:
                    data = json.load(fh)
                if not (isinstance(data, dict) and data.get("format") == HASH_CACHE_FORMAT
                        and isinstance(data.get("entries"), dict)):
                    raise ValueError("not a curate input-hash cache")
                self.entries = data["entries"]
            except (OSError, ValueError) as exc:
                _warn(f"input hash cache {self.path} is unreadable ({type(exc).__name__}); "
                      "inputs are hashed again and it is rewritten")
                self.dirty = True

    def get(self, path: str, stat: dict | None) -> dict | None:
        entry = self.entries.get(path)
        if stat is None or not isinstance(entry, dict) or entry.get("stat") != stat:
            return None
        hashes = entry.get("hashes")
        if not isinstance(hashes, dict) or entry.get("check") != _entry_check(path, stat, hashes):
            _warn(f"input hash cache entry for {path} fails its checksum; hashing the file again")
            return None
        return hashes

    def put(self, path: str, stat: dict, hashes: dict, hashed_from_ns: int) -> None:
        # racily clean: changed so recently that another change in the same clock tick could
        # keep this stat; hash it again next time rather than trust it
        if max(stat["mtime_ns"], stat["ctime_ns"]) >= hashed_from_ns - int(RACY_SECONDS * 1e9):
            return
        self.entries[path] = {"stat": stat, "hashes": hashes, "check": _entry_check(path, stat, hashes)}
        self.dirty = True

    def save(self) -> None:
        if not (self.path and self.dirty):
            return
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump({"format": HASH_CACHE_FORMAT, "entries": self.entries}, fh, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError as exc:  # a hint: a run never fails for want of it
            _warn(f"could not write the input hash cache {self.path}: {exc}")
            try:
                os.unlink(tmp)
            except OSError:
                pass


def input_fingerprint(path: str, cache: InputHashCache | None = None) -> dict:
    """path, size, mtime, sha256_first_mb and sha256 (whole content) of one input file."""
    from curate.pipelines.input_hash import content_hashes, size_and_mtime

    size, mtime = size_and_mtime(path)
    stat = _local_stat(path)
    hashes = cache.get(path, stat) if cache is not None else None
    if hashes is None:
        started_ns = time.time_ns()
        hashes = content_hashes(path)
        after = _local_stat(path)
        if cache is not None and stat is not None and after == stat:  # unchanged while read
            cache.put(path, stat, hashes, started_ns)
    return {"path": path, "size": size, "mtime": mtime,
            "sha256_first_mb": hashes["sha256_first_mb"], "sha256": hashes["sha256"]}


def input_fingerprints(files, cache_dir: str | None = None) -> list[dict]:
    """One fingerprint per InputFile (source, kind, path, size, mtime, sha256_first_mb, sha256),
    whole-content hashes looked up in / added to CACHE_DIR's hint file."""
    cache = InputHashCache(cache_dir)
    out = [{"source": f.source, "kind": f.kind, **input_fingerprint(f.path, cache)} for f in files]
    cache.save()
    return out


def _warn(message: str) -> None:
    print(f"curate run: warning: {message}", file=sys.stderr)

"""Progress records that work under any runner: each DoFn instance (in-process thread or
worker subprocess alike) rewrites one small JSON file `<stage>-<uuid>.json` with its
cumulative counts, at most twice a second (every 15 s on an object store), through Beam
FileSystems. The launcher polls the folder (`ProgressReader`) and sums. Bundle retries may over-count a little: it is progress,
not accounting (the accounting is Beam counters)."""
from __future__ import annotations

import json
import time
import uuid

from apache_beam.io.filesystems import FileSystems

from curate.pipelines import fsutil

_MIN_INTERVAL_S = 0.5
# object stores rate-limit writes to one object (GCS: ~1 per second) and charge each one, and a
# remote job has many DoFn instances: there a file is rewritten at most every 15 s, bundle
# ends included (the launcher's progress lags by that much; the accounting does not)
_MIN_INTERVAL_URL_S = 15.0


class ProgressWriter:
    """Cumulative counts of one DoFn instance; call `add` often, `flush` in finish_bundle."""

    def __init__(self, directory: str | None, stage: str):
        self.directory, self.stage = directory, stage
        self.records = 0
        self.bytes = 0
        self._path = None
        self._last = 0.0
        self._remote = bool(directory) and "://" in directory
        self._interval = _MIN_INTERVAL_URL_S if self._remote else _MIN_INTERVAL_S

    def add(self, records: int = 0, nbytes: int = 0) -> None:
        self.records += records
        self.bytes += nbytes
        if self.directory and time.monotonic() - self._last >= self._interval:
            self.flush()

    def flush(self) -> None:
        if not self.directory:
            return
        if self._remote and self._path is not None and time.monotonic() - self._last < self._interval:
            return
        if self._path is None:
            self._path = FileSystems.join(self.directory, f"{self.stage}-{uuid.uuid4().hex}.json")
        self._last = time.monotonic()
        try:
            fsutil.write_bytes(self._path, json.dumps(
                {"stage": self.stage, "records": self.records, "bytes": self.bytes}).encode("utf-8"))
        except Exception:  # noqa: BLE001 - progress must never fail a run
            pass


class ProgressReader:
    """Sums the records in a progress folder; remembers the last good value of each file
    (a file being rewritten may read as empty for a moment)."""

    def __init__(self, directory: str):
        self.directory = directory
        self._seen: dict[str, dict] = {}

    def poll(self) -> dict[str, dict]:
        """{stage: {"records": n, "bytes": b, "workers": k}}."""
        try:
            metas = FileSystems.match([FileSystems.join(self.directory, "*.json")])[0].metadata_list
        except Exception:  # noqa: BLE001 - folder not there yet
            metas = []
        for meta in metas:
            try:
                self._seen[meta.path] = json.loads(fsutil.read_bytes(meta.path))
            except Exception:  # noqa: BLE001
                continue
        out: dict[str, dict] = {}
        for rec in self._seen.values():
            s = out.setdefault(rec["stage"], {"records": 0, "bytes": 0, "workers": 0})
            s["records"] += int(rec.get("records", 0))
            s["bytes"] += int(rec.get("bytes", 0))
            s["workers"] += 1
        return out

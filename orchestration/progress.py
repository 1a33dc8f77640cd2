"""Progress of a running `curate run` on stderr: documents processed, rate and ETA per stage.

Workers leave cumulative counts in small files (pipelines/progress.py), which works the same
whether Beam runs them in this process (FnApiRunner in-memory) or in subprocesses
(multi_processing) or elsewhere with a shared filesystem; a thread here polls and renders.
Where nothing arrives (a remote runner without access to the folder) the display just stays
silent: progress degrades, the run does not.

Modes: "tty" (one line rewritten in place, 4 updates/s), "lines" (a plain line every 10 s,
for logs), "json" (one JSON object per line), "quiet" (nothing).
"""
from __future__ import annotations

import json
import sys
import threading
import time
from contextlib import contextmanager

STAGES = {"read": "reading", "minhash": "minhash", "embed": "embedding", "write": "writing"}


def choose_mode(quiet: bool, as_json: bool, stream=None) -> str:
    stream = stream or sys.stderr
    if quiet:
        return "quiet"
    if as_json:
        return "json"
    return "tty" if getattr(stream, "isatty", lambda: False)() else "lines"


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def snapshot(state: dict, elapsed: float, total_bytes: int, embed_elapsed: float | None = None,
             embed_base: int = 0, total_rows: int | None = None) -> dict:
    """Progress numbers from the summed worker records: per-stage counts, rates, read fraction, ETA.

    ``embed_elapsed``: seconds since embedded documents were first seen, ``embed_base`` how
    many there were then (the embedding stage, when on, is the slow one: its rate over that
    window, from 2 s on, and an ETA against the documents that reached MinHash, an upper
    bound of what is left after dedup, are reported). ``total_rows``: rows a writing stage
    (`curate materialize`'s shards, stage "write") is expected to write, for its fraction.
    """
    read = state.get("read", {"records": 0, "bytes": 0})
    sign = state.get("minhash", {"records": 0})
    embed = state.get("embed", {"records": 0})
    rate = read["records"] / elapsed if elapsed > 0 else 0.0
    fraction = min(1.0, read["bytes"] / total_bytes) if total_bytes else None
    eta = None
    if fraction and 0 < fraction < 1:
        eta = elapsed * (1 - fraction) / fraction
    elif fraction == 1:
        eta = 0.0
    stage = "embed" if embed.get("records") else "minhash" if sign.get("records") else "read"
    out = {"event": "progress", "stage": stage, "elapsed_s": round(elapsed, 1),
           "records_read": read["records"], "read_fraction": None if fraction is None else round(fraction, 4),
           "read_rate_per_s": round(rate, 1), "read_eta_s": None if eta is None else round(eta, 1),
           "docs_signed": sign.get("records", 0)}
    if embed.get("records"):
        done, upper = embed["records"], max(sign.get("records", 0), embed["records"])
        embed_rate = ((done - embed_base) / embed_elapsed
                      if embed_elapsed and embed_elapsed >= 2 and done > embed_base else None)
        out.update(docs_embedded=done, embed_rate_per_s=None if embed_rate is None else round(embed_rate, 1),
                   embed_eta_s=None if not embed_rate else round((upper - done) / embed_rate, 1))
    written = state.get("write", {}).get("records", 0)
    if written or total_rows:
        out.update(stage="write" if written else stage, rows_written=written, rows_total=total_rows)
    return out


def render(snap: dict) -> str:
    pct = "" if snap["read_fraction"] is None else f" {snap['read_fraction']:.0%}"
    line = (f"[{_fmt_duration(snap['elapsed_s'])}] read {snap['records_read']:,} records{pct}"
            f" at {snap['read_rate_per_s']:,.0f}/s, ETA {_fmt_duration(snap['read_eta_s'])}")
    if snap["docs_signed"]:
        line += f"; minhash {snap['docs_signed']:,} docs"
    if snap.get("docs_embedded"):
        rate = snap["embed_rate_per_s"]
        line += (f"; embedded {snap['docs_embedded']:,} of <= {snap['docs_signed']:,} docs"
                 f"{'' if rate is None else f' at {rate:,.1f}/s'}, ETA <= {_fmt_duration(snap['embed_eta_s'])}")
    if snap.get("rows_written") or snap.get("rows_total"):
        total = snap.get("rows_total")
        line += f"; wrote {snap['rows_written']:,}" + (f" of ~{total:,}" if total else "") + " rows"
    return line


class ProgressMonitor:
    """Polls a progress folder on a daemon thread and writes to `stream` in the given mode."""

    def __init__(self, mode: str, total_bytes: int, stream=None, interval_s: float | None = None,
                 total_rows: int | None = None):
        self.mode, self.total_bytes, self.total_rows = mode, total_bytes, total_rows
        self.stream = stream or sys.stderr
        self.interval_s = interval_s or (0.25 if mode == "tty" else 1.0)
        self.line_every_s = 10.0 if mode == "lines" else 0.0
        self.heartbeat_s = 0.0 if mode == "tty" else 10.0
        self.last: dict | None = None
        self._last_counts: tuple | None = None
        self._last_emit = 0.0

    @contextmanager
    def watch(self, progress_dir: str, stream=None):
        if stream is not None:
            self.stream = stream
        if self.mode == "quiet":
            yield
            return
        from curate.pipelines.progress import ProgressReader

        reader, stop = ProgressReader(progress_dir), threading.Event()
        start = time.monotonic()

        embed_start: list[tuple[float, int]] = []

        def emit(final: bool = False):
            state = reader.poll()
            embedded = state.get("embed", {}).get("records", 0)
            if embedded and not embed_start:
                embed_start.append((time.monotonic(), embedded))  # the rate counts from here
            t0, base = embed_start[0] if embed_start else (None, 0)
            snap = snapshot(state, time.monotonic() - start, self.total_bytes,
                            None if t0 is None else time.monotonic() - t0, base, self.total_rows)
            counts = (snap["records_read"], snap["docs_signed"], snap.get("docs_embedded"), snap.get("rows_written"))
            stale = time.monotonic() - self._last_emit < self.heartbeat_s
            if not final and self.last is not None and counts == self._last_counts and stale:
                return  # nothing new: no line (tty still ticks for the clock)
            self.last, self._last_counts, self._last_emit = snap, counts, time.monotonic()
            try:
                if self.mode == "json":
                    self.stream.write(json.dumps(snap) + "\n")
                elif self.mode == "tty":
                    self.stream.write("\r\033[K" + render(snap) + ("\n" if final else ""))
                else:
                    self.stream.write(render(snap) + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                stop.set()  # stderr closed: stop reporting, keep running

        def loop():
            last_line = 0.0
            while not stop.wait(self.interval_s):
                now = time.monotonic()
                if self.mode == "lines" and now - last_line < self.line_every_s:
                    continue
                last_line = now
                emit()

        thread = threading.Thread(target=loop, name="curate-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=2)
            emit(final=True)

"""Proof on a portable runner with workers that share nothing (issue 16 item 3): `curate run`
through Beam's PortableRunner, a local job service and an EXTERNAL worker pool whose venv was
built only from curate's sdist, gives the same pools as the FnApiRunner on the same input.

Slow: the first run builds the worker venv (~3 min; cached under /tmp by sdist content), then
two curate runs. `make test-portable` runs it."""
from __future__ import annotations

import gzip
import json
import socket
import sys
import time
from pathlib import Path

import pytest

from tests import portable_runner as portable

pytestmark = pytest.mark.slow

CORPORA = ("c4_sample_c.jsonl.gz", "common_crawl_raw.jsonl.gz", "news_articles.jsonl.gz", "health_tweets.jsonl.gz")
PER_CORPUS = 100


def _small_input(corpora_dir: Path, folder: Path) -> list[Path]:
    """~400 real documents in two files, plus known exact copies (new ids) and a malformed line,
    so dedup, filtering and dead letters all run on the workers."""
    missing = [name for name in CORPORA if not (corpora_dir / name).is_file()]
    if missing:
        pytest.skip(f"{', '.join(missing)} absent from {corpora_dir}")
    records = []
    for name in CORPORA:
        with gzip.open(corpora_dir / name, "rt", encoding="utf-8") as fh:
            for i, line in zip(range(PER_CORPUS), fh):
                doc = json.loads(line)
                records.append({"id": f"{name.split('.')[0]}-{i}", "text": doc.get("text")})
    copies = [{"id": f"copy-{r['id']}", "text": r["text"]} for r in records[::40]]
    folder.mkdir(parents=True)
    half = len(records) // 2
    first, second = folder / "part-a.jsonl", folder / "part-b.jsonl.gz"
    first.write_text("".join(json.dumps(r) + "\n" for r in records[:half]) + "{not json\n", encoding="utf-8")
    with gzip.open(second, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records[half:] + copies)
    return [first, second]


def test_portable_runner_with_external_workers_gives_the_fnapi_pools(corpora_dir, tmp_path):
    inputs = _small_input(corpora_dir, tmp_path / "input")
    t0 = time.monotonic()
    venv = portable.worker_venv(portable.build_sdist(tmp_path / "sdist"))
    t1 = time.monotonic()

    reference = portable.curate_run(inputs, tmp_path / "fnapi-run", [], tmp_path / "ws-fnapi")
    assert reference.returncode == 0, reference.stderr[-3000:]
    t2 = time.monotonic()
    with portable.portable_services(venv, tmp_path / "services") as flags:
        run = portable.curate_run(inputs, tmp_path / "portable-run", flags, tmp_path / "ws-portable")
    t3 = time.monotonic()
    assert run.returncode == 0, run.stderr[-3000:]
    print(f"\nworker venv {t1 - t0:.0f} s, FnApiRunner run {t2 - t1:.0f} s, PortableRunner run {t3 - t2:.0f} s")

    expected = portable.pool_ids(tmp_path / "fnapi-run")
    assert sum(len(ids) for ids in expected.values()) > 300  # a real run, not an empty one
    assert portable.pool_ids(tmp_path / "portable-run") == expected

    ref_manifest = json.loads((tmp_path / "fnapi-run" / "manifest.json").read_text())
    manifest = json.loads((tmp_path / "portable-run" / "manifest.json").read_text())
    assert manifest["counts"] == ref_manifest["counts"]
    assert manifest["reconciliation"]["holds"]
    assert manifest["counts"]["removed"].get("exact", 0) >= 10  # the planted copies
    assert manifest["counts"]["dead_letter"]  # the malformed line
    assert manifest["pipeline_options"]["runner"] == "PortableRunner"
    pool_log = (tmp_path / "services" / "worker_pool.log").read_text()
    assert "Starting worker with command" in pool_log  # the bundles ran on the EXTERNAL pool's workers


def test_services_are_stopped_when_the_run_fails(tmp_path):
    """Everything the harness started is gone after an exception inside it (this checkout's
    venv serves as the services' venv here: only the stopping is tested)."""
    ports = []
    with pytest.raises(RuntimeError, match="planted"):
        with portable.portable_services(Path(sys.prefix), tmp_path) as flags:
            ports = [int(f.rsplit(":", 1)[1]) for f in flags if f.startswith(("--job_endpoint", "--environment_config"))]
            raise RuntimeError("planted failure")
    assert len(ports) == 2
    for port in ports:
        with socket.socket() as s:
            assert s.connect_ex(("localhost", port)) != 0, f"port {port} is still served"

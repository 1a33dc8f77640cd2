"""Fault tests (the reliability issue's item 6): stale reuse and caches that cannot be trusted.

- An input changed after its first MiB with its size and mtime kept was reused as the same
  run: fingerprints now hash the whole content (size+mtime+ctime only a hint to skip it).
- A corrupt signature-cache file failed every later run: it is moved aside with a warning
  and its signatures are recomputed (poisoned rows: tests/pipelines/test_stage_near_dedup.py).
"""
from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest

from curate.orchestration import fingerprint as fpmod
from curate.pipelines.inputs import InputFile
from tests.orchestration.curate_runs import pool_rows, random_text, run_cli, write_jsonl

MIB = 1 << 20


def _corpus_over_one_mib(path: Path) -> Path:
    rng = random.Random(11)
    records, size = [], 0
    while size < 1.3 * MIB:
        records.append({"id": f"d{len(records)}", "text": random_text(rng, 90)})
        size += len(json.dumps(records[-1])) + 1
    write_jsonl(path, records)
    return path


def _break_a_record_after_the_first_mib(path: Path) -> None:
    """`"text"` -> `"Text"` in one record past the first MiB (that record loses its text),
    with the size, mtime and atime put back as they were."""
    st = os.stat(path)
    data = bytearray(path.read_bytes())
    at = data.index(b'"text"', MIB + 100)
    data[at + 1 : at + 2] = b"T"
    time.sleep(0.05)  # past the clock tick of the last write, so ctime moves
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert after.st_ctime_ns != st.st_ctime_ns


def _fingerprint(path: Path, cache_dir: Path | None) -> dict:
    (fp,) = fpmod.input_fingerprints([InputFile(str(path), str(path), "jsonl")],
                                     str(cache_dir) if cache_dir else None)
    return fp


def test_whole_content_hash_and_its_size_mtime_ctime_hint(tmp_path, monkeypatch, capsys):
    path = _corpus_over_one_mib(tmp_path / "c.jsonl")
    cache = tmp_path / "cache"
    monkeypatch.setattr(fpmod, "RACY_SECONDS", 0.0)  # trust a hint made right after a write
    time.sleep(0.05)
    first = _fingerprint(path, cache)
    assert first["sha256"] != first["sha256_first_mb"] and first["size"] > MIB
    assert (cache / fpmod.HASH_CACHE_FILE).exists()

    hashed = []
    real = fpmod.InputHashCache.get
    monkeypatch.setattr(fpmod.InputHashCache, "get",
                        lambda self, p, st: hashed.append(p) or real(self, p, st))
    import curate.pipelines.input_hash as input_hash

    calls = []
    real_hash = input_hash.content_hashes
    monkeypatch.setattr(input_hash, "content_hashes", lambda p: calls.append(p) or real_hash(p))
    assert _fingerprint(path, cache) == first and calls == []  # unchanged: the hint holds

    _break_a_record_after_the_first_mib(path)
    changed = _fingerprint(path, cache)
    assert calls == [str(path)], "size and mtime unchanged, but ctime moved: hashed again"
    assert changed["sha256"] != first["sha256"]
    assert changed["sha256_first_mb"] == first["sha256_first_mb"]  # the old fingerprint's blind spot
    assert fpmod.run_fingerprint({}, [changed])["run"] != fpmod.run_fingerprint({}, [first])["run"]

    # a hint entry altered on disk (hash swapped back to the old one) fails its checksum
    data = json.loads((cache / fpmod.HASH_CACHE_FILE).read_text())
    data["entries"][str(path)]["hashes"]["sha256"] = first["sha256"]
    (cache / fpmod.HASH_CACHE_FILE).write_text(json.dumps(data))
    capsys.readouterr()
    assert _fingerprint(path, cache)["sha256"] == changed["sha256"]
    assert "fails its checksum" in capsys.readouterr().err
    # a corrupt hint file: a warning, hashed again, rewritten
    (cache / fpmod.HASH_CACHE_FILE).write_bytes(b"\x00garbage")
    assert _fingerprint(path, cache)["sha256"] == changed["sha256"]
    assert "input hash cache" in capsys.readouterr().err
    assert json.loads((cache / fpmod.HASH_CACHE_FILE).read_text())["format"] == fpmod.HASH_CACHE_FORMAT
    # no cache folder: always the whole content
    assert _fingerprint(path, None)["sha256"] == changed["sha256"]


@pytest.mark.slow
def test_an_input_changed_after_its_first_mib_is_not_reused(tmp_path):
    """The issue's reproduction: change a byte after the first MiB, keep size and mtime."""
    path = _corpus_over_one_mib(tmp_path / "c.jsonl")
    n_records = sum(1 for _ in path.open())
    time.sleep(fpmod.RACY_SECONDS + 0.2)  # so the first run keeps a hint it would reuse
    out, cache = tmp_path / "run", tmp_path / "cache"
    args = ("run", "--input", path, "--output", out, "--cache-dir", cache, "--no-catalog",
            "--pools", "2", "--json")
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    assert json.loads(first.stdout)["counts"]["kept"] == n_records
    hint = json.loads((cache / fpmod.HASH_CACHE_FILE).read_text())
    assert str(path) in hint["entries"]

    _break_a_record_after_the_first_mib(path)
    again = run_cli(*args)
    assert again.returncode == 2 and "another config or inputs" in again.stderr  # not reused
    fresh = run_cli(*args, "--overwrite")
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    summary = json.loads(fresh.stdout)
    assert not summary["reused"]
    assert summary["counts"]["kept"] == n_records - 1
    assert summary["counts"]["dead_letter"] == {"missing_text": 1}


@pytest.mark.slow  # three `curate run`s; the stage-level test of the same is in the default run
def test_a_corrupt_signature_cache_file_is_rebuilt_with_a_warning(tmp_path):
    rng = random.Random(2)
    records = [{"id": f"d{i}", "text": random_text(rng)} for i in range(60)]
    records.append({"id": "z", "text": records[0]["text"] + " extra"})  # a near duplicate of d0
    corpus = tmp_path / "c.jsonl"
    write_jsonl(corpus, records)
    out, cache = tmp_path / "run", tmp_path / "cache"
    args = ("run", "--input", corpus, "--output", out, "--cache-dir", cache, "--no-catalog",
            "--pools", "2", "--json")
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    rows = pool_rows(out)
    sig_files = sorted(cache.glob("minhash-v3-*/p=*/part-*.sig"))  # one per key partition
    sig_file = sig_files[0]
    sig_file.write_bytes(sig_file.read_bytes()[:300])  # cut short: no trailer

    again = run_cli(*args, "--force")
    assert again.returncode == 0, again.stderr[-2000:]
    warnings = [line for line in again.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and str(sig_file) in warnings[0] and "recomputed" in warnings[0]
    assert "Traceback" not in again.stderr
    assert pool_rows(out) == rows
    assert json.loads(again.stdout)["counts"]["removed"] == {"near": 1}
    assert Path(str(sig_file) + ".corrupt").exists()
    # rebuilt: the same signatures make a file of the same name (row count and keys' digest)
    assert sorted(cache.glob("minhash-v3-*/p=*/part-*.sig")) == sig_files
    third = run_cli(*args, "--force")
    assert third.returncode == 0 and "warning" not in third.stderr
    assert json.loads(third.stdout)["signature_cache"]["hits"] == len(records)

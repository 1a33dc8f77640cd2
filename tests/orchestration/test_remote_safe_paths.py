"""Issue 16 item 1: `curate run` is remote-safe by construction.

- relative paths are made absolute on the launcher (a worker in another folder read a relative
  `--input` as a missing file: dead-lettered, and an empty run was published with exit 0);
- an input file the workers cannot read fails the run, nothing published (`--allow-unreadable`
  publishes the rest), and a run in which no document could be read fails regardless;
- caches and paths a runner's workers cannot share are refused (or the default cache switched
  off) before anything is written;
- publishing to an object store (no folders, rename = copy + delete) puts every data file in
  place, the marker and manifest last, and leaves no staging objects.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.orchestration.curate_runs import cli_env, curate_cmd, pool_rows, run_cli, synthetic_corpus

PUBLISHED = ("_SUCCESS", "manifest.json", "pools", "stats.parquet", "dead_letter")


def _one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _nothing_published(run_dir: Path) -> None:
    present = sorted(p.name for p in run_dir.iterdir()) if run_dir.exists() else []
    assert not [n for n in present if n in PUBLISHED or n.startswith("_staging-")], present


def test_expand_inputs_gives_absolute_paths(tmp_path, monkeypatch):
    from curate.pipelines.inputs import expand_inputs

    synthetic_corpus(tmp_path / "data", n=3, n_exact=0)
    monkeypatch.chdir(tmp_path)
    files = expand_inputs(["data/*.jsonl", "./data/corpus.jsonl"])
    assert [(f.path, f.source) for f in files] == [(str(tmp_path / "data" / "corpus.jsonl"),) * 2]


def test_relative_paths_reach_the_pipeline_absolute(tmp_path):
    # the launcher's folder is the only one where these relative names mean anything
    launch = tmp_path / "launch"
    synthetic_corpus(launch / "data", n=30, n_exact=2)
    ref = subprocess.run(curate_cmd("run", "--input", "data/corpus.jsonl", "--output", "out", "--workspace", "ws",
                                    "--no-catalog", "--json", "--pools", "2"),
                         cwd=launch, capture_output=True, text=True, timeout=300, env=cli_env())
    assert ref.returncode == 0, ref.stderr[-3000:]
    summary = json.loads(ref.stdout)
    assert summary["output"] == str(launch / "out")
    assert summary["signature_cache"]["dir"].startswith(str(launch / "ws"))
    manifest = json.loads((launch / "out" / "manifest.json").read_text())
    assert [i["path"] for i in manifest["inputs"]] == [str(launch / "data" / "corpus.jsonl")]
    sources = set()
    for part in (launch / "out" / "pools").rglob("*.parquet"):
        sources |= set(pq.read_table(part, columns=["source"]).column("source").to_pylist())
    assert sources == {str(launch / "data" / "corpus.jsonl")}
    assert len(pool_rows(launch / "out")) == 30


def _corrupt_parquet(path: Path) -> Path:
    path.write_bytes(b"PAR1 this is not parquet at all")
    return path


def test_an_unreadable_input_fails_the_run_and_publishes_nothing(tmp_path):
    corpus = synthetic_corpus(tmp_path / "data", n=20, n_exact=0)
    broken = _corrupt_parquet(tmp_path / "data" / "broken.parquet")
    out = tmp_path / "run"
    r = run_cli("run", "--input", corpus, "--input", broken, "--output", out, "--no-catalog",
                "--cache-dir", "none", "--quiet", workspace=tmp_path / "ws")
    _one_line_error(r, "1 of 2 input file(s) could not be read", str(broken), "nothing was published",
                    "--allow-unreadable")
    _nothing_published(out)

    # allowed: the rest is published, the file is a dead letter that the accounting counts
    r = run_cli("run", "--input", corpus, "--input", broken, "--output", out, "--no-catalog",
                "--cache-dir", "none", "--json", "--allow-unreadable", workspace=tmp_path / "ws")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["counts"]["dead_letter"] == {"unreadable_file": 1}
    assert summary["counts"]["kept"] == 20 and summary["reconciliation"]["holds"]
    dead = [json.loads(line) for part in (out / "dead_letter").glob("*.jsonl")
            for line in part.read_text().splitlines() if line.strip()]
    assert [(d["source"], d["reason"]) for d in dead] == [(str(broken), "unreadable_file")]


def test_a_run_where_no_file_could_be_read_fails_even_when_allowed(tmp_path):
    a = _corrupt_parquet(tmp_path / "a.parquet")
    b = _corrupt_parquet(tmp_path / "b.parquet")
    out = tmp_path / "run"
    r = run_cli("run", "--input", a, "--input", b, "--output", out, "--no-catalog", "--cache-dir", "none",
                "--quiet", "--allow-unreadable", workspace=tmp_path / "ws")
    _one_line_error(r, "no document could be read from the inputs", "2 of 2 input file(s)", str(a))
    _nothing_published(out)


def test_an_empty_input_is_still_an_empty_run(tmp_path):
    # no file failed: an empty corpus is a (reconciled, empty) run, not an error
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    r = run_cli("run", "--input", empty, "--output", tmp_path / "run", "--no-catalog", "--cache-dir", "none",
                "--json", workspace=tmp_path / "ws")
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout)["counts"]["input_records"] == 0


def _main_one_line_error(capsys, argv: list, *fragments: str) -> None:
    from curate.orchestration.cli import main

    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err[-3000:]
    for fragment in fragments:
        assert fragment in err, err


def test_a_local_cache_with_workers_elsewhere_is_refused_before_any_work(tmp_path, capsys):
    corpus = synthetic_corpus(tmp_path / "data", n=3, n_exact=0)
    # nothing listens on the job endpoint: the check must come before Beam tries to reach it
    portable = ["--runner=PortableRunner", "--job_endpoint=localhost:9", "--environment_type=EXTERNAL",
                "--environment_config=localhost:9"]
    out = tmp_path / "run"
    _main_one_line_error(capsys, ["run", "--input", corpus, "--output", out, "--cache-dir", tmp_path / "cache",
                                  "--workspace", tmp_path / "ws", "--quiet", *portable],
                         f"--cache-dir {tmp_path / 'cache'} is a local folder", "portable runner's workers",
                         "--cache-dir none")
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_dataflow_refuses_local_paths_before_touching_anything(tmp_path, capsys):
    corpus = synthetic_corpus(tmp_path / "data", n=3, n_exact=0)
    dataflow = ["--runner=DataflowRunner", "--project=p", "--region=r", "--temp_location=gs://b/tmp"]
    common = ["--cache-dir", "none", "--no-catalog", "--quiet", "--workspace", tmp_path / "ws", *dataflow]
    _main_one_line_error(capsys, ["run", "--input", corpus, "--output", "gs://b/run", *common],
                         f"--input {corpus} is a local path", "dataflow workers cannot read", "gs://")
    _main_one_line_error(capsys, ["run", "--input", "gs://b/in/*.jsonl", "--output", tmp_path / "run", *common],
                         f"--output {tmp_path / 'run'} is a local path")
    assert not (tmp_path / "run").exists() and not (tmp_path / "ws").exists()


def test_default_cache_is_switched_off_with_workers_elsewhere():
    from curate.orchestration.commands.run import _usable_cache_dir
    from curate.orchestration.config import resolve_config

    warnings = []
    config = resolve_config()
    assert _usable_cache_dir("/ws/cache", config, warnings.append, default=True, workers_here=False) is None
    assert len(warnings) == 1 and "/ws/cache" in warnings[0] and "without a cache" in warnings[0]
    # a URL every worker can reach is kept
    assert _usable_cache_dir("gs://b/cache", config, warnings.append, default=True, workers_here=False) \
        == "gs://b/cache"
    assert len(warnings) == 1


@pytest.mark.parametrize("flags,here", [([], True), (["--runner=FnApiRunner"], True),
                                        (["--runner=direct"], True),
                                        (["--runner=PortableRunner", "--environment_type=LOOPBACK"], True),
                                        (["--runner=PortableRunner", "--environment_type=EXTERNAL"], False),
                                        (["--runner=FlinkRunner"], False), (["--runner=DataflowRunner"], False)])
def test_which_runners_have_their_workers_here(flags, here):
    from curate.orchestration.runner import workers_on_launcher

    assert workers_on_launcher(flags) is here


def test_config_paths_are_made_absolute(tmp_path, monkeypatch):
    from curate.orchestration.config import resolve_config
    from curate.orchestration.errors import CurateError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"embed": {"enabled": True, "model": "model", "cache_dir": "emb-cache",
                                         "backend": "torch"}}))
    config = resolve_config(str(cfg), quality_reference="ref.jsonl")
    assert config["embedding_scores"]["reference"] == str(tmp_path / "ref.jsonl")
    assert config["embed"]["cache_dir"] == str(tmp_path / "emb-cache")
    assert config["embed"]["model"] == str(tmp_path / "model")
    # a model id is not a path; a path to nothing is an error naming it
    cfg.write_text(json.dumps({"embed": {"enabled": True, "model": "org/some-model", "backend": "torch"}}))
    assert resolve_config(str(cfg))["embed"]["model"] == "org/some-model"
    cfg.write_text(json.dumps({"embed": {"enabled": True, "model": "./missing-model", "backend": "torch"}}))
    with pytest.raises(CurateError, match="embed.model ./missing-model: no such model folder"):
        resolve_config(str(cfg))


# -- object stores ----------------------------------------------------------------------------

@pytest.fixture
def memstore():
    from tests.orchestration.memstore import MemStore

    MemStore.reset()
    yield MemStore
    MemStore.reset()


def test_object_store_prefixes_are_folders_for_exists_and_delete(memstore):
    from curate.pipelines import fsutil

    fsutil.write_bytes("memstore://b/run/pools/pool=0/part-0.parquet", b"x")
    fsutil.write_bytes("memstore://b/run/stats.parquet", b"y")
    assert fsutil.exists("memstore://b/run/pools") and fsutil.exists("memstore://b/run/stats.parquet")
    assert not fsutil.exists("memstore://b/run/dedup")
    fsutil.delete("memstore://b/run/pools")
    assert sorted(memstore.objects) == ["memstore://b/run/stats.parquet"]


def test_run_published_to_an_object_store(tmp_path, memstore, capsys):
    from curate.orchestration.cli import main
    from curate.pipelines import publish

    corpus = synthetic_corpus(tmp_path / "data", n=40, n_exact=3)
    run = "memstore://bucket/runs/r1"
    code = main(["run", "--input", str(corpus), "--output", run, "--no-catalog", "--cache-dir", "none",
                 "--json", "--pools", "2"])
    assert code == 0, capsys.readouterr().err[-3000:]
    summary = json.loads(capsys.readouterr().out)
    names = sorted(k[len(run) + 1:] for k in memstore.objects)
    assert [n for n in names if n.startswith("_") and n != "_SUCCESS"] == []  # no staging, no claim
    assert {"manifest.json", "stats.parquet"} <= set(names)
    pool_files = [n for n in names if n.startswith("pools/pool=")]
    assert {n.split("/")[1] for n in pool_files} == {"pool=0", "pool=1"}
    assert any(n.startswith("dedup/") for n in names) and any(n.startswith("dead_letter/") for n in names)
    assert summary["counts"]["kept"] == 40 and summary["counts"]["removed"] == {"exact": 3}
    # order of appearance in DIR: data, stats, then _SUCCESS, then manifest.json, claim removed last
    created = [p[len(run) + 1:] for op, p in memstore.log if op == "create" and p.startswith(run + "/")
               and not p.startswith(run + "/_staging-")]
    assert created[-2:] == ["_SUCCESS", "manifest.json"]
    assert created.index("stats.parquet") > max(created.index(n) for n in pool_files)
    assert memstore.log[-1] == ("delete", f"{run}/_PUBLISHING")
    assert publish.read_marker(run)["fingerprint"] == summary["fingerprint"]
    # a reader refuses the directory without its marker
    del memstore.objects[f"{run}/_SUCCESS"]
    assert publish.read_marker(run) is None


# -- a worker in another folder: the reproduction ---------------------------------------------

@pytest.mark.slow
def test_relative_paths_on_a_portable_runner_whose_workers_run_elsewhere(tmp_path):
    """The job service and an EXTERNAL worker pool run from this venv in a folder of their own;
    `curate run` is launched from another folder with a relative --input and --output. Before
    the fix the worker read `data/corpus.jsonl` in its own folder: one `unreadable_file` dead
    letter and an empty run published with exit status 0."""
    from tests.portable_runner import portable_services

    launch = tmp_path / "launch"
    synthetic_corpus(launch / "data", n=40, n_exact=3)
    venv = Path(sys.prefix)
    with portable_services(venv, tmp_path / "services") as flags:
        r = subprocess.run(curate_cmd("run", "--input", "data/corpus.jsonl", "--output", "out", "--workspace", "ws",
                                      "--no-catalog", "--json", "--pools", "2", *flags),
                           cwd=launch, capture_output=True, text=True, timeout=600, env=cli_env())
    assert r.returncode == 0, r.stderr[-3000:]
    assert "running without a cache" in r.stderr  # the default workspace cache is not the workers'
    summary = json.loads(r.stdout)
    assert summary["counts"]["dead_letter"] == {} and summary["counts"]["kept"] == 40
    local = run_cli("run", "--input", launch / "data" / "corpus.jsonl", "--output", tmp_path / "local",
                    "--no-catalog", "--cache-dir", "none", "--quiet", "--pools", "2", workspace=tmp_path / "ws2")
    assert local.returncode == 0, local.stderr[-3000:]
    assert pool_rows(launch / "out") == pool_rows(tmp_path / "local")


def test_progress_files_on_an_object_store_are_written_at_a_bounded_rate(memstore, tmp_path):
    from curate.pipelines.progress import ProgressReader, ProgressWriter

    remote = ProgressWriter("memstore://b/run/_staging-x/_progress", "read")
    for _ in range(200):  # many records and bundle ends within well under the 15 s interval
        remote.add(10, 100)
        remote.flush()
    assert [op for op, _ in memstore.log] == ["create"]  # the first one only
    assert ProgressReader("memstore://b/run/_staging-x/_progress").poll()["read"]["records"] == 10
    local = ProgressWriter(str(tmp_path / "progress"), "read")
    local.add(5)
    local.flush()  # a bundle end on a local disk writes at once (tests and the local runner)
    assert ProgressReader(str(tmp_path / "progress")).poll()["read"]["records"] == 5

"""`curate materialize` end to end on the real FnApiRunner: counts against the plan, copies,
spacing, shard balance, formats, determinism, and the bad inputs that must fail cleanly."""
from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curate.orchestration.errors import CurateError
from curate.orchestration.materialize_job import MaterializeSettings, materialize
from curate.pipelines.materialize_plan import MaterializeError, match_plan
from tests.pipelines.materialize_fixtures import make_run, pool_bytes, train_tokenizer, write_plan


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("run"))


def _rows(out: Path) -> list[dict]:
    rows = []
    for f in sorted((out / "data").glob("*.parquet")):
        rows += pq.read_table(f).to_pylist()
    return rows


def _docs_plan(tmp_path, unique=(30, 30, 20), epochs=(1.0, 2.5, 4.0)) -> Path:
    sizes = (40, 30, 20)
    return write_plan(tmp_path / "plan.json", "samples",
                      {f"pool{k}": (sizes[k], unique[k], epochs[k]) for k in range(3)})


def test_document_plan_is_written_as_planned(run_dir, tmp_path):
    out = tmp_path / "out"
    result = materialize(str(_docs_plan(tmp_path)), str(run_dir), str(out),
                         MaterializeSettings(shards=3, window=5))
    m = result.manifest
    assert m["unit"] == "docs" and m["reconciliation"]["holds"]
    rows = _rows(out)
    per_pool = Counter(r["pool"] for r in rows)
    # 30 x 1, 30 x 2.5 = 75, 20 x 4 = 80: documents are whole, so exact here
    assert per_pool == {"pool0": 30, "pool1": 75, "pool2": 80}
    copies = Counter((r["pool"], r["id"]) for r in rows)
    assert max(c for (p, _), c in copies.items() if p == "pool1") == 3 == math.ceil(2.5)
    assert max(c for (p, _), c in copies.items() if p == "pool2") == 4
    assert len({i for p, i in copies if p == "pool1"}) == 30  # the unique subset, all of it used
    # the partial epoch of pool1 is half the subset, each of its documents once more
    assert Counter(c for (p, _), c in copies.items() if p == "pool1") == {2: 15, 3: 15}
    sizes = [pq.ParquetFile(f).metadata.num_rows for f in sorted((out / "data").glob("*.parquet"))]
    assert len(sizes) == 3 and max(sizes) - min(sizes) <= 1
    assert [f["rows"] for f in m["files"]] == sizes
    # epochs of one document are numbered 0.. in the output
    assert {r["epoch"] for r in rows if r["pool"] == "pool2"} == {0, 1, 2, 3}
    for p in m["pools"]:
        assert p["docs_written"] == per_pool[p["pool"]] and p["within_tolerance"]


def test_copies_are_spaced_within_each_shard(run_dir, tmp_path):
    out = tmp_path / "out"
    m = materialize(str(_docs_plan(tmp_path)), str(run_dir), str(out),
                    MaterializeSettings(shards=1, window=8)).manifest
    rows = pq.read_table(next((out / "data").glob("*.parquet"))).to_pylist()
    last, gaps = {}, []
    for pos, r in enumerate(rows):
        key = (r["pool"], r["id"])
        if key in last:
            gaps.append(pos - last[key])
        last[key] = pos
    assert min(gaps) >= 8  # 185 rows, at most 4 copies of a document: 8 apart is feasible
    assert m["spacing"]["violations"] == 0 and m["spacing"]["min_copy_gap"] == min(gaps)


def test_bytes_plan_unit_inferred_and_reconciled(run_dir, tmp_path):
    have = pool_bytes(run_dir)
    plan = write_plan(tmp_path / "plan.json", "tokens",
                      {"pool0": (have["pool0"], 0.5 * have["pool0"], 1.0),
                       "pool2": (have["pool2"], have["pool2"], 3.4)})
    out = tmp_path / "out"
    m = materialize(str(plan), str(run_dir), str(out), MaterializeSettings(shards=2)).manifest
    assert m["unit"] == "bytes"
    rows = _rows(out)
    written = Counter()
    for r in rows:
        written[r["pool"]] += len(r["text"].encode())
    for p in m["pools"]:
        assert written[p["pool"]] == p["units_written"]
        # documents are discrete: within 0.5 % or one document
        assert abs(p["units_written"] - p["plan_samples"]) <= max(0.005 * p["plan_samples"], p["allowed_difference"])
    assert "pool1" not in written
    assert abs(m["total"]["relative_difference"]) <= 0.005 or m["reconciliation"]["holds"] is False


def test_the_plans_recorded_size_unit_is_used_not_inferred(run_dir, tmp_path):
    chars = {f"pool{r['pool']}": r["chars"] for r in pq.read_table(run_dir / "stats.parquet").to_pylist()}
    sizes = {n: (chars[n], chars[n] / 2, 2.0) for n in ("pool0", "pool2")}
    recorded = match_plan(write_plan(tmp_path / "c.json", "tokens", sizes, size_unit="chars"), run_dir)
    assert (recorded.unit, recorded.unit_source) == ("chars", "the plan's size_unit")
    old_file = match_plan(write_plan(tmp_path / "old.json", "tokens", sizes), run_dir)
    assert old_file.unit_source.startswith("the plan's tokens matched")  # inferred, as before
    # the recorded unit is trusted, not second-guessed: sizes in another unit are another run's
    with pytest.raises(MaterializeError, match="another run"):
        match_plan(write_plan(tmp_path / "t.json", "tokens", sizes, size_unit="tokens"), run_dir)
    with pytest.raises(MaterializeError, match="size_unit 'words'"):
        match_plan(write_plan(tmp_path / "w.json", "tokens", sizes, size_unit="words"), run_dir)


def test_score_order_takes_the_best_documents(run_dir, tmp_path):
    plan = _docs_plan(tmp_path, unique=(10, 5, 5), epochs=(1.0, 1.0, 1.0))
    out = tmp_path / "out"
    materialize(str(plan), str(run_dir), str(out), MaterializeSettings(order="score"))
    ids = sorted(r["id"] for r in _rows(out) if r["pool"] == "pool0")
    assert ids == [f"p0-d{i:04d}" for i in range(10)]  # score falls with i in the fixture


def test_same_inputs_same_bytes_and_reuse(run_dir, tmp_path):
    plan = _docs_plan(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    ma = materialize(str(plan), str(run_dir), str(a), MaterializeSettings(shards=2)).manifest
    mb = materialize(str(plan), str(run_dir), str(b), MaterializeSettings(shards=2)).manifest
    assert [f["sha256"] for f in ma["files"]] == [f["sha256"] for f in mb["files"]]
    for f in ma["files"]:
        assert (a / f["file"]).read_bytes() == (b / f["file"]).read_bytes()
    again = materialize(str(plan), str(run_dir), str(a), MaterializeSettings(shards=2))
    assert again.reused
    other = materialize(str(plan), str(run_dir), str(tmp_path / "c"), MaterializeSettings(shards=2, seed=1)).manifest
    assert [f["sha256"] for f in other["files"]] != [f["sha256"] for f in ma["files"]]
    with pytest.raises(CurateError, match="--overwrite"):
        materialize(str(plan), str(run_dir), str(a), MaterializeSettings(shards=2, seed=1))
    m = materialize(str(plan), str(run_dir), str(a), MaterializeSettings(shards=2, seed=1), overwrite=True).manifest
    assert m["settings"]["seed"] == 1 and sorted(p.name for p in (a / "data").iterdir()) == [
        Path(f["file"]).name for f in m["files"]]


def test_one_and_two_workers_write_the_same_bytes(run_dir, tmp_path):
    plan = _docs_plan(tmp_path)
    one = materialize(str(plan), str(run_dir), str(tmp_path / "one"), MaterializeSettings(shards=3)).manifest
    two = materialize(str(plan), str(run_dir), str(tmp_path / "two"), MaterializeSettings(
        shards=3, beam_args=("--direct_num_workers=2", "--direct_running_mode=multi_processing"))).manifest
    assert [f["sha256"] for f in one["files"]] == [f["sha256"] for f in two["files"]]


def test_parquet_reads_in_pandas_duckdb_and_datasets(run_dir, tmp_path):
    out = tmp_path / "out"
    materialize(str(_docs_plan(tmp_path)), str(run_dir), str(out), MaterializeSettings(shards=2))
    import duckdb
    import pandas as pd

    files = sorted(str(f) for f in (out / "data").glob("*.parquet"))
    frame = pd.concat(pd.read_parquet(f) for f in files)
    assert list(frame.columns) == ["text", "id", "pool", "epoch", "source", "score"] and len(frame) == 185
    con = duckdb.connect()
    assert con.execute(f"SELECT count(*) FROM read_parquet({files})").fetchall() == [(185,)]
    con.close()
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("parquet", data_files=files, split="train",
                               cache_dir=str(tmp_path / "hf-cache"))
    assert ds.num_rows == 185 and ds[0]["text"] == frame.iloc[0]["text"]


def test_jsonl_gz_holds_the_same_rows(run_dir, tmp_path):
    import gzip

    plan = _docs_plan(tmp_path)
    materialize(str(plan), str(run_dir), str(tmp_path / "pq"), MaterializeSettings(shards=2))
    materialize(str(plan), str(run_dir), str(tmp_path / "js"), MaterializeSettings(shards=2, fmt="jsonl.gz"))
    rows = []
    for f in sorted((tmp_path / "js" / "data").glob("*.jsonl.gz")):
        rows += [json.loads(line) for line in gzip.open(f, "rt", encoding="utf-8")]
    assert rows == _rows(tmp_path / "pq")


def test_tokens_round_trip(run_dir, tmp_path):
    import numpy as np

    texts = [r["text"] for r in pq.read_table(run_dir / "pools" / "pool=0" / "part-00000-of-00001.parquet").to_pylist()]
    tok_path = train_tokenizer(tmp_path / "tokenizer.json", texts)
    plan = _docs_plan(tmp_path)
    materialize(str(plan), str(run_dir), str(tmp_path / "pq"), MaterializeSettings(shards=2))
    m = materialize(str(plan), str(run_dir), str(tmp_path / "tok"),
                    MaterializeSettings(shards=2, fmt="tokens", tokenizer=str(tok_path))).manifest
    assert m["tokenizer"]["dtype"] == "uint16"
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tok_path))
    expected = _rows(tmp_path / "pq")
    decoded = []
    for f in m["files"]:
        ids = np.fromfile(tmp_path / "tok" / f["file"], dtype="<u2")
        idx = np.fromfile(tmp_path / "tok" / f["index_file"], dtype="<u8")
        assert idx[0] == 0 and idx[-1] == len(ids) == f["tokens"]
        decoded += [tok.decode(ids[idx[i]:idx[i + 1]].tolist()) for i in range(len(idx) - 1)]
    assert decoded == [r["text"] for r in expected]


def test_plan_for_another_run_is_refused(run_dir, tmp_path):
    plan = write_plan(tmp_path / "p.json", "samples", {"pool7": (40, 40, 1.0)})
    with pytest.raises(MaterializeError, match="another run"):
        materialize(str(plan), str(run_dir), str(tmp_path / "o1"), MaterializeSettings())
    plan = write_plan(tmp_path / "p.json", "samples", {"pool0": (400, 40, 1.0)})
    with pytest.raises(MaterializeError, match="another run"):
        materialize(str(plan), str(run_dir), str(tmp_path / "o2"), MaterializeSettings())
    plan = write_plan(tmp_path / "p.json", "samples", {"pool0": (40, 41, 1.0)})
    with pytest.raises(MaterializeError, match="larger than the pools allow"):
        materialize(str(plan), str(run_dir), str(tmp_path / "o3"), MaterializeSettings())
    assert not any((tmp_path / n).exists() for n in ("o1", "o2", "o3"))


def test_missing_tokenizer_and_foreign_output_are_refused(run_dir, tmp_path):
    plan = _docs_plan(tmp_path)
    with pytest.raises(CurateError, match="--tokenizer"):
        materialize(str(plan), str(run_dir), str(tmp_path / "o"), MaterializeSettings(fmt="tokens"))
    with pytest.raises(CurateError, match="tokenizer"):
        materialize(str(plan), str(run_dir), str(tmp_path / "o"),
                    MaterializeSettings(fmt="tokens", tokenizer=str(tmp_path / "missing.json")))
    assert not (tmp_path / "o").exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(CurateError, match="did not write"):
        materialize(str(plan), str(run_dir), str(foreign), MaterializeSettings())
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    with pytest.raises(CurateError, match="did not write"):  # a run directory is not a training set
        materialize(str(plan), str(run_dir), str(run_dir), MaterializeSettings())


def test_killed_publish_is_cleaned_and_redone(run_dir, tmp_path):
    plan = _docs_plan(tmp_path)
    out = tmp_path / "out"
    first = materialize(str(plan), str(run_dir), str(out), MaterializeSettings(shards=2)).manifest
    # a publish killed after the old set was removed: the claim and part of the data remain
    (out / "manifest.json").unlink()
    (out / "_SUCCESS").unlink()
    (out / "_PUBLISHING").write_text("killed")
    (out / "_staging-dead").mkdir()
    again = materialize(str(plan), str(run_dir), str(out), MaterializeSettings(shards=2))
    assert not again.reused and [f["sha256"] for f in again.manifest["files"]] == [f["sha256"] for f in first["files"]]
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "_curate.lock", "data", "manifest.json"]

"""Bounded memory of `curate materialize` (issue 15 point 3): the shuffle carries no texts.

The local FnApiRunner holds every PCollection between stages, and every grouping, in memory,
so a pipeline whose PCollections carried the documents' texts grew with the output (4.2 GB at
1.44M rows). These tests pin the design that keeps it bounded on every runner: texts travel
only through files (pool Parquet -> spill files -> shard files); the reading and writing DoFns
hold a fixed buffer or one shard; and cutting shards by bucket reproduces the exact key
quantiles the output is defined by.
"""
from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.pipeline import PipelineVisitor

from curate.orchestration.runner import pipeline_options
from curate.pipelines import fsutil
from curate.pipelines.materialize import DATA_DIR, INFO_FILE, MaterializeSpec, build_materialize
from curate.pipelines.materialize_core import (bucket_edges, bucket_of, doc_units, shard_boundaries,
                                               shard_mask, shard_span)
from curate.pipelines.materialize_plan import match_plan
from curate.pipelines.materialize_spill import (BUFFER_ROWS, SCHEMA, SPILL_DIR, SpillWriter, read_buckets,
                                                spill_path)
from tests.pipelines.materialize_fixtures import make_run, write_plan


@pytest.mark.parametrize("total,shards,buckets", [(1003, 7, 28), (50, 50, 200), (997, 3, 1), (400, 9, 5)])
def test_buckets_cut_the_same_shards_as_the_key_quantiles(total, shards, buckets):
    rng = np.random.default_rng(total)
    keys = rng.integers(0, 2**64 - 1, total, dtype=np.uint64, endpoint=True)
    keys[:20] = keys[20]  # equal keys stay together, as shard_boundaries keeps them
    expected = np.searchsorted(np.array(shard_boundaries(keys, shards), dtype=np.uint64), keys, side="right")
    in_bucket = bucket_of(keys, bucket_edges(buckets))
    counts = np.bincount(in_bucket, minlength=buckets)
    for shard in range(shards):
        first, last, base, lo, hi = shard_span(counts, total, shards, shard)
        read = (in_bucket >= first) & (in_bucket <= last)  # what the shard's writer reads
        assert base == int(counts[:first].sum())
        got = np.zeros(total, dtype=bool)
        got[np.flatnonzero(read)[shard_mask(keys[read], base, lo, hi)]] = True
        assert np.array_equal(got, expected == shard), shard


def test_batch_units_match_doc_units_with_nulls():
    from curate.pipelines.materialize_core import batch_units

    table = pa.table({"text": ["ab", None, "ünï", "x y"], "chars": [5, 7, None, None],
                      "tokens": [3, None, 4, 1]})
    rows = table.to_pylist()
    for unit in ("docs", "bytes", "chars", "tokens"):
        want = [doc_units(unit, r["text"] or "", r["chars"], r["tokens"]) for r in rows]
        assert batch_units(unit, table).tolist() == want, unit
    assert batch_units("chars", table.drop_columns(["chars"])).tolist() == [2, 0, 3, 3]
    assert batch_units("tokens", table.drop_columns(["tokens"])).tolist() == [0, 0, 0, 0]


def _copies(n: int, rng) -> pa.Table:
    keys = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    return pa.Table.from_arrays([
        pa.array(keys, pa.uint64()), pa.array([f"text {i}" for i in range(n)], pa.large_string()),
        pa.array([f"d{i}" for i in range(n)]), pa.array(["pool0"] * n), pa.array([0] * n, pa.int32()),
        pa.nulls(n, pa.string()), pa.array([0.5] * n), pa.array([1] * n, pa.int64())], schema=SCHEMA)


def test_spill_writer_buffers_a_fixed_number_of_rows_and_reads_back_by_bucket(tmp_path):
    rng = np.random.default_rng(0)
    buckets = 8
    edges = bucket_edges(buckets)
    writer = SpillWriter(spill_path(str(tmp_path), 0), buckets)
    tables = []
    for _ in range(40):  # 40 x 4096 rows: more than twice the buffer
        table = _copies(4096, rng)
        tables.append(table)
        writer.add(table, bucket_of(table.column("key").to_numpy(), edges))
        assert sum(writer._pending_rows.values()) < BUFFER_ROWS  # never the whole input
    spill = writer.close()
    everything = pa.concat_tables(tables)
    assert sum(rows for _, rows in spill["batches"]) == everything.num_rows
    assert len(spill["batches"]) > buckets  # buckets were written more than once, as they filled
    keys = everything.column("key").to_numpy()
    for first, last in ((0, 0), (3, 5), (0, buckets - 1)):
        got = read_buckets([spill], first, last)
        in_range = (bucket_of(keys, edges) >= first) & (bucket_of(keys, edges) <= last)
        assert sorted(got.column("key").to_pylist()) == sorted(keys[in_range].tolist())
        assert set(bucket_of(got.column("key").to_numpy(), edges)) <= set(range(first, last + 1))
    assert SpillWriter(spill_path(str(tmp_path), 1), buckets).close()["batches"] == []
    assert not Path(spill_path(str(tmp_path), 1)).exists()  # no copies: no file


class _CarriesNoText(beam.DoFn):
    """Fails the pipeline if an element holds one of the pools' texts (anywhere inside it)."""

    def __init__(self, texts: frozenset, label: str):
        self.texts, self.label = texts, label
        self.checked = Metrics.counter("materialize_memory", "checked")

    def process(self, element):
        self.checked.inc()
        todo = [element]
        while todo:
            value = todo.pop()
            if isinstance(value, str):
                if value in self.texts:
                    raise AssertionError(f"{self.label} carries a document's text: {value[:40]!r}")
            elif isinstance(value, dict):
                todo += list(value.keys()) + list(value.values())
            elif isinstance(value, (list, tuple)):
                todo += list(value)
        return []


class _Outputs(PipelineVisitor):
    """The outputs of the pipeline's own (top-level) transforms: every element a stage,
    shuffle or side input carries is one of theirs (a combine's shuffle carries accumulators:
    arrays). Inner PCollections of composites are left alone: the runner rewrites some."""

    def __init__(self):
        self.pcolls: dict[int, tuple[str, beam.pvalue.PCollection]] = {}

    def enter_composite_transform(self, node):
        self.visit_transform(node)

    def visit_transform(self, node):
        if node.parent is None or node.parent.parent is not None:
            return
        for pcoll in node.outputs.values():
            if isinstance(pcoll, beam.pvalue.PCollection):
                self.pcolls.setdefault(id(pcoll), (node.full_label, pcoll))


def _checked_run(build, texts: frozenset) -> int:
    """Build a pipeline, attach _CarriesNoText to every PCollection in it, run it on the
    FnApiRunner; how many elements were checked."""
    p = beam.Pipeline(options=pipeline_options([]))
    build(p)
    outputs = _Outputs()
    p.visit(outputs)
    for n, (label, pcoll) in enumerate(outputs.pcolls.values()):
        _ = pcoll | f"CheckNoText{n}" >> beam.ParDo(_CarriesNoText(texts, label))
    result = p.run()
    result.wait_until_finish()
    counters = result.metrics().query(MetricsFilter().with_name("checked"))["counters"]
    return sum(c.committed for c in counters)


def test_no_pcollection_of_the_pipeline_carries_a_text(tmp_path):
    run = make_run(tmp_path / "run", docs_per_pool=(60, 40, 30))
    texts = frozenset(t for f in (run / "pools").glob("pool=*/*.parquet")
                      for t in pq.read_table(f, columns=["text"]).column("text").to_pylist())
    plan = write_plan(tmp_path / "plan.json", "samples",
                      {"pool0": (60, 50, 1.5), "pool1": (40, 40, 2.0), "pool2": (30, 30, 3.2)})
    matched = match_plan(plan, run)
    spec = MaterializeSpec(targets=matched.targets, unit=matched.unit, shards=4, window=5,
                           files=tuple((pool, f) for pool, fs in sorted(matched.files.items()) for f in fs))
    staging = str(tmp_path / "staging")
    for folder in (DATA_DIR, SPILL_DIR):
        fsutil.mkdirs(str(Path(staging) / folder))
    pcolls = {}
    checked = _checked_run(lambda p: pcolls.update(build_materialize(p, spec, staging)), texts)
    # the check ran on every stage, shuffle and side input, and the pipeline did its work
    assert {"selections", "spills", "layout", "shard_numbers", "written"} <= set(pcolls)
    assert checked > len(matched.files) + 4
    written = sorted((Path(staging) / DATA_DIR).glob("*.parquet"))
    assert len(written) == 4 and (Path(staging) / INFO_FILE).exists()
    rows = pa.concat_tables(pq.read_table(f) for f in written)
    assert rows.num_rows == 50 + 25 + 80 + 96  # 1.5 x 50, 2 x 40, 3.2 x 30 documents in all
    assert set(rows.column("text").to_pylist()) <= texts  # the texts reached the shards
    # and the check is not vacuous: a PCollection that does carry texts fails it
    with pytest.raises(Exception, match="carries a document's text"):
        _checked_run(lambda p: p | beam.Create([{"text": next(iter(texts))}]), texts)


def _bench_run(root: Path, docs: int) -> tuple[Path, Path]:
    """A run of 2 pools of docs/2 documents of ~300 bytes, and a plan writing 1.75 x docs rows."""
    import random

    rng = random.Random(docs)
    words = [f"w{i}" for i in range(3000)]
    pools = {}
    for k in range(2):
        texts = [" ".join(rng.choices(words, k=60)) for _ in range(docs // 2)]
        folder = root / "pools" / f"pool={k}"
        folder.mkdir(parents=True)
        pq.write_table(pa.table({"id": [f"p{k}-{i}" for i in range(len(texts))], "text": texts,
                                 "source": ["s"] * len(texts), "score": [0.5] * len(texts)}),
                       folder / "part-00000-of-00001.parquet")
        pools[f"pool{k}"] = (docs // 2, docs // 2, 1.5 + k * 0.5)
    from curate.pools.rundir import MANIFEST, STATS, SUCCESS, marker_bytes

    pq.write_table(pa.Table.from_pylist([{"pool": k, "docs": docs // 2, "chars": 0, "tokens": 0}
                                         for k in range(2)]), root / STATS)
    manifest = b'{"format": "test-run", "counts": {}}'
    (root / SUCCESS).write_bytes(marker_bytes(manifest, f"mem-{docs}"))
    (root / MANIFEST).write_bytes(manifest)
    return root, write_plan(root.parent / f"plan-{docs}.json", "samples", pools)


def _peak_mb(cmd: list[str]) -> float:
    import os
    import subprocess

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, proc.stderr.read().decode()[-2000:]
    proc.stderr.close()
    return usage.ru_maxrss / 1024


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_output(tmp_path):
    """8x the documents, same shard size: peak memory about the same (the texts of the old
    GroupByKey design grew it by ~4 KB a row: +700 MB here). The bound is generous and
    relative, so any machine's allocator passes it."""
    import sys

    curate = str(Path(sys.executable).parent / "curate")
    peaks = {}
    for docs in (20_000, 160_000):
        run, plan = _bench_run(tmp_path / f"run-{docs}", docs)
        peaks[docs] = _peak_mb([curate, "materialize", str(plan), "--run", str(run), "--output",
                                str(tmp_path / f"out-{docs}"), "--shard-size", "10000", "--quiet"])
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in (tmp_path / f"out-{docs}" / "data").glob("*"))
        assert rows == docs // 2 * 1.5 + docs // 2 * 2.0
    assert peaks[160_000] < 1.5 * peaks[20_000], peaks

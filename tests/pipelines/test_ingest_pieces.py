"""Big input files read in pieces (issue 16, item 2: no single-reader funnel): uncompressed JSONL
by byte ranges, Parquet by row-group ranges, Arrow IPC streams by record-batch ranges, with the
piece size lowered so small files split. Reading in pieces must give exactly what reading each
file whole gives (documents, ids, order, dead letters up to how a line is located), with 1 and
2 workers; compressed JSONL cannot be split and gets a launch warning naming the file."""
from __future__ import annotations

import gzip
import json
import random
import re
from dataclasses import replace
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.pipelines import counters
from curate.pipelines import stash as ST
from curate.pipelines.ingest import DEAD, ReadRecords, _file_size
from curate.pipelines.inputs import expand_inputs, read_pieces, reading_plan
from curate.pipelines.run_config import RunConfig
from tests.pipelines.curation_runs import dead_letter_lines, run_curation_pipeline, sorted_rows


def _records(n: int, seed: int) -> list:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(300)]
    out = []
    for i in range(n):
        text = " ".join(rng.choice(vocab) for _ in range(rng.randint(3, 40)))
        out.append({"id": f"r{i % 50}" if i % 7 == 0 else f"d{seed}-{i}", "text": text})  # repeated ids
    return out


def _jsonl_bytes(records: list, seed: int) -> bytes:
    """JSONL with blank lines, CRLF endings, malformed lines, bad UTF-8 and invalid records."""
    rng = random.Random(seed)
    lines = []
    for r in records:
        lines.append(json.dumps(r).encode() + (b"\r\n" if rng.random() < 0.1 else b"\n"))
        roll = rng.random()
        if roll < 0.05:
            lines.append(b"\n")
        elif roll < 0.08:
            lines.append(b'{"id": "broken", "text": \n')
        elif roll < 0.10:
            lines.append(b'{"id": "u", "text": "bad \xff byte"}\n')
        elif roll < 0.12:
            lines.append(b'{"id": "e", "text": "   "}\n')
    return b"".join(lines)


def _read(files: list, piece_bytes: int | None = None) -> tuple[list, list]:
    """ReadRecords called directly on every piece, in piece order: (documents, dead letters)."""
    read = ReadRecords("id", "text", 10_000, 100_000, 10_000)
    docs, dead = [], []
    for f in (read_pieces(files, piece_bytes) if piece_bytes else files):
        for item in read.process(f):
            if isinstance(item, beam.pvalue.TaggedOutput):
                assert item.tag == DEAD
                dead.append(item.value)
            else:
                docs.append(item)
    return docs, dead


def _line_numbers(data: bytes) -> dict[int, int]:
    """byte offset of each line -> its line number."""
    out, offset = {}, 0
    for n, line in enumerate(data.splitlines(keepends=True), start=1):
        out[offset] = n
        offset += len(line)
    return out


@pytest.mark.parametrize("piece_bytes", [1, 2, 37, 64, 100, 513, 1000, 4096])
def test_jsonl_pieces_read_every_line_once_and_locate_dead_letters(tmp_path, piece_bytes):
    data = _jsonl_bytes(_records(120, 1), 1)
    path = tmp_path / "big.jsonl"
    path.write_bytes(data)
    files = expand_inputs([str(path)])
    pieces = read_pieces(files, piece_bytes)
    assert len(pieces) == -(-len(data) // piece_bytes) > 1
    assert [(p.start, p.stop) for p in pieces] == list(zip([0] + [p.stop for p in pieces[:-1]],
                                                           [p.stop for p in pieces]))
    assert pieces[-1].stop == len(data) and pieces == sorted(pieces)
    whole_docs, whole_dead = _read(files)
    docs, dead = _read(files, piece_bytes)
    # the same documents in the same order; positions are byte offsets, which order as lines do
    assert [(d["id"], d["text"]) for d in docs] == [(d["id"], d["text"]) for d in whole_docs]
    assert sorted(d["_order"] for d in docs) == [d["_order"] for d in docs]
    assert len({d["_order"] for d in docs}) == len(docs)
    assert whole_dead and len(dead) == len(whole_dead)
    lines = _line_numbers(data)
    for split, whole in zip(dead, whole_dead):
        key = ("reason", "raw", "source")
        assert [split[k] for k in key] == [whole[k] for k in key]
        offset = int(re.match(r"at byte offset (\d+)", split["detail"]).group(1))
        assert lines[offset] == whole["line"]  # the offset locates the very line
        if split["line"] is None:
            assert "line number not known" in split["detail"]
        else:  # the first piece counts lines from the start of the file
            assert split["line"] == whole["line"]


def test_a_line_crossing_a_piece_boundary_is_read_once_by_the_piece_it_starts_in(tmp_path):
    lines = [json.dumps({"id": f"x{i}", "text": "t" * (10 + 30 * i)}).encode() + b"\n" for i in range(4)]
    path = tmp_path / "cross.jsonl"
    path.write_bytes(b"".join(lines))
    size = path.stat().st_size
    starts = [sum(map(len, lines[:i])) for i in range(4)]
    (whole,) = expand_inputs([str(path)])
    read = ReadRecords("id", "text", 10_000, 100_000, 10_000)
    # at a line's start, on its first byte after, inside it, on the newline that ends it
    for cut in (starts[2], starts[2] + 1, starts[2] + 20, starts[3] - 1, starts[3]):
        pieces = [replace(whole, piece=0, pieces=2, start=0, stop=cut, nbytes=cut),
                  replace(whole, piece=1, pieces=2, start=cut, stop=size, nbytes=size - cut)]
        got = [[d["id"] for d in read.process(p)] for p in pieces]
        assert got == [[f"x{i}" for i in range(4) if starts[i] < cut],
                       [f"x{i}" for i in range(4) if starts[i] >= cut]], cut


def test_parquet_and_arrow_pieces_give_exact_rows(tmp_path):
    records = _records(300, 2)
    table = pa.Table.from_pylist(records)
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=40)
    arrow_dir = tmp_path / "hf"
    arrow_dir.mkdir()
    with pa.OSFile(str(arrow_dir / "data-00000-of-00001.arrow"), "wb") as sink:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            for batch in table.to_batches(max_chunksize=25):
                writer.write_batch(batch)
    state = {"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}
    (arrow_dir / "state.json").write_text(json.dumps(state))
    for pattern in (str(tmp_path / "t.parquet"), str(arrow_dir)):
        files = expand_inputs([pattern])
        pieces = read_pieces(files, 2000)
        assert len(pieces) > 2, pattern
        assert [p.first_row for p in pieces] == sorted({p.first_row for p in pieces})
        whole_docs, _ = _read(files)
        docs, dead = _read(files, 2000)
        assert not dead
        assert [(d["id"], d["text"], d["_order"]) for d in docs] == \
            [(d["id"], d["text"], d["_order"]) for d in whole_docs]
        assert [d["_order"][2] for d in docs] == list(range(300))  # row numbers stay exact


def test_gzip_cannot_be_split_and_is_named_in_a_warning(tmp_path):
    data = _jsonl_bytes(_records(200, 3), 3)
    (tmp_path / "big.jsonl.gz").write_bytes(gzip.compress(data))
    (tmp_path / "small.jsonl.gz").write_bytes(gzip.compress(data[:50]))
    (tmp_path / "plain.jsonl").write_bytes(data)
    files = expand_inputs([str(tmp_path / "*.jsonl*")])
    limit = len(gzip.compress(data)) - 1
    plan = reading_plan(files, limit)
    assert len(plan.warnings) == 1
    assert plan.warnings[0].startswith(str(tmp_path / "big.jsonl.gz") + " ")
    assert "read whole by one worker" in plan.warnings[0] and "shard it" in plan.warnings[0]
    by_name = {}
    for p in plan.pieces:
        by_name.setdefault(Path(p.path).name, []).append(p)
    assert len(by_name["big.jsonl.gz"]) == 1 and len(by_name["small.jsonl.gz"]) == 1
    assert len(by_name["plain.jsonl"]) > 1


def test_names_with_glob_characters_are_sized_and_split(tmp_path):
    data = _jsonl_bytes(_records(60, 4), 4)
    path = tmp_path / "part[1]?.jsonl"
    path.write_bytes(data)
    assert _file_size(str(path)) == len(data)  # FileSystems.match read "[1]" as a pattern
    files = expand_inputs([str(path)])
    assert len(read_pieces(files, 500)) > 1
    whole_docs, whole_dead = _read(files)
    docs, dead = _read(files, 500)
    assert [d["id"] for d in docs] == [d["id"] for d in whole_docs] and len(dead) == len(whole_dead)


# -- the whole pipeline: split vs whole, 1 and 2 workers ------------------------------------

def _corpus(folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.jsonl").write_bytes(_jsonl_bytes(_records(150, 5), 5))
    pq.write_table(pa.Table.from_pylist(_records(150, 6)), folder / "b[0].parquet", row_group_size=20)
    (folder / "c.jsonl").write_bytes(_jsonl_bytes(_records(40, 5), 7))  # ids shared with a.jsonl
    return [str(folder / "a.jsonl"), str(folder / "b[0].parquet"), str(folder / "c.jsonl")]


def _run(files, out: Path, workers: int, compact: bool) -> dict:
    flags = [f"--direct_num_workers={workers}", "--direct_running_mode=multi_threading"] if workers > 1 else []
    result = run_curation_pipeline(files, out, RunConfig.from_dict({"pools": {"num_pools": 2}}), compact,
                                   flags=flags)
    ST.delete(str(out))
    dead = [(row["source"], row["reason"], row["raw"], row["row"])
            for row in map(json.loads, dead_letter_lines(out))]
    return {"pools": sorted_rows(out, "pools", "id"), "dedup": sorted_rows(out, "dedup", "removed_id"),
            "dead": sorted(dead), "counters": counters.query(result)}


@pytest.mark.parametrize("compact", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_pipeline_reads_pieces_as_it_reads_whole_files_with_1_and_2_workers(tmp_path, compact):
    paths = _corpus(tmp_path / "in")
    files = expand_inputs(paths)
    whole = _run(files, tmp_path / "whole", 1, compact)
    pieces = read_pieces(files, 1500)
    assert len(pieces) > 2 * len(files)
    assert whole["pools"] and whole["dedup"] and whole["dead"]
    assert any("#" in r["id"] for r in whole["pools"]), "no renamed duplicate id"
    for workers in (1, 2):
        split = _run(pieces, tmp_path / f"split{workers}", workers, compact)
        for key in ("pools", "dedup", "dead", "counters"):
            assert split[key] == whole[key], (key, workers)

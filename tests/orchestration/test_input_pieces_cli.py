"""`curate run` with big inputs (issue 16, item 2): a file that can be split is read in pieces,
every document once; a big gzip file, which cannot be split, gets a launch warning naming it,
on stderr and in the manifest. The piece size is lowered so small files count (that pieces give
what whole files give is tested in tests/pipelines/test_ingest_pieces.py)."""
from __future__ import annotations

import gzip
import json
import random

from curate.orchestration.cli import main
from curate.pipelines import inputs
from tests.orchestration.curate_runs import pool_rows, random_text


def _lines(n: int, seed: int) -> bytes:
    rng = random.Random(seed)
    return b"".join(json.dumps({"id": f"s{seed}-{i}", "text": random_text(rng)}).encode() + b"\n"
                    for i in range(n))


def test_big_gzip_is_named_in_a_warning_and_big_jsonl_is_read_in_pieces(tmp_path, monkeypatch, capsys):
    (tmp_path / "in").mkdir()
    big_gz = tmp_path / "in" / "big[1].jsonl.gz"
    big_gz.write_bytes(gzip.compress(_lines(60, 1)))
    plain = tmp_path / "in" / "plain.jsonl"
    plain.write_bytes(_lines(60, 2))
    args = ["run", "--input", str(big_gz), "--input", str(plain), "--cache-dir", "none", "--quiet",
            "--no-catalog", "--workspace", str(tmp_path / "ws"), "--runner=FnApiRunner"]

    assert not inputs.reading_plan(inputs.expand_inputs([str(big_gz)])).warnings  # default: not big
    monkeypatch.setattr(inputs, "PIECE_BYTES", 2000)  # both files are "big" now
    assert len(inputs.read_pieces(inputs.expand_inputs([str(plain)]))) > 3
    assert main([*args, "--output", str(tmp_path / "split")]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and str(big_gz) in warnings[0] and "read whole by one worker" in warnings[0]
    manifest = json.loads((tmp_path / "split" / "manifest.json").read_text())
    assert len(manifest["warnings"]) == 1 and str(big_gz) in manifest["warnings"][0]
    assert [i["path"] for i in manifest["inputs"]] == [str(big_gz), str(plain)]  # per file, not piece
    # every document once (the texts are distinct random words: nothing is a duplicate)
    assert sorted(i for i, _ in pool_rows(tmp_path / "split")) == sorted(
        [f"s1-{i}" for i in range(60)] + [f"s2-{i}" for i in range(60)])

"""Issue 17 item 7 (bounded resources from one value) and item 10's NaN part: every case here
ran out of memory or time, or printed a bare NaN, before the change; now it is one line (or
bounded and fast)."""
from __future__ import annotations

import json
import time

import pytest

from curate.orchestration.cli import main


def _one_line_error(capsys, code) -> str:
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("curate "), err
    return err


def test_fit_rejects_one_absurd_samples_seen_row(tmp_path, capsys):
    obs = tmp_path / "obs.csv"
    obs.write_text("pool,samples_seen,unique_samples,metric\n"
                   "p0,1e6,1e6,1.0\np0,2e6,1e6,0.9\np0,4e6,1e6,0.85\np0,8e6,1e6,0.83\n"
                   "p0,1e308,1e6,0.8\n")
    started = time.perf_counter()
    code = main(["fit", str(obs), "-o", str(tmp_path / "law.json")])
    err = _one_line_error(capsys, code)
    assert "row 5: samples_seen 1e+308 is above the maximum 1e+15" in err
    assert time.perf_counter() - started < 10
    assert not (tmp_path / "law.json").exists()


def test_fit_rejects_a_mixture_row_passing_a_tiny_pool_too_often(tmp_path, capsys):
    obs = tmp_path / "obs.csv"
    obs.write_text("pool,samples_seen,unique_samples,metric\n"
                   "p0,1e6,1e6,1.0\np0,2e6,1e6,0.9\np1,1e6,1e6,0.95\np1,4e6,1e6,0.8\n"
                   "p0=1;p1=1,1e9,1e6,0.7\np0=1;p1=1,2e6,2e6,0.9\n")
    code = main(["fit", str(obs), "--pool-size", "p1=1", "--no-cv", "-o", str(tmp_path / "l.json")])
    err = _one_line_error(capsys, code)
    assert "row 5: 5e+08 passes over pool 'p1' (size 1)" in err

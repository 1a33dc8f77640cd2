"""The local default's worker processes (pipelines.options.with_local_workers)."""
from __future__ import annotations

import pytest

from curate.pipelines import options as O


def test_default_is_one_worker_per_cpu_capped(monkeypatch):
    monkeypatch.delenv(O.LOCAL_WORKERS_ENV, raising=False)
    monkeypatch.setattr(__import__("os"), "sched_getaffinity", lambda _: set(range(16)))
    assert O.local_worker_count() == O.LOCAL_WORKERS_MAX
    assert O.with_local_workers(["--x=1"]) == [
        "--x=1", f"--direct_num_workers={O.LOCAL_WORKERS_MAX}", "--direct_running_mode=multi_processing"]
    monkeypatch.setattr(__import__("os"), "sched_getaffinity", lambda _: {0})
    assert O.with_local_workers([]) == []  # one CPU: in-process


@pytest.mark.parametrize("given", [["--runner=DataflowRunner"], ["--runner", "FlinkRunner"],
                                   ["--direct_num_workers=3"], ["--direct_running_mode=in_memory"]])
def test_a_users_choice_is_kept(monkeypatch, given):
    monkeypatch.setenv(O.LOCAL_WORKERS_ENV, "2")
    assert O.with_local_workers(given) == given


def test_environment_override(monkeypatch):
    monkeypatch.setenv(O.LOCAL_WORKERS_ENV, "1")
    assert O.with_local_workers([]) == []
    monkeypatch.setenv(O.LOCAL_WORKERS_ENV, "3")
    assert O.with_local_workers([])[-2:] == ["--direct_num_workers=3", "--direct_running_mode=multi_processing"]
    for bad in ("two", "0"):
        monkeypatch.setenv(O.LOCAL_WORKERS_ENV, bad)
        with pytest.raises(ValueError, match=O.LOCAL_WORKERS_ENV):
            O.local_worker_count()


def test_the_run_command_gets_them(monkeypatch):
    from apache_beam.options.pipeline_options import DirectOptions

    from curate.orchestration.runner import pipeline_options

    monkeypatch.setenv(O.LOCAL_WORKERS_ENV, "2")
    direct = pipeline_options([]).view_as(DirectOptions)
    assert (direct.direct_num_workers, direct.direct_running_mode) == (2, "multi_processing")

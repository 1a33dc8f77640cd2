"""Recognising a pipeline failure that the machine caused (errors.environment_failure), holding
Beam's logged tracebacks until the outcome is known (worker_logs), and output-path checks made
before any work (output_paths). Real exceptions and real logging, no pipeline (fast)."""
from __future__ import annotations

import errno
import logging

import pytest

from curate.orchestration.errors import CurateError, environment_failure, pipeline_failure_message
from curate.orchestration.output_paths import check_output_dir, check_output_file, unwritable_dir
from curate.orchestration.worker_logs import hold_beam_errors

# the text a multi_processing worker sends back (abridged from a real run with a file-size limit)
WORKER_TEXT = """Traceback (most recent call last):
  File "apache_beam/runners/common.py", line 1512, in apache_beam.runners.common.DoFnRunner.process
  File "pyarrow/error.pxi", line 89, in pyarrow.lib.check_status
OSError: [Errno 28] No space left on device

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "apache_beam/runners/common.py", line 1602, in apache_beam.runners.common.DoFnRunner._reraise_augmented
RuntimeError: OSError: [Errno 28] No space left on device [while running 'Write/WritePool0/Write/WriteImpl/WriteBundles']
"""


def _tagged_in_process(exc: OSError) -> RuntimeError:
    """What the in-process FnApiRunner raises: a RuntimeError tagged with the step, chained."""
    try:
        raise exc
    except OSError as inner:
        try:
            raise RuntimeError(f"OSError: {inner} [while running 'NearDedup/WriteSigCache/Write']")
        except RuntimeError as outer:
            return outer


def test_worker_traceback_text_is_recognised():
    failure = environment_failure(RuntimeError(WORKER_TEXT))
    assert (failure.errno, failure.reason, failure.filename) == (errno.ENOSPC, "No space left on device", None)
    assert failure.step == "Write/WritePool0/Write/WriteImpl/WriteBundles"
    message = pipeline_failure_message(RuntimeError(WORKER_TEXT), "out", "ws/cache")
    assert message.startswith("out: No space left on device (ENOSPC, in step Write/WritePool0")
    assert "nothing was published to out" in message and "\n" not in message


def test_in_process_chain_gives_the_file_name():
    exc = _tagged_in_process(NotADirectoryError(errno.ENOTDIR, "Not a directory", "/x/cache"))
    assert pipeline_failure_message(exc, "out", "/x/cache").startswith("/x/cache: Not a directory (ENOTDIR")


def test_a_cache_step_without_a_file_name_names_the_cache():
    exc = _tagged_in_process(OSError(errno.EFBIG, "File too large"))
    assert pipeline_failure_message(exc, "out", "ws/cache").startswith("ws/cache: File too large (EFBIG")


@pytest.mark.parametrize("exc", [
    RuntimeError("ZeroDivisionError: division by zero [while running 'Score']"),  # a bug: keep it
    RuntimeError(WORKER_TEXT.replace("[Errno 28] No space left on device", "[Errno 9] Bad file descriptor")),
    FileNotFoundError(errno.ENOENT, "No such file", "in.jsonl"),  # before the pipeline: not tagged
])
def test_other_failures_are_not_taken_for_the_machines(exc):
    assert environment_failure(exc) is None
    assert pipeline_failure_message(exc, "out", None) is None


def _log_and_raise(exc):
    logging.getLogger("apache_beam.runners.common").error("step failed: traceback here")
    raise exc


def test_beam_error_logs_are_dropped_for_a_one_line_failure(caplog):
    with caplog.at_level(logging.INFO):
        with pytest.raises(RuntimeError):
            with hold_beam_errors():
                _log_and_raise(RuntimeError(WORKER_TEXT))
    assert "step failed" not in caplog.text


@pytest.mark.parametrize("exc", [RuntimeError("ZeroDivisionError: x [while running 'Score']"), None])
def test_beam_error_logs_are_shown_for_any_other_outcome(caplog, exc):
    with caplog.at_level(logging.INFO):
        try:
            with hold_beam_errors():
                logging.getLogger("apache_beam.runners.common").error("step failed: traceback here")
                if exc is not None:
                    raise exc
        except RuntimeError:
            pass
    assert "step failed: traceback here" in caplog.text
    assert logging.getLogger("apache_beam.runners.common").propagate  # restored


def test_output_checks(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(CurateError, match="is a folder"):
        check_output_file(folder, "-o")
    with pytest.raises(CurateError, match="is a file, not a folder"):
        check_output_file(a_file / "obs.parquet", "-o")
    with pytest.raises(CurateError, match="exists and is not a folder"):
        check_output_dir(a_file, "--output")
    check_output_file(tmp_path / "new" / "deeper" / "obs.parquet", "-o")  # created later by the command
    check_output_dir(tmp_path / "new-folder", "--output")
    assert not (tmp_path / "new").exists() and not (tmp_path / "new-folder").exists()  # nothing created
    assert unwritable_dir(a_file / "cache") == "Not a directory"
    assert unwritable_dir(tmp_path / "cache") is None and (tmp_path / "cache").is_dir()
    assert list((tmp_path / "cache").iterdir()) == []  # the write probe leaves nothing


def test_probe_to_a_folder_fails_before_any_work(tmp_path, capsys):
    from curate.orchestration.cli import main

    code = main(["probe", str(tmp_path / "no-run"), "--target", "pools", "-o", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"-o {tmp_path} is a folder" in err


def test_held_worker_lines_follow_the_outcome_even_when_late():
    import io

    from curate.orchestration.worker_logs import HOLD_LIMIT_BYTES, _HeldLines

    out = io.BytesIO()
    held = _HeldLines(out)
    held.add(b"Traceback (most recent call last):\n")
    assert out.getvalue() == b""  # held until the outcome is known
    held.finish(show=False)
    held.add(b"late line from a worker\n")
    assert out.getvalue() == b""  # a one-line failure: dropped, also when late

    shown = _HeldLines(out)
    shown.add(b"an error\n")
    shown.finish(show=True)
    shown.add(b"late\n")
    assert out.getvalue() == b"an error\nlate\n"

    bounded = _HeldLines(io.BytesIO())
    bounded.add(b"x" * (HOLD_LIMIT_BYTES + 1))  # memory stays bounded: shown once past the limit
    assert bounded.lines == [] and bounded.out.getvalue()

"""`curate run` / `curate stats`: help texts and one-line user errors (no pipeline run)."""
import subprocess
import sys

import pytest

from curate.orchestration.cli import main


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "curate.orchestration.cli", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("command,words", [("run", ["--input", "--output", "--pools", "Beam"]),
                                           ("stats", ["DIR", "--json", "DuckDB"])])
def test_help_explains_itself(command, words, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for word in words:
        assert word in out


def _one_line_error(result, fragment):
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert fragment in lines[0]


def test_missing_input_is_one_line_error(tmp_path):
    r = _cli("run", "--input", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "out"))
    _one_line_error(r, "input not found")
    assert not (tmp_path / "out").exists()


def test_unreadable_and_invalid_config_are_one_line_errors(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "hello"}\n')
    r = _cli("run", "--input", str(data), "--output", str(tmp_path / "o"), "--config", str(tmp_path / "no.yaml"))
    _one_line_error(r, "cannot read config")
    bad = tmp_path / "bad.yaml"
    bad.write_text("near_dedup: [unclosed\n")
    _one_line_error(_cli("run", "--input", str(data), "--output", str(tmp_path / "o"), "--config", str(bad)),
                    "cannot parse config")
    typo = tmp_path / "typo.json"
    typo.write_text('{"near_dedup": {"treshold": 0.9}}')
    _one_line_error(_cli("run", "--input", str(data), "--output", str(tmp_path / "o"), "--config", str(typo)),
                    "unknown key 'near_dedup.treshold'")
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"near_dedup": {"threshold": 1.5}}')
    _one_line_error(_cli("run", "--input", str(data), "--output", str(tmp_path / "o"), "--config", str(wrong)),
                    "near_dedup.threshold")


def test_unknown_option_is_one_line_error(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "hello"}\n')
    r = _cli("run", "--input", str(data), "--output", str(tmp_path / "o"), "--no-such-option", "3")
    _one_line_error(r, "--no-such-option")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag,fragment", [
    ("--direct_num_workers=abc", "invalid int value: 'abc'"),
    ("--direct_running_mode=bogus", "invalid choice: 'bogus'"),
])
def test_beam_option_with_a_bad_value_is_one_line_error(tmp_path, capsys, flag, fragment):
    # Beam's own parser printed the usage of every Beam option (~120 lines) before the error
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "hello"}\n')
    code = main(["run", "--input", str(data), "--output", str(tmp_path / "o"), flag])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and fragment in err, err
    assert not (tmp_path / "o").exists()


def test_stats_on_missing_run_is_one_line_error(tmp_path):
    _one_line_error(_cli("stats", str(tmp_path)), "is not a curate run directory: no manifest.json")


def test_beam_options_pass_through_and_default_runner():
    from curate.orchestration.runner import pipeline_options, unknown_beam_args

    assert unknown_beam_args(["--direct_num_workers=2", "--direct_running_mode", "multi_processing",
                              "--runner=FnApiRunner"]) == []
    assert unknown_beam_args(["--bogus=1"]) == ["--bogus=1"]
    opts = pipeline_options(["--direct_num_workers=2"]).get_all_options()
    assert opts["runner"] == "FnApiRunner" and opts["direct_num_workers"] == 2


def test_config_overrides_and_cut_points(tmp_path):
    from curate.orchestration.config import resolve_config
    from curate.orchestration.errors import CurateError

    cfg = resolve_config(pools=3, id_field="key", text_field="body", max_text_bytes=10)
    assert cfg["pools"]["num_pools"] == 3 and cfg["input"]["id_field"] == "key"
    cuts = tmp_path / "cuts.yaml"
    cuts.write_text("pools:\n  cut_points: [0.8, 0.5]\nfilter:\n  drop_failed: [c4]\n")
    cfg = resolve_config(str(cuts))
    assert cfg["pools"]["num_pools"] == 3 and cfg["filter"]["drop_failed"] == ["c4"]
    with pytest.raises(CurateError, match="contradicts"):
        resolve_config(str(cuts), pools=5)


def test_embed_backend_resolved_into_the_config(monkeypatch):
    """A null embed.backend is fixed at resolution time from $CURATE_EMBED_BACKEND, so the run
    fingerprint changes with the backend (no reuse of a torch run for an int8 request) and
    remote workers get the backend explicitly; without embedding the variable changes nothing."""
    from curate.orchestration.config import resolve_config
    from curate.orchestration.errors import CurateError
    from curate.orchestration.fingerprint import run_fingerprint
    from curate.scorers import embedding_backends as eb

    monkeypatch.delenv(eb.BACKEND_ENV, raising=False)
    plain = resolve_config(semantic_dedup=True)
    assert plain["embed"]["backend"] == "torch"
    no_embed = resolve_config()
    monkeypatch.setattr(eb, "backend_available", lambda name: True)
    monkeypatch.setenv(eb.BACKEND_ENV, "openvino-int8")
    from_env = resolve_config(semantic_dedup=True)
    assert from_env["embed"]["backend"] == "openvino-int8"
    assert run_fingerprint(from_env, [])["run"] != run_fingerprint(plain, [])["run"]
    assert resolve_config() == no_embed  # embedding off: the variable does not matter
    assert resolve_config(semantic_dedup=True, embed_backend="torch")["embed"]["backend"] == "torch"

    monkeypatch.setattr(eb, "backend_available", lambda name: name == "torch")
    with pytest.raises(CurateError, match=r"fast-cpu"):
        resolve_config(semantic_dedup=True, embed_backend="openvino-int8")


def test_embed_backend_flag_and_gpu_conflict(tmp_path, monkeypatch):
    from curate.orchestration.cli import build_parser
    from curate.orchestration.config import resolve_config
    from curate.orchestration.errors import CurateError
    from curate.scorers import embedding_backends as eb

    args = build_parser().parse_args(["run", "--input", "x.jsonl", "--output", str(tmp_path / "r"),
                                      "--semantic-dedup", "--embed-backend", "openvino-int8"])
    assert args.embed_backend == "openvino-int8"
    action = next(a for a in build_parser()._subparsers._group_actions[0].choices["run"]._actions
                  if a.dest == "embed_backend")
    assert tuple(action.choices) == eb.BACKENDS  # the CLI's literal list follows the backends
    monkeypatch.setattr(eb, "backend_available", lambda name: True)
    cfg = tmp_path / "gpu.yaml"
    cfg.write_text("embed:\n  device: cuda\n")
    with pytest.raises(CurateError, match="CPU only"):
        resolve_config(str(cfg), semantic_dedup=True, embed_backend="openvino-int8")

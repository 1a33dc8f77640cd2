"""More pools than kept documents leaves pools empty: `curate run` says which and why, on
stderr and in manifest.json `warnings` (also when it reuses the published run), and says
nothing when every pool has a document."""
from __future__ import annotations

import json

from curate.orchestration.cli import main
from tests.orchestration.curate_runs import synthetic_corpus


def _run(corpus, out, pools: int, *extra) -> int:
    return main(["run", "--input", str(corpus), "--output", str(out), "--pools", str(pools),
                 "--no-catalog", "--cache-dir", "none", "--quiet", *extra])


def test_empty_pools_are_named_on_stderr_and_in_the_manifest(tmp_path, capsys):
    corpus = synthetic_corpus(tmp_path / "corpus", n=3, seed=3, n_exact=0)
    out = tmp_path / "run"
    assert _run(corpus, out, 6) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["kept"] == 3
    empty = sorted(k for k, n in manifest["written_rows"]["per_pool"].items() if n == 0)
    assert len(empty) == 3
    (note,) = [w for w in manifest["warnings"] if "empty" in w]
    assert note.startswith(f"pools {', '.join(empty)} of 6 are empty: 3 kept documents for 6 pools")
    err = capsys.readouterr().err
    assert f"curate run: warning: {note}" in err.splitlines()

    # a reused run says it again; --json also lists it in the summary
    assert _run(corpus, out, 6, "--json") == 0
    captured = capsys.readouterr()
    assert f"curate run: warning: {note}" in captured.err.splitlines()
    summary = json.loads(captured.out)
    assert summary["reused"] is True and note in summary["warnings"]


def test_no_warning_when_every_pool_has_a_document(tmp_path, capsys):
    corpus = synthetic_corpus(tmp_path / "corpus", n=3, seed=3, n_exact=0)
    out = tmp_path / "run"
    assert _run(corpus, out, 3) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["written_rows"]["per_pool"].values()) == {1}
    assert not any("empty" in w for w in manifest["warnings"])
    assert "empty" not in capsys.readouterr().err

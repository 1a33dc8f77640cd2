"""curate never deletes what it did not write: an --output holding curate's names without
curate's markers is refused (the reliability issue's first failure), while a publish of
curate's own that was killed is still cleaned up by the next run."""
from __future__ import annotations

import pytest

from curate.orchestration.config import resolve_config
from curate.orchestration.errors import CurateError
from curate.orchestration.runner import execute_job
from curate.pipelines import publish
from curate.pools import rundir
from tests.orchestration.curate_runs import pool_rows, synthetic_corpus

BEAM = ["--runner=FnApiRunner"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_foreign_entries_with_curate_names_are_refused_and_kept(tmp_path, overwrite):
    corpus = synthetic_corpus(tmp_path / "corpus", n=40, seed=1)
    out = tmp_path / "d"
    (out / "embeddings").mkdir(parents=True)
    (out / "pools").mkdir()
    (out / "embeddings" / "vectors.npy").write_text("keep")
    (out / "manifest.json").write_text('{"name": "x"}')
    with pytest.raises(CurateError, match="that curate did not write") as err:
        execute_job([str(corpus)], str(out), resolve_config(pools=2), BEAM, overwrite=overwrite)
    assert "\n" not in str(err.value)
    assert (out / "embeddings" / "vectors.npy").read_text() == "keep"
    assert (out / "manifest.json").read_text() == '{"name": "x"}' and (out / "pools").is_dir()


def test_a_killed_publish_is_marked_and_cleaned_by_the_next_run(tmp_path, monkeypatch):
    corpus = synthetic_corpus(tmp_path / "corpus", n=40, seed=2)
    out = tmp_path / "run"
    config = resolve_config(pools=2)
    real_move = publish._move
    calls = []

    def crash_after_pools(staging, run_dir, files):
        calls.append(files)
        if len(calls) > 1:
            raise KeyboardInterrupt("simulated kill during publish")
        return real_move(staging, run_dir, files)

    monkeypatch.setattr(publish, "_move", crash_after_pools)
    with pytest.raises(KeyboardInterrupt):
        execute_job([str(corpus)], str(out), config, BEAM)
    monkeypatch.setattr(publish, "_move", real_move)
    assert (out / rundir.PUBLISHING).exists() and publish.is_own_leftover(str(out))
    result = execute_job([str(corpus)], str(out), config, BEAM)
    assert not result.reused and publish.is_published(str(out))
    assert not (out / rundir.PUBLISHING).exists()  # removed once the manifest is in
    assert len(pool_rows(out)) == result.manifest["counts"]["kept"]

"""curate never deletes what it did not write: an --output holding curate's names without
curate's markers is refused (the reliability issue's first failure). A killed publish of
curate's own, marked by _PUBLISHING, is still cleaned up by the next run: test_resume_runs."""
from __future__ import annotations

import pytest

from curate.orchestration.config import resolve_config
from curate.orchestration.errors import CurateError
from curate.orchestration.runner import execute_job
from tests.orchestration.curate_runs import synthetic_corpus

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


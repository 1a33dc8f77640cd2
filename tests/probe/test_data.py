"""Probe data: reading a run's pools, the held-out evaluation target, the U-token subsets."""
from __future__ import annotations

import json

import numpy as np
import pytest

from curate.probe.data import prepare_data, read_target_file
from curate.probe.errors import ProbeError
from curate.probe.run_pools import load_pools

from tests.probe.probe_run import TINY, tiny_design as _design, write_probe_run


@pytest.fixture(scope="module")
def run_dir(corpora_dir, tmp_path_factory):
    return write_probe_run(corpora_dir, tmp_path_factory.mktemp("probe_run"))


def test_load_pools_reads_hive_layout_best_first(run_dir):
    pools = load_pools(run_dir)
    assert list(pools) == ["pool0", "pool1", "pool2"]
    assert len(pools["pool2"]) == 2000


def test_load_pools_refuses_a_directory_without_pools(tmp_path):
    # not a run at all: the run-directory contract's one message
    with pytest.raises(ProbeError, match="is not a curate run directory: no manifest.json"):
        load_pools(tmp_path)
    # a published run whose pools hold no document
    from tests.pools.runfixture import publish_manifest

    publish_manifest(tmp_path, {"counts": {"kept": 0}})
    with pytest.raises(ProbeError, match="no documents under"):
        load_pools(tmp_path)


def test_target_is_held_out_and_spans_all_pools(run_dir):
    pools = load_pools(run_dir)
    data = prepare_data(pools, _design())
    for name, ids in data.train_ids.items():
        assert ids and not (set(ids) & data.target_ids)
    origin = {i.split("-")[0] for i in data.target_ids}
    assert {"news_articles", "c4_sample_c", "health_tweets"} <= origin | {"wikipedia_30"}
    assert any(i.startswith("health_tweets") for i in data.target_ids)
    assert data.target.shape[1] == TINY.context + 1
    # U tokens per pool (whole windows); the large run's pool has large_factor * U
    assert {k: v.shape[0] for k, v in data.subsets.items()} == {p: 2048 // 32 for p in pools}
    assert data.large_subset.shape[0] == 2 * 2048 // 32
    assert np.array_equal(data.large_subset[:64], data.subsets["pool0"])


def test_user_target_drops_identical_training_documents(run_dir, tmp_path):
    pools = load_pools(run_dir)
    chosen = pools["pool1"][:3]
    target = tmp_path / "target.jsonl"
    target.write_text("".join(json.dumps({"text": t}) + "\n" for _, t in chosen))
    data = prepare_data(pools, _design(), read_target_file(target))
    assert data.target_source == "user target file"
    assert not {i for i, _ in chosen} & set(data.train_ids["pool1"])


def test_unreadable_target_and_too_small_pool_are_probe_errors(run_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\nnot json\n')
    with pytest.raises(ProbeError, match=r"bad.jsonl:2: not JSON"):
        read_target_file(bad)
    pools = load_pools(run_dir)
    with pytest.raises(ProbeError, match="pool pool0 has only"):
        prepare_data(pools, _design(unique_tokens=10_000_000))

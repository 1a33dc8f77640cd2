"""The Beam-free parts of materialize: prefix selection, epochs, spacing, shard boundaries."""
from __future__ import annotations

import random

import numpy as np

from curate.pipelines.materialize_core import (PoolTarget, copies_of, nearest_prefix, select_pool,
                                               shard_boundaries, space_copies)


def test_nearest_prefix_rounds_to_the_closer_document():
    cum = np.array([10, 20, 30, 40])
    assert nearest_prefix(cum, 24) == 2 and nearest_prefix(cum, 26) == 3
    assert nearest_prefix(cum, 0) == 0 and nearest_prefix(cum, 100) == 4


def test_partial_epoch_makes_up_the_rounding_of_the_subset():
    rng = np.random.default_rng(0)
    units = rng.integers(50, 150, size=500)
    target = PoolTarget("pool0", 0, unique=20_000.0, samples=20_000.0 * 2.3, epochs=2.3)
    sel = select_pool(target, np.zeros(500), rng.integers(0, 2**63, 500, dtype=np.uint64),
                      rng.integers(0, 2**63, 500, dtype=np.uint64), units)
    written = sel["full_epochs"] * sel["unique_units"] + sel["partial_units"]
    assert sel["full_epochs"] == 2 and abs(written - target.samples) <= units.max()
    assert abs(sel["unique_units"] - 20_000) <= units.max() / 2


def test_integer_epochs_have_no_partial_epoch():
    target = PoolTarget("p", 0, unique=10.0, samples=80.0 * (1 - 1e-12), epochs=8.0 * (1 - 1e-12))
    assert target.full_epochs == 8 and not target.has_partial
    sel = select_pool(target, np.zeros(20), np.arange(20, dtype=np.uint64),
                      np.arange(20, dtype=np.uint64), np.ones(20, dtype=np.int64))
    assert sel["unique_docs"] == 10 and sel["partial_docs"] == 0
    assert copies_of(sel, (0.0, 3), 3) == 8 and copies_of(sel, (0.0, 15), 15) == 0


def test_spacing_keeps_copies_apart_and_is_deterministic():
    rng = random.Random(1)
    rows = [(d, e) for d in range(60) for e in range(4)]
    rng.shuffle(rows)
    out, violations, gap = space_copies(rows, lambda r: r[0], window=20)
    assert sorted(out) == sorted(rows) and violations == 0 and gap >= 20
    assert space_copies(rows, lambda r: r[0], window=20)[0] == out


def test_spacing_counts_what_cannot_be_spaced():
    rows = [("a", 0), ("a", 1), ("a", 2), ("b", 0)]  # three copies of a in four rows
    out, violations, gap = space_copies(rows, lambda r: r[0], window=3)
    assert sorted(out) == sorted(rows) and violations >= 1 and gap < 3


def test_shard_boundaries_split_equal_counts():
    keys = np.random.default_rng(2).integers(0, 2**63, 1003, dtype=np.uint64)
    bounds = shard_boundaries(keys, 7)
    counts = np.bincount(np.searchsorted(np.array(bounds, dtype=np.uint64), keys, side="right"), minlength=7)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 1003

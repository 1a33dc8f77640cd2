"""QuantileCutsFn.merge_accumulators folds partial accumulators one at a time (issue 16 item 2).

Results: the exact regime gives exact cuts whatever the merge order; past `exact_max_docs`
(also when the limit is crossed in the middle of a merge) the cuts are exactly those of the
former merge, which held every partial accumulator in one list (`merge_as_one_list` below).
Memory: merging partial accumulators read from a generator peaks at the same traced memory for
10 or 2000 of them, and the exact regime holds about `exact_max_docs` keys, not the corpus.
"""
from __future__ import annotations

import bisect
import gc
import random
import tracemalloc

import pytest
from apache_beam.transforms.stats import ApproximateQuantilesCombineFn

from curate.pipelines.pooling import QuantileCutsFn
from curate.pools.bucketing import exact_rank_cuts, rank_key

NUM_POOLS = 4


def merge_as_one_list(fn: QuantileCutsFn, accs):
    """The merge as it was before issue 16: every partial accumulator in one list."""
    accs = list(accs)
    total = sum(len(s) for k, s in accs if k == "exact")
    if all(k == "exact" for k, _ in accs) and total <= fn.exact_max_docs:
        merged = []
        for _, s in accs:
            merged.extend(s)
        return ("exact", merged)
    states = [s if k == "approx" else fn._to_approx(s) for k, s in accs]
    return ("approx", fn._approx_fn().merge_accumulators(states))


def keys_for(first: int, count: int) -> list:
    """`count` rank keys with many tied scores (ties go by id), the same for the same arguments."""
    return [rank_key(((i * 7919) % 101) / 100, f"d{i:08d}") for i in range(first, first + count)]


def approx_state(keys):
    """A partial approximate accumulator as QuantileCutsFn makes them (same buffer spec); filled
    in one batch, which is fast even under tracemalloc."""
    fn = ApproximateQuantilesCombineFn.create(num_quantiles=NUM_POOLS + 1, input_batched=True)
    return fn.add_input(fn.create_accumulator(), list(keys))


def partials(plan):
    """Fresh partial accumulators from `plan`, a list of ("exact" | "approx", number of keys);
    consecutive key ranges, so the union is keys_for(0, total)."""
    out, start = [], 0
    for kind, n in plan:
        keys = keys_for(start, n)
        out.append(("exact", keys) if kind == "exact" else ("approx", approx_state(keys)))
        start += n
    return out


def output(fn, acc):
    cuts, mode = fn.extract_output(acc)
    return mode, cuts


def rank_errors(cuts, keys) -> list[float]:
    """For each cut: |its rank - the exact cut's rank| / N."""
    ordered = sorted(keys)
    exact = exact_rank_cuts(keys, cuts.num_pools)
    n = len(ordered)
    return [abs(bisect.bisect_left(ordered, c) - bisect.bisect_left(ordered, e)) / n
            for c, e in zip(cuts.cuts, exact.cuts)]


# --- results ---------------------------------------------------------------------------------

def test_exact_regime_gives_exact_cuts_in_any_merge_order():
    plan = [("exact", n) for n in (37, 1, 80, 0, 55, 27)]  # 200 keys, one partial empty
    keys = keys_for(0, 200)
    fn = QuantileCutsFn(NUM_POOLS, exact_max_docs=200)  # the limit itself still fits
    expected = ("exact", exact_rank_cuts(keys, NUM_POOLS))
    rng = random.Random(7)
    for _ in range(6):
        accs = partials(plan)
        rng.shuffle(accs)
        merged = fn.merge_accumulators(iter(accs))
        assert merged[0] == "exact" and len(merged[1]) == 200
        assert output(fn, merged) == expected
    # a merge of merges (Beam may merge in a tree) gives the same
    accs = partials(plan)
    tree = fn.merge_accumulators([fn.merge_accumulators(accs[3:]), fn.merge_accumulators(accs[:3])])
    assert output(fn, tree) == expected


def test_one_key_past_the_limit_switches_to_approximate():
    fn = QuantileCutsFn(NUM_POOLS, exact_max_docs=199)
    merged = fn.merge_accumulators(partials([("exact", 100), ("exact", 100)]))
    assert merged[0] == "approx"
    assert output(fn, merged) == output(fn, merge_as_one_list(fn, partials([("exact", 100), ("exact", 100)])))


@pytest.mark.parametrize("plan", [
    # exact partials that fit, then one that crosses the limit, then more of both kinds
    [("exact", 120), ("exact", 200), ("exact", 90), ("exact", 300), ("approx", 900), ("exact", 40), ("approx", 700)],
    # an approximate partial first: approximate from the start
    [("approx", 1500), ("exact", 10), ("exact", 400), ("approx", 61)],
    # exact partials that fit, then an approximate one
    [("exact", 50), ("exact", 50), ("approx", 2000), ("exact", 5)],
    # many small exact partials, none alone past the limit
    [("exact", 31)] * 60,
], ids=["switch-mid-merge", "approx-first", "approx-after-exact", "many-small-exact"])
def test_approximate_regime_gives_the_one_list_merge_cuts(plan):
    fn = QuantileCutsFn(NUM_POOLS, exact_max_docs=500)
    streamed = output(fn, fn.merge_accumulators(iter(partials(plan))))
    assert streamed == output(fn, merge_as_one_list(fn, partials(plan)))
    mode, cuts = streamed
    assert mode == "approximate"
    # Beam's documented bound: each cut within epsilon * N ranks, epsilon = 1 / num_quantiles
    total = sum(n for _, n in plan)
    assert max(rank_errors(cuts, keys_for(0, total))) < 1 / (NUM_POOLS + 1)


def test_a_merged_approximate_accumulator_merges_again():
    fn = QuantileCutsFn(NUM_POOLS, exact_max_docs=100)
    accs = partials([("exact", 80), ("exact", 80), ("approx", 500), ("exact", 60)])
    tree = fn.merge_accumulators([fn.merge_accumulators(accs[:2]), fn.merge_accumulators(accs[2:])])
    mode, cuts = output(fn, tree)
    assert mode == "approximate"
    assert max(rank_errors(cuts, keys_for(0, 720))) < 1 / (NUM_POOLS + 1)


# --- memory ----------------------------------------------------------------------------------

def traced_peak(fn: QuantileCutsFn, make_accs) -> tuple[int, tuple]:
    """Peak traced bytes while `fn` merges the accumulators that `make_accs()` yields, and the
    merged accumulator.

    Every Beam _QuantileState is a reference cycle (it keeps a bound method of itself), so a
    state the merge has let go of is freed only by the cyclic collector; `accs` runs it before
    each accumulator so the peak measures what the merge holds, not when the collector ran.
    gc.freeze keeps those collections cheap (only objects made during the merge are scanned).
    """
    if tracemalloc.is_tracing():
        pytest.skip("tracemalloc already runs")
    gc.collect()
    gc.freeze()
    tracemalloc.start()
    try:
        merged = fn.merge_accumulators(make_accs())
        return tracemalloc.get_traced_memory()[1], merged
    finally:
        tracemalloc.stop()
        gc.unfreeze()


def generated(kind: str, count: int, per: int, collect: bool = True):
    """A callable giving `count` partial accumulators of `per` keys each, made one at a time."""
    return lambda: _generate(kind, count, per, collect)


def _generate(kind, count, per, collect):
    for a in range(count):
        keys = keys_for(a * per, per)
        if collect:
            gc.collect()
        yield ("exact", keys) if kind == "exact" else ("approx", approx_state(keys))


# A saturated approximate summary holds num_buffers x buffer_size keys (25 x 60 for 5
# quantiles); the "few" merges below already fill it, so the peak may not grow past that.
FLAT_FACTOR = 1.5


def test_approximate_merge_memory_does_not_grow_with_the_number_of_partials():
    fn = QuantileCutsFn(NUM_POOLS, exact_max_docs=100)
    few, merged_few = traced_peak(fn, generated("approx", 20, 120))
    many, merged_many = traced_peak(fn, generated("approx", 2000, 120))
    assert merged_few[0] == merged_many[0] == "approx"
    assert many <= FLAT_FACTOR * few, (few, many)
    # the measurement can see a funnel: a merge that holds all 2000 peaks > 10x higher (no
    # collections here: nothing is garbage, and scanning 400k live keys 2000 times is slow)
    held, _ = traced_peak(fn, lambda: iter(list(_generate("approx", 2000, 120, False))))
    assert held > 10 * many, (many, held)


def test_exact_partials_past_the_limit_merge_in_flat_memory():
    fn = QuantileCutsFn(NUM_POOLS, exact_max_docs=1000)
    few, merged_few = traced_peak(fn, generated("exact", 50, 60))  # crosses the limit at the 17th
    many, merged_many = traced_peak(fn, generated("exact", 2000, 60))
    assert merged_few[0] == merged_many[0] == "approx"
    assert many <= FLAT_FACTOR * few, (few, many)


def test_exact_regime_holds_about_exact_max_docs_keys():
    """Merging 20x `exact_max_docs` keys in exact partials peaks no higher than twice what an
    exact merge of `exact_max_docs` keys needs: the exact keys held are capped by the limit."""
    limit = 5000
    fn = QuantileCutsFn(NUM_POOLS, exact_max_docs=limit)
    at_limit, merged = traced_peak(fn, generated("exact", limit // 250, 250))
    assert merged[0] == "exact" and len(merged[1]) == limit
    past, merged = traced_peak(fn, generated("exact", 20 * limit // 250, 250))
    assert merged[0] == "approx"
    assert past <= 2 * at_limit, (at_limit, past)
    # and the limit is what it scales with: a 4x limit peaks > 2x higher on the same keys
    big = QuantileCutsFn(NUM_POOLS, exact_max_docs=4 * limit)
    at_big_limit, merged = traced_peak(big, generated("exact", 4 * limit // 250, 250))
    assert merged[0] == "exact" and at_big_limit > 2 * at_limit, (at_limit, at_big_limit)

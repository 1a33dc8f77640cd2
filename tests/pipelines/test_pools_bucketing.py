import random

import pytest

from curate.pools import stats
from curate.pools.bucketing import (cuts_from_json, empty_pools_warning, exact_rank_cuts, rank_cuts_from_quantiles,
                                    rank_key, score_cuts)


def test_exact_rank_cuts_give_equal_pools_even_with_ties():
    rng = random.Random(0)
    docs = [(round(rng.random(), 1), f"d{i:03d}") for i in range(103)]  # many ties
    cuts = exact_rank_cuts((rank_key(s, i) for s, i in docs), 4)
    pools = [cuts.assign(s, i) for s, i in docs]
    sizes = [pools.count(k) for k in range(4)]
    assert sizes == [26, 26, 26, 25]
    by_pool = {k: [s for (s, _), p in zip(docs, pools) if p == k] for k in range(4)}
    for k in range(3):
        assert min(by_pool[k]) >= max(by_pool[k + 1])  # pool 0 = best


def test_ties_broken_by_id_deterministically():
    docs = [(0.5, f"id{i}") for i in range(8)]
    cuts = exact_rank_cuts((rank_key(s, i) for s, i in docs), 2)
    assert [cuts.assign(s, i) for s, i in docs] == [0, 0, 0, 0, 1, 1, 1, 1]


def test_score_cuts_and_json_round_trip():
    cuts = score_cuts([0.3, 0.8, 0.5])
    assert [cuts.assign(s, "x") for s in (0.9, 0.8, 0.6, 0.5, 0.4, 0.1)] == [0, 0, 1, 1, 2, 3]
    assert cuts_from_json(cuts.to_json()) == cuts
    rank = exact_rank_cuts([rank_key(0.1 * i, str(i)) for i in range(10)], 3)
    assert cuts_from_json(rank.to_json()) == rank
    with pytest.raises(ValueError):
        score_cuts([0.5, 0.5])


def test_fewer_docs_than_pools_leaves_trailing_pools_empty():
    cuts = exact_rank_cuts([rank_key(0.9, "a"), rank_key(0.1, "b")], 4)
    assert (cuts.assign(0.9, "a"), cuts.assign(0.1, "b")) == (0, 2)
    one = exact_rank_cuts([rank_key(0.5, "only")], 3)
    assert one.assign(0.5, "only") == 0


def test_quantile_cuts_from_approximate_output():
    qs = [rank_key(1.0, "a"), rank_key(0.7, "b"), rank_key(0.3, "c")]
    cuts = rank_cuts_from_quantiles(qs, 2)
    assert cuts.assign(0.9, "z") == 0 and cuts.assign(0.5, "z") == 1


def test_stats_accumulator_merges_and_finalises():
    docs = [{"chars": 10, "tokens": 3, "score": s, "source": src}
            for s, src in ((0.2, "a"), (0.6, "b"), (0.4, "a"))]
    acc1 = stats.add(stats.empty(), docs[0])
    acc2 = stats.add(stats.add(stats.empty(), docs[1]), docs[2])
    row = stats.finalize(stats.merge([acc1, acc2]), 0)
    assert row["docs"] == 3 and row["chars"] == 30 and row["tokens"] == 9
    assert row["score_min"] == 0.2 and row["score_max"] == 0.6
    assert row["score_mean"] == pytest.approx(0.4)
    assert row["source_share"] == '{"a": 0.6666666666666666, "b": 0.3333333333333333}'
    assert stats.finalize(stats.empty(), 3)["score_mean"] is None


def test_empty_pools_warning_names_the_pools_and_why():
    two_docs = [rank_key(0.9, "a"), rank_key(0.1, "b")]
    cuts = {"mode": "exact", **exact_rank_cuts(two_docs, 4).to_json()}
    per_pool = {str(k): sum(1 for s, i in ((0.9, "a"), (0.1, "b"))
                            if exact_rank_cuts(two_docs, 4).assign(s, i) == k) for k in range(4)}
    assert per_pool == {"0": 1, "1": 0, "2": 1, "3": 0}
    note = empty_pools_warning(per_pool, cuts)
    assert note.startswith("pools 1, 3 of 4 are empty: 2 kept documents for 4 pools")
    assert "--pools (pools.num_pools) to 2 or fewer" in note
    # explicit score cuts: the empty pool's score range is named
    note = empty_pools_warning({"0": 3, "1": 0, "2": 2}, {"mode": "explicit", **score_cuts([0.5, 0.8]).to_json()})
    assert note.startswith("pool 1 of 3 is empty: no kept document has a score in its range")
    assert "pool 1: 0.5 <= score < 0.8" in note
    assert empty_pools_warning({"0": 0, "1": 0}, {"mode": "exact", **exact_rank_cuts([], 2).to_json()}) == \
        "pools 0, 1 of 2 are empty: no document was kept"
    # no empty pool, no warning
    assert empty_pools_warning({"0": 2, "1": 1}, {"mode": "exact", **exact_rank_cuts(two_docs[:1] * 3, 2).to_json()}) is None

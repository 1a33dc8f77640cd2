"""AssignPools alone: pool 0 is the best, documents ordered by (-score, id) so ties go by id;
exact rank cuts give equal pools; explicit score cuts; the cuts side output says which."""
import apache_beam as beam
from apache_beam.testing.util import BeamAssertException, assert_that, equal_to

from curate.pipelines.pooling import AssignPools
from curate.pipelines.stage_configs import PoolsConfig
from tests.pipelines.stage_helpers import fnapi_pipeline

SCORES = {"a": 0.9, "b": 0.5, "c": 0.5, "d": 0.5, "e": 0.5, "f": 0.1, "g": 0.7, "h": 0.3}
DOCS = [{"id": i, "text": f"text {i}", "source": "web", "score": s} for i, s in SCORES.items()]


def assign_pools(**settings) -> AssignPools:
    """The stage as `build_curation` makes it: from its typed `pools` config."""
    return AssignPools.from_config(PoolsConfig(**settings))


def ids_and_pools(pooled):
    return pooled | "IdPool" >> beam.Map(lambda d: (d["id"], d["pool"]))


def cut_summary(cuts):
    return cuts | "CutSummary" >> beam.MapTuple(lambda c, mode: (mode, c.kind, c.num_pools))


def test_exact_rank_cuts_best_pool_first_ties_by_id():
    p = fnapi_pipeline()
    out = p | beam.Create(DOCS) | assign_pools(num_pools=4)
    pooled = out["documents"]
    # rank order: a .9, g .7, then the four tied at .5 by id (b c d e), h .3, f .1 -> 2 per pool
    assert_that(ids_and_pools(pooled), equal_to([
        ("a", 0), ("g", 0), ("b", 1), ("c", 1), ("d", 2), ("e", 2), ("h", 3), ("f", 3)]),
        label="Pools")
    # every other field passes through; `pool` (the stage's one declared addition) is an int
    assert AssignPools.adds == ("pool",)
    assert_that(pooled | beam.Map(lambda d: ({k: v for k, v in d.items() if k != "pool"}, type(d["pool"]))),
                equal_to([(d, int) for d in DOCS]), label="Fields")
    assert_that(cut_summary(out["cuts"]), equal_to([("exact", "rank", 4)]), label="Cuts")
    p.run().wait_until_finish()


def test_explicit_cut_points_are_score_thresholds():
    p = fnapi_pipeline()
    # any order; score >= 0.6 -> 0, >= 0.3 -> 1, else 2; num_pools follows the cut points
    out = p | beam.Create(DOCS) | assign_pools(cut_points=[0.3, 0.6])
    pooled = out["documents"]
    assert_that(ids_and_pools(pooled), equal_to([
        ("a", 0), ("g", 0), ("b", 1), ("c", 1), ("d", 1), ("e", 1), ("h", 1), ("f", 2)]),
        label="Pools")
    assert_that(cut_summary(out["cuts"]), equal_to([("explicit", "score", 3)]), label="Cuts")
    p.run().wait_until_finish()


def test_past_exact_max_docs_the_cuts_are_approximate_but_order_is_kept():
    def monotone(pairs):
        by_rank = sorted(pairs, key=lambda x: (-SCORES[x[0]], x[0]))
        pools = [pool for _, pool in by_rank]
        if len(pairs) != len(DOCS) or pools != sorted(pools) or pools[0] != 0 or not set(pools) <= {0, 1}:
            raise BeamAssertException(f"pools not ordered by rank: {by_rank}")

    p = fnapi_pipeline()
    out = p | beam.Create(DOCS) | assign_pools(num_pools=2, exact_max_docs=3)  # 8 documents > 3
    pooled = out["documents"]
    assert_that(ids_and_pools(pooled), monotone, label="Pools")
    assert_that(cut_summary(out["cuts"]), equal_to([("approximate", "rank", 2)]), label="Cuts")
    p.run().wait_until_finish()


def test_approximate_cuts_on_the_runner_are_within_epsilon_of_the_exact_ones():
    """3000 documents, exact_max_docs=100: the cuts come from Beam's approximate quantiles
    (merged from partial accumulators of four inputs) and each pool boundary lies within
    epsilon * N ranks of the exact one, epsilon = 1 / (num_pools + 1) (Beam's bound)."""
    num_pools, n = 4, 3000
    docs = [{"id": f"d{i:05d}", "score": ((i * 7919) % 211) / 210} for i in range(n)]  # many ties
    ranked = sorted(docs, key=lambda d: (-d["score"], d["id"]))
    rank_of = {d["id"]: r for r, d in enumerate(ranked)}

    def within_epsilon(pairs):
        pools = [pool for _, pool in sorted(pairs, key=lambda x: rank_of[x[0]])]
        if len(pools) != n or pools != sorted(pools):
            raise BeamAssertException("pools are not ordered by rank")
        for k in range(1, num_pools):
            first = next((r for r, pool in enumerate(pools) if pool >= k), n)
            exact = -(-k * n // num_pools)
            if abs(first - exact) >= n / (num_pools + 1):
                raise BeamAssertException(f"pool {k} starts at rank {first}, exact {exact}")

    p = fnapi_pipeline()
    parts = [p | f"Part{j}" >> beam.Create(docs[j::4]) for j in range(4)]
    out = parts | beam.Flatten() | assign_pools(num_pools=num_pools, exact_max_docs=100)
    assert_that(ids_and_pools(out["documents"]), within_epsilon, label="Pools")
    assert_that(cut_summary(out["cuts"]), equal_to([("approximate", "rank", num_pools)]), label="Cuts")
    p.run().wait_until_finish()

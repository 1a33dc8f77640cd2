"""The QQT mixture rule's invariances (issue: laws a scaling-law researcher would sign).

- split invariance: a pool cut into k identical sub-pools (sizes N/k, the same b, tau and
  measured gap) predicts the same error at every n, repetition included, in both variants;
- permutation invariance: the order of the law's pools changes nothing;
- the floor is not eroded by another pool's fresh data: a repeated small copy of an unlimited
  pool of equal quality never predicts better than the unlimited pool alone;
- gap scaling: tau stretched by (P/G)^gamma reproduces the released "tau x m" for top-m, and a
  pool revisited less often decays less per pass.
The released golden values (test_qqt.py) pin the reduction to the released formulas.
"""
from __future__ import annotations

import numpy as np
import pytest

from curate.laws.qqt import QQTLaw
from tests.laws import qqt_reference as reference
from tests.laws.released import released_law

N = 12.8e6
SAMPLES = np.geomspace(1e6, 1e11, 23)


@pytest.fixture(scope="module")
def released(reference_dir):
    return {v: released_law(reference_dir, v) for v in ("utility", "data")}


def _split(law: QQTLaw, pool: str, k: int) -> QQTLaw:
    """`pool` replaced by k identical sub-pools of size N/k (same b, tau, measured gap)."""
    i = law.pools.index(pool)
    names, b, tau, sizes, gaps = [], [], [], [], []
    for j, p in enumerate(law.pools):
        parts = [f"{p}/{s}" for s in range(k)] if j == i else [p]
        for q in parts:
            names.append(q)
            b.append(law.b[j])
            tau.append(law.tau[j])
            sizes.append(law.sizes[j] / len(parts))
            gaps.append(law.gaps[j])
    return QQTLaw(law.a, law.d, names, b=b, tau=tau, sizes=sizes, gaps=gaps,
                  variant=law.variant, normalizer=law.normalizer, gamma=law.gamma)


@pytest.mark.parametrize("variant", ["utility", "data"])
@pytest.mark.parametrize("k", [2, 4])
def test_a_pool_split_into_identical_sub_pools_predicts_the_same(released, variant, k):
    law = released[variant]
    top10, top20 = law.pools[0], law.pools[1]
    split = _split(law, top10, k)
    parts = [p for p in split.pools if p.startswith(top10 + "/")]
    # the pool alone, and mixed with another pool at unequal weights
    alone = law.predict_mixture({top10: 1.0}, SAMPLES)
    alone_split = split.predict_mixture({p: 1.0 / k for p in parts}, SAMPLES)
    np.testing.assert_allclose(alone_split, alone, rtol=1e-12)
    mixed = law.predict_mixture({top10: 0.7, top20: 0.3}, SAMPLES)
    mixed_split = split.predict_mixture({**{p: 0.7 / k for p in parts}, top20: 0.3}, SAMPLES)
    np.testing.assert_allclose(mixed_split, mixed, rtol=1e-12)
    # the case the issue measured: 640M samples of top10, k = 1 / 2 / 4 gave 31.2 / 37.4 / 42.5 %
    assert split.predict_mixture({p: 1.0 / k for p in parts}, 6.4e8) == pytest.approx(
        law.predict(6.4e8, pool=top10), rel=1e-12)


@pytest.mark.parametrize("variant", ["utility", "data"])
def test_pool_order_changes_no_prediction(released, variant):
    law = released[variant]
    rng = np.random.default_rng(3)
    w = dict(zip(law.pools, rng.dirichlet(np.ones(len(law.pools)))))
    perm = rng.permutation(len(law.pools))
    shuffled = QQTLaw(law.a, law.d, [law.pools[i] for i in perm], b=law.b[perm], tau=law.tau[perm],
                      sizes=law.sizes[perm] * np.linspace(0.5, 2.0, len(perm)), variant=variant)
    plain = QQTLaw(law.a, law.d, law.pools, b=law.b, tau=law.tau,
                   sizes=dict(zip(shuffled.pools, shuffled.sizes)), variant=variant)
    np.testing.assert_allclose(shuffled.predict_mixture(w, SAMPLES), plain.predict_mixture(w, SAMPLES),
                               rtol=1e-12)


@pytest.mark.parametrize("variant", ["utility", "data"])
def test_a_repeated_copy_never_beats_the_unlimited_pool_it_copies(released, variant):
    """Equal quality: repeating the copy can only cost; before, d eroded with the copy's repeats."""
    base = released[variant]
    b, tau = base.b[0], base.tau[0]
    small = 1e8
    law = QQTLaw(base.a, base.d, ["unlimited", "copy"], b=[b, b], tau=[tau, tau],
                 sizes=[1e15, small], variant=variant)
    for budget in (1e9, 1e11, 1e12):
        alone = law.predict(budget, pool="unlimited")
        for w_copy in (small / budget, 0.01, 0.025, 0.1, 0.5):
            mixed = law.predict_mixture({"unlimited": 1 - w_copy, "copy": w_copy}, budget)
            assert mixed >= alone * (1 - 1e-12), (budget, w_copy, mixed, alone)


def test_kernel_agrees_with_the_scalar_transcription_with_gaps_and_gamma():
    rng = np.random.default_rng(7)
    sizes = rng.uniform(2e6, 3e7, 4)
    gaps = sizes * rng.uniform(0.05, 2.0, 4)
    law = QQTLaw(0.03, 0.1, list("pqrs"), b=-rng.uniform(0.08, 0.2, 4), tau=rng.uniform(1.5, 9.0, 4),
                 sizes=sizes, gaps=gaps, gamma=0.7)
    for variant in ("utility", "data"):
        v = QQTLaw(law.a, law.d, law.pools, b=law.b, tau=law.tau, sizes=sizes, gaps=gaps,
                   gamma=0.7, variant=variant)
        for w in rng.dirichlet(np.full(4, 0.7), size=12):
            for n in (3e6, 5e7, 9e8):
                want = reference.mixture_error(n, w, v.a, v.b, v.tau, sizes, v.d, variant=variant,
                                               gaps=gaps, gamma=0.7)
                assert v.predict_mixture(w, n) == pytest.approx(want, rel=1e-12)


def test_half_life_follows_the_gap_between_repetitions():
    law = QQTLaw(0.03, 0.1, ["p"], b=[-0.15], tau=[3.0], sizes=[1e6])  # tau measured at gap 1e6
    n = 8e6  # 8 passes
    # gamma = 1, the released scaling: a pool half as big is revisited twice as often
    assert law.predict(n, pool="p", size=5e5) > law.predict(n, pool="p")
    # gamma = 0: decay per pass, whatever the gap (the pass-count rule)
    flat = QQTLaw(0.03, 0.1, ["p"], b=[-0.15], tau=[3.0], sizes=[1e6], gamma=0.0)
    same_tau_per_pass = QQTLaw(0.03, 0.1, ["p"], b=[-0.15], tau=[3.0], sizes=[5e5])
    assert flat.predict(n / 2, pool="p", size=5e5) == pytest.approx(
        same_tau_per_pass.predict(n / 2, pool="p"), rel=1e-13)
    # measured at a gap of 2.5e5 (a probe subset): on the full pool (gap 1e6) tau is 4x longer
    sub = QQTLaw(0.03, 0.1, ["p"], b=[-0.15], tau=[3.0], sizes=[1e6], gaps=[2.5e5])
    stretched = QQTLaw(0.03, 0.1, ["p"], b=[-0.15], tau=[12.0], sizes=[1e6])
    assert sub.predict(n, pool="p") == pytest.approx(stretched.predict(n, pool="p"), rel=1e-13)


@pytest.mark.parametrize("variant", ["utility", "data"])
def test_the_planner_does_not_repeat_a_copy_of_an_unlimited_pool(released, variant):
    """With the released parameters at 1e11 samples the old rule put 2.5 % of the budget on a
    small copy, repeated it 197 times and predicted a 3-point gain from nothing."""
    from curate.laws.planner import plan_mixture
    from curate.laws.planner_objectives import QQTObjective

    base = released[variant]
    small, budget = 1e8, 1e11
    law = QQTLaw(base.a, base.d, ["unlimited", "copy"], b=[base.b[0]] * 2, tau=[base.tau[0]] * 2,
                 sizes=[1e15, small], variant=variant)
    plan = plan_mixture(QQTObjective(law), budget)
    w_copy = float(plan.weights[law.pools.index("copy")])
    assert w_copy <= small / budget * (1 + 1e-9), w_copy
    assert plan.loss >= law.predict(budget, pool="unlimited") * (1 - 1e-12)

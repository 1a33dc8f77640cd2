"""Distributed connected components against a reference union-find, converged or not."""
import random

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from curate.pipelines.components import ConnectedComponents, union_find_min


def _graph(seed=0):
    rng = random.Random(seed)
    edges = set()
    path = [f"p{i:03d}" for i in range(40)]  # diameter 39: does not converge in a few rounds
    rng.shuffle(path)
    edges |= {tuple(sorted(e)) for e in zip(path, path[1:])}
    for c in range(15):  # small random clusters
        nodes = [f"c{c}-{i}" for i in range(rng.randint(2, 6))]
        for a, b in zip(nodes, nodes[1:]):
            edges.add(tuple(sorted((a, b))))
        if len(nodes) > 3:
            edges.add(tuple(sorted((nodes[0], nodes[-1]))))
    return sorted(edges)


def _expected(edges):
    roots = union_find_min(edges)
    nodes = {n for e in edges for n in e}
    return sorted((n, roots.get(n, n)) for n in nodes)


def test_union_find_min_uses_smallest_member():
    assert union_find_min([("b", "c"), ("c", "a"), ("x", "y")]) == {"a": "a", "b": "a", "c": "a", "x": "x", "y": "x"}


@pytest.mark.parametrize("rounds", [0, 2, 6])
def test_components_exact_with_and_without_convergence(rounds):
    edges = _graph()
    expected = _expected(edges)
    assert min(lbl for _, lbl in expected if _.startswith("p")) == "p000"
    options = PipelineOptions(["--runner=FnApiRunner"])
    with beam.Pipeline(options=options) as p:
        labels = p | beam.Create(edges) | ConnectedComponents(rounds)
        assert_that(labels, equal_to(expected))

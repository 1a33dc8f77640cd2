"""PackedConnectedComponents against ConnectedComponents and a union-find reference: random
graphs, chains longer than the rounds (the residual path), duplicates, self-loops, tiny buffers,
1 and 2 workers; its adjacency files are the same bytes however the edges arrive."""
import random

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from curate.pipelines import counters
from curate.pipelines import packed_components as PC
from curate.pipelines.components import ConnectedComponents, union_find_min
from curate.pipelines.stash_stages import node_key


def _node(i: int) -> bytes:
    # near dedup's node keys: ordered like the ids, locators unrelated to that order
    return node_key(f"doc-{i:05d}", (i * 7919) % 10007)


def _random_graph(seed: int, nodes: int = 300, edges: int = 260) -> list:
    rng = random.Random(seed)
    out = [(_node(rng.randrange(nodes)), _node(rng.randrange(nodes))) for _ in range(edges)]
    chain = [_node(nodes + i) for i in range(50)]  # diameter 49: beyond any rounds tested
    rng.shuffle(chain)
    out += list(zip(chain, chain[1:]))
    out += rng.sample(out, 40)  # duplicates, some reversed
    out += [(b, a) for a, b in rng.sample(out, 20)]
    out += [(_node(nodes + 60), _node(nodes + 60)), (chain[3], chain[3])]  # self-loops
    rng.shuffle(out)
    return out


def _expected(edges) -> list:
    roots = union_find_min([(a, b) for a, b in edges])
    return sorted((n, r) for n, r in roots.items() if n != r)


def _blobs(edges, per_blob: int) -> list:
    return [PC.pack(edges[i:i + per_blob]) for i in range(0, len(edges), per_blob)]


def _unpacked(blobs):
    return blobs | "Unpack" >> beam.FlatMap(PC.unpack)


def _run(edges, work_dir, rounds=5, partitions=7, per_blob=13, args=()):
    """Runs both transforms on the same edges; returns (packed labels, residual counter)."""
    expected = _expected(edges)
    options = PipelineOptions(["--runner=FnApiRunner", *args])
    p = beam.Pipeline(options=options)
    edge_blobs = p | "Edges" >> beam.Create(_blobs(edges, per_blob))
    packed = _unpacked(edge_blobs | PC.PackedConnectedComponents(str(work_dir), rounds, partitions))
    reference = (p | "RefEdges" >> beam.Create(edges) | ConnectedComponents(rounds)
                 | beam.Filter(lambda nl: nl[0] != nl[1]))
    assert_that(packed, equal_to(expected), label="PackedExact")
    assert_that(reference, equal_to(expected), label="ReferenceExact")
    result = p.run()
    result.wait_until_finish()
    residual = result.metrics().query(MetricsFilter().with_name(counters.CC_RESIDUAL_EDGES))["counters"]
    return expected, sum(c.committed or 0 for c in residual)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("rounds", [0, 1, 6])
def test_exact_on_random_graphs_with_long_chains(tmp_path, seed, rounds):
    expected, _ = _run(_random_graph(seed), tmp_path / "cc", rounds=rounds)
    assert len(expected) > 100


def test_residual_path_runs_only_when_propagation_did_not_converge(tmp_path):
    chain = [_node(i) for i in range(12)]
    random.Random(5).shuffle(chain)
    edges = list(zip(chain, chain[1:]))
    _, residual = _run(edges, tmp_path / "short", rounds=1)
    assert residual > 0  # a shuffled 12-chain is far from converged after 1 round
    _, residual = _run(edges, tmp_path / "long", rounds=12)
    assert residual == 0


def test_tiny_buffers_flush_mid_bundle(tmp_path, monkeypatch):
    # the in-process runner runs the DoFns in this process: the small limits apply
    monkeypatch.setattr(PC, "FLUSH_ENTRIES", 3)
    monkeypatch.setattr(PC, "BUFFER_ENTRIES", 7)
    _run(_random_graph(3), tmp_path / "cc", rounds=2, partitions=5, per_blob=50)


def test_one_partition_and_empty_input(tmp_path):
    _run(_random_graph(4, nodes=40, edges=30), tmp_path / "one", partitions=1)
    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        out = p | beam.Create([PC.pack([])]) | PC.PackedConnectedComponents(str(tmp_path / "empty"))
        assert_that(out, equal_to([]))


def test_each_node_in_one_label_blob_and_no_trivial_labels(tmp_path):
    edges = _random_graph(6)
    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        blobs = p | beam.Create(_blobs(edges, 9)) | PC.PackedConnectedComponents(str(tmp_path), 1, 4)
        nodes = blobs | beam.FlatMap(lambda b: [n for n, _ in PC.unpack(b)]) | beam.combiners.Count.PerElement()
        assert_that(nodes | beam.Filter(lambda kv: kv[1] != 1), equal_to([]), label="OncePerNode")
        trivial = blobs | "Trivial" >> beam.FlatMap(lambda b: [nl for nl in PC.unpack(b) if nl[0] == nl[1]])
        assert_that(trivial, equal_to([]), label="NoTrivial")


def test_adjacency_files_same_bytes_whatever_the_edge_order(tmp_path):
    edges = _random_graph(7)
    shuffled = list(edges)
    random.Random(1).shuffle(shuffled)
    _run(edges, tmp_path / "a", partitions=6, per_blob=5)
    _run(shuffled, tmp_path / "b", partitions=6, per_blob=31)
    names = sorted(f.name for f in (tmp_path / "a").iterdir())
    assert names == sorted(f.name for f in (tmp_path / "b").iterdir())
    assert names == [f"adjacency-p{i:05d}.pkl.z" for i in range(6)]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    # a partition's file holds exactly its nodes, each with its distinct neighbours
    nodes = {n for e in edges for n in e if e[0] != e[1]}
    held = {}
    for name in names:
        part = int(name[len("adjacency-p"):-len(".pkl.z")])
        adjacency = PC.unpack((tmp_path / "a" / name).read_bytes())
        assert all(PC.partition_of(n, 6) == part for n in adjacency)
        held.update(adjacency)
    assert set(held) == nodes
    assert all(list(v) == sorted(set(v)) and n not in v for n, v in held.items())


def test_rejects_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="rounds"):
        PC.PackedConnectedComponents(str(tmp_path), rounds=-1)
    with pytest.raises(ValueError, match="partitions"):
        PC.PackedConnectedComponents(str(tmp_path), partitions=0)


@pytest.mark.slow  # starting worker processes: ~20 s on a loaded 2-core machine
def test_two_worker_processes(tmp_path):
    _run(_random_graph(8), tmp_path / "cc", rounds=1,
         args=("--direct_num_workers=2", "--direct_running_mode=multi_processing"))

"""Memory and time of connected components: ConnectedComponents (adjacency joined per round, one
tuple per edge in every shuffle) against PackedConnectedComponents (pipelines/packed_components.py:
adjacency in files, packed blobs in every shuffle), on a near-dedup-shaped graph: CLUSTERS
clusters of 16 documents, 40 distinct random verified pairs each (near-copies of one page),
nodes being near dedup's node keys (pipelines.stash_stages.node_key) of 34-character ids.

    .venv/bin/python benchmarks/bench_components.py [CLUSTERS ...]   (default 10000: 400k edges)

Each (variant, size) runs in its own subprocess on the in-process FnApiRunner, rounds = 5;
printed: edges, non-trivial labels, wall seconds, the process's peak RSS.
"""
from __future__ import annotations

import random
import resource
import subprocess
import sys
import tempfile
import time

SIZE, EDGES_PER_CLUSTER = 16, 40


def _edges(cluster: int) -> list:
    from curate.pipelines.stash_stages import node_key

    rng = random.Random(cluster)
    nodes = [node_key(f"https://example.org/doc/{cluster:07d}/{i:02d}", cluster * SIZE + i) for i in range(SIZE)]
    out: set = set()
    while len(out) < EDGES_PER_CLUSTER:
        a, b = rng.sample(nodes, 2)
        out.add((a, b))
    return sorted(out)


def _edge_blob(cluster: int) -> bytes:
    from curate.pipelines import packed_components as PC

    return PC.pack(_edges(cluster))


def _one(variant: str, clusters: int) -> None:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from curate.pipelines import packed_components as PC
    from curate.pipelines.components import ConnectedComponents

    start = time.time()
    with tempfile.TemporaryDirectory() as work, beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        ids = p | beam.Create(range(clusters))
        if variant == "tuples":
            labels = (ids | beam.FlatMap(_edges) | ConnectedComponents(5)
                      | beam.Filter(lambda nl: nl[0] != nl[1]))
        else:
            labels = ids | beam.Map(_edge_blob) | PC.PackedConnectedComponents(work, 5) | beam.FlatMap(PC.unpack)
        _ = labels | beam.combiners.Count.Globally() | beam.Map(lambda n: print(f"labels={n}", end=" "))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"variant={variant} edges={clusters * EDGES_PER_CLUSTER} wall_s={time.time() - start:.1f} peak_rss_mb={peak:.0f}")


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--one":
        _one(argv[1], int(argv[2]))
        return
    for clusters in [int(a) for a in argv] or [10000]:
        for variant in ("packed", "tuples"):
            subprocess.run([sys.executable, __file__, "--one", variant, str(clusters)], check=True,
                           stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main(sys.argv[1:])

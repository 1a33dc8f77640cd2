"""Connected components whose shuffles carry packed blobs and whose adjacency lives in files.

Why: the local FnApiRunner holds every grouped value of a shuffle as a Python object in its main
process, and a PCollection read by several stages once per reader. `ConnectedComponents` joins
its adjacency in every round, so near dedup at 1.1M documents held the adjacency about six
times over, as tuples: the run's memory peak. Here the adjacency is shuffled once, written to
one file per node partition under `work_dir` and read back by each round's DoFn, and every
shuffle element is one zlib-compressed pickle of many entries for one (bundle, partition).

Same algorithm as `ConnectedComponents` (min-label propagation, smallest node as the label,
then union-find over the few residual label pairs), with one change: a node sends its label to
its neighbours only in the round after the label changed. Invariant: at every round a node's
label is <= the previous label of each neighbour (a neighbour that did not change already sent
that label), so a node that stays silent loses nothing. It follows that two adjacent nodes that
both did not change in the last round agree; the final stage therefore sees every disagreeing
edge through a message from its changed end, and turns it into a residual pair (l1, l2). Union-
find over the residual pairs (smallest label as root) then maps each label to its component's
smallest node: exact whatever `rounds` is.

Stages (each shuffle one GroupByKey of (partition, blob)):

    Directed         edge blobs -> (partition of a, [(a, b)]) and (partition of b, [(b, a)])
    GroupAdjacency   2E directed entries
    WriteAdjacency   the partition's adjacency -> <work_dir>/adjacency-pNNNNN.pkl.z; first labels
                     (smallest of the closed neighbourhood) and the first messages
    Round0..R-1      messages -> new labels -> messages (the adjacency file read back for the
                     nodes whose label changed)
    Final            messages -> (node, label) blobs + residual label pairs
    remap            residual pairs -> one union-find dict, a side input (small when propagation
                     converged, as near-duplicate clusters of small diameter do)

A message is (node, label): a "self" message carries a node's own label into the next round
(only nodes whose label is not themselves: the rest have label = node), a neighbour message
carries a changed label to a neighbour.

What the runner holds per shuffle, E = distinct undirected edges, N' = nodes whose label is not
themselves (the removed documents, in near dedup), d(changed) = the summed degrees of the nodes
whose label changed in the previous round; each entry is two node keys inside one compressed
bytes object per blob, no Python object per entry (benchmarks/bench_components.py, 400k edges in
10k clusters of 16 nodes, 44-byte node keys: 7 MB adjacency, 11 MB first messages, ~4 MB per
later round, where ConnectedComponents' tuples took the process from ~0.2 to 1.06 GB):

    GroupAdjacency    2E entries
    first round       N' + (sum of degrees of the nodes whose first label is not themselves) <= N' + 2E
    later rounds      N' + d(changed): ~N' once the clusters have converged
    residual          one pair per disagreeing edge, none when converged

A worker holds one partition at a time: its adjacency (~2E / partitions entries, unless one
node has a huge degree: a hub's neighbours all sit in its partition), its incoming messages,
and at most BUFFER_ENTRIES outgoing entries in its buffers. Files are named by partition and
their contents depend only on the partition's edges, so a retried bundle rewrites the same
bytes. `work_dir` must be a folder used by this transform only; the caller deletes it.
"""
from __future__ import annotations

import zlib

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from curate.pipelines import counters, fsutil
from curate.pipelines.components import union_find_min
from curate.pipelines.packing import pack, spill, unpack

# a partition's entries leave as one blob at FLUSH_ENTRIES; all of a DoFn's buffers together at
# BUFFER_ENTRIES (bounds what a bundle holds whatever the number of partitions)
FLUSH_ENTRIES = 4096
BUFFER_ENTRIES = 65536
RESIDUAL = "residual"




def partition_of(node: bytes, partitions: int) -> int:
    """Deterministic across processes (Python's hash of bytes is salted per process)."""
    return zlib.crc32(node) % partitions


def adjacency_path(work_dir: str, partition: int) -> str:
    return FileSystems.join(work_dir, f"adjacency-p{partition:05d}.pkl.z")


def _global(value) -> WindowedValue:
    # finish_bundle must emit windowed values; these pipelines are batch, in the global window
    return WindowedValue(value, MIN_TIMESTAMP, [GlobalWindow()])


class _Buffers:
    """Entries per key (partition) in `kinds` lists; `add` returns the (key, lists) that are full."""

    def __init__(self, kinds: int = 1):
        self.kinds = kinds
        self.lists: dict = {}
        self.total = 0

    def add(self, key, entry, kind: int = 0) -> list:
        lists = self.lists.get(key)
        if lists is None:
            lists = self.lists[key] = tuple([] for _ in range(self.kinds))
        lists[kind].append(entry)
        self.total += 1
        if sum(len(x) for x in lists) >= FLUSH_ENTRIES:
            del self.lists[key]
            self.total -= sum(len(x) for x in lists)
            return [(key, lists)]
        if self.total >= BUFFER_ENTRIES:
            return self.drain()
        return []

    def drain(self) -> list:
        out = sorted(self.lists.items(), key=lambda kv: kv[0])
        self.lists, self.total = {}, 0
        return out


class _Directed(beam.DoFn):
    """edge blobs -> (partition, packed [(node, neighbour)]), both directions, self-loops dropped
    (a node whose only edge is to itself is a component of one: label = itself)."""

    def __init__(self, partitions: int, spill_folder: str | None = None):
        self.partitions, self.spill_folder = partitions, spill_folder

    def start_bundle(self):
        self.buffers = _Buffers()

    def _emit(self, ready):
        yield from spill(self.spill_folder, [(key, pack(entries)) for key, (entries,) in ready])

    def process(self, blob):
        for a, b in unpack(blob):
            if a == b:
                continue
            yield from self._emit(self.buffers.add(partition_of(a, self.partitions), (a, b)))
            yield from self._emit(self.buffers.add(partition_of(b, self.partitions), (b, a)))

    def finish_bundle(self):
        for kv in self._emit(self.buffers.drain()):
            yield _global(kv)


class _Messages(beam.DoFn):
    """Base of the stages that send messages: buffers (partition -> (self, neighbour) lists)."""

    def __init__(self, work_dir: str, partitions: int, spill_folder: str | None = None):
        self.work_dir, self.partitions, self.spill_folder = work_dir, partitions, spill_folder

    def start_bundle(self):
        self.buffers = _Buffers(kinds=2)

    def _emit(self, ready):
        yield from spill(self.spill_folder, [(key, pack((own, neighbours))) for key, (own, neighbours) in ready])

    def _send(self, labels: dict, changed, adjacency):
        """Self messages for every node whose label is not itself; the new label of each changed
        node to its neighbours."""
        parts = self.partitions
        for node, label in labels.items():
            if label != node:
                yield from self._emit(self.buffers.add(partition_of(node, parts), (node, label), 0))
        for node in changed:
            label = labels[node]
            for neighbour in adjacency[node]:
                yield from self._emit(self.buffers.add(partition_of(neighbour, parts), (neighbour, label), 1))

    def finish_bundle(self):
        for kv in self._emit(self.buffers.drain()):
            yield _global(kv)


class _WriteAdjacency(_Messages):
    """(partition, directed-edge blobs) -> the partition's adjacency file; first labels (the
    smallest node of each closed neighbourhood) and the messages of the nodes they changed."""

    def process(self, item):
        partition, blobs = item
        neighbours: dict[bytes, set] = {}
        for blob in blobs:
            for node, other in unpack(blob):
                neighbours.setdefault(node, set()).add(other)
        # one object per distinct value, visited in sorted order: pickle's memo (by object
        # identity) then writes the same bytes however the blobs arrived, so a retry rewrites
        # the same file
        canon: dict[bytes, bytes] = {}
        adjacency = {canon.setdefault(n, n): tuple(canon.setdefault(m, m) for m in sorted(neighbours[n]))
                     for n in sorted(neighbours)}
        del neighbours, canon
        fsutil.write_bytes(adjacency_path(self.work_dir, partition), pack(adjacency))
        labels = {n: min(n, nbrs[0]) for n, nbrs in adjacency.items()}
        changed = [n for n, label in labels.items() if label != n]
        yield from self._send(labels, changed, adjacency)


def _incoming(blobs):
    """message blobs -> (own label per node, smallest neighbour message per node)."""
    own: dict[bytes, bytes] = {}
    best: dict[bytes, bytes] = {}
    for blob in blobs:
        selfs, neighbours = unpack(blob)
        own.update(selfs)  # one self message per node and round
        for node, label in neighbours:
            current = best.get(node)
            if current is None or label < current:
                best[node] = label
    return own, best


class _Round(_Messages):
    """(partition, message blobs) -> new labels (the smallest of own label and incoming) ->
    messages for the next round."""

    def process(self, item):
        partition, blobs = item
        labels, best = _incoming(blobs)
        changed = []
        for node, label in best.items():
            if label < labels.get(node, node):
                labels[node] = label
                changed.append(node)
        del best
        adjacency = unpack(fsutil.read_bytes(adjacency_path(self.work_dir, partition))) if changed else {}
        yield from self._send(labels, changed, adjacency)


class _Final(beam.DoFn):
    """(partition, message blobs) -> packed [(node, label)] for every node whose label is not
    itself, and (tagged RESIDUAL) packed residual pairs (smaller label, larger label), one per
    distinct label a neighbour sent that differs from the receiver's."""

    def __init__(self, spill_folder: str | None = None):
        self.spill_folder = spill_folder

    def start_bundle(self):
        self.labels = _Buffers()
        self.residual: set = set()

    def _blobs(self, ready):
        return [blob for _, blob in spill(self.spill_folder, [(0, pack(entries)) for _, (entries,) in ready])]

    def process(self, item):
        _, blobs = item
        own: dict[bytes, bytes] = {}
        received: dict[bytes, set] = {}
        for blob in blobs:
            selfs, neighbours = unpack(blob)
            own.update(selfs)
            for node, label in neighbours:
                received.setdefault(node, set()).add(label)
        for node, labels in received.items():
            mine = own.get(node, node)
            for label in labels:
                if label != mine:
                    self.residual.add((label, mine) if label < mine else (mine, label))
        del received
        for node, label in own.items():
            yield from self._blobs(self.labels.add(0, (node, label)))

    def finish_bundle(self):
        for blob in self._blobs(self.labels.drain()):
            yield _global(blob)
        if self.residual:
            counters.inc(counters.CC_RESIDUAL_EDGES, len(self.residual))
            yield beam.pvalue.TaggedOutput(RESIDUAL, _global(pack(sorted(self.residual))))


def _union_find(residual_blobs) -> dict:
    return union_find_min(pair for blob in residual_blobs for pair in unpack(blob))


def _apply_remap(blob, remap):
    """A label blob with residual labels mapped to their roots. Nodes that are themselves
    residual labels are left out here: `_remapped_roots` emits them (with their root, which is
    their component's smallest node), including those whose own label was themselves."""
    if not remap:
        yield blob
        return
    entries = [(node, remap.get(label, label)) for node, label in unpack(blob) if node not in remap]
    if entries:
        yield pack(entries)


def _remapped_roots(remap):
    """Every residual label whose root is smaller than itself, as (label, root) blobs: a node
    that labels itself (so no label blob holds it) can still belong to a smaller component
    through the residual pairs."""
    entries = [(label, root) for label, root in sorted(remap.items()) if root != label]
    for start in range(0, len(entries), FLUSH_ENTRIES):
        yield pack(entries[start:start + FLUSH_ENTRIES])


class PackedConnectedComponents(beam.PTransform):
    """Edge blobs (`unpack(blob)` = [(a, b)], nodes ordered bytes, duplicates and self-loops
    allowed) -> label blobs (`unpack(blob)` = [(node, label)] for every node whose label, the
    smallest node of its component, is not itself). Each node is in exactly one label blob.

    work_dir: a folder for this transform's adjacency files (one per partition), readable by
    every worker; the caller deletes it after the pipeline. spill_folder: where shuffled blobs
    go (`packing.spill`; None: inline)."""

    def __init__(self, work_dir: str, rounds: int = 5, partitions: int = 256, spill_folder: str | None = None):
        super().__init__()
        if rounds < 0:
            raise ValueError("connected-components rounds must be >= 0")
        if partitions < 1:
            raise ValueError("connected-components partitions must be >= 1")
        self.work_dir, self.rounds, self.partitions = work_dir, rounds, partitions
        self.spill_folder = spill_folder

    def expand(self, edge_blobs):
        messages = (
            edge_blobs
            | "Directed" >> beam.ParDo(_Directed(self.partitions, self.spill_folder))
            | "GroupAdjacency" >> beam.GroupByKey()
            | "WriteAdjacency" >> beam.ParDo(_WriteAdjacency(self.work_dir, self.partitions, self.spill_folder))
        )
        for r in range(self.rounds):
            messages = (
                messages
                | f"GroupMessages{r}" >> beam.GroupByKey()
                | f"Round{r}" >> beam.ParDo(_Round(self.work_dir, self.partitions, self.spill_folder))
            )
        final = (
            messages
            | "GroupFinal" >> beam.GroupByKey()
            | "Final" >> beam.ParDo(_Final(self.spill_folder)).with_outputs(RESIDUAL, main="labels")
        )
        remap = (
            final[RESIDUAL]
            | "CollectResidual" >> beam.combiners.ToList()
            | "UnionFindResidual" >> beam.Map(_union_find)
        )
        remapped = final.labels | "ApplyRemap" >> beam.FlatMap(_apply_remap, beam.pvalue.AsSingleton(remap))
        roots = remap | "RemappedRoots" >> beam.FlatMap(_remapped_roots)
        return (remapped, roots) | "Labels" >> beam.Flatten()

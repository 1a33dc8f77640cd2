"""A DoFn base that hands its elements on in batches (one numpy call per batch, not per element).

``BatchedDoFn`` buffers up to ``batch_size`` elements of a bundle, each with its timestamp and
window, and calls ``handle_batch(elements, *side_inputs)`` (Beam reserves the name
``process_batch`` for its own batched DoFns) on them; that returns one output
per element, in order, which leaves with the element's own timestamp and window. The buffer is
flushed when full, when the window or the side-input values change, and in ``finish_bundle``,
so nothing is held past a bundle. Per-element results must not depend on the batch (the
subclass's job: e.g. ``ClusterModel.assign_batch``), so bundling never changes an output.

A subclass writes its ``process`` with its side inputs named, and buffers through ``add``::

    class _Assign(BatchedDoFn):
        def process(self, doc, model, timestamp=beam.DoFn.TimestampParam,
                    window=beam.DoFn.WindowParam):
            yield from self.add(doc, (model,), timestamp, window)

        def handle_batch(self, docs, model):
            leaves, sims = model.assign_batch([d["embedding"] for d in docs])
            return [(leaf, doc) for leaf, doc in zip(leaves, docs)]
"""
from __future__ import annotations

import apache_beam as beam
from apache_beam.utils.windowed_value import WindowedValue

#: Elements per batch: big enough that one BLAS product replaces a thousand small ones,
#: small enough to stay out of a worker's memory (1024 x 384 float32 = 1.5 MB of vectors).
DEFAULT_BATCH_SIZE = 1024


class BatchedDoFn(beam.DoFn):
    """Buffers elements and processes them ``batch_size`` at a time (see the module docstring)."""

    def __init__(self, batch_size: int = DEFAULT_BATCH_SIZE):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self._items: list = []
        self._side: tuple = ()
        self._window = None

    def start_bundle(self):
        self._items, self._side, self._window = [], (), None

    def handle_batch(self, elements: list, *side_inputs) -> list:
        """One output per element, in order (subclasses implement it)."""
        raise NotImplementedError

    def add(self, element, side_inputs: tuple, timestamp, window):
        """Buffer one element; yields the outputs of a batch when one is due."""
        if self._items and (window != self._window or not _same(side_inputs, self._side)):
            yield from self._flush()
        self._side, self._window = side_inputs, window
        self._items.append((element, timestamp))
        if len(self._items) >= self.batch_size:
            yield from self._flush()

    def finish_bundle(self):
        yield from self._flush()

    def _flush(self):
        items, self._items = self._items, []
        if not items:
            return
        outputs = self.handle_batch([element for element, _ in items], *self._side)
        if len(outputs) != len(items):
            raise RuntimeError(f"{type(self).__name__}.handle_batch returned {len(outputs)} outputs "
                               f"for {len(items)} elements")
        windows = (self._window,)
        for (_, timestamp), output in zip(items, outputs):
            yield WindowedValue(output, timestamp, windows)


def _same(a: tuple, b: tuple) -> bool:
    # side inputs of one window are the same objects for every element; identity is enough
    # (and cheap), an equality test could compare whole models
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))

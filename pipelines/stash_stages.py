"""The stages that read the run's intermediate files (pipelines.stash) one chunk at a time.

`SignAndScore`: exact-dedup survivors (compact records) -> grouped by chunk -> the chunk's
texts read back -> MinHash signatures and LSH band keys (near dedup's input, computed from
the normalised text exactly as `NearDedup` does) and the heuristic score of every document;
the full output row (every written column but `pool`) goes to the chunk's `scored` file, a
compact record {id, _order, score, failed_rules, source (file index)} goes on.

`JoinStash`: pooled compact records -> grouped by chunk -> the kept rows of the chunk's
`scored` file with their pool: the documents `WriteRun` writes.

What a worker holds is one chunk (stash.CHUNK_ROWS documents) at a time; what a shuffle
carries per document is a few ints and short strings.
"""
from __future__ import annotations

import apache_beam as beam

from curate.pipelines import stash as ST
from curate.pipelines.near_dedup import BANDS, NEW_SIGNATURES, SIGNATURES, SignatureCache
from curate.pipelines.progress import ProgressWriter
from curate.pipelines.runtime import runtime_options
from curate.pipelines.scoring import Score, _Score
from curate.pools import schema as S

ROW = "_row"  # the row's number within its chunk, in the scored files


def scored_schema(feature_names):
    import pyarrow as pa

    base = S.document_schema(feature_names)
    fields = [f for f in base if f.name != "pool"]
    return pa.schema([pa.field(ROW, pa.int64()), *fields])


class _SignAndScoreChunk(beam.DoFn):
    def __init__(self, stash: ST.Stash, signer, heuristics_config, feature_names, progress_dir=None):
        self.stash, self.signer = stash, signer
        self.heuristics_config, self.feature_names = heuristics_config, list(feature_names)
        self.progress_dir = progress_dir
        self.progress = ProgressWriter(None, "minhash")  # replaced in setup()

    def setup(self):
        self.scorer = _Score(self.heuristics_config)
        self.scorer.setup()
        self.schema = scored_schema(self.feature_names)
        self.progress = ProgressWriter(self.progress_dir, "minhash")

    def finish_bundle(self):
        self.progress.flush()

    def process(self, item):
        import pyarrow as pa

        from curate.scorers.text import normalise_text

        key, members = item
        # (row, id, locator, text_hash, cached signature): rows in input order
        members = sorted(members, key=lambda m: m[0])
        texts = ST.read_table(self.stash.raw_path(key), ["text"]).column("text").to_pylist()
        source_index = key >> ST._FILE_SHIFT
        source = self.stash.sources[source_index]
        columns = self.schema.names
        rows = []
        for row, doc_id, loc, hashed, cached in members:
            text = texts[row]
            norm = normalise_text(text)
            if self.signer is not None:
                yield from self.signer.outputs(doc_id, norm, cached)
            [scored] = self.scorer.process({"id": doc_id, "text": text, "source": source, "_norm": norm})
            scored[ROW], scored["text_hash"] = row, hashed
            rows.append(scored)
            yield {"id": doc_id, "_order": loc, "score": scored["score"],
                   "failed_rules": scored["failed_rules"], "source": source_index}
            self.progress.add(1)
        table = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows], schema=self.schema)
        ST.write_table(self.stash.scored_path(key), table)


class SignAndScore(beam.PTransform):
    """compact records -> {"documents": compact scored records, SIGNATURES, BANDS,
    NEW_SIGNATURES (cache rows)}; the scored rows are written to the stash.

    near: the run's NearDedup (its Signer settings), or None when near dedup is off.
    """

    reads = ("id", "_order", "text_hash")

    def __init__(self, stash: ST.Stash, score: Score, near=None, caching: bool = False):
        super().__init__()
        self.stash, self.score, self.near, self.caching = stash, score, near, caching
        # `source` is the input's file index here (a small int, not a path per record);
        # JoinStash brings back the names
        self.adds = ("score", "failed_rules", "source")

    def expand(self, docs):
        runtime = runtime_options(docs.pipeline)
        cache_dir = runtime.curate_cache_dir if runtime else None
        progress_dir = runtime.curate_progress_dir if runtime else None
        caching = bool(self.near is not None and cache_dir)
        if caching:
            to_sign = docs | "SignatureCache" >> SignatureCache(self.near.cache_folder(cache_dir), self.near.hasher)
        else:
            to_sign = docs | "NoSignatureCache" >> beam.Map(lambda d: (d, None))
        signer = self.near.signer(caching) if self.near is not None else None
        fn = _SignAndScoreChunk(self.stash, signer, self.score.heuristics_config,
                                [c[2:] for c in self.score.adds if c.startswith("f_")], progress_dir)
        out = (
            to_sign
            | "ByChunk" >> beam.Map(_by_chunk)
            | "GroupChunks" >> beam.GroupByKey()
            | "SignAndScoreChunk" >> beam.ParDo(fn).with_outputs(SIGNATURES, BANDS, NEW_SIGNATURES, main="documents")
        )
        if caching:
            self.near.write_cache(out[NEW_SIGNATURES], cache_dir)
        return out


def _by_chunk(doc_cached):
    doc, cached = doc_cached
    loc = doc["_order"]
    return ST.chunk_key(loc), (ST.row_in_chunk(loc), doc["id"], loc, doc["text_hash"], cached)


class _JoinChunk(beam.DoFn):
    def __init__(self, stash: ST.Stash):
        self.stash = stash

    def process(self, item):
        key, members = item
        pools = dict(members)  # row -> pool
        table = ST.read_table(self.stash.scored_path(key))
        for record in table.to_pylist():
            pool = pools.get(record.pop(ROW))
            if pool is not None:
                record["pool"] = pool
                yield record


class JoinStash(beam.PTransform):
    """pooled compact records -> full documents (every written column), read back from the
    chunks' scored files: a partition-wise join, one chunk per group."""

    reads = ("_order", "pool")

    def __init__(self, stash: ST.Stash, score: Score):
        super().__init__()
        self.stash = stash
        self.adds = tuple(n for n in scored_schema(
            [c[2:] for c in score.adds if c.startswith("f_")]).names if n != ROW)

    def expand(self, pooled):
        return (
            pooled
            | "RowAndPool" >> beam.Map(lambda d: (ST.chunk_key(d["_order"]), (ST.row_in_chunk(d["_order"]), d["pool"])))
            | "GroupKeptByChunk" >> beam.GroupByKey()
            | "ReadKeptRows" >> beam.ParDo(_JoinChunk(self.stash))
        )

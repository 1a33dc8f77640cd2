"""The curation pipeline, stage by stage, in one readable place.

    ingest+validate -> normalise -> exact dedup -> near dedup -> heuristic score
        -> [embed -> (clusters) -> embedding scores -> semantic dedup]
        -> keep/drop rule -> pools -> write

Scoring drops nothing, so it runs before the optional embedding stages (off by default:
config `embed`, `embedding_scores`, `semantic_dedup`): embedding scores fold the reference
classifier and prototypicality into `score`, and semantic dedup's "quality" ranking then
keeps the best-scored copy. One k-means clustering serves prototypicality and dedup.

Every dedup-like stage takes documents and returns {"documents": survivors, "dedup": rows},
so inserting a stage (e.g. semantic dedup) is one `if` block in `build_curation`. Each stage
takes its own typed settings from the run's `RunConfig` (pipelines.run_config) and declares
the document fields it `reads` and `adds`.
"""
from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam

from curate.pipelines import counters
from curate.pipelines.compact_head import CompactHead
from curate.pipelines.allocator import tune_allocator
from curate.pipelines.embed import CountEmbedded, EmbedDocuments
from curate.pipelines.embed_on_stash import EmbedOnStash, RowsWithPools
from curate.pipelines.embedding_scores import SCORE_COLUMNS, EmbeddingScores
from curate.pipelines.exact_dedup import ExactDedup
from curate.pipelines.ingest import IngestAndValidate
from curate.pipelines.inputs import InputFile
from curate.pipelines.near_dedup import NearDedup
from curate.pipelines.normalise import Normalise
from curate.pipelines.pooling import AssignPools
from curate.pipelines.run_config import RunConfig
from curate.pipelines.runtime import runtime_options
from curate.pipelines.scoring import KeepDropRule, Score, feature_column
from curate.pipelines.semdedup import DropSemanticFields, FitClusters, SemanticStage, cluster_info
from curate.pipelines import stash as ST
from curate.pipelines.stash_stages import KeepPoolAndRows, NearDedupOnStash, SignAndScore
from curate.pipelines.writing import WriteRun, count_written


def num_pools(config: RunConfig | dict) -> int:
    return RunConfig.of(config).pools.count


def feature_columns(config: RunConfig | dict) -> list[str]:
    return [feature_column(n) for n in RunConfig.of(config).score.feature_names()]


def build_curation(p: beam.Pipeline, files: list[InputFile], out_dir: str, config: RunConfig | dict,
                   compact: bool | None = None) -> list:
    """Add every stage to pipeline `p`, writing into `out_dir` (a staging folder).

    `config`: a RunConfig, or its `to_dict()` form (what the manifest records). Returns the
    document stages in the order they were applied (each declares the fields it `reads` and
    `adds`), for checks on the wiring. `compact` (True or None, the default): shuffles carry
    compact records, texts stay in intermediate files (`_build_compact`), with or without
    embedding stages. False: whole documents throughout (the reference the compact path is
    tested against).
    """
    config = RunConfig.of(config)
    if compact is None or compact:
        return _build_compact(p, files, out_dir, config)
    stages = []

    def apply(pcoll, label, stage):
        stages.append(stage)
        return pcoll | label >> stage

    ingested = apply(p, "Ingest", IngestAndValidate(files, config.input))
    docs = apply(ingested["documents"], "Normalise", Normalise())
    dedup_rows = []

    if config.exact_dedup.enabled:
        exact = apply(docs, "ExactDedup", ExactDedup())
        docs = exact["documents"]
        dedup_rows.append(exact["dedup"])

    if config.near_dedup.enabled:
        near = apply(docs, "NearDedup", NearDedup.from_config(config.near_dedup))
        docs = near["documents"]
        dedup_rows.append(near["dedup"])

    # Contract for any removing stage: one dedup row per removed document
    # (removed_id, kept_id, method, similarity) and counters.inc(REMOVED_PREFIX + method)
    # once per removed document, or the manifest's reconciliation fails the run.
    # Scoring never drops a document, so it runs before semantic dedup: ranking "quality"
    # then has the heuristic score to keep the best copy.
    scored = apply(docs, "Score", Score.from_config(config.score))

    embedded, infos = None, []
    if config.embed.enabled:
        runtime = runtime_options(p)
        stage_cache = runtime.curate_cache_dir if runtime else None
        embedded = (apply(scored, "Embed", EmbedDocuments.from_config(config.embed, stage_cache))
                    | "CountEmbedded" >> beam.ParDo(CountEmbedded(runtime.curate_progress_dir if runtime else None)))
        scored = _embedding_stages(apply, embedded, config, dedup_rows, infos)

    kept = apply(scored, "KeepDropRule", KeepDropRule.from_config(config.filter))
    docs = kept["documents"] | "CountKept" >> beam.Map(_count_kept)

    pooled = apply(docs, "AssignPools", AssignPools.from_config(config.pools))

    dedup = (dedup_rows or [p | "NoDedup" >> beam.Create([])]) | "AllDedupRows" >> beam.Flatten()
    extra = list(SCORE_COLUMNS) if config.embedding_score_columns else []
    write_embeddings = embedded if embedded is not None and config.embed.write else None
    pooled["documents"] | "Write" >> WriteRun(
        out_dir, config.pools.count, feature_columns(config), dedup, kept["filtered"],
        ingested["dead_letter"], pooled["cuts"], extra_columns=extra, embeddings=write_embeddings,
        embedding_dtype=config.embed.dtype, stage_info=infos)
    return stages


def _embedding_stages(apply, embedded, config: RunConfig, dedup_rows: list, infos: list):
    """embedded documents (or compact records) -> clusters, embedding scores, semantic dedup;
    the documents that go on, without their vectors. Appends semantic dedup rows to
    `dedup_rows` and what the stages report for the manifest to `infos`."""
    sem, es = config.semantic_dedup, config.embedding_scores
    scored, clusters = embedded, None
    if sem.enabled or es.enabled:  # one clustering serves dedup and prototypicality
        cluster_config = sem.clustering()
        clusters = apply(embedded, "FitClusters", FitClusters(cluster_config))
        infos.append(clusters | "ClusterInfo" >> beam.Map(
            lambda model: ("clusters", cluster_info(model, cluster_config))))
    if es.enabled:  # before semantic dedup: ranking "quality" then uses the final score
        rescored = apply(scored, "EmbeddingScores", EmbeddingScores(es, config.embed, clusters, seed=sem.seed))
        scored = rescored["documents"]
        infos.append(rescored["info"] | "EmbeddingScoresInfo" >> beam.Map(lambda i: ("embedding_scores", i)))
    if sem.enabled:
        semantic = apply(scored, "SemanticDedup", SemanticStage(sem, clusters))
        scored = semantic["documents"]
        dedup_rows.append(semantic["dedup"])
    else:  # the vectors are written from `embedded`; later stages do not need them
        scored = apply(scored, "DropEmbeddings", DropSemanticFields())
    return scored


def _build_compact(p: beam.Pipeline, files: list[InputFile], out_dir: str, config: RunConfig) -> list:
    """The pipeline with compact records in its shuffles, texts in intermediate files.

    Texts go to the run's intermediate files as they are read (pipelines.stash); ids and exact
    dedup run on packed (id, locator, hash) records (CompactHead); signatures, band entries and
    scores are computed from texts read back one chunk at a time and written beside them
    (SignAndScore, after exact dedup as before); near dedup reads the band entries back per
    partition. Without embedding stages, the keep/drop rule, pool cuts and the written rows
    come from each chunk's scored file minus the removed rows (KeepPoolAndRows).

    With embedding stages, each chunk's survivors are embedded from the chunk's texts
    (EmbedOnStash) and go on as compact records {id, _order, score, failed_rules, source,
    embedding}, one per document, through the document path's own stages (FitClusters,
    EmbeddingScores, SemanticStage, KeepDropRule, AssignPools); the vectors are dropped after
    semantic dedup, and the written rows are joined back per chunk (RowsWithPools). These
    per-document records (no text, no features) still cross the embedding stages' shuffles:
    semantic dedup groups them, vectors included, by cluster, and the local runner holds them
    while pool cuts and the k-means fit are computed.

    Same decisions and rows as the document path above (tests/pipelines/test_compact_pipeline.py,
    test_compact_embedding.py).
    """
    stages = []

    def apply(pcoll, label, stage):
        stages.append(stage)
        return pcoll | label >> stage

    stash = ST.Stash(out_dir, files)
    runtime = runtime_options(p)
    # cache_keys False: SignAndScore computes the signature cache's keys per chunk itself
    ingested = apply(p, "Ingest", CompactHead(files, config.input, stash, config.exact_dedup.enabled, False))
    dedup_rows = [ingested["dedup"]] if config.exact_dedup.enabled else []
    score = Score.from_config(config.score)
    near = None
    if config.near_dedup.enabled:
        near = NearDedup.from_config(config.near_dedup)
    chunks = apply(ingested["chunks"], "SignAndScore", SignAndScore(stash, score, near))["chunks"]
    if near is not None:
        deduped = apply(chunks, "NearDedup", NearDedupOnStash(stash, near))
        removed = deduped["removed"]
        dedup_rows.append(deduped["dedup"])
    else:
        removed = p | "NothingRemoved" >> beam.Create([])
    if not config.embed.enabled:
        tail = apply(chunks, "KeepPoolAndRows", KeepPoolAndRows(
            stash, score, KeepDropRule.from_config(config.filter), AssignPools.from_config(config.pools), removed))
        dedup = (dedup_rows or [p | "NoDedup" >> beam.Create([])]) | "AllDedupRows" >> beam.Flatten()
        tail["documents"] | "Write" >> WriteRun(
            out_dir, config.pools.count, feature_columns(config), dedup, tail["filtered"],
            ingested["dead_letter"], tail["cuts"])
        return stages

    embedded = apply(chunks, "Embed", EmbedOnStash(
        stash, config.embed, removed, runtime.curate_cache_dir if runtime else None,
        runtime.curate_progress_dir if runtime else None))
    infos: list = []
    scored = _embedding_stages(apply, embedded, config, dedup_rows, infos)
    kept = apply(scored, "KeepDropRule", KeepDropRule.from_config(config.filter))
    docs = kept["documents"] | "CountKept" >> beam.Map(_count_kept)
    pooled = apply(docs, "AssignPools", AssignPools.from_config(config.pools))
    extra = [name for name, _ in SCORE_COLUMNS] if config.embedding_score_columns else []
    rows = apply(pooled["documents"], "RowsWithPools", RowsWithPools(
        stash, config.score.feature_names(), extra))
    dedup = (dedup_rows or [p | "NoDedup" >> beam.Create([])]) | "AllDedupRows" >> beam.Flatten()
    rows | "Write" >> WriteRun(
        out_dir, config.pools.count, feature_columns(config), dedup, kept["filtered"],
        ingested["dead_letter"], pooled["cuts"], extra_columns=list(SCORE_COLUMNS) if extra else [],
        embeddings=embedded if config.embed.write else None, embedding_dtype=config.embed.dtype,
        stage_info=infos)
    return stages


def _count_kept(doc):
    counters.inc(counters.KEPT)
    return doc


@dataclass
class CurationOutcome:
    counters: dict[str, int]
    written: dict


def run_curation(files: list[InputFile], out_dir: str, config: RunConfig | dict, options) -> CurationOutcome:
    """Build, run to completion, and read back counters and written row counts."""
    tune_allocator()  # before the runner starts its worker processes: they inherit it
    p = beam.Pipeline(options=options)
    build_curation(p, files, out_dir, config)
    result = p.run()
    result.wait_until_finish()
    ST.delete(out_dir)  # the intermediate files are never output
    return CurationOutcome(counters=counters.query(result), written=count_written(out_dir, num_pools(config)))

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
has a config toggle. `config` is the fully resolved dict from orchestration.config.
"""
from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from curate.pipelines import counters
from curate.pipelines.embed import EMBEDDING_FIELD, EmbedDocuments
from curate.pipelines.exact_dedup import ExactDedup
from curate.pipelines.ingest import IngestAndValidate
from curate.pipelines.inputs import InputFile
from curate.pipelines.near_dedup import NearDedup
from curate.pipelines.normalise import Normalise
from curate.pipelines.pooling import AssignPools
from curate.pipelines.progress import ProgressWriter
from curate.pipelines.runtime import runtime_options
from curate.pipelines.scoring import KeepDropRule, Score, feature_column
from curate.pipelines.embedding_scores import SCORE_COLUMNS, EmbeddingScores
from curate.pipelines.semdedup import FitClusters, SemanticDedup, cluster_info, removed_pair_row
from curate.pipelines.writing import WriteRun, count_written


def num_pools(config: dict) -> int:
    cuts = config["pools"].get("cut_points")
    return len(cuts) + 1 if cuts else int(config["pools"]["num_pools"])


def feature_columns(config: dict) -> list[str]:
    from curate.scorers.heuristics import HeuristicScorer

    return [feature_column(n) for n in HeuristicScorer(config["score"].get("heuristics")).feature_names]


def build_curation(p: beam.Pipeline, files: list[InputFile], out_dir: str, config: dict) -> None:
    """Add every stage to pipeline `p`, writing into `out_dir` (a staging folder)."""
    ic, nd = config["input"], config["near_dedup"]
    ingested = p | "Ingest" >> IngestAndValidate(
        files, id_field=ic["id_field"], text_field=ic["text_field"],
        max_text_bytes=ic["max_text_bytes"], max_record_bytes=ic["max_record_bytes"],
        max_raw_chars=ic["dead_letter_max_chars"])
    docs = ingested["documents"] | "Normalise" >> Normalise()
    dedup_rows = []

    if config["exact_dedup"]["enabled"]:
        exact = docs | "ExactDedup" >> ExactDedup()
        docs = exact["documents"]
        dedup_rows.append(exact["dedup"])

    if nd["enabled"]:
        near = docs | "NearDedup" >> NearDedup(
            threshold=nd["threshold"], num_perm=nd["num_perm"], shingle_size=nd["shingle_size"],
            bands=nd["bands"], rows=nd["rows"], seed=nd["seed"],
            max_bucket_all_pairs=nd["max_bucket_all_pairs"], cc_rounds=nd["cc_rounds"],
            verify=nd["verify"], min_lsh_recall=nd["min_lsh_recall"])
        docs = near["documents"]
        dedup_rows.append(near["dedup"])

    # Contract for any removing stage: one dedup row per removed document
    # (removed_id, kept_id, method, similarity) and counters.inc(REMOVED_PREFIX + method)
    # once per removed document, or the manifest's reconciliation fails the run.
    # Scoring never drops a document, so it runs before semantic dedup: ranking "quality"
    # then has the heuristic score to keep the best copy.
    scored = docs | "Score" >> Score(config["score"].get("heuristics"))

    embedded, infos = None, []
    if config["embed"]["enabled"]:
        sem, es = config["semantic_dedup"], config["embedding_scores"]
        runtime = runtime_options(p)
        stage_cache = runtime.curate_cache_dir if runtime else None
        embedded = (scored | "Embed" >> embed_stage(config["embed"], stage_cache)
                    | "CountEmbedded" >> beam.ParDo(_CountEmbedded(runtime.curate_progress_dir if runtime else None)))
        scored = embedded
        clusters = None
        if sem["enabled"] or es["enabled"]:  # one clustering serves dedup and prototypicality
            cluster_config = semdedup_config(sem)
            clusters = embedded | "FitClusters" >> FitClusters(cluster_config)
            infos.append(clusters | "ClusterInfo" >> beam.Map(
                lambda model: ("clusters", cluster_info(model, cluster_config))))
        if es["enabled"]:  # before semantic dedup: ranking "quality" then uses the final score
            rescored = scored | "EmbeddingScores" >> EmbeddingScores(
                es, config["embed"], clusters, seed=sem["seed"])
            scored = rescored["documents"]
            infos.append(rescored["info"] | "EmbeddingScoresInfo" >> beam.Map(lambda i: ("embedding_scores", i)))
        if sem["enabled"]:
            semantic = scored | "SemanticDedup" >> SemanticStage(sem, clusters)
            scored = semantic["documents"]
            dedup_rows.append(semantic["dedup"])
        else:  # the vectors are written from `embedded`; later stages do not need them
            scored = scored | "DropEmbeddings" >> beam.Map(_drop_semantic_fields)

    rule = config["filter"]
    kept = scored | "KeepDropRule" >> KeepDropRule(rule["drop_failed"], rule["min_score"])
    docs = kept["documents"] | "CountKept" >> beam.Map(_count_kept)

    k = num_pools(config)
    assign = AssignPools(k, config["pools"].get("cut_points"), config["pools"]["exact_max_docs"])
    pooled = docs | "AssignPools" >> assign

    dedup = (dedup_rows or [p | "NoDedup" >> beam.Create([])]) | "AllDedupRows" >> beam.Flatten()
    extra = list(SCORE_COLUMNS) if config["embed"]["enabled"] and config["embedding_scores"]["enabled"] else []
    write_embeddings = embedded if embedded is not None and config["embed"]["write"] else None
    pooled | "Write" >> WriteRun(out_dir, k, feature_columns(config), dedup, kept["filtered"],
                                 ingested["dead_letter"], assign.cuts, extra_columns=extra,
                                 embeddings=write_embeddings, embedding_dtype=config["embed"]["dtype"],
                                 stage_info=infos)


SEMANTIC_DUPLICATE = "semantic_duplicate"
# fields added by EmbedDocuments / SemanticDedup; dropped before the later stages (the pool
# Parquet has no column for them, and the vectors are the bulk of the shuffled bytes)
_SEMANTIC_FIELDS = (EMBEDDING_FIELD, "semdedup_cluster", "centroid_similarity",
                    "semdedup_duplicate", "semdedup_matched_id", "semdedup_similarity")


def _drop_semantic_fields(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in _SEMANTIC_FIELDS}


class _RouteSemantic(beam.DoFn):
    """Annotated document -> survivor (semantic fields dropped) or a `semantic` dedup row."""

    def process(self, doc):
        if doc["semdedup_duplicate"]:
            counters.inc(counters.REMOVED_PREFIX + "semantic")
            yield beam.pvalue.TaggedOutput(SEMANTIC_DUPLICATE, removed_pair_row(doc))
            return
        yield _drop_semantic_fields(doc)


def embed_stage(e: dict, stage_cache_dir: str | None = None) -> EmbedDocuments:
    """The `embed` config section -> EmbedDocuments (adds an `embedding` field).

    Cache: `embed.cache_dir` if set, else `embeddings/` in the run's stage cache (the
    workspace cache of `curate run`), so a re-run with other dedup/score settings does not
    embed the corpus again (keys: model, precision, document mode and text hash).
    """
    cache_dir = e["cache_dir"] or (FileSystems.join(stage_cache_dir, "embeddings") if stage_cache_dir else None)
    return EmbedDocuments(e["model"], device=e["device"], precision=e["precision"], mode=e["mode"],
                          cache_dir=cache_dir, backend=e["backend"], max_batch_size=e["batch_size"],
                          min_batch_size=min(16, e["batch_size"]))


def semdedup_config(sem: dict):
    """The `semantic_dedup` config section -> scorers.semdedup.SemDedupConfig."""
    from curate.scorers.semdedup import SemDedupConfig

    return SemDedupConfig(eps=sem["eps"], n_clusters=sem["n_clusters"], ranking=sem["ranking"],
                          max_cluster_size=sem["max_cluster_size"], seed=sem["seed"])


class SemanticStage(beam.PTransform):
    """embedded documents -> {"documents": survivors, "dedup": `semantic` rows}.

    ``clusters``: the run's FitClusters output (shared with prototypicality), or None.
    """

    def __init__(self, sem: dict, clusters=None):
        super().__init__()
        self.sem = sem
        self.clusters = clusters

    def expand(self, docs):
        s = self.sem
        annotated = docs | "Annotate" >> SemanticDedup(
            semdedup_config(s), quality_field="score" if s["ranking"] == "quality" else None,
            clusters=self.clusters)
        routed = annotated | "Route" >> beam.ParDo(_RouteSemantic()).with_outputs(
            SEMANTIC_DUPLICATE, main="documents")
        return {"documents": routed.documents, "dedup": routed[SEMANTIC_DUPLICATE]}


class _CountEmbedded(beam.DoFn):
    """Counts embedded documents (manifest, rows check) and reports them as progress."""

    def __init__(self, progress_dir: str | None):
        self.progress_dir = progress_dir

    def setup(self):
        self.progress = ProgressWriter(self.progress_dir, "embed")

    def process(self, doc):
        counters.inc(counters.EMBEDDED)
        self.progress.add(1)
        yield doc

    def finish_bundle(self):
        self.progress.flush()


def _count_kept(doc):
    counters.inc(counters.KEPT)
    return doc


@dataclass
class CurationOutcome:
    counters: dict[str, int]
    written: dict


def run_curation(files: list[InputFile], out_dir: str, config: dict, options) -> CurationOutcome:
    """Build, run to completion, and read back counters and written row counts."""
    p = beam.Pipeline(options=options)
    build_curation(p, files, out_dir, config)
    result = p.run()
    result.wait_until_finish()
    return CurationOutcome(counters=counters.query(result), written=count_written(out_dir, num_pools(config)))

"""The curation pipeline, stage by stage, in one readable place.

    ingest+validate -> normalise -> exact dedup -> near dedup -> score
        -> [embed -> semantic dedup] -> keep/drop rule -> pools -> write

Scoring drops nothing, so it runs before the optional semantic stage (off by default:
config `embed` / `semantic_dedup`), whose "quality" ranking keeps the best-scored copy.

Every dedup-like stage takes documents and returns {"documents": survivors, "dedup": rows},
so inserting a stage (e.g. semantic dedup) is one `if` block in `build_curation`. Each stage
has a config toggle. `config` is the fully resolved dict from orchestration.config.
"""
from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam

from pipelines import counters
from pipelines.embed import EMBEDDING_FIELD, EmbedDocuments
from pipelines.exact_dedup import ExactDedup
from pipelines.ingest import IngestAndValidate
from pipelines.inputs import InputFile
from pipelines.near_dedup import NearDedup
from pipelines.normalise import Normalise
from pipelines.pooling import AssignPools
from pipelines.scoring import KeepDropRule, Score, feature_column
from pipelines.semdedup import SemanticDedup, removed_pair_row
from pipelines.writing import WriteRun, count_written


def num_pools(config: dict) -> int:
    cuts = config["pools"].get("cut_points")
    return len(cuts) + 1 if cuts else int(config["pools"]["num_pools"])


def feature_columns(config: dict) -> list[str]:
    from scorers.heuristics import HeuristicScorer

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

    if config["embed"]["enabled"]:
        scored = scored | "Embed" >> embed_stage(config["embed"])
        if config["semantic_dedup"]["enabled"]:
            semantic = scored | "SemanticDedup" >> SemanticStage(config["semantic_dedup"])
            scored = semantic["documents"]
            dedup_rows.append(semantic["dedup"])
        else:  # embeddings alone (e.g. to fill embed.cache_dir): nothing downstream reads them
            scored = scored | "DropEmbeddings" >> beam.Map(_drop_semantic_fields)

    rule = config["filter"]
    kept = scored | "KeepDropRule" >> KeepDropRule(rule["drop_failed"], rule["min_score"])
    docs = kept["documents"] | "CountKept" >> beam.Map(_count_kept)

    k = num_pools(config)
    assign = AssignPools(k, config["pools"].get("cut_points"), config["pools"]["exact_max_docs"])
    pooled = docs | "AssignPools" >> assign

    dedup = (dedup_rows or [p | "NoDedup" >> beam.Create([])]) | "AllDedupRows" >> beam.Flatten()
    pooled | "Write" >> WriteRun(out_dir, k, feature_columns(config), dedup, kept["filtered"],
                                 ingested["dead_letter"], assign.cuts)


SEMANTIC_DUPLICATE = "semantic_duplicate"
# fields added by EmbedDocuments / SemanticDedup; dropped before the later stages (the pool
# Parquet has no column for them, and the vectors are the bulk of the shuffled bytes)
_SEMANTIC_FIELDS = (EMBEDDING_FIELD, "semdedup_cluster", "centroid_similarity", "prototypicality",
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


def embed_stage(e: dict) -> EmbedDocuments:
    """The `embed` config section -> EmbedDocuments (adds an `embedding` field)."""
    return EmbedDocuments(e["model"], device=e["device"], precision=e["precision"], mode=e["mode"],
                          cache_dir=e["cache_dir"], max_batch_size=e["batch_size"],
                          min_batch_size=min(16, e["batch_size"]))


class SemanticStage(beam.PTransform):
    """embedded documents -> {"documents": survivors, "dedup": `semantic` rows}."""

    def __init__(self, sem: dict):
        super().__init__()
        self.sem = sem

    def expand(self, docs):
        from scorers.semdedup import SemDedupConfig

        s = self.sem
        sem_config = SemDedupConfig(eps=s["eps"], n_clusters=s["n_clusters"], ranking=s["ranking"],
                                    max_cluster_size=s["max_cluster_size"], seed=s["seed"])
        annotated = docs | "Annotate" >> SemanticDedup(
            sem_config, quality_field="score" if s["ranking"] == "quality" else None)
        routed = annotated | "Route" >> beam.ParDo(_RouteSemantic()).with_outputs(
            SEMANTIC_DUPLICATE, main="documents")
        return {"documents": routed.documents, "dedup": routed[SEMANTIC_DUPLICATE]}


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

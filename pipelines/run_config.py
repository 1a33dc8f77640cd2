"""The run config: every stage's settings (`pipelines.stage_configs`), composed and checked.

`RunConfig.from_dict` reads the nested mapping of a YAML/JSON config file (any subset of the
sections; unknown keys are errors, so a typo never silently falls back to a default) and
`to_dict` gives the fully resolved mapping back. That mapping is what the manifest records
and what the run fingerprint hashes, so its shape is a contract: one section per stage
config, keys in field order, values as given.

Beam-free: the CLI validates a config with it before a pipeline exists.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import ClassVar

from curate.pipelines.stage_configs import (
    EmbedConfig,
    EmbeddingScoresConfig,
    ExactDedupConfig,
    FilterConfig,
    IngestConfig,
    NearDedupConfig,
    PoolsConfig,
    ScoreConfig,
    SemanticDedupConfig,
    StageConfig,
)


@dataclass(frozen=True)
class RunConfig:
    """Settings of every stage of `curate run`, in pipeline order (see pipelines.curation).

    Fields are named after their config sections (`input`, `near_dedup`, ...). Cross-stage
    rules are checked here: semantic dedup and embedding scores need embeddings, and the
    shipped quality reference only fits the default embedding model.
    """

    input: IngestConfig = field(default_factory=IngestConfig)
    exact_dedup: ExactDedupConfig = field(default_factory=ExactDedupConfig)
    near_dedup: NearDedupConfig = field(default_factory=NearDedupConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    pools: PoolsConfig = field(default_factory=PoolsConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    embedding_scores: EmbeddingScoresConfig = field(default_factory=EmbeddingScoresConfig)
    semantic_dedup: SemanticDedupConfig = field(default_factory=SemanticDedupConfig)

    # sections in the order they are validated (the first bad value is the one reported)
    VALIDATION_ORDER: ClassVar[tuple[str, ...]] = (
        "input", "exact_dedup", "near_dedup", "pools", "filter", "embed", "semantic_dedup",
        "embedding_scores", "score")

    def __post_init__(self):
        if self.embed.enabled:
            self._fix_embedding_precision()
        if self.semantic_dedup.enabled and not self.embed.enabled:
            raise ValueError("semantic_dedup.enabled needs embed.enabled: true (it dedups on embeddings)")
        es = self.embedding_scores
        if es.enabled and not self.embed.enabled:
            raise ValueError("embedding_scores.enabled needs embed.enabled: true (it scores embeddings)")
        if es.enabled and es.reference is None:
            from curate.scorers.embedding import DEFAULT_MODEL

            model = self.embed.model
            if model not in (None, DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
                raise ValueError(f"the shipped quality reference holds {DEFAULT_MODEL} embeddings; with "
                                 f"embed.model {model!r} give your own reference texts (embedding_scores.reference "
                                 "or --quality-reference FILE.jsonl)")

    def _fix_embedding_precision(self) -> None:
        """One embedding precision (and backend) per run, fixed here on the launcher.

        Workers used to choose a null precision themselves (bf16 autocast on CPUs with
        AVX512-BF16/AMX, fp32 elsewhere), so two workers could embed one corpus differently
        and the manifest did not say how. The resolved values are in `to_dict()`, hence in
        the manifest config and the run fingerprint.
        """
        from curate.scorers.embedding import run_precision
        from curate.scorers.embedding_backends import default_backend

        embed = self.embed
        backend = embed.backend or default_backend()
        precision = run_precision(embed.device, embed.precision, backend)
        if (backend, precision) != (embed.backend, embed.precision):
            # frozen dataclass: set once, during construction
            object.__setattr__(self, "embed", replace(embed, backend=backend, precision=precision))

    @classmethod
    def section_types(cls) -> dict[str, type[StageConfig]]:
        """Section name -> its stage config class, in pipeline order."""
        return {f.name: f.default_factory for f in fields(cls)}  # type: ignore[misc]

    @classmethod
    def merged(cls, data: dict | None) -> dict:
        """The defaults overridden by `data`, as a nested dict; only its shape is checked here
        (unknown keys, sections that are not mappings), values are checked by `from_dict`.

        A mapping value (`score.heuristics`, `embedding_scores.weights`) is taken whole, not
        merged with the default: the weights you give are the weights.
        """
        data = {} if data is None else data
        types = cls.section_types()
        for key in data:
            if key not in types:
                raise ValueError(f"unknown key {key!r} (known: {', '.join(sorted(types))})")
        out = {}
        for name, section_type in types.items():
            defaults = section_type().to_dict()
            given = data.get(name, {})
            if not isinstance(given, dict):
                raise ValueError(f"{name!r} must be a mapping")
            for key in given:
                if key not in defaults:
                    raise ValueError(f"unknown key '{name}.{key}' (known: {', '.join(sorted(defaults))})")
            out[name] = {**defaults, **{key: _copy(value) for key, value in given.items()}}
        return out

    @classmethod
    def from_dict(cls, data: dict | None) -> "RunConfig":
        """A validated RunConfig from any subset of the sections (see `merged`); a bad value
        raises ValueError naming its key."""
        full = cls.merged(data)
        types = cls.section_types()
        sections = {name: types[name](**full[name]) for name in cls.VALIDATION_ORDER}
        return cls(**{name: sections[name] for name in types})

    @classmethod
    def of(cls, config: "RunConfig | dict") -> "RunConfig":
        """`config` itself, or a RunConfig read from its `to_dict()` form."""
        return config if isinstance(config, RunConfig) else cls.from_dict(config)

    def to_dict(self) -> dict:
        """The resolved config as nested plain data (manifest `config`, fingerprint input)."""
        return {name: getattr(self, name).to_dict() for name in self.section_types()}

    def with_sections(self, **changes: StageConfig) -> "RunConfig":
        """A copy with whole sections replaced (validated again)."""
        return replace(self, **changes)

    @property
    def embedding_score_columns(self) -> bool:
        """True when the pools carry heuristic_score / reference_score / prototypicality."""
        return bool(self.embed.enabled and self.embedding_scores.enabled)

    @property
    def writes_embeddings(self) -> bool:
        """True when RUN/embeddings/ is written."""
        return bool(self.embed.enabled and self.embed.write)


def _copy(value):
    """A private copy of user data, so later edits of the input never reach a frozen config."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value

"""`curate run` configuration: read the YAML/JSON file, apply command-line overrides.

What each key means, its default and its validation live with the stages
(`pipelines.stage_configs`, composed by `pipelines.run_config.RunConfig`); a config file
holds any subset of those sections. The resolved config is stored in the manifest.
"""
from __future__ import annotations

import json

from curate.orchestration.errors import CurateError


def _defaults() -> dict:
    from curate.pipelines.run_config import RunConfig

    return RunConfig().to_dict()


def __getattr__(name: str):
    # DEFAULTS: the resolved config of an empty file (kept for scripts that read it)
    if name == "DEFAULTS":
        return _defaults()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def resolve_run_config(path: str | None = None, *, pools: int | None = None, id_field: str | None = None,
                       text_field: str | None = None, max_text_bytes: int | None = None,
                       semantic_dedup: bool = False, embedding_scores: bool = False,
                       quality_reference: str | None = None, embed_backend: str | None = None):
    """defaults <- config file <- command-line overrides -> a validated RunConfig.

    ``semantic_dedup`` / ``embedding_scores`` switch those stages on (and ``embed`` with
    them); ``quality_reference`` also switches embedding scores on, with that reference file.
    ``pools`` must agree with explicit cut points (K cut points make K + 1 pools).
    ``embed_backend`` overrides ``embed.backend``; when embedding is on, a backend left null is
    resolved here ($CURATE_EMBED_BACKEND, else torch), so the run fingerprint and the workers
    see the backend actually used.
    """
    from curate.pipelines.run_config import RunConfig

    try:
        config = RunConfig.merged(read_config_file(path) if path else None)
    except ValueError as exc:
        raise CurateError(f"config: {exc}") from None
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
    absolute_paths(config)
    try:
        return RunConfig.from_dict(config)
    except ValueError as exc:
        raise CurateError(f"config: {exc}") from None


def absolute_paths(config: dict) -> dict:
    """Make the config's local paths absolute, in place (and return the config).

    Workers open these files by name from folders of their own, so a relative path would
    name another file there (or none): the reference file, the embedding cache folder and a
    model given as a local folder (checked here: a model id such as `org/name` that is not a
    folder here is left to the model loader). URLs (gs://...) are kept as written.
    """
    import os

    def is_url(path: str) -> bool:
        return "://" in path

    def absolute(path: str) -> str:  # as pipelines.fsutil.absolute, without importing Beam here
        return path if is_url(path) else os.path.abspath(os.path.expanduser(path))

    es, embed = config["embedding_scores"], config["embed"]
    if es.get("reference"):
        es["reference"] = absolute(es["reference"])
    if embed.get("cache_dir"):
        embed["cache_dir"] = absolute(embed["cache_dir"])
    model = embed.get("model")
    if model and not is_url(model):
        given_as_path = model.startswith(("/", ".", "~")) or os.path.exists(os.path.expanduser(model))
        if given_as_path:
            path = absolute(model)
            if embed.get("enabled") and not os.path.isdir(path):
                raise CurateError(f"config embed.model {model}: no such model folder ({path})")
            embed["model"] = path
    return config


def resolve_config(path: str | None = None, **overrides) -> dict:
    """`resolve_run_config` as the nested dict the runner, the manifest and the fingerprint use."""
    return resolve_run_config(path, **overrides).to_dict()

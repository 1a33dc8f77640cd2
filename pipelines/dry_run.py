"""Dataflow's dry run (`--runner=DataflowRunner --dry_run=True`): the whole curation graph is
built and translated by the runner (side-input conversion, overrides, Runner API proto, the
Dataflow job), and nothing is submitted, read, written or published.

Input patterns on an object store (gs://...) are taken as written, not listed: listing them
needs credentials and the network, and the graph does not depend on how many files a pattern
matches (the files enter through one Create). Local inputs are expanded as in a real run.
"""
from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam

from curate.pipelines import counters
from curate.pipelines.curation import build_curation
from curate.pipelines.inputs import InputFile, _kind_of, expand_inputs
from curate.pipelines.run_config import RunConfig

# Runners that honour --dry_run; every other runner ignores the flag and would run the job.
DRY_RUN_RUNNERS = ("DataflowRunner",)
UNLISTED = "unlisted"  # kind of an input pattern that a dry run does not list


def is_dry_run(options) -> bool:
    from apache_beam.options.pipeline_options import TestOptions

    return bool(options.view_as(TestOptions).dry_run)


def runner_name(options) -> str:
    from apache_beam.options.pipeline_options import StandardOptions

    runner = options.view_as(StandardOptions).runner
    name = runner if isinstance(runner, str) else type(runner).__name__
    return str(name).rsplit(".", 1)[-1]


def check_dry_run_options(options) -> None:
    """ValueError unless the runner honours --dry_run (others would run the job for real) and the
    options that Beam would otherwise look up online are given: without --project or --region it
    asks gcloud, without a gs:// --temp_location or --staging_location it looks for (and creates)
    a default bucket in the project."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions

    name = runner_name(options)
    if name not in DRY_RUN_RUNNERS:
        raise ValueError(f"--dry_run=True is honoured only by the DataflowRunner; {name} would ignore it "
                         "and run the job (drop --dry_run, or add --runner=DataflowRunner)")
    gcp = options.view_as(GoogleCloudOptions)
    missing = [flag for flag, value in (("--project", gcp.project), ("--region", gcp.region)) if not value]
    if not any(str(v or "").startswith("gs://") for v in (gcp.temp_location, gcp.staging_location)):
        missing.append("--temp_location=gs://...")
    if missing:
        raise ValueError(f"a Dataflow dry run needs {', '.join(missing)} (Beam would otherwise look them up "
                         "online; a dry run stays offline)")


def dry_run_inputs(patterns: list[str]) -> list[InputFile]:
    """Local patterns expanded as in a real run (missing ones fail); URL patterns as written."""
    local = [p for p in patterns if "://" not in p]
    files = expand_inputs(local) if local else []
    files += [InputFile(source=p, path=p, kind=_kind_of(p) or UNLISTED) for p in patterns if "://" in p]
    return files


@dataclass
class Translation:
    runner: str
    job_name: str | None
    transforms: int  # leaf transforms of the translated pipeline proto
    environments: list[str]  # SDK container images the workers would run
    resource_hints: dict[str, list[str]]  # hint name -> distinct values over the environments
    counters: dict[str, int] | None  # None: the result reports no metrics (a dry run never does)


def translate_curation(files: list[InputFile], out_dir: str, config: RunConfig | dict, options) -> Translation:
    """Build the curation graph into `out_dir` and let the runner translate it without running."""
    check_dry_run_options(options)
    p = beam.Pipeline(options=options)
    build_curation(p, files, out_dir, config)
    result = p.run()
    result.wait_until_finish()
    try:
        counted = counters.query(result)
    except counters.CountersUnavailable:
        counted = None
    job = getattr(result, "job", None)
    proto = getattr(job, "proto_pipeline", None)
    transforms = 0
    images: list[str] = []
    hints: dict[str, set[str]] = {}
    if proto is not None:
        transforms = sum(1 for t in proto.components.transforms.values() if not t.subtransforms)
        images = sorted({_container_image(env) for env in proto.components.environments.values()} - {None})
        # Beam puts hints on environments (transforms with other hints get an environment of their own)
        for env in proto.components.environments.values():
            for urn, value in env.resource_hints.items():
                # urns look like beam:resources:accelerator:v1
                hints.setdefault(urn.split(":")[2] if urn.count(":") >= 3 else urn, set()).add(
                    value.decode("utf-8", "replace"))
    job_name = getattr(getattr(job, "proto", None), "name", None)
    return Translation(runner_name(options), job_name, transforms, images,
                       {k: sorted(v) for k, v in sorted(hints.items())}, counted)


def _container_image(env) -> str | None:
    from apache_beam.portability import common_urns
    from apache_beam.portability.api import beam_runner_api_pb2

    if env.urn != common_urns.environments.DOCKER.urn:
        return None
    return beam_runner_api_pb2.DockerPayload.FromString(env.payload).container_image

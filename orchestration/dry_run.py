"""`curate run ... --runner=DataflowRunner --dry_run=True`: build and translate the job, submit
nothing. The launcher's own steps that touch the output or read inputs (lock, fingerprints,
reuse check, publish) are skipped: a dry run has no credentials to reach an object store and
writes nothing. The stage cache and progress records are off (both are read or written at
construction or run time, not needed to translate)."""
from __future__ import annotations

from curate.orchestration.runner import pipeline_options

DRY_RUN_STAGING = "_staging-dry-run"  # the folder the translated graph names; never created


def dry_run_requested(beam_args: list[str]) -> bool:
    from curate.pipelines.dry_run import is_dry_run

    return is_dry_run(pipeline_options(list(beam_args)))


def dry_run_job(inputs: list[str], output: str, config: dict, beam_args: list[str]):
    """The Translation of the curation job (pipelines.dry_run); ValueError (one line) on flags a
    dry run cannot use, CurateError on flags Beam does not know."""
    from curate.pipelines.dry_run import check_dry_run_options, dry_run_inputs, translate_curation
    from curate.pipelines.runtime import set_runtime

    options = pipeline_options(list(beam_args))
    set_runtime(options, None, None)
    staging = output.rstrip("/") + "/" + DRY_RUN_STAGING
    check_dry_run_options(options)  # before local inputs are listed
    return translate_curation(dry_run_inputs(inputs), staging, config, options)


def dry_run_report(inputs: list[str], output: str, config: dict, beam_args: list[str], *,
                   as_json: bool = False) -> str:
    """Translate the job (dry_run_job) and render it: one line, or a JSON summary."""
    translation = dry_run_job(inputs, output, config, beam_args)
    if as_json:
        import json
        from dataclasses import asdict

        return json.dumps({"event": "summary", "dry_run": True, "output": output,
                           **asdict(translation)}, indent=2)
    return summary_line(translation, output)


def summary_line(translation, output: str) -> str:
    metrics = "no metrics (dry run)" if translation.counters is None else f"counters {translation.counters}"
    images = ", ".join(translation.environments) or "none"
    hints = "".join(f", {name}={'|'.join(values)}" for name, values in translation.resource_hints.items())
    return (f"dry run on {translation.runner}: the curation graph was built and translated "
            f"({translation.transforms} transforms, job {translation.job_name}, container {images}{hints}); "
            f"{metrics}; nothing was submitted, read, written or published to {output}")

"""Run-time settings that change how a run executes but never its result (so they are not
part of the curation config or its fingerprint): the stage cache folder and the progress
folder. They travel as a PipelineOptions view, set by orchestration, read at construction."""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions


class CurateRuntimeOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--curate_cache_dir", default=None,
                            help="folder for stage caches (MinHash signatures); none: no cache")
        parser.add_argument("--curate_progress_dir", default=None,
                            help="folder where workers leave progress records; none: no progress")


def runtime_options(pipeline) -> CurateRuntimeOptions | None:
    """The runtime view of a pipeline's options (None for a pipeline built without options)."""
    options = getattr(pipeline, "_options", None)
    return options.view_as(CurateRuntimeOptions) if options is not None else None


def set_runtime(options, cache_dir: str | None, progress_dir: str | None) -> None:
    view = options.view_as(CurateRuntimeOptions)
    view.curate_cache_dir = cache_dir
    view.curate_progress_dir = progress_dir


def running_mode(options) -> str | None:
    """--direct_running_mode of the options (in_memory, multi_threading, multi_processing)."""
    from apache_beam.options.pipeline_options import DirectOptions

    return options.view_as(DirectOptions).direct_running_mode

"""Beam PipelineOptions from pass-through command-line flags (kept here: only pipelines/
imports Beam). Orchestration decides the default runner; this module only knows Beam's flags."""
from __future__ import annotations


def unknown_beam_args(beam_args: list[str]) -> list[str]:
    """The flags in `beam_args` that no Beam PipelineOptions class defines; ValueError (one
    line) for a known flag with a bad value, e.g. --direct_num_workers=abc."""
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    class _Parser(_BeamArgumentParser):
        def error(self, message):
            # argparse would print the usage of every Beam option (~120 lines) and exit
            if message.startswith("ambiguous option: "):
                return  # Beam's parser ignores these too
            raise ValueError(message)

    parser = _Parser(allow_abbrev=False)
    seen = {}
    for cls in PipelineOptions.__subclasses__():
        seen.setdefault(str(cls), cls)
    for cls in seen.values():
        cls._add_argparse_args(parser)  # noqa: SLF001 - the only way to list Beam's flags
    _, unknown = parser.parse_known_args(beam_args)
    return unknown


def build_options(beam_args: list[str], default_runner: str):
    """PipelineOptions with `default_runner` unless --runner was given; ValueError on unknown flags."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    unknown = unknown_beam_args(beam_args)
    if unknown:
        raise ValueError(f"unrecognized arguments: {' '.join(unknown)}")
    options = PipelineOptions(beam_args)
    if not options.view_as(StandardOptions).runner:
        options.view_as(StandardOptions).runner = default_runner
    return options


# Runners whose workers run on the launcher's machine, in its folder (threads or subprocesses of
# `curate run`): local paths and the workspace cache mean the same files to them.
# (names lower-cased without "runner", as Beam accepts --runner=direct, --runner=DirectRunner...)
_LAUNCHER_RUNNERS = frozenset({"fnapi", "direct", "switchingdirect", "bundlebaseddirect", "prism"})
# Runners whose workers never see the launcher's disk: a local path is always a mistake there.
_CLOUD_RUNNERS = frozenset({"dataflow", "testdataflow"})


def runner_name(options) -> str:
    """The runner's name, lower-cased, without a module path or a trailing "runner"
    (`--runner` may be DataflowRunner, dataflow, a dotted path or a runner instance)."""
    from apache_beam.options.pipeline_options import StandardOptions

    runner = options.view_as(StandardOptions).runner or ""
    name = runner if isinstance(runner, str) else type(runner).__name__
    name = name.rsplit(".", 1)[-1].lower()
    return name[:-len("runner")] if name.endswith("runner") else name


def workers_on_launcher(options) -> bool:
    """True when every worker runs on this machine in this folder: a launcher runner, or a
    portable runner whose SDK harness is LOOPBACK (inside `curate run` itself)."""
    from apache_beam.options.pipeline_options import PortableOptions

    name = runner_name(options)
    if name in _LAUNCHER_RUNNERS:
        return True
    return (options.view_as(PortableOptions).environment_type or "").upper() == "LOOPBACK"


def workers_never_local(options) -> bool:
    """True for runners whose workers cannot read the launcher's files under any setup."""
    return runner_name(options) in _CLOUD_RUNNERS


# The local default runs this many worker processes (one per usable CPU, at most
# LOCAL_WORKERS_MAX: each costs ~0.3-0.5 GB): benchmarks/results/scale.md measured 2 workers
# faster than 1 in-process on 2 CPUs (70k documents 2.0x, 280k 1.07x in wall time), at ~1.85x
# the memory. CURATE_LOCAL_WORKERS overrides the count (1: in-process, as the tests run).
LOCAL_WORKERS_MAX = 4
LOCAL_WORKERS_ENV = "CURATE_LOCAL_WORKERS"
_WORKER_FLAGS = ("--runner", "--direct_num_workers", "--direct_running_mode")


def local_worker_count() -> int:
    import os

    raw = os.environ.get(LOCAL_WORKERS_ENV, "").strip()
    if raw:
        try:
            count = int(raw)
        except ValueError:
            raise ValueError(f"{LOCAL_WORKERS_ENV}={raw!r} is not a whole number of workers") from None
        if count < 1:
            raise ValueError(f"{LOCAL_WORKERS_ENV}={raw!r}: at least 1 worker")
        return count
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, LOCAL_WORKERS_MAX))


def with_local_workers(beam_args: list[str]) -> list[str]:
    """`beam_args` plus the local default's worker processes, unless the user chose a runner
    or the local runner's workers themselves."""
    if any(a.startswith(_WORKER_FLAGS) for a in beam_args):
        return list(beam_args)
    count = local_worker_count()
    if count <= 1:
        return list(beam_args)
    return [*beam_args, f"--direct_num_workers={count}", "--direct_running_mode=multi_processing"]


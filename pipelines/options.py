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

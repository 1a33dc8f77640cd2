"""`curate` command line: a thin dispatcher over orchestration.commands.<name>.

Every subcommand lives in its own module with HELP, add_arguments(parser) and run(args) -> int.
User errors (CurateError, and ValueError/OSError raised by the libraries on bad input) become a
single line on stderr and exit status 2; set CURATE_DEBUG=1 to see the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from curate.orchestration.errors import CurateError

# (subcommand, module under orchestration.commands). Order is the order shown in --help.
COMMANDS: list[tuple[str, str]] = [
    ("sample-corpus", "sample_corpus"),
    ("run", "run"),
    ("stats", "stats"),
    ("fit", "fit"),
    ("predict", "predict"),
    ("plan", "plan"),
    ("probe", "probe"),
    ("validate", "validate"),
    ("register", "register"),
    ("runs", "runs"),
    ("unregister", "unregister"),
    ("query", "query"),
    ("diff", "diff"),
    ("report", "report"),
    ("materialize", "materialize"),
]

DESCRIPTION = """\
curate: decide which data to pre-train on, and how many times to repeat it.

Typical flow:
  curate sample-corpus --output corpus/         # bundled real-text sample (offline)
  curate run --input 'corpus/*.jsonl.gz' --output run/   # Beam pipeline -> quality pools
  curate stats run/                             # per-pool table (DuckDB)
  curate fit observations.csv --law qqt -o law.json       # fit a scaling law
  curate plan --law law.json --budget 1e8       # best pool mixture for a budget
"""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors in one line (no usage dump) and exits 2."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="curate",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module_name in COMMANDS:
        try:
            module = importlib.import_module(f"curate.orchestration.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"curate.orchestration.commands.{module_name}":
                continue  # subcommand not built yet
            raise
        p = sub.add_parser(
            name,
            help=module.HELP.splitlines()[0],
            description=module.HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(version("curate"))
        except PackageNotFoundError:
            print("unknown")
        return 0
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    debug = os.environ.get("CURATE_DEBUG") == "1"
    try:
        return int(args._run(args) or 0)
    except BrokenPipeError:
        # Output piped into e.g. `head` that exited early: not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (CurateError, ValueError, OSError) as exc:
        if debug:
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"curate {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"curate {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

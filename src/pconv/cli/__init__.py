"""`pconv` command line: parse, delegate, turn user errors into messages and exit codes.

Each subcommand lives in its own module of this package and exposes ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Heavy imports happen inside ``run`` so
that ``pconv --help`` stays instant. A command runs with pconv.device.keep_freed_memory() (one job
per process: fast, keeps its peak heap) unless its module sets ``ONE_JOB_PER_PROCESS = False``
(``serve``, which lives long and returns memory after each job instead).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from pconv import __version__
from pconv.errors import PConvError

# Subcommand name -> module (relative to this package). Order is the order of --help.
COMMANDS: dict[str, str] = {
    "inpaint": ".inpaint",
    "masks": ".masks",
    "train": ".train",
    "evaluate": ".evaluate",
    "serve": ".serve",
    "export": ".export",
    "classify": ".classify",
}


class _HelpFormatter(argparse.HelpFormatter):
    """Shows an option's default unless its help already speaks of it or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default is None or action.default is False \
                or action.default == argparse.SUPPRESS or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pconv",
        description="Image inpainting with Partial Convolutions (Liu et al., ECCV 2018). "
        "Mask files: white = hole, black = keep (use --invert-mask for the other convention).",
    )
    parser.add_argument("--version", action="version", version=f"pconv {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name, __name__)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP,
                           formatter_class=_HelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _one_job=getattr(module, "ONE_JOB_PER_PROCESS", True))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    from pconv.device import keep_freed_memory

    if args._one_job:  # reuse freed memory instead of page-faulting it in again; not for a long-lived server
        keep_freed_memory()
    try:
        return int(args._run(args) or 0)
    except PConvError as exc:
        print(f"pconv {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pconv {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""`pconv train`: every TrainConfig field is an option; a --config file gives the base values.

Each option's help is pconv.config.FIELD_HELP with the field's default. A run stopped by SIGINT or
SIGTERM saves its checkpoint and exits 128 + the signal (130, 143), so that a chain of commands
stops with it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import typing

HELP = ("Train a PConv U-Net on a folder of photos with the paper's two-phase recipe "
        "(run under torchrun for several processes).")


def _fields():
    from pconv.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    return [(f, hints[f.name]) for f in dataclasses.fields(TrainConfig)]


def _help(name: str, default: object) -> str:
    from pconv.config import FIELD_HELP

    text = FIELD_HELP.get(name, "")
    shown = "none" if default is None else " ".join(map(str, default)) if isinstance(default, tuple) else default
    return (text + ("" if "default:" in text else f" (default: {shown})")).replace("%", "%%")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML/YAML/JSON file of settings; options given here override it")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint, exactly")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr (logs still go to OUT)")
    for f, hint in _fields():
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        if hint is bool:
            parser.add_argument(flag, type=_parse_bool, metavar="BOOL", default=None, help=_help(f.name, default))
        elif f.name == "hole_ratio":
            parser.add_argument(flag, type=float, nargs=2, metavar=("MIN", "MAX"), default=None,
                                help=_help(f.name, default))
        elif f.name == "model":
            parser.add_argument(flag, default=None, help=_help(f.name, default))
        else:
            base = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
            parser.add_argument(flag, type=base if base in (int, float) else str, default=None,
                                help=_help(f.name, default))


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def run(args: argparse.Namespace) -> int:
    import sys

    from pconv.config import TrainConfig, load_config_file
    from pconv.train import TrainingInterrupted, train

    values = load_config_file(args.config) if args.config else {}
    for f, _ in _fields():
        v = getattr(args, f.name)
        if v is not None:
            values[f.name] = json.loads(v) if f.name == "model" and v.strip().startswith("{") else v
    config = TrainConfig.from_dict(values)
    if not config.data and not args.resume:
        from pconv.errors import PConvError

        raise PConvError("no training data: pass --data FOLDER (or set data in --config)")
    try:
        exported = train(config, resume=args.resume, progress=not args.no_progress)
    except TrainingInterrupted as stop:
        print(f"pconv train: {stop}; weights so far in {stop.exported}; exit status {128 + stop.signum}",
              file=sys.stderr)
        return 128 + stop.signum
    print(f"exported weights: {exported}")
    return 0

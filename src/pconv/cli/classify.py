"""`pconv classify train|evaluate`: image classifiers with a choice of padding."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing

HELP = ("Train or evaluate an image classifier (ResNet, VGG, small variants) with partial, zero, reflect "
        "or replicate padding, on an image folder or fashion-mnist (run under torchrun for several processes).")

_CHOICES = {"padding": ("partial", "zeros", "reflect", "replicate")}
_HELP = {
    "data": "fashion-mnist, or a folder with one sub-folder per class (train/ and val/ inside it are the splits)",
    "data_dir": "folder of the fashion-mnist idx files (default: $PCONV_FASHION_MNIST or "
                "/usr/share/datasets/fashion-mnist, where `apt-get install dataset-fashion-mnist` puts them)",
    "arch": "architecture: pd_resnet18 ... pd_resnet152, pd_vgg11 ... pd_vgg19[_bn], pd_resnet_small, pd_vgg_small",
    "padding": "how convolutions treat the border",
    "lr_step": "epochs between divisions of the learning rate by 10 (--lr-gamma)",
    "subset": "train on the first N training images only",
    "ckpt_every": "steps between checkpoints besides those at each epoch's end (0: epochs only)",
}


def _fields():
    from pconv.classify import ClassifyConfig

    hints = typing.get_type_hints(ClassifyConfig)
    return [(f, hints[f.name]) for f in dataclasses.fields(ClassifyConfig)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    train = sub.add_parser("train", help="train a classifier (SGD + momentum, step decay)",
                           description="Train a classifier; OUT gets log.jsonl, checkpoints, last.safetensors and "
                                       "report.json.")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--no-progress", action="store_true", help="no per-step lines")
    for f, hint in _fields():
        base = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
        default = f.default
        train.add_argument("--" + f.name.replace("_", "-"), type=base if base in (int, float) else str, default=None,
                           choices=_CHOICES.get(f.name), metavar=None if f.name in _CHOICES else f.name.upper(),
                           help=_HELP.get(f.name, "") if "default" in _HELP.get(f.name, "")
                           else f"{_HELP.get(f.name, '')} (default: {default})".strip())
    ev = sub.add_parser("evaluate", help="top-1/top-5 of trained weights, optionally on padded or shifted images",
                        description="Evaluate a classifier's last.safetensors on the validation split.")
    ev.add_argument("--weights", required=True, help="last.safetensors of a `pconv classify train` run")
    ev.add_argument("--data", required=True, help=_HELP["data"])
    ev.add_argument("--data-dir", help=_HELP["data_dir"])
    ev.add_argument("--pad-to", type=int, help="zero-pad the test images to this size (e.g. 36 for 28x28 images)")
    ev.add_argument("--shift", type=int, default=0, help="shift the test images by this many pixels right and down")
    ev.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    ev.add_argument("--report", help="also write the report (JSON) here")


def run(args: argparse.Namespace) -> int:
    if args.action == "train":
        return _train(args)
    return _evaluate(args)


def _train(args: argparse.Namespace) -> int:
    from pconv.classify import ClassifyConfig, train_classifier

    values = {f.name: getattr(args, f.name) for f, _ in _fields() if getattr(args, f.name) is not None}
    report = train_classifier(ClassifyConfig.from_dict(values), resume=args.resume, progress=not args.no_progress)
    if report:
        print(json.dumps(report, indent=2))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from pconv.classify import evaluate_classifier
    from pconv.weights import atomic_write_bytes

    report = evaluate_classifier(args.weights, args.data, args.data_dir, args.pad_to, args.shift, args.device)
    text = json.dumps(report, indent=2)
    if args.report:
        atomic_write_bytes(args.report, (text + "\n").encode())
    print(text)
    print(f"top-1 {report['top1']:.2f} %, top-5 {report['top5']:.2f} % on {report['images']} images "
          f"({report['input_size']}x{report['input_size']}, shift {report['shift']} px)", file=sys.stderr)
    return 0

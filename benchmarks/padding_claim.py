"""Partial padding against zero, reflect and replicate padding on Fashion-MNIST, at CPU scale.

The grid: the same small ResNet (pd_resnet_small) and VGG (pd_vgg_small), every padding, several
seeds, one budget (epochs on a training subset, same batches for every padding of a seed). Each
trained model is evaluated on the 10,000 test images as they are (28×28), zero-padded to a larger
canvas (--pad-to) and shifted (--shift): the partial-padding report's robustness question. Results
go to OUT/results.jsonl as they come (a rerun skips finished runs) and the table to OUT/table.md.

    .venv/bin/python benchmarks/padding_claim.py --data-dir /usr/share/datasets/fashion-mnist
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List

import torch

from pconv.classifiers import PADDINGS
from pconv.classify import ClassifyConfig, evaluate_classifier, load_classifier, train_classifier
from pconv.classify_data import load_split

ARCHS = ("pd_resnet_small", "pd_vgg_small")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", help="folder of the Fashion-MNIST idx files (default: Debian's)")
    p.add_argument("--out", default="runs/padding-claim")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0,
                   help="run seeds first-seed .. first-seed+seeds-1 (processes sharing one --out split the grid)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr-step", type=int, default=1, help="epochs between divisions of the learning rate by 10")
    p.add_argument("--subset", type=int, default=16000, help="training images (the first N of the 60,000)")
    p.add_argument("--test-subset", type=int, default=None, help="test images (default: all 10,000)")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--depth", type=int, default=8, help="pd_resnet_small depth (6n+2)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--pad-to", type=int, default=36)
    p.add_argument("--shift", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--archs", default=",".join(ARCHS))
    p.add_argument("--paddings", default=",".join(PADDINGS))
    return p.parse_args(argv)


def run_grid(args: argparse.Namespace) -> List[Dict]:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.jsonl"
    def finished() -> Dict:
        rows = {}
        if results_path.is_file():
            for line in results_path.read_text().splitlines():
                r = json.loads(line)
                rows[(r["arch"], r["padding"], r["seed"])] = r
        return rows

    train = load_split("fashion-mnist", "train", args.data_dir).subset(args.subset)
    test = load_split("fashion-mnist", "val", args.data_dir)
    if args.test_subset:
        test = test.subset(args.test_subset)
    for seed in range(args.first_seed, args.first_seed + args.seeds):  # seed-major: a cut-short grid has
        for arch in args.archs.split(","):                                # every configuration's first seeds
            for padding in args.paddings.split(","):
                if (arch, padding, seed) in finished():
                    continue
                run_dir = out / "runs" / f"{arch}-{padding}-s{seed}"
                config = ClassifyConfig(data="fashion-mnist", data_dir=args.data_dir, out=str(run_dir), arch=arch,
                                        padding=padding, width=args.width,
                                        depth=args.depth if arch == "pd_resnet_small" else None,
                                        epochs=args.epochs, lr_step=args.lr_step, batch_size=args.batch_size,
                                        seed=seed, threads=args.threads, log_every=10**9)
                started = time.perf_counter()
                report = train_classifier(config, resume=True, progress=False, train_data=train, val_data=test)
                model = load_classifier(report["weights"])
                variants = {"plain": (None, 0), "padded": (args.pad_to, 0), "shifted": (None, args.shift)}
                row = {"arch": arch, "padding": padding, "seed": seed, "train_images": len(train),
                       "test_images": len(test), "epochs": args.epochs, "width": args.width}
                row["plain"] = report["final"]["top1"]  # the test set as it is: the run's own final evaluation
                for name, (pad, px) in list(variants.items())[1:]:
                    row[name] = evaluate_classifier(report["weights"], "fashion-mnist", pad=pad, shift_px=px,
                                                    val_data=test, model=model)["top1"]
                row["seconds"] = round(time.perf_counter() - started, 1)
                with open(results_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
    return list(finished().values())


def table(rows: List[Dict], args: argparse.Namespace) -> str:
    def stat(values: List[float]) -> str:
        if len(values) < 2:
            return f"{values[0]:.2f}" if values else "–"
        return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"

    lines = [f"| model | padding | seeds | top-1 (28×28) | zero-padded to {args.pad_to}×{args.pad_to} | "
             f"shifted {args.shift} px | vs zeros (28×28) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for arch in args.archs.split(","):
        base = [r["plain"] for r in rows if r["arch"] == arch and r["padding"] == "zeros"]
        for padding in args.paddings.split(","):
            sel = sorted((r for r in rows if r["arch"] == arch and r["padding"] == padding), key=lambda r: r["seed"])
            if not sel:
                continue
            plain = [r["plain"] for r in sel]
            delta = f"{statistics.mean(plain) - statistics.mean(base):+.2f}" if base and padding != "zeros" else ""
            name = f"{arch} (depth {args.depth}, width {args.width})" if arch == "pd_resnet_small" \
                else f"{arch} (width {args.width})"
            lines.append(f"| {name} | {padding} | {len(sel)} | {stat(plain)} | {stat([r['padded'] for r in sel])} | "
                         f"{stat([r['shifted'] for r in sel])} | {delta} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    rows = run_grid(args)
    text = table(rows, args)
    (Path(args.out) / "table.md").write_text(text)
    print(text)
    print(f"{len(rows)} runs; {args.subset} training images, {args.epochs} epochs, batch {args.batch_size}, "
          f"{time.perf_counter() - started:.0f} s this invocation", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

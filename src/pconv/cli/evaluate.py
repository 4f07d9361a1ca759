"""`pconv evaluate`: PConv and the classical baselines per hole-ratio bucket, on the same cases."""
from __future__ import annotations

import argparse

HELP = ("score PConv (pconv, pconv-smooth) and classical baselines (telea, ns, biharmonic, patchmatch) per "
        "hole-ratio bucket")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--photos", required=True, nargs="+", metavar="DIR",
                        help="folder(s) (not searched recursively) or files of ground-truth photos")
    parser.add_argument("--masks", required=True, metavar="PATH",
                        help="mask test set: NVIDIA's layout (buckets.csv), `pconv masks testset` output, or "
                        "`pconv masks lama` output (reported per set); white = hole")
    parser.add_argument("--methods", default="pconv,pconv-smooth,telea,ns,biharmonic,patchmatch",
                        help="comma-separated methods: pconv (photographic fill), pconv-smooth (the network's fill "
                        "alone), either with -flip (flip averaging), telea, ns, biharmonic, patchmatch")
    parser.add_argument("--size", default="256", choices=["128", "256", "512", "native"],
                        help="centre-crop + resize photos to 128², 256² or 512², or keep their native size")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for results.md, rows.csv/json, plots")
    parser.add_argument("--weights", default=None, metavar="FILE",
                        help="PConv weights for the pconv methods (default: the shipped model)")
    parser.add_argument("--per-bucket", type=int, default=None, metavar="N",
                        help="cases per hole-ratio bucket (default: one per photo)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="at most N cases in all, balanced across buckets (quick looks)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the photo/mask pairing")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes (each gets cpu_count/workers threads); under torchrun per rank")
    parser.add_argument("--device", default="auto",
                        help="device for the pconv methods: auto (a GPU when there is one, else the CPU), cpu, cuda, "
                        "cuda:N or mps")
    parser.add_argument("--no-style", action="store_true",
                        help="skip the style distance (it needs the loss's VGG16 weights; see README, Training)")
    parser.add_argument("--area-bins", action="store_true", default=None,
                        help="also report per 10 %% hole-area bin (LaMa's grouping; always on for `pconv masks lama` "
                        "collections)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pconv.evaluate import evaluate

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    result = evaluate(
        args.photos, args.masks, methods, args.size, args.out, seed=args.seed, weights=args.weights,
        workers=args.workers, limit=args.limit, per_bucket=args.per_bucket, progress=not args.no_progress,
        device=args.device, style=not args.no_style, area_bins=args.area_bins,
    )
    if result.rank == 0:
        print(result.markdown)
        print(f"\nreports in {result.out_dir}: " + ", ".join(p.name for p in result.files.values()))
    return 0

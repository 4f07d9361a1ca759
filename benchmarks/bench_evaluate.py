"""Benchmark: the evaluation table (Table 1 layout) for every method on ../shared/eval-data.

Ground-truth photos: MI-GAN's Places365-val photos (places2_256_freeform 16, places2_512_freeform 20)
and MAT's test photos (CelebA-HQ 2, Places 2), with NVIDIA's irregular test masks (1,200, six
buckets). At 256² all 40 photos are used (centre crop + Lanczos resize); at 512² only the 24
photos that are 512² already (no upscaled, blurred ground truth). EdgeConnect's examples are
left out: their "images" already have the holes painted white, so they hold no ground truth
inside the hole. Every photo meets one mask per bucket (seeded), all methods on the same cases.

Run (the classical methods alone, then with the shipped model as in MODEL_CARD.md's tables):
    .venv/bin/python benchmarks/bench_evaluate.py --workers 2
    .venv/bin/python benchmarks/bench_evaluate.py --sizes 256 --workers 2 \
        --methods pconv,pconv-smooth,pconv-smooth-flip,telea,ns,biharmonic,patchmatch [--weights FILE] [--device cuda]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "eval-data"
PHOTOS_512 = ["migan-examples/places2_512_freeform/images", "mat-test-sets/CelebA-HQ/images",
              "mat-test-sets/Places/images"]
PHOTOS_256 = ["migan-examples/places2_256_freeform/images"] + PHOTOS_512


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the eval-data folder")
    p.add_argument("--methods", default="telea,ns,biharmonic,patchmatch")
    p.add_argument("--sizes", default="256,512")
    p.add_argument("--weights", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--per-bucket", type=int, default=None, help="default: every photo once per bucket")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("/tmp/pconv-bench-evaluate"))
    args = p.parse_args(argv)

    from pconv.evaluate import evaluate

    masks = args.data / "nvidia-irregular-masks"
    if not masks.is_dir():
        print(f"eval data not found at {args.data} (pass --data)", file=sys.stderr)
        return 2
    methods = [m for m in args.methods.split(",") if m]
    for size in args.sizes.split(","):
        photos = [args.data / d for d in (PHOTOS_256 if size == "256" else PHOTOS_512)]
        start = time.perf_counter()
        result = evaluate(photos, masks, methods, size, args.out / f"size{size}", seed=args.seed,
                          weights=args.weights, workers=args.workers, per_bucket=args.per_bucket,
                          device=args.device)
        wall = time.perf_counter() - start
        print(f"\n==================== {size}x{size}: {len(result.rows) // len(methods)} cases, "
              f"wall {wall:.0f} s, reports in {result.out_dir}\n")
        print(result.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the photographic fill (pconv) against PatchMatch and the smooth fill, side by side.

One run, one process, methods interleaved round-robin on the same cases, so the ratios hold even
on a busy machine: ``Inpainter(method="pconv")`` (network + detail transfer, the default),
``Inpainter(method="pconv-smooth")`` (the network alone), ``pconv.texture.transfer_detail`` alone,
and PatchMatch (``pypatchmatch``, 7×7 patches, the baseline the paper compares with). Cases: the
bundled example photo, centre-cropped and resized to the size, with seeded brush-stroke holes at
hole ratios 10-20 %, 30-40 % and 50-60 %. Min and median seconds per call.

Run (figures in BENCHMARKS.md, "Fill"):
    .venv/bin/python benchmarks/bench_texture.py [--size 512] [--repeats 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RATIOS = ((0.1, 0.2), (0.3, 0.4), (0.5, 0.6))


def cases(size: int, seed: int) -> List[tuple]:
    from pconv.masks import stroke_mask

    photo = Image.open(ROOT / "src" / "pconv" / "assets" / "example.jpg").convert("RGB")
    side = min(photo.size)
    left, top = (photo.width - side) // 2, (photo.height - side) // 2
    image = np.asarray(photo.crop((left, top, left + side, top + side)).resize((size, size), Image.LANCZOS))
    rng = np.random.default_rng(seed)
    return [(f"strokes {lo:.0%}-{hi:.0%}", image, stroke_mask(size, size, rng, (lo, hi))) for lo, hi in RATIOS]


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from pconv.baselines import fill
    from pconv.inference import Inpainter
    from pconv.texture import TextureConfig, transfer_detail
    from pconv.weights import load_model

    model = load_model(None)
    photographic, smooth = Inpainter(model), Inpainter(model, method="pconv-smooth")
    work = cases(args.size, args.seed)
    smooth_out = {name: smooth(image, hole) for name, image, hole in work}  # warm-up and the detail's input
    photographic(*work[0][1:])
    methods: Dict[str, Callable[[str, np.ndarray, np.ndarray], object]] = {
        "pconv (photographic, default)": lambda n, im, h: photographic(im, h),
        "pconv-smooth": lambda n, im, h: smooth(im, h),
        "transfer_detail alone": lambda n, im, h: transfer_detail(smooth_out[n], h, TextureConfig()),
        "patchmatch": lambda n, im, h: fill("patchmatch", im, h, seed=args.seed),
    }
    times: Dict[str, Dict[str, List[float]]] = {m: {n: [] for n, _, _ in work} for m in methods}
    for _ in range(args.repeats):
        for name, image, hole in work:
            for m, run in methods.items():
                start = time.perf_counter()
                run(name, image, hole)
                times[m][name].append(time.perf_counter() - start)
    print(f"# {args.size}×{args.size}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.repeats} repeats; seconds min / median")
    print("| method | " + " | ".join(f"{n} (hole {h.mean():.0%})" for n, _, h in work) + " | mean of medians |")
    print("|---|" + "---:|" * (len(work) + 1))
    means = {}
    for m in methods:
        cells = [f"{min(v):.3f} / {statistics.median(v):.3f}" for v in times[m].values()]
        means[m] = float(np.mean([statistics.median(v) for v in times[m].values()]))
        print(f"| {m} | " + " | ".join(cells) + f" | {means[m]:.3f} |")
    ratio = means["pconv (photographic, default)"] / means["patchmatch"]
    print(f"\nphotographic fill / PatchMatch, mean of medians: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

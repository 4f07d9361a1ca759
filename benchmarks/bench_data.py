"""Training data pipeline speed per worker process, split by stage: can it feed a GPU?

One DataLoader worker is one single-threaded process, so everything here runs on one thread (torch
and OpenCV). For each crop size (default 256 and 512) and a fixed list of sample keys, in one run:

  decode        open the photo and decode it to RGB (Pillow)
  crop          random zoom, crop and flip (pconv.data.random_crop)
  mask strokes  one brush-stroke mask (pconv.masks.stroke_mask)
  mask noise    one noise level-set mask (pconv.masks.noise_mask)
  mask mixed    what training draws by default (half each)
  to tensors    uint8 arrays to float tensors
  sample        TrainDataset[...] end to end (decode + crop + mixed mask + tensors)
  cached        the same with ``cache_photos=True`` (photos decoded once, kept in memory)

Prints CPU ms per call (the fastest of --passes interleaved passes; CPU time, so that other
processes on a shared machine do not count) and images/s per worker for each stage; with --json also writes the figures.

    python benchmarks/bench_data.py --data /path/to/photos [--sizes 256 512] [--n 60]
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import torch


def _per_call(stages: Dict[str, Callable[[int], object]], n: int, passes: int) -> Dict[str, float]:
    """CPU seconds per call of each ``fn(i)``, i in 0..n-1: the fastest of ``passes`` passes, the
    passes of all stages interleaved. CPU time (this process's), not wall time: what a worker
    costs when it has a core of its own, unaffected by other processes waiting for the same core."""
    for fn in stages.values():
        fn(0)  # warm-up
    best = {k: float("inf") for k in stages}
    for _ in range(passes):
        for name, fn in stages.items():
            t0 = time.process_time()
            for i in range(n):
                fn(i)
            best[name] = min(best[name], (time.process_time() - t0) / n)
    return best


def bench(data: str, sizes: List[int], n: int, passes: int = 3) -> Dict[str, Dict[str, float]]:
    import cv2

    from pconv.device import keep_freed_memory
    from pconv.data import MaskSampler, TrainDataset, _load_rgb, _to_tensors, list_images, random_crop

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    # `pconv train` sets this before its DataLoader forks the workers, which inherit it: decoded
    # photos (megabytes each) then reuse freed memory instead of page-faulting in fresh mmaps.
    keep_freed_memory()
    paths = [p for p in list_images(data)][:max(n, 1)]
    results: Dict[str, Dict[str, float]] = {}
    for size in sizes:
        decoded = [_load_rgb(p) for p in paths]
        strokes = MaskSampler("strokes", size, (0.01, 0.6))
        noise = MaskSampler("noise", size, (0.01, 0.6))
        mixed = MaskSampler("mixed", size, (0.01, 0.6))
        rng = lambda i: np.random.default_rng([0, 1, i])  # noqa: E731
        crops = [random_crop(decoded[i % len(paths)], size, rng(i)) for i in range(n)]
        holes = [mixed(rng(i)) for i in range(n)]
        plain = TrainDataset(paths, size, mixed, seed=0)
        cached = TrainDataset(paths, size, mixed, seed=0, cache_photos=True)
        cached.preload()  # paid once per run, before the workers start
        stages = {
            "decode": lambda i: _load_rgb(paths[i % len(paths)]),
            "crop": lambda i: random_crop(decoded[i % len(paths)], size, rng(i)),
            "mask strokes": lambda i: strokes(rng(i)),
            "mask noise": lambda i: noise(rng(i)),
            "mask mixed": lambda i: mixed(rng(i)),
            "to tensors": lambda i: _to_tensors(crops[i], holes[i]),
            "sample": lambda i: plain[(1, i % len(paths))],
            "cached": lambda i: cached[(1, i % len(paths))],
        }
        row = _per_call(stages, n, passes)
        results[str(size)] = row
        print(f"{size}²: " + "  ".join(f"{k} {v*1e3:.1f} ms ({1/v:.0f}/s)" for k, v in row.items()), flush=True)
        share = {k: row[k] / row["sample"] for k in ("decode", "crop", "mask mixed", "to tensors")}
        print(f"{size}²: share of a sample: " + "  ".join(f"{k} {v:.0%}" for k, v in share.items()), flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a folder of training photos")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--n", type=int, default=60, help="calls per stage (and photos used)")
    ap.add_argument("--passes", type=int, default=3, help="passes per stage; the fastest counts")
    ap.add_argument("--json", help="also write the figures (seconds per call) to this file")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, one thread (one worker)")
    results = bench(args.data, args.sizes, args.n, args.passes)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Many small holes on large photos: which tiles and scale the network's windows should use.

Run: .venv/bin/python benchmarks/bench_speck_tiles.py [--methods pconv-smooth,pconv] [--arms merged,4:2,...]

Cases: ``bench_object_removal.py --specks``'s (the held-out photos of 1600+ px at native
resolution, 5 % of round specks of radius 8-40 px each). Arms: ``merged`` = no tiles (specks
join into regions closer than 2·crop_margin, as before the tiles); ``K:M`` = tiles of K·S, each
window downscaled to M·S on its long side (``K:full`` = not downscaled), through
``pconv.planning.NET_TILE`` and ``NET_TILE_SIDE``; every arm with the crop strategy. Scored in the
hole: PSNR, median detail ratio, seconds per photo (one process, 2 threads, the first call of
each method excluded). Experiment 29 in docs/experiments.md.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
ARMS = "merged,2:2,3:2,4:2,6:2,4:3,6:3,4:full"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", type=Path, default=ROOT / "data" / "train-photos")
    p.add_argument("--cache", type=Path, default=ROOT / "data" / "photo-cache")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "object-removal")
    p.add_argument("--methods", default="pconv-smooth,pconv")
    p.add_argument("--arms", default=ARMS)
    args = p.parse_args(argv)

    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_object_removal import held_out_originals, speck_cases  # noqa: E402  (a script, not a package)

    import pconv.planning as planning
    from pconv import Inpainter
    from pconv.metrics import detail_ratio, hole_psnr

    torch.set_num_threads(2)
    photos = held_out_originals(args.photos, args.cache, args.work / "photos")
    if not photos:
        print("no held-out photos: run scripts/fetch_training_photos.py first", file=sys.stderr)
        return 2
    case_dir = args.work / "speck-cases"
    case_dir.mkdir(parents=True, exist_ok=True)
    cases = [(np.asarray(Image.open(a).convert("RGB")), np.asarray(Image.open(b)) > 0)
             for a, b in speck_cases(photos, case_dir)]
    tiled, tile, side = planning._tiled_windows, planning.NET_TILE, planning.NET_TILE_SIDE
    print(f"{len(cases)} photos, 5 % specks; crop strategy; hole PSNR dB / median detail ratio / s per photo")
    print("| arm | " + " | ".join(args.methods.split(",")) + " |")
    print("|---|" + "---:|" * len(args.methods.split(",")))
    try:
        for arm in args.arms.split(","):
            if arm == "merged":
                planning._tiled_windows = lambda index, hole, *rest, **kw: ([], hole)
            else:
                k, m = arm.split(":")
                planning._tiled_windows = tiled
                planning.NET_TILE, planning.NET_TILE_SIDE = int(k), (10 ** 6 if m == "full" else float(m))
            cells = []
            for method in args.methods.split(","):
                inpainter = Inpainter(method=method)
                inpainter.inpaint(cases[0][0][:300, :400], cases[0][1][:300, :400], strategy="crop")  # warm-up
                rows = []
                for rgb, hole in cases:
                    start = time.perf_counter()
                    out = inpainter.inpaint(rgb, hole, strategy="crop").image
                    rows.append((hole_psnr(out, rgb, hole), detail_ratio(out, rgb, hole), time.perf_counter() - start))
                cells.append(f"{np.mean([r[0] for r in rows]):.2f} / {statistics.median(r[1] for r in rows):.2f} / "
                             f"{np.mean([r[2] for r in rows]):.2f}")
            print(f"| {arm} | " + " | ".join(cells) + " |", flush=True)
    finally:
        planning._tiled_windows, planning.NET_TILE, planning.NET_TILE_SIDE = tiled, tile, side
    return 0


if __name__ == "__main__":
    sys.exit(main())

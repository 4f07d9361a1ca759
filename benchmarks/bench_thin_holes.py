"""Benchmark: thin and tiny holes, where diffusion methods are nearly exact.

NVIDIA's smallest test masks are mostly 1–4 px lines, so the smallest bucket is decided here. Three
synthetic hole kinds on real photos (MI-GAN's Places365 photos from ../shared/eval-data, resized to
256²): isolated one-pixel specks (2 % of the pixels), six horizontal and six vertical one-pixel lines,
and the same with three-pixel lines. PSNR of the composited output against the ground truth, per
method, averaged over the photos; every method sees the same holes.

    .venv/bin/python benchmarks/bench_thin_holes.py [--weights FILE ...] [--photos 8]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PHOTOS = ROOT.parent / "shared" / "eval-data" / "migan-examples" / "places2_256_freeform" / "images"
KINDS = ("specks", "lines 1 px", "lines 3 px")


def thin_hole(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A boolean hole mask (True = hole) of the given kind."""
    hole = np.zeros((size, size), bool)
    if kind == "specks":
        return rng.random((size, size)) < 0.02
    width = 1 if kind == "lines 1 px" else 3
    for _ in range(6):
        y = int(rng.integers(10, size - 16))
        hole[y:y + width, 20:size - 26] = True
        x = int(rng.integers(10, size - 16))
        hole[20:size - 26, x:x + width] = True
    return hole


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", nargs="*", default=[None],
                    help="PConv weights files to compare (default: the shipped model)")
    ap.add_argument("--photos", type=int, default=8, help="how many photos (sorted by name)")
    ap.add_argument("--data", type=Path, default=DEFAULT_PHOTOS)
    args = ap.parse_args(argv)
    files = sorted(p for p in args.data.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[: args.photos]
    if not files:
        print(f"no photos found in {args.data} (pass --data)", file=sys.stderr)
        return 2

    from pconv import Inpainter
    from pconv.baselines import fill
    from pconv.metrics import image_metrics

    methods: Dict[str, object] = {}
    for w in args.weights:
        methods[f"pconv {Path(w).parent.name + '/' + Path(w).name if w else '(shipped)'}"] = Inpainter(w)
    methods.update({"biharmonic": "biharmonic", "ns": "ns", "telea": "telea", "pullpush": "pullpush",
                    "pullpush-bh": "pullpush-bh"})
    photos = [np.asarray(Image.open(f).convert("RGB").resize((256, 256), Image.LANCZOS)) for f in files]
    print(f"{len(photos)} photos from {args.data}, 256²; PSNR (dB) of the composite, mean over photos")
    for kind in KINDS:
        rng = np.random.default_rng(0)
        holes = [thin_hole(kind, 256, rng) for _ in photos]
        scores = {}
        for name, how in methods.items():
            values = []
            for image, hole in zip(photos, holes):
                out = np.asarray(how(image, hole)) if not isinstance(how, str) else fill(how, image, hole)
                out = np.where(hole[..., None], out, image)
                values.append(image_metrics(out, image, hole)["psnr"])
            scores[name] = float(np.mean(values))
        ratio = float(np.mean([h.mean() for h in holes]))
        print(f"{kind:11s} (hole {ratio:.3f}): " + "  ".join(f"{k} {v:.2f}" for k, v in scores.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

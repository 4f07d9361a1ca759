"""Wall time and peak memory of ``pconv inpaint`` on a 12-megapixel photo, start-up and PNG write included.

Run: .venv/bin/python benchmarks/bench_large_photo.py [--repeats 3] [--methods pconv,pconv-smooth] [--strategy auto]

What: the bundled example photo upscaled to 4000×3000, three masks of the kinds a photographer paints:
``blobs`` (5 % of the photo in 6 elliptic blobs, as benchmarks/bench_inference.py), ``scattered``
(5 % in about 300 round specks of radius 8–40 px: dust, blemishes, sensor spots) and ``object`` (one
silhouette of 25 % of the photo: a person or a car to remove). Each run is a whole
``python -m pconv inpaint photo.jpg mask.png -o out.png`` process under ``/usr/bin/time``: its wall
time (median of ``--repeats``) and its peak resident memory (the maximum over the repeats).
Why: the cost a user meets on a camera's photo is the process's, not the network's alone; per-region
work (context boxes, texture) grows with the number of holes, which the network's benchmark does not
show.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Tuple

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_png import blobs  # noqa: E402  (a script, not a package; bench_inference.py's six blobs)

H, W = 3000, 4000


def scattered(h: int, w: int, share: float = 0.05, seed: int = 0) -> np.ndarray:
    """Round specks of radius 8–40 px at seeded places until ``share`` of the photo is hole."""
    rng = np.random.default_rng(seed)
    hole = np.zeros((h, w), np.uint8)
    while np.count_nonzero(hole) < share * h * w:
        r = int(rng.integers(8, 41))
        cv2.circle(hole, (int(rng.integers(0, w)), int(rng.integers(0, h))), r, 255, -1)
    return hole


def silhouette(h: int, w: int, share: float = 0.25) -> np.ndarray:
    """One standing figure (head, body, legs) scaled until it covers ``share`` of the photo."""
    def draw(s: float) -> np.ndarray:
        m = np.zeros((h, w), np.uint8)
        cx, base = w // 2, int(h * 0.98)
        cv2.circle(m, (cx, int(base - 0.88 * s)), int(0.08 * s), 255, -1)
        cv2.ellipse(m, (cx, int(base - 0.58 * s)), (int(0.19 * s), int(0.24 * s)), 0, 0, 360, 255, -1)
        cv2.rectangle(m, (int(cx - 0.16 * s), int(base - 0.40 * s)), (int(cx + 0.16 * s), base), 255, -1)
        return m
    lo, hi = 0.0, 2.0 * h
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.count_nonzero(draw(mid)) < share * h * w else (lo, mid)
    return draw(hi)


MASKS = {"blobs": blobs, "scattered": scattered, "object": silhouette}


def timed(cmd: list) -> Tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one process, from /usr/bin/time."""
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as report:
        subprocess.run(["/usr/bin/time", "-o", report.name, "-f", "%e %M", *cmd], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wall, kb = report.read().split()[-2:]
    return float(wall), int(kb) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--methods", default="pconv,pconv-smooth")
    p.add_argument("--masks", default=",".join(MASKS))
    p.add_argument("--photo", type=Path, default=ROOT / "src/pconv/assets/example.jpg")
    p.add_argument("--strategy", default="auto", help="pconv inpaint's --strategy")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "photo.jpg"
        Image.open(args.photo).convert("RGB").resize((W, H), Image.LANCZOS).save(photo, quality=95)
        print(f"{args.photo.name} upscaled to {W}x{H}; python -m pconv inpaint ... -o out.png "
              f"--strategy {args.strategy}, "
              f"median of {args.repeats} (peak RSS: the largest), {os.cpu_count()} CPUs")
        for name in args.masks.split(","):
            hole = MASKS[name](H, W)
            mask = Path(tmp) / f"{name}.png"
            Image.fromarray(hole).save(mask)
            n, _ = cv2.connectedComponents((hole > 0).astype(np.uint8))
            for method in args.methods.split(","):
                out = Path(tmp) / f"{name}-{method}.png"
                cmd = [sys.executable, "-m", "pconv", "inpaint", str(photo), str(mask), "-o", str(out),
                       "--overwrite", "--method", method, "--strategy", args.strategy]
                runs = [timed(cmd) for _ in range(args.repeats)]
                wall = statistics.median(r[0] for r in runs)
                rss = max(r[1] for r in runs)
                print(f"{name:9s} ({100 * np.mean(hole > 0):4.1f} % hole, {n - 1:3d} regions)  {method:12s} "
                      f"{wall:6.2f} s  {rss:6.0f} MB", flush=True)


if __name__ == "__main__":
    main()

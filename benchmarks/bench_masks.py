"""Mask generation speed: stroke and noise masks per second and video flow-mask frames per second at 512².

Run: .venv/bin/python benchmarks/bench_masks.py
Prints one line per measurement; OpenCV uses its default thread count (printed).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from pconv.masks import FlowMaskConfig, noise_mask, stroke_mask, video_masks


def bench_generator(draw, size: int, n: int) -> float:
    rng = np.random.default_rng(0)
    draw(size, size, rng)
    t = time.perf_counter()
    for _ in range(n):
        draw(size, size, rng)
    return n / (time.perf_counter() - t)


def make_video(folder: Path, size: int = 512, frames: int = 21) -> None:
    """Textured squares moving over a textured background, written as PNG frames."""
    rng = np.random.default_rng(0)

    def tex(h, w):
        t = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 2.0)
        return ((t - t.min()) / (t.max() - t.min()) * 255).astype(np.uint8)

    bg = tex(size, size)
    shapes = [(tex(s, s), x, y, dx, dy) for s, x, y, dx, dy in
              [(160, 40, 60, 6, 3), (120, 300, 280, -5, -4), (90, 200, 40, 2, 7)]]
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(frames):
        f = bg.copy()
        for fg, x, y, dx, dy in shapes:
            s = fg.shape[0]
            x0, y0 = x + dx * t, y + dy * t
            f[y0:y0 + s, x0:x0 + s] = fg
        cv2.imwrite(str(folder / f"{t:03d}.png"), f)


def bench_video(folder: Path, method: str) -> tuple[float, float]:
    cfg = FlowMaskConfig(method=method)
    t = time.perf_counter()
    masks = [hole for _, hole in video_masks(folder, cfg)]
    dt = time.perf_counter() - t
    return (len(masks) + 1) / dt, float(np.mean([m.mean() for m in masks]))


def main() -> None:
    print(f"opencv {cv2.__version__}, threads {cv2.getNumThreads()}")
    for size, n in ((256, 1000), (512, 500)):
        for name, draw in (("strokes", stroke_mask), ("noise", noise_mask)):
            print(f"{name} {size}x{size}: {bench_generator(draw, size, n):.0f} masks/s (ratio range 0.01-0.6, {n} masks)")
    with tempfile.TemporaryDirectory() as d:
        make_video(Path(d) / "v")
        for method in ("dis", "farneback"):
            fps, ratio = bench_video(Path(d) / "v", method)
            print(f"video 512x512 {method}: {fps:.1f} frames/s (20 pairs, decode + 2 flows + check + cleanup; "
                  f"mean hole ratio {ratio:.3f})")


if __name__ == "__main__":
    main()

"""Benchmark: the pull-push fill (pconv.fill) that the shipped model adds its output to.

In one run, per image size and hole kind: the Laplace fill and the fill with biharmonic steps, each
with sparse steps (the default: each pyramid level's steps as sparse matrix products over the free
pixels) and with the dense stencil forced everywhere (what a traced graph runs). Holes:
"blobs 5 %" (six ellipses, the inference benchmark's case), "strokes 25 %" and "specks 2 %"
(isolated pixels), one image, batch 1; and a training batch (6 × 256², strokes 0.01-0.6). Last, one
Laplacian of a 3×512² image as shifted slices (what eager mode runs) and as the depthwise
convolution a traced graph runs; and the shipped model's thin-hole gate (a 5×5 opening of a 512²
mask) as separable shifted slices against max pooling. Repetitions are interleaved round-robin;
min and median ms.

Run: .venv/bin/python benchmarks/bench_fill.py [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import time
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List

import numpy as np
import torch

import pconv.fill as fill_module
from pconv.fill import pull_push_fill


@contextmanager
def dense_only() -> Iterator[None]:
    """Force the dense stencil (what a traced graph runs): no level qualifies for sparse steps."""
    saved = fill_module._MAX_FREE
    fill_module._MAX_FREE = -1
    try:
        yield
    finally:
        fill_module._MAX_FREE = saved


def holes(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean hole mask (True = hole)."""
    import cv2

    hole = np.zeros((size, size), np.uint8)
    if kind == "specks 2 %":
        return rng.random((size, size)) < 0.02
    if kind == "blobs 5 %":
        for _ in range(6):
            centre = tuple(int(v) for v in rng.integers(size // 8, size - size // 8, 2))
            axes = (int(size * 0.06), int(size * 0.035))
            cv2.ellipse(hole, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        return hole.astype(bool)
    from pconv.masks.strokes import stroke_mask

    return stroke_mask(size, size, rng, (0.24, 0.26))


def _times(fns: Dict[str, Callable[[], None]], seconds: float) -> Dict[str, List[float]]:
    for fn in fns.values():
        fn()
    out: Dict[str, List[float]] = {k: [] for k in fns}
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or min(len(v) for v in out.values()) < 3:
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            out[k].append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--seconds", type=float, default=4.0, help="minimum time per case")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); pull_push_fill, levels=7 (the "
          "cpu configurations' depth); min/median ms")
    rng = np.random.default_rng(0)
    cases = [(f"{s}² {k}", 1, s, k) for s in (256, 512) for k in ("blobs 5 %", "specks 2 %", "strokes 25 %")]
    cases.append(("6×256² training batch, strokes 0.01-0.6", 6, 256, "batch"))
    for label, batch, size, kind in cases:
        image = torch.rand(batch, 3, size, size)
        if kind == "batch":
            from pconv.masks.strokes import stroke_mask

            hole = np.stack([stroke_mask(size, size, rng, (0.01, 0.6)) for _ in range(batch)])
        else:
            hole = holes(kind, size, rng)[None]
        mask = torch.from_numpy(~hole)[:, None].float()

        def run(biharmonic: bool, dense: bool) -> Callable[[], None]:
            def f() -> None:
                if dense:
                    with dense_only():
                        pull_push_fill(image, mask, levels=7, biharmonic=biharmonic)
                else:
                    pull_push_fill(image, mask, levels=7, biharmonic=biharmonic)
            return f

        fns = {"laplace dense": run(False, True), "laplace": run(False, False),
               "biharmonic dense": run(True, True), "biharmonic": run(True, False)}
        t = _times(fns, args.seconds)
        cells = "  ".join(f"{k} {min(v) * 1e3:6.1f}/{statistics.median(v) * 1e3:6.1f}" for k, v in t.items())
        speed = min(t["biharmonic dense"]) / min(t["biharmonic"])
        print(f"{label:40s} | {cells} | biharmonic: sparse steps {speed:.2f}x, "
              f"cost vs Laplace {min(t['biharmonic']) / min(t['laplace']):.2f}x", flush=True)

    f = torch.rand(1, 3, 512, 512)
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).expand(3, 1, 3, 3).contiguous()

    def depthwise() -> None:
        torch.nn.functional.conv2d(torch.nn.functional.pad(f, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)

    t = _times({"slices": lambda: fill_module._stencil(f, -4.0, 1.0), "depthwise conv": depthwise}, args.seconds)
    print("one 3×512² Laplacian | " + "  ".join(f"{k} {min(v) * 1e3:6.2f}/{statistics.median(v) * 1e3:6.2f}"
                                               for k, v in t.items())
          + f" | depthwise conv / slices {min(t['depthwise conv']) / min(t['slices']):.1f}x", flush=True)

    # The thin-hole gate of the shipped model's head (a 5×5 opening of the hole) on a 512² mask.
    from pconv.model import _wide_hole_or_valid

    gate_mask = torch.from_numpy(~holes("strokes 25 %", 512, rng))[None, None].float()

    def max_pool_opening() -> None:
        hole = 1.0 - gate_mask
        core = -torch.nn.functional.max_pool2d(-hole, 5, 1, 2)
        gate_mask + torch.nn.functional.max_pool2d(core, 5, 1, 2)

    t = _times({"slices": lambda: _wide_hole_or_valid(gate_mask, 5), "max_pool2d": max_pool_opening}, args.seconds)
    print("thin-hole gate, 5×5 opening of a 512² mask | "
          + "  ".join(f"{k} {min(v) * 1e3:6.2f}/{statistics.median(v) * 1e3:6.2f}" for k, v in t.items())
          + f" | max_pool2d / slices {min(t['max_pool2d']) / min(t['slices']):.1f}x", flush=True)


if __name__ == "__main__":
    main()

"""Irregular hole masks from smooth random noise: ragged blobs and thin, broken, curving lines.

The paper's masks are occlusion boundaries found by optical flow: irregular blobs with ragged
edges, fragments, and 1-4 px lines that curve and break off. Brush strokes (``strokes.py``) are
smooth-edged and straight. This generator draws shapes closer to the paper's from level sets of
band-limited noise (a few octaves of bicubically upsampled random grids):

- blobs: ``noise > t``; ragged where the finer octaves cross the threshold;
- lines: ``|noise - c| < t``, a contour band whose width follows the noise's slope (thin where
  it is steep), cut into fragments by a second noise field.

The hole ratio is set exactly by ranking the pixels by the field (``t`` is the rank's value), so every
draw lands in the range.
"""
from __future__ import annotations

import cv2
import numpy as np

from pconv.errors import PConvError

__all__ = ["noise_mask", "smooth_noise", "smallest_first"]


def smooth_noise(height: int, width: int, rng: np.random.Generator, cells: float, octaves: int = 3,
                 persistence: float = 0.5) -> np.ndarray:
    """Band-limited noise, float32 ``(height, width)``: octaves of random grids (``cells`` across the
    long side for the first, twice as many each next one) upsampled bicubically and summed."""
    out = np.zeros((height, width), np.float32)
    amp = 1.0
    for o in range(octaves):
        n = cells * 2 ** o
        gh, gw = max(2, int(round(n * height / max(height, width))) + 2), max(2, int(round(n * width / max(height, width))) + 2)
        grid = rng.standard_normal((gh, gw)).astype(np.float32)
        out += amp * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        amp *= persistence
    return out


def smallest_first(key: np.ndarray, count: int) -> np.ndarray:
    """Flat indices of the ``count`` smallest values of ``key``, ties to the lower index: the set
    ``np.argsort(key, axis=None, kind="stable")[:count]`` (in index order), found with one
    O(n) partition instead of a full sort (0.4 ms instead of ~20 ms at 512², bench_data.py's
    noise-mask row)."""
    flat = key.ravel()
    count = max(0, min(int(count), flat.size))
    if count == 0:
        return np.zeros(0, np.intp)
    kth = np.partition(flat, count - 1)[count - 1]
    below = np.flatnonzero(flat < kth)
    ties = np.flatnonzero(flat == kth)[:count - below.size]
    return np.sort(np.concatenate([below, ties]))


def noise_mask(height: int, width: int, rng: np.random.Generator,
               ratio_range: tuple[float, float] = (0.01, 0.6)) -> np.ndarray:
    """Random irregular hole mask, bool ``(height, width)``, True = hole, with a hole ratio drawn
    uniformly in ``ratio_range``: ragged blobs, thin broken lines, or both. Deterministic for
    the state of ``rng``."""
    lo, hi = float(ratio_range[0]), float(ratio_range[1])
    if not 0 < lo <= hi < 1:
        raise PConvError(f"hole ratio range must satisfy 0 < min <= max < 1, got {ratio_range}")
    if height < 4 or width < 4:
        raise PConvError(f"mask size must be at least 4×4, got {height}×{width}")
    target = float(rng.uniform(lo, hi))
    kind = rng.choice(["blobs", "lines", "both"], p=[0.35, 0.35, 0.3])
    line_share = {"blobs": 0.0, "lines": 1.0, "both": float(rng.uniform(0.2, 0.6))}[kind]
    hole = np.zeros((height, width), bool)
    if line_share < 1:
        field = smooth_noise(height, width, rng, cells=rng.uniform(2, 8), octaves=4, persistence=rng.uniform(0.35, 0.6))
        count = int(round(target * (1 - line_share) * hole.size))
        hole.flat[smallest_first(-field, count)] = True
    if line_share > 0:
        field = smooth_noise(height, width, rng, cells=rng.uniform(2, 10), octaves=3)
        level = np.abs(field - np.quantile(field, rng.uniform(0.3, 0.7)))
        # Fragments: keep the band where a second field is high (about half of it, at random).
        cut = smooth_noise(height, width, rng, cells=rng.uniform(4, 16), octaves=2)
        keep = cut > np.quantile(cut, rng.uniform(0.0, 0.6))
        need = int(round(target * hole.size)) - int(hole.sum())
        if need > 0:
            free = ~hole & keep
            if free.sum() < need:  # the fragments cannot hold the share: whole lines
                free = ~hole
            hole.flat[smallest_first(np.where(free, level, np.inf), need)] = True
    if not hole.any():  # a degenerate draw (tiny target on a tiny mask): one pixel at least
        hole[int(rng.integers(height)), int(rng.integers(width))] = True
    return hole

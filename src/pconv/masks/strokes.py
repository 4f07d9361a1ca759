"""Irregular hole masks from random thick brush strokes and blobs.

The free-form masks peers train with (DeepFill-v2 style): poly-line strokes with round joints
plus filled ellipses, sizes scaled to the image so a mask looks the same at 256 and 512. Each
mask aims at a hole-to-image ratio drawn uniformly from ``ratio_range`` and is built stroke by
stroke; a stroke that would overshoot the range is undone and replaced by a smaller one, so the
returned ratio always lies inside the range.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from pconv.errors import PConvError

__all__ = ["stroke_mask", "hole_ratio"]


def hole_ratio(hole: np.ndarray) -> float:
    """Fraction of pixels that are hole (True) in a bool hole array."""
    return float(np.count_nonzero(hole)) / float(hole.size)


def _draw_stroke(canvas: np.ndarray, rng: np.random.Generator, base: float, scale: float) -> None:
    """Draw one random poly-line brush stroke (thick segments, round joints) onto ``canvas``."""
    h, w = canvas.shape
    # Log-uniform from hairlines (~1 px at 256) to broad brushes: real test masks (NVIDIA's) are
    # full of 1-4 px lines, and a network that never saw thin holes leaves visible outlines there.
    thickness = max(1, int(round(math.exp(rng.uniform(math.log(0.004), math.log(0.08))) * base * scale)))
    n_vertices = int(rng.integers(2, 9))
    x, y = float(rng.uniform(0, w)), float(rng.uniform(0, h))
    angle = float(rng.uniform(0, 2 * math.pi))
    r = max(1, thickness // 2)
    cv2.circle(canvas, (int(x), int(y)), r, 255, -1)
    for _ in range(n_vertices):
        angle += float(rng.uniform(-math.pi / 2, math.pi / 2))
        length = float(rng.uniform(0.04, 0.2)) * base * scale
        nx = min(max(x + length * math.cos(angle), 0.0), w - 1.0)
        ny = min(max(y + length * math.sin(angle), 0.0), h - 1.0)
        cv2.line(canvas, (int(x), int(y)), (int(nx), int(ny)), 255, thickness, cv2.LINE_8)
        cv2.circle(canvas, (int(nx), int(ny)), r, 255, -1)
        x, y = nx, ny


def _draw_blob(canvas: np.ndarray, rng: np.random.Generator, base: float, scale: float) -> None:
    """Draw one random filled ellipse onto ``canvas``."""
    h, w = canvas.shape
    a = max(1, int(rng.uniform(0.02, 0.12) * base * scale))
    b = max(1, int(a * rng.uniform(0.4, 1.0)))
    center = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
    cv2.ellipse(canvas, center, (a, b), float(rng.uniform(0, 180)), 0, 360, 255, -1)


def _one_try(height: int, width: int, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray | None:
    """Build one mask towards a random target ratio; None if it could not land in [lo, hi]."""
    total = height * width
    target = float(rng.uniform(lo, hi))
    base = float(min(height, width))
    canvas = np.zeros((height, width), np.uint8)
    count = 0
    scale = 1.0
    for _ in range(400):
        if count >= target * total:
            break
        backup = canvas.copy()
        if rng.random() < 0.75:
            _draw_stroke(canvas, rng, base, scale)
        else:
            _draw_blob(canvas, rng, base, scale)
        new_count = cv2.countNonZero(canvas)
        if new_count > hi * total:  # overshoot: undo, try smaller shapes
            canvas = backup
            scale *= 0.6
            if scale * base < 2:
                break
            continue
        count = new_count
    ratio = count / total
    if lo <= ratio <= hi and count > 0:
        return canvas > 0
    return None


def stroke_mask(
    height: int,
    width: int,
    rng: np.random.Generator,
    ratio_range: tuple[float, float] = (0.01, 0.6),
    max_tries: int = 20,
) -> np.ndarray:
    """Random free-form hole mask, bool ``(height, width)``, True = hole.

    The hole ratio lies in ``ratio_range`` (inclusive). Deterministic for the state of ``rng``.
    Raises :class:`PConvError` if the range is invalid or cannot be reached in ``max_tries``.
    """
    lo, hi = float(ratio_range[0]), float(ratio_range[1])
    if height < 1 or width < 1:
        raise PConvError(f"mask size must be positive, got {height}x{width}")
    if not (0.0 <= lo <= hi <= 1.0) or hi <= 0.0:
        raise PConvError(f"ratio_range must satisfy 0 <= low <= high <= 1 and high > 0, got {ratio_range}")
    if math.floor(hi * height * width) < max(1, math.ceil(lo * height * width)):
        raise PConvError(
            f"ratio_range {ratio_range} holds no whole pixel count for a {height}x{width} mask; widen it"
        )
    for _ in range(max(1, int(max_tries))):
        hole = _one_try(height, width, rng, lo, hi)
        if hole is not None:
            return hole
    raise PConvError(
        f"could not draw a {height}x{width} stroke mask with hole ratio in {ratio_range} "
        f"after {max_tries} tries; widen the range or raise max_tries"
    )

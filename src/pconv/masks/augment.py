"""The paper's mask augmentation: binarise, random dilation, rotation, translation, crop, resize.

Liu et al. (2018, Sec. 4.1) enlarge their video masks "by random dilation, rotation and
cropping". Here: grey masks are binarised at ``threshold`` (0.6 in the paper's release), then a
random elliptical dilation (9-49 px at 512 px, scaled linearly with the mask size), a random
rotation and translation (one nearest-neighbour affine warp, outside = valid), a random crop and
a nearest-neighbour resize to the output size. Every step is nearest-neighbour or morphological,
so the result is binary by construction. Deterministic for the state of ``rng``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

from pconv.errors import PConvError
from pconv.masks.io import resize_hole

__all__ = ["AugmentConfig", "augment_mask", "binarise"]


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random mask augmentation; defaults follow the paper."""

    threshold: float = 0.6  # grey level (0..1, 1 = white = hole) above which a pixel is hole
    dilation: Tuple[int, int] = (9, 49)  # elliptical kernel diameter range in px at reference_size
    reference_size: int = 512  # size the pixel ranges above refer to; they scale with min(H, W)
    max_rotation: float = 180.0  # degrees, rotation drawn uniformly in [-max, max]
    max_translation: float = 0.25  # fraction of width/height, shift drawn in [-max, max]
    crop: Tuple[float, float] = (0.6, 1.0)  # side of the random crop as a fraction of the mask side

    def check(self) -> None:
        """Raise PConvError naming the first invalid field."""
        if not 0.0 <= self.threshold < 1.0:
            raise PConvError(f"augment threshold must be in [0, 1), got {self.threshold}")
        lo, hi = self.dilation
        if lo < 0 or hi < lo:
            raise PConvError(f"augment dilation range must satisfy 0 <= low <= high, got {self.dilation}")
        if self.reference_size < 1:
            raise PConvError(f"augment reference_size must be positive, got {self.reference_size}")
        if not 0.0 <= self.max_translation <= 1.0:
            raise PConvError(f"augment max_translation must be in [0, 1], got {self.max_translation}")
        c0, c1 = self.crop
        if not 0.0 < c0 <= c1 <= 1.0:
            raise PConvError(f"augment crop range must satisfy 0 < low <= high <= 1, got {self.crop}")


def binarise(mask: np.ndarray, threshold: float = 0.6) -> np.ndarray:
    """Bool hole array from a mask: bool passes through; uint8/uint16 scale to [0, 1]; hole = level > threshold."""
    mask = np.asarray(mask)
    if mask.dtype == bool:
        return mask
    if mask.dtype == np.uint8:
        levels = mask.astype(np.float32) / 255.0
    elif mask.dtype == np.uint16:
        levels = mask.astype(np.float32) / 65535.0
    else:
        levels = mask.astype(np.float32)
    return levels > float(threshold)


def augment_mask(
    mask: np.ndarray,
    out_size: Optional[Tuple[int, int]],
    rng: np.random.Generator,
    config: AugmentConfig = AugmentConfig(),
) -> np.ndarray:
    """One random augmentation of a (H, W) hole mask -> bool (out_h, out_w) hole array, True = hole.

    ``mask`` is a bool hole array or grey levels (white = hole) binarised at ``config.threshold``.
    ``out_size`` is ``(height, width)``, or None for the input size.
    """
    config.check()
    hole = binarise(mask, config.threshold)
    if hole.ndim != 2 or hole.size == 0:
        raise PConvError(f"mask to augment must be a non-empty (H, W) array, got shape {hole.shape}")
    h, w = hole.shape
    out_h, out_w = (h, w) if out_size is None else (int(out_size[0]), int(out_size[1]))
    if out_h < 1 or out_w < 1:
        raise PConvError(f"augment output size must be positive, got {out_size}")
    m = hole.astype(np.uint8)
    scale = min(h, w) / float(config.reference_size)

    # 1. dilation: elliptical kernel, diameter drawn in the scaled range
    d_lo, d_hi = config.dilation
    d = int(round(rng.uniform(d_lo, d_hi) * scale)) if d_hi > 0 else 0
    if d >= 2:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (d, d))
        m = cv2.dilate(m, kernel)

    # 2. rotation about the centre + translation, one nearest-neighbour warp, outside = valid (0)
    angle = float(rng.uniform(-config.max_rotation, config.max_rotation))
    tx = float(rng.uniform(-config.max_translation, config.max_translation)) * w
    ty = float(rng.uniform(-config.max_translation, config.max_translation)) * h
    A = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, 1.0)
    A[:, 2] += (tx, ty)
    m = cv2.warpAffine(m, A, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    # 3. random crop, same fraction of both sides (keeps the aspect ratio)
    f = float(rng.uniform(*config.crop))
    ch, cw = max(1, int(round(h * f))), max(1, int(round(w * f)))
    y0 = int(rng.integers(0, h - ch + 1))
    x0 = int(rng.integers(0, w - cw + 1))
    m = m[y0:y0 + ch, x0:x0 + cw]

    # 4. nearest-neighbour resize to the output size
    return resize_hole(m.astype(bool), out_h, out_w)

"""Image quality metrics for inpainting: ℓ1, PSNR, SSIM over the whole image and over the hole only.

Pure functions on float arrays in [0, 1] (HxW or HxWxC; a uint8 array is accepted and divided by
255). The whole-image numbers are the ones of the paper's Table 1: ℓ1 is the mean absolute error
over every pixel and channel (Table 1 shows it in %), PSNR uses a peak of 1, and SSIM is
scikit-image's ``structural_similarity`` with ``data_range=1``, its default 7x7 uniform window
(the Wang et al. constants K1=0.01, K2=0.03) and the mean over channels: the implementation most
inpainting papers quote. The hole-only numbers average over hole pixels (and channels) alone, so
they are not diluted by the untouched known pixels.
"""
from __future__ import annotations

import math
from typing import Dict, Optional

import numpy as np

from pconv.errors import PConvError

__all__ = ["l1", "mse", "psnr", "ssim", "hole_l1", "hole_psnr", "hole_detail", "detail_ratio", "image_metrics",
           "SSIM_WINDOW", "DETAIL_SIGMA", "DETAIL_FLOOR"]

#: Side of SSIM's uniform window (scikit-image's default); images smaller than this have no SSIM.
SSIM_WINDOW = 7
#: Gaussian sigma (px) of the detail measure's low-pass.
DETAIL_SIGMA = 1.5
#: Ground-truth detail below this (grey levels in [0, 1]) makes the ratio meaningless: ``nan``.
DETAIL_FLOOR = 1e-3


def _as_float(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    if not np.issubdtype(a.dtype, np.floating):
        raise PConvError(f"{name} must be a float array in [0, 1] or uint8, got dtype {a.dtype}")
    return a.astype(np.float64, copy=False)


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_float(a, "first image"), _as_float(b, "second image")
    if a.shape != b.shape:
        raise PConvError(f"images to compare differ in shape: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3) or a.size == 0:
        raise PConvError(f"images to compare must be HxW or HxWxC and not empty, got shape {a.shape}")
    return a, b


def _hole_values(a: np.ndarray, b: np.ndarray, hole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hole = np.asarray(hole).astype(bool)
    if hole.shape != a.shape[:2]:
        raise PConvError(f"hole mask shape {hole.shape} does not match the image's {a.shape[:2]}")
    return a[hole], b[hole]


def l1(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute error over all pixels and channels ([0, 1] scale; x100 for Table 1's %)."""
    a, b = _pair(a, b)
    return float(np.mean(np.abs(a - b)))


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error over all pixels and channels."""
    a, b = _pair(a, b)
    return float(np.mean((a - b) ** 2))


def _psnr_from_mse(value: float) -> float:
    return math.inf if value == 0.0 else 10.0 * math.log10(1.0 / value)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for a peak of 1; ``inf`` for identical images."""
    return _psnr_from_mse(mse(a, b))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity (scikit-image, 7x7 uniform window, data_range=1, mean over channels)."""
    from skimage.metrics import structural_similarity

    a, b = _pair(a, b)
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise PConvError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {a.shape[:2]}")
    channel_axis = -1 if a.ndim == 3 else None
    return float(structural_similarity(a, b, data_range=1.0, channel_axis=channel_axis, win_size=SSIM_WINDOW))


def hole_l1(a: np.ndarray, b: np.ndarray, hole: np.ndarray) -> float:
    """Mean absolute error over the hole pixels only (``nan`` when the hole is empty)."""
    a, b = _pair(a, b)
    x, y = _hole_values(a, b, hole)
    return float(np.mean(np.abs(x - y))) if x.size else math.nan


def hole_psnr(a: np.ndarray, b: np.ndarray, hole: np.ndarray) -> float:
    """PSNR (peak 1) over the hole pixels only (``nan`` for an empty hole, ``inf`` if they match)."""
    a, b = _pair(a, b)
    x, y = _hole_values(a, b, hole)
    return _psnr_from_mse(float(np.mean((x - y) ** 2))) if x.size else math.nan


def hole_detail(image: np.ndarray, hole: np.ndarray) -> float:
    """Fine detail inside the hole: mean over hole pixels of ``|grey − GaussianBlur(grey, 1.5)|``.

    ``grey`` is OpenCV's RGB-to-grey conversion of the image in [0, 1]; the blur is OpenCV's with
    its default reflected border, over the whole image. A flat fill scores 0.
    """
    import cv2

    a = _as_float(image, "image").astype(np.float32)
    if a.ndim != 3 or a.shape[2] != 3:
        raise PConvError(f"hole_detail needs an RGB image (H, W, 3), got shape {a.shape}")
    hole = np.asarray(hole).astype(bool)
    if hole.shape != a.shape[:2]:
        raise PConvError(f"hole mask shape {hole.shape} does not match the image's {a.shape[:2]}")
    if not hole.any():
        return math.nan
    grey = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
    low = cv2.GaussianBlur(grey, (0, 0), DETAIL_SIGMA)
    return float(np.abs(grey - low)[hole].mean())


def detail_ratio(output: np.ndarray, target: np.ndarray, hole: np.ndarray) -> float:
    """``hole_detail(output) / hole_detail(target)``: 1 = as detailed as the photo, 0 = flat.

    ``nan`` when the target's own detail is below :data:`DETAIL_FLOOR` (a flat region: no scale).
    """
    ref = hole_detail(target, hole)
    if not ref >= DETAIL_FLOOR:
        return math.nan
    return hole_detail(output, hole) / ref


def image_metrics(output: np.ndarray, target: np.ndarray, hole: Optional[np.ndarray] = None) -> Dict[str, float]:
    """All metrics of one result: ``l1``, ``psnr``, ``ssim`` and, given the hole, ``hole_l1``, ``hole_psnr``."""
    out = {"l1": l1(output, target), "psnr": psnr(output, target), "ssim": ssim(output, target)}
    if hole is not None:
        out["hole_l1"] = hole_l1(output, target, hole)
        out["hole_psnr"] = hole_psnr(output, target, hole)
    return out

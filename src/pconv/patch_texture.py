"""Texture for large holes at photo resolution: the network's structure, PatchMatch's texture.

On a large hole the network paints the right colours and shading and the right course of edges,
but fog inside; :mod:`pconv.texture` adds the photo's finest grain, which leaves the scales
between a few pixels and the hole's size foggy ("fog with sprinkled grain"). PatchMatch
(Barnes et al. 2009) fills a hole with coherent pieces of the photo at every scale, but takes
the wrong pieces where the structure is not local (a bush copied into a giraffe's neck). This
step takes from each what it does well:

1. Complete the hole with PatchMatch (``pypatchmatch``, seeded) at ``scale`` of the photo's
   resolution (at most ``max_side`` px on the long side): the hole's content is never read,
   and the search costs a fraction of a full-resolution one.
2. Keep only its texture: the band above a Gaussian of ``sigma`` px (full resolution),
   upsampled; below it, the colours and shading stay the network's. A wrong piece then shows as
   a texture in the right colours, not as a wrong object.
3. Weight the band by how well PatchMatch's colours below ``sigma`` agree with the network's
   (``agreement``): where PatchMatch copied another object (a flower where a wing was, a leg beside
   a bee) its band is that object's outline, which would show as a ghost in the fill.
4. Add that band to the network's fill in the hole; :mod:`pconv.texture` then adds the finest
   grain at full resolution on top (its mid band off: this band covers those scales).

Hole regions narrower than ``min_radius`` px (scratches, small objects) keep the detail transfer
alone, which measured better there; without ``pypatchmatch`` every region does.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Optional

import cv2
import numpy as np

from pconv.errors import PConvError

__all__ = ["PatchTextureConfig", "patch_texture", "patchmatch_available", "agreement_weight"]

# pypatchmatch keeps its random state in the native library: one completion at a time, so a
# seed gives the same result also when a server runs jobs in threads.
_LOCK = threading.Lock()


@dataclass(frozen=True)
class PatchTextureConfig:
    """Settings of :func:`patch_texture` (chosen by ``benchmarks/bench_object_removal.py``)."""

    scale: float = 0.5       #: PatchMatch runs at this share of the photo's resolution
    max_side: int = 1024     #: ... and at most at this long side (px)
    sigma: float = 16.0      #: the band above this Gaussian (full-resolution px) comes from PatchMatch
    patch_size: int = 3      #: PatchMatch's patch radius (patches of (2r+1)² px)
    min_radius: float = 64.0  #: hole regions at least this wide (inscribed radius, px) take this step
    #: the band fades where PatchMatch's colours below ``sigma`` differ from the network's fill by
    #: about this much (RMS over the channels, grey levels): there it copied another object; 0 = never
    agreement: float = 48.0

    def __post_init__(self) -> None:
        if not 0.0 < self.scale <= 1.0:
            raise PConvError(f"patch texture scale must be in (0, 1], got {self.scale}")
        if self.max_side < 64 or self.sigma <= 0 or self.patch_size < 1 or self.min_radius < 0:
            raise PConvError("patch texture max_side must be >= 64, sigma > 0, patch_size >= 1, min_radius >= 0")
        if self.agreement < 0:
            raise PConvError(f"patch texture agreement must be >= 0 (0 = off), got {self.agreement}")


def _module() -> Optional[Any]:
    try:
        import patchmatch as pm
    except ImportError:
        return None
    return pm if getattr(pm, "patchmatch_available", False) else None


def patchmatch_available() -> bool:
    """Whether the optional ``pypatchmatch`` is installed and its native library loads."""
    return _module() is not None


def _completion(image: np.ndarray, hole: np.ndarray, config: PatchTextureConfig, seed: int) -> np.ndarray:
    """PatchMatch's completion at reduced resolution, upsampled to (H, W), float32."""
    pm = _module()
    if pm is None:
        raise PConvError("the patch texture needs the optional package pypatchmatch: pip install 'pconv[patchmatch]'")
    h, w = hole.shape
    s = min(config.scale, config.max_side / max(h, w))
    sh, sw = max(8, round(h * s)), max(8, round(w * s))
    known = (~hole).astype(np.float32)
    photo = np.where(hole[:, :, None], 0, image).astype(np.float32)
    num = cv2.resize(photo * known[:, :, None], (sw, sh), interpolation=cv2.INTER_AREA)
    den = cv2.resize(known, (sw, sh), interpolation=cv2.INTER_AREA)
    small_hole = cv2.resize(hole.astype(np.float32), (sw, sh), interpolation=cv2.INTER_AREA) > 1e-6
    small = np.where(small_hole[:, :, None], 0.0, num / np.maximum(den, 1e-6)[:, :, None])
    small = np.clip(np.round(small), 0, 255).astype(np.uint8)
    with _LOCK:
        pm.set_random_seed(int(seed))
        done = pm.inpaint(small, small_hole.astype(np.uint8), patch_size=int(config.patch_size))
    return cv2.resize(done.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)


def agreement_weight(low: np.ndarray, fill: np.ndarray, sigma: float, scale: float) -> np.ndarray:
    """(H, W) weight in (0, 1]: exp(−(d / scale)²) of the RMS colour difference d between
    PatchMatch's low layer and the network's fill blurred alike. Where PatchMatch took a piece of
    another object (a bush in a giraffe's neck, a leg beside a bee) its colours leave the network's
    and its band is that object's outline; where both agree, its texture belongs there."""
    fill_low = cv2.GaussianBlur(fill.astype(np.float32), (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    d2 = ((low - fill_low) ** 2).mean(axis=2)
    return np.exp(-d2 / (scale * scale)).astype(np.float32)


def patch_texture(image: np.ndarray, hole: np.ndarray, fill: np.ndarray,
                  config: PatchTextureConfig = PatchTextureConfig(), seed: int = 0) -> np.ndarray:
    """The network's ``fill`` with PatchMatch's texture band added in ``hole``.

    ``image``: uint8 (H, W, 3) photo (its hole pixels are never read); ``hole``: bool (H, W);
    ``fill``: uint8 (H, W, 3), the network's fill. Returns uint8 (H, W, 3): the photo's known
    pixels exactly, the fill plus the band in the hole.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise PConvError(f"patch_texture needs a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    if hole.shape != image.shape[:2] or fill.shape != image.shape:
        raise PConvError(f"hole {hole.shape} and fill {fill.shape} must match the image's {image.shape}")
    hole = hole.astype(bool)
    if not hole.any() or hole.all():
        return np.where(hole[:, :, None], fill, image)
    done = _completion(image, hole, config, seed)
    low = cv2.GaussianBlur(done, (0, 0), config.sigma, borderType=cv2.BORDER_REFLECT)
    band = done - low
    if config.agreement > 0:
        band *= agreement_weight(low, fill, config.sigma, config.agreement)[:, :, None]
    out = np.clip(np.round(fill.astype(np.float32) + band), 0, 255).astype(np.uint8)
    return np.where(hole[:, :, None], out, image)

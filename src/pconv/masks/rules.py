"""The mask rule, once: which pixels of a mask from any editor are hole, and when to warn.

Every interface uses :func:`to_hole` (the CLI and the library through
:func:`pconv.masks.read_mask_file` and :func:`pconv.inference.to_hole_array`, the HTTP API
directly), so a mask means the same everywhere:

1. **Level.** Each pixel gets one level in [0, 1]:

   * a mask whose **alpha channel varies** (some pixels more transparent than others: a layer
     exported from IOPaint, Photoshop or GIMP, strokes on a transparent background) is read by
     its alpha alone; the strokes' colour does not matter. An alpha that is the same everywhere
     says nothing and is ignored;
   * otherwise a colour pixel's level is its **brightest channel** (max of R, G, B), a grey
     pixel's its grey level. The brightest channel, not luma, because luma weighs a saturated
     blue stroke at 0.11 and a red one at 0.30, below any sensible threshold, while a light grey
     keeps its level: with the max, coloured strokes and light-grey strokes are hole alike, and
     black stays black;
   * 1-bit, 16-bit and float images are scaled to [0, 1] (16-bit by 65535).

2. **Threshold.** A pixel is hole when its level is **> threshold** (default 0.5, in [0, 1)).
   Halfway keeps anti-aliased edges and JPEG noise out of the hole, and takes any stroke brighter
   than mid-grey (or more opaque than half) in.

3. **Polarity.** White (bright, opaque) = hole. ``invert`` (``--invert-mask``, ``invert_mask``)
   flips the result: black = hole.

Bool masks are taken as they are (True = hole). Two masks are suspicious and get a word
(:func:`mask_problem`): one with **no hole** (nothing to fill: the API refuses it with 422, the
CLI and the library warn and return the photo unchanged) and one whose hole covers more than
:data:`LARGE_HOLE` of the image (most likely inverted: the CLI and the library warn, the API
answers with the ``X-Pconv-Warning`` header).
"""
from __future__ import annotations

import warnings
from typing import Any, Optional

import numpy as np

from pconv.errors import PConvError

__all__ = ["to_hole", "mask_levels", "mask_problem", "warn_about_mask", "MaskWarning", "LARGE_HOLE",
           "DEFAULT_THRESHOLD"]

DEFAULT_THRESHOLD = 0.5
#: A hole over this fraction of the image is most likely an inverted mask.
LARGE_HOLE = 0.6


class MaskWarning(UserWarning):
    """A mask that is probably not what its author meant (no hole, or most of the image)."""


def _check_threshold(threshold: float) -> float:
    if not 0.0 <= float(threshold) < 1.0:
        raise PConvError(f"mask threshold must be in [0, 1), got {threshold}")
    return float(threshold)


def _from_channels(a: np.ndarray) -> np.ndarray:
    """(H, W, 3|4) levels -> (H, W), same dtype: alpha when it varies, else the brightest colour channel."""
    if a.shape[2] == 4:
        alpha = a[:, :, 3]
        if alpha.size and alpha.min() != alpha.max():
            return alpha
    return a[:, :, :3].max(axis=2)


def _image_levels(img: Any) -> np.ndarray:
    """Pillow image -> float32 (H, W) levels, whatever its mode or bit depth (see the module rule)."""
    mode = img.mode
    if mode == "1":
        return np.asarray(img, dtype=np.float32)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(img).astype(np.float32)
        top = 65535.0 if a.max(initial=0) > 255 or mode.startswith("I;16") else 255.0
        return np.clip(a / top, 0.0, 1.0)
    if mode == "F":
        a = np.asarray(img, dtype=np.float32)
        return np.clip(a / 255.0 if a.max(initial=0) > 1.0 else a, 0.0, 1.0)
    if mode == "L":
        return np.asarray(img, dtype=np.float32) / 255.0
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info)
    rgb = np.asarray(img.convert("RGBA" if has_alpha else "RGB"))  # uint8: one channel is scaled, not four
    return _from_channels(rgb).astype(np.float32) / 255.0


def mask_levels(mask: Any) -> np.ndarray:
    """Any mask but a bool array -> float32 (H, W) levels in [0, 1] (step 1 of the module's rule).

    ``mask``: a Pillow image, or a numpy array / tensor (H, W) or (H, W, 1|3|4) of uint8 (/255),
    uint16 (/65535) or float/int levels in [0, 1].
    """
    from PIL import Image

    if isinstance(mask, Image.Image):
        if mask.width == 0 or mask.height == 0:
            raise PConvError("mask has no pixels (zero size)")
        return _image_levels(mask)
    a = _as_array(mask)
    if a.dtype == np.uint8:
        levels = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        levels = a.astype(np.float32) / 65535.0
    elif np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer):
        levels = a.astype(np.float32)
        if not np.isfinite(levels).all():
            raise PConvError("mask contains NaN or infinite values")
        if levels.min(initial=0) < 0 or levels.max(initial=0) > 1:
            raise PConvError(
                f"a {a.dtype} mask must hold levels in [0, 1] (1 = hole), got values in "
                f"[{levels.min():g}, {levels.max():g}]; pass uint8 (255 = hole) or bool (True = hole)"
            )
    else:
        raise PConvError(f"mask dtype {a.dtype} is not supported; use bool, uint8, uint16 or float")
    return _from_channels(levels) if levels.ndim == 3 else levels


def _as_array(mask: Any) -> np.ndarray:
    if hasattr(mask, "detach"):  # a torch tensor
        mask = mask.detach().cpu().numpy()
    a = np.asarray(mask)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise PConvError(f"mask must be (H, W) (or (H, W, 1|3|4)), got shape {a.shape}")
    if a.size == 0:
        raise PConvError("mask has no pixels (zero size)")
    return a


def to_hole(mask: Any, invert: bool = False, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Any mask (Pillow image, numpy array or tensor) -> bool (H, W) hole array, True = hole.

    Level > ``threshold`` is hole, flipped by ``invert`` (the module's rule). A bool array is
    taken as it is (a (H, W, 3|4) one by its alpha when that varies, else by any channel).
    """
    from PIL import Image

    threshold = _check_threshold(threshold)
    if not isinstance(mask, Image.Image):  # bool arrays skip the levels
        a = _as_array(mask)
        if a.dtype == np.bool_:
            hole = a if a.ndim == 2 else _from_channels(a.astype(np.float32)) > 0
            return ~hole if invert else hole.copy()
    hole = mask_levels(mask) > threshold
    return ~hole if invert else hole


def mask_problem(hole: np.ndarray, invert: bool = False, flag: str = "--invert-mask",
                 threshold_flag: Optional[str] = "--threshold") -> Optional[str]:
    """What is suspicious about ``hole`` (None when nothing is): no hole, or a hole over LARGE_HOLE.

    ``flag`` / ``threshold_flag`` name the options of the interface that asks (the CLI's
    ``--invert-mask``, the API's ``invert_mask=true``; ``threshold_flag`` None where there is no
    threshold to set), so the hint says what to type there. The text has no semicolons (the CLI
    joins notes with them).
    """
    hole = np.asarray(hole, dtype=bool)
    polarity = "black = hole" if invert else "white = hole"
    if not hole.any():
        faint = f", lower {threshold_flag} for faint strokes," if threshold_flag else ""
        return (f"the mask has no hole pixels ({polarity}: a pixel is hole when brighter than mid-grey, a stroke on "
                "a transparent layer when more opaque than half): nothing to fill. Paint the holes white or in any "
                f"bright colour{faint} or "
                + (f"drop {flag} if the mask is white = hole" if invert else f"use {flag} if the mask is black = hole"))
    fraction = float(hole.mean())
    if fraction > LARGE_HOLE and not hole.all():
        return (f"the mask marks {fraction:.1%} of the image as hole ({polarity}): if it marks the holes in "
                + ("white, drop " + flag if invert else "black (white = keep), use " + flag)
                + " to flip it")
    return None


def warn_about_mask(hole: np.ndarray, invert: bool = False, flag: str = "invert_mask=True",
                    threshold_flag: str = "threshold") -> Optional[str]:
    """:func:`mask_problem`, issued as a :class:`MaskWarning` (the library's word); returns the text."""
    problem = mask_problem(hole, invert, flag, threshold_flag)
    if problem is not None:
        warnings.warn(problem, MaskWarning, stacklevel=3)
    return problem

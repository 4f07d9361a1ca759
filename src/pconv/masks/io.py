"""Mask files on disk and the one polarity rule.

On disk a mask is an image where **white = hole**, black = keep (NVIDIA's test masks, IOPaint);
``invert=True`` reads/writes the other convention (black = hole). In numpy a mask is a bool
"hole" array, True = hole. The network wants the paper's M: float, **1 = valid, 0 = hole**
(:func:`hole_to_valid`). Every conversion between the three happens here, once.

Which pixels of a mask image are hole (alpha layers, coloured and grey strokes, the threshold)
is :mod:`pconv.masks.rules`' one rule; this module reads and writes the files. Wrong sizes are an
error unless ``resize=True``, and resizing is nearest-neighbour on the binary mask only: masks
never get grey edges.
"""
from __future__ import annotations

import io as _io
import os
from pathlib import Path
from typing import Optional, Tuple, Union

import cv2
import numpy as np

from pconv.errors import PConvError
from pconv.masks.rules import DEFAULT_THRESHOLD, mask_levels, to_hole

__all__ = [
    "read_mask_file",
    "write_mask_file",
    "encode_mask_png",
    "hole_to_valid",
    "valid_to_hole",
    "resize_hole",
    "MASK_SUFFIXES",
]

PathLike = Union[str, os.PathLike]
MASK_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm", ".pbm")


def grey_levels(img) -> np.ndarray:
    """Pillow image -> float32 (H, W) levels in [0, 1] by the mask rule (:func:`pconv.masks.rules.mask_levels`)."""
    return mask_levels(img)


def resize_hole(hole: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a bool hole array (never interpolates, stays binary)."""
    if hole.shape == (height, width):
        return hole
    out = cv2.resize(hole.astype(np.uint8), (int(width), int(height)), interpolation=cv2.INTER_NEAREST)
    return out.astype(bool)


def read_mask_file(
    path: PathLike,
    invert: bool = False,
    threshold: float = DEFAULT_THRESHOLD,
    size: Optional[Tuple[int, int]] = None,
    resize: bool = False,
) -> np.ndarray:
    """Read a mask image as a bool hole array (True = hole).

    Hole by :mod:`pconv.masks.rules` (level > ``threshold``: white, bright colour or an opaque
    stroke on a transparent layer; flipped by ``invert``). ``size`` is
    ``(height, width)``: a mask of another size raises :class:`PConvError` unless ``resize=True``,
    which resizes nearest-neighbour after thresholding.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise PConvError(f"mask file {path} does not exist")
    if not path.is_file():
        raise PConvError(f"mask path {path} is not a file")
    if not 0.0 <= float(threshold) < 1.0:
        raise PConvError(f"mask threshold must be in [0, 1), got {threshold}")
    try:
        with Image.open(path) as img:
            img.load()
            if img.width == 0 or img.height == 0:
                raise PConvError(f"mask file {path} has no pixels")
            hole = to_hole(img, invert=invert, threshold=threshold)
    except PConvError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PConvError(
            f"cannot read mask file {path} as an image ({exc}); give a PNG/JPEG/BMP/TIFF mask, white = hole"
        ) from None
    if size is not None:
        hole = fit_hole(hole, int(size[0]), int(size[1]), resize, f"mask {path}")
    return hole


def fit_hole(hole: np.ndarray, height: int, width: int, resize: bool, what: str = "the mask") -> np.ndarray:
    """``hole`` at ``height``×``width``: unchanged if it fits, nearest-resized if ``resize``, else a
    PConvError naming both sizes and the fix."""
    if hole.shape == (height, width):
        return hole
    if not resize:
        raise PConvError(
            f"{what} is {hole.shape[1]}×{hole.shape[0]} (W×H) but the image is {width}×{height}; give a mask "
            "of the image's size, or allow nearest-neighbour resizing (--resize-mask / resize_mask=True)"
        )
    return resize_hole(hole, height, width)


def encode_mask_png(hole: np.ndarray, invert: bool = False) -> bytes:
    """PNG bytes of a bool hole array: 8-bit grey, 255 = hole (0 = hole when ``invert``)."""
    from PIL import Image

    hole = np.asarray(hole)
    if hole.ndim != 2 or hole.size == 0:
        raise PConvError(f"a mask to write must be a non-empty 2-D array, got shape {hole.shape}")
    white = (hole.astype(bool) != bool(invert))
    buf = _io.BytesIO()
    Image.fromarray(white.astype(np.uint8) * 255, mode="L").save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def write_mask_file(path: PathLike, hole: np.ndarray, invert: bool = False) -> Path:
    """Write a bool hole array as a PNG (white = hole; black = hole if ``invert``), atomically."""
    from pconv.weights import atomic_write_bytes

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise PConvError(f"mask files are written as PNG (lossless); name {path} with a .png suffix")
    if not path.parent.is_dir():
        raise PConvError(f"cannot write {path}: folder {path.parent} does not exist")
    atomic_write_bytes(path, encode_mask_png(hole, invert))
    return path


def hole_to_valid(hole):
    """Bool hole array (H, W) or (N, H, W) -> float32 tensor M, 1 = valid, shaped (1, H, W) / (N, 1, H, W)."""
    import torch

    t = torch.as_tensor(np.ascontiguousarray(hole)) if isinstance(hole, np.ndarray) else torch.as_tensor(hole)
    if t.dim() not in (2, 3):
        raise PConvError(f"hole mask must be (H, W) or (N, H, W), got shape {tuple(t.shape)}")
    valid = (~t.bool()).float()
    return valid.unsqueeze(0) if t.dim() == 2 else valid.unsqueeze(1)


def valid_to_hole(valid) -> np.ndarray:
    """Inverse of :func:`hole_to_valid`: M (1 = valid) -> bool hole array; (H, W) and (C, H, W) give (H, W),
    (N, C, H, W) gives (N, H, W); a pixel is a hole if any channel is 0."""
    a = valid.detach().cpu().numpy() if hasattr(valid, "detach") else np.asarray(valid)
    if a.ndim == 4:
        a = a.min(axis=1)  # a pixel is a hole if any channel is
    elif a.ndim == 3:
        a = a.min(axis=0)
    return a < 0.5

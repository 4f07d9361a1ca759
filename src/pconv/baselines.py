"""Classical inpainting baselines: what a user would pick instead of a network.

``telea`` and ``ns`` are OpenCV's fast-marching (Telea 2004) and Navier-Stokes (Bertalmio 2001)
methods, ``biharmonic`` is scikit-image's biharmonic-equation fill, and ``patchmatch`` is the
PatchMatch fill (Barnes et al. 2009) the paper compares against, from the optional PyPI package
``pypatchmatch`` (prebuilt native library, no compiling at import, seedable). All take a uint8 RGB
image and a bool hole mask (True = hole) and return a uint8 image whose known pixels are
exactly the input's: every result is composited with the input before it is returned.

The OpenCV radius defaults to 3 pixels, the value of OpenCV's own documentation and sample: a
larger neighbourhood smooths more and costs time without helping on 256-512 px photos.
PatchMatch's patch radius defaults to 3 (7x7 patches), the value its examples use; 15 (the
library default) is several times slower.
"""
from __future__ import annotations

import inspect
from functools import partial
from typing import Any, Callable, Dict, List

import numpy as np

from pconv.errors import PConvError

__all__ = ["BASELINES", "fill", "available_methods", "DEFAULT_RADIUS", "DEFAULT_PATCH_SIZE"]

DEFAULT_RADIUS = 3
DEFAULT_PATCH_SIZE = 3

_EVAL_EXTRA = "pip install 'pconv[eval]'"


def _cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise PConvError(
            f"the OpenCV baselines need OpenCV: {_EVAL_EXTRA} (or pip install opencv-python-headless)"
        ) from None
    return cv2


def telea(image: np.ndarray, hole: np.ndarray, radius: int = DEFAULT_RADIUS) -> np.ndarray:
    """OpenCV fast-marching inpainting (Telea 2004)."""
    cv2 = _cv2()
    return cv2.inpaint(image, hole.astype(np.uint8) * 255, float(radius), cv2.INPAINT_TELEA)


def ns(image: np.ndarray, hole: np.ndarray, radius: int = DEFAULT_RADIUS) -> np.ndarray:
    """OpenCV Navier-Stokes inpainting (Bertalmio, Bertozzi, Sapiro 2001)."""
    cv2 = _cv2()
    return cv2.inpaint(image, hole.astype(np.uint8) * 255, float(radius), cv2.INPAINT_NS)


def biharmonic(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """scikit-image biharmonic inpainting, per channel."""
    try:
        from skimage.restoration import inpaint_biharmonic
    except ImportError:
        raise PConvError(f"the biharmonic baseline needs scikit-image: {_EVAL_EXTRA} (or pip install scikit-image)") from None
    out = inpaint_biharmonic(image.astype(np.float64) / 255.0, hole, channel_axis=-1)
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def patchmatch(image: np.ndarray, hole: np.ndarray, patch_size: int = DEFAULT_PATCH_SIZE, seed: int = 0) -> np.ndarray:
    """PatchMatch fill (``pypatchmatch``), seeded so equal inputs give equal outputs."""
    try:
        import patchmatch as pm
    except ImportError:
        pm = None
    if pm is None or not getattr(pm, "patchmatch_available", False):
        raise PConvError(
            "the patchmatch baseline needs the optional package pypatchmatch: "
            "pip install 'pconv[patchmatch]' (or pip install pypatchmatch)"
        )
    pm.set_random_seed(int(seed))
    return pm.inpaint(np.ascontiguousarray(image), hole.astype(np.uint8), patch_size=int(patch_size))


def pullpush(image: np.ndarray, hole: np.ndarray, biharmonic: bool = False) -> np.ndarray:
    """Pull-push normalised-convolution fill (:func:`pconv.fill.pull_push_fill`): fast and smooth;
    ``biharmonic`` adds its biharmonic steps (the shipped model's base fill, method "pullpush-bh")."""
    import torch

    from pconv.fill import pull_push_fill

    x = torch.tensor(image).permute(2, 0, 1)[None].float() / 255.0  # a copy: inputs may be read-only
    m = torch.from_numpy(~hole)[None, None].float()
    out = pull_push_fill(x, m, biharmonic=biharmonic)[0].permute(1, 2, 0).numpy()
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


#: Method name -> ``function(image uint8 HxWx3, hole bool HxW, **options) -> uint8 HxWx3``.
BASELINES: Dict[str, Callable[..., np.ndarray]] = {
    "telea": telea,
    "ns": ns,
    "biharmonic": biharmonic,
    "patchmatch": patchmatch,
    "pullpush": pullpush,
    "pullpush-bh": partial(pullpush, biharmonic=True),
}


def available_methods() -> List[str]:
    """The baselines whose dependencies are installed here."""
    names = []
    probe_image = np.zeros((8, 8, 3), np.uint8)
    probe_hole = np.zeros((8, 8), bool)
    probe_hole[3:5, 3:5] = True
    for name in BASELINES:
        try:
            fill(name, probe_image, probe_hole)
        except PConvError:
            continue
        names.append(name)
    return names


def _check_inputs(image: np.ndarray, hole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(image)
    hole = np.asarray(hole)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise PConvError(f"the image must be an HxWx3 uint8 RGB array, got shape {image.shape} dtype {image.dtype}")
    if hole.dtype != np.bool_:
        raise PConvError(f"the hole mask must be a bool HxW array (True = hole), got dtype {hole.dtype}")
    if hole.shape != image.shape[:2]:
        raise PConvError(f"the hole mask is {hole.shape} but the image is {image.shape[:2]}: they must match")
    return np.ascontiguousarray(image), np.ascontiguousarray(hole)


def fill(method: str, image: np.ndarray, hole: np.ndarray, **options: Any) -> np.ndarray:
    """Fill ``hole`` (bool, True = hole) of ``image`` (uint8 RGB) with a classical method.

    Known pixels of the result are exactly the input's. ``options`` go to the method
    (``radius`` for telea/ns, ``patch_size``/``seed`` for patchmatch).
    """
    if method not in BASELINES:
        raise PConvError(f"unknown inpainting method {method!r}; available: {', '.join(BASELINES)}")
    image, hole = _check_inputs(image, hole)
    if not hole.any():
        return image.copy()
    func = BASELINES[method]
    try:
        inspect.signature(func).bind(image, hole, **options)
    except TypeError:
        accepted = [p for p in inspect.signature(func).parameters if p not in ("image", "hole")]
        raise PConvError(
            f"method {method!r} takes the options {accepted or 'none'}, got {sorted(options)}"
        ) from None
    out = func(image, hole, **options)
    out = np.asarray(out, dtype=np.uint8)
    return np.where(hole[..., None], out, image)

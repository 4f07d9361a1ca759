"""Style distance: does the fill have the right *kind* of texture?

The paper's style term restricted to the hole: the ℓ1 distance between the Gram matrices of VGG16's
pool1, pool2 and pool3 features of the result and of the ground truth, both cropped to the hole's
bounding box (grown to at least :data:`MIN_BOX` px a side, inside the image, so pool3 has a few
positions). Lower is better. A flat fill scores high (its Gram matrices lack the photo's texture
correlations), and so does plain noise (correlations of the wrong kind), which the detail ratio
alone would reward.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

from pconv.errors import PConvError

__all__ = ["StyleDistance", "hole_box", "MIN_BOX"]

#: Smallest side (px) of the box the Gram matrices are computed on.
MIN_BOX = 32


def hole_box(hole: np.ndarray, min_size: int = MIN_BOX) -> Tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the hole's bounding box, grown symmetrically to ``min_size`` per side
    where the image allows (an image smaller than that gives the whole image)."""
    ys, xs = np.nonzero(hole)
    if ys.size == 0:
        raise PConvError("the hole is empty: there is no region to compare")
    h, w = hole.shape

    def grow(lo: int, hi: int, limit: int) -> Tuple[int, int]:
        need = min(min_size, limit) - (hi - lo)
        if need > 0:
            lo -= need // 2
            hi += need - need // 2
            shift = max(0, -lo) - max(0, hi - limit)
            lo, hi = lo + shift, hi + shift
        return max(0, lo), min(limit, hi)

    y0, y1 = grow(int(ys.min()), int(ys.max()) + 1, h)
    x0, x1 = grow(int(xs.min()), int(xs.max()) + 1, w)
    return y0, y1, x0, x1


class StyleDistance:
    """Callable ``(output, target, hole) -> float``; loads the loss's VGG16 once (offline sources
    of :func:`pconv.vgg.load_vgg16_features`), or takes a :class:`~pconv.vgg.VGG16Features`."""

    def __init__(self, features: Optional[torch.nn.Module] = None, vgg_weights: Optional[str] = None) -> None:
        if features is None:
            from pconv.vgg import load_vgg16_features

            features = load_vgg16_features(vgg_weights)
        self.features = features.eval()

    def __call__(self, output: np.ndarray, target: np.ndarray, hole: np.ndarray) -> float:
        from pconv.losses import gram_matrix

        if output.shape != target.shape or output.ndim != 3 or output.shape[2] != 3:
            raise PConvError(f"style distance needs two RGB images of one shape, got {output.shape} and {target.shape}")
        hole = np.asarray(hole).astype(bool)
        if hole.shape != output.shape[:2]:
            raise PConvError(f"hole mask shape {hole.shape} does not match the image's {output.shape[:2]}")
        y0, y1, x0, x1 = hole_box(hole)

        def tensor(a: np.ndarray) -> torch.Tensor:
            a = np.asarray(a)
            a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
            return torch.from_numpy(np.ascontiguousarray(a[y0:y1, x0:x1])).permute(2, 0, 1)

        batch = torch.stack([tensor(output), tensor(target)])
        with torch.inference_mode():
            feats = self.features(batch)
            total = sum((gram_matrix(f[:1]) - gram_matrix(f[1:])).abs().mean() for f in feats)
        return float(total)

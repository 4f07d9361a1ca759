"""The paper's hole masks: occlusion/dis-occlusion from forward-backward optical-flow consistency.

Liu et al. (2018, Sec. 4.1) take their irregular masks from "occlusion/dis-occlusion mask
estimation between two consecutive frames for videos" (Sundaram, Brox & Keutzer, ECCV 2010).
For frames I0, I1 we compute dense forward flow f (I0 -> I1) and backward flow b (I1 -> I0)
with OpenCV (DIS or Farneback, no learned weights). A pixel x of I0 whose round trip does not
come back, i.e.

    |f(x) + b(x + f(x))|^2  >  alpha * (|f(x)|^2 + |b(x + f(x))|^2) + beta      (Sundaram eq. 3)

is occluded in I1; the same test with f and b swapped finds pixels of I1 that were hidden in I0
(dis-occlusions). The hole mask is the union of both maps (``direction="both"``), cleaned by a
morphological opening and by dropping connected components smaller than ``min_area``. Pixels
whose flow leaves the frame are not marked (they are out of view, not occluded). Optionally
Sundaram's motion-boundary test adds pixels where the flow gradient is large.

Input is a video file (anything OpenCV's VideoCapture decodes) or a folder of frame images
(in natural name order: frame2 before frame10).
"""
from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Tuple, Union

import cv2
import numpy as np

from pconv.errors import PConvError

__all__ = [
    "FlowMaskConfig",
    "dense_flow",
    "consistency_occlusion",
    "flow_hole_mask",
    "iter_frames",
    "video_masks",
    "FRAME_SUFFIXES",
]

PathLike = Union[str, os.PathLike]
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class FlowMaskConfig:
    """Parameters of the flow-consistency mask; alpha/beta are Sundaram et al.'s values."""

    method: str = "dis"  # "dis" (fast, robust) or "farneback"
    alpha: float = 0.01  # relative tolerance of the round trip
    beta: float = 0.5  # absolute tolerance (px^2) of the round trip
    direction: str = "both"  # "forward" (occlusions), "backward" (dis-occlusions) or "both"
    motion_boundaries: bool = False  # also mark |grad u|^2 + |grad v|^2 > 0.01 |w|^2 + 0.002
    open_px: int = 3  # diameter of the opening that removes specks and 1-px lines (0 = off)
    min_area: float = 0.0005  # drop components smaller than this fraction of the frame (0 = off)

    def check(self) -> None:
        """Raise PConvError naming the first invalid field."""
        if self.method not in ("dis", "farneback"):
            raise PConvError(f"flow method must be 'dis' or 'farneback', got {self.method!r}")
        if self.direction not in ("forward", "backward", "both"):
            raise PConvError(f"direction must be 'forward', 'backward' or 'both', got {self.direction!r}")
        if self.alpha < 0 or self.beta < 0:
            raise PConvError(f"alpha and beta must be >= 0, got {self.alpha}, {self.beta}")
        if self.open_px < 0:
            raise PConvError(f"open_px must be >= 0, got {self.open_px}")
        if not 0.0 <= self.min_area < 1.0:
            raise PConvError(f"min_area is a fraction of the frame in [0, 1), got {self.min_area}")


_LOCAL = threading.local()  # one DIS object per thread: calc() keeps internal buffers


def dense_flow(prev: np.ndarray, nxt: np.ndarray, method: str = "dis") -> np.ndarray:
    """Dense flow (H, W, 2) float32 from grey uint8 ``prev`` to ``nxt``: prev(x) ~ nxt(x + flow(x))."""
    if method == "dis":
        dis = getattr(_LOCAL, "dis", None)
        if dis is None:
            dis = _LOCAL.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return dis.calc(prev, nxt, None)
    if method == "farneback":
        # pyr_scale, levels, winsize, iterations, poly_n, poly_sigma: a 9-px window keeps motion
        # boundaries sharper than OpenCV's sample values (15) on our synthetic occlusion test
        return cv2.calcOpticalFlowFarneback(prev, nxt, None, 0.5, 4, 9, 3, 5, 1.1, 0)
    raise PConvError(f"flow method must be 'dis' or 'farneback', got {method!r}")


def consistency_occlusion(f: np.ndarray, b: np.ndarray, alpha: float = 0.01, beta: float = 0.5) -> np.ndarray:
    """Bool (H, W): pixels x where f(x) + b(x + f(x)) fails Sundaram's round-trip test.

    ``f`` is the flow out of this frame, ``b`` the flow back into it. Pixels sent outside the
    frame are never marked.
    """
    h, w = f.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mx, my = gx + f[..., 0], gy + f[..., 1]
    bw = cv2.remap(b, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    r = f + bw
    lhs = (r * r).sum(-1)
    rhs = alpha * ((f * f).sum(-1) + (bw * bw).sum(-1)) + beta
    inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    return (lhs > rhs) & inside


def _motion_boundary(f: np.ndarray) -> np.ndarray:
    """Sundaram's motion-boundary test on one flow field."""
    du = np.gradient(f[..., 0])
    dv = np.gradient(f[..., 1])
    g = du[0] ** 2 + du[1] ** 2 + dv[0] ** 2 + dv[1] ** 2
    return g > 0.01 * (f * f).sum(-1) + 0.002


def _clean(hole: np.ndarray, open_px: int, min_area: float) -> np.ndarray:
    """Morphological opening, then drop connected components under ``min_area`` (fraction)."""
    m = hole.astype(np.uint8)
    if open_px >= 2:
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (open_px, open_px)))
    if min_area > 0 and m.any():
        n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
        keep = stats[:, cv2.CC_STAT_AREA] >= min_area * m.size
        keep[0] = False
        m = keep[labels].astype(np.uint8)
    return m.astype(bool)


def flow_hole_mask(prev: np.ndarray, nxt: np.ndarray, config: FlowMaskConfig = FlowMaskConfig()) -> np.ndarray:
    """Bool (H, W) hole mask (True = hole) from two consecutive grey uint8 frames."""
    config.check()
    if prev.shape != nxt.shape or prev.ndim != 2:
        raise PConvError(f"frames must be grey (H, W) of one size, got {prev.shape} and {nxt.shape}")
    f = dense_flow(prev, nxt, config.method)
    b = dense_flow(nxt, prev, config.method)
    hole = np.zeros(prev.shape, bool)
    if config.direction in ("forward", "both"):
        hole |= consistency_occlusion(f, b, config.alpha, config.beta)
    if config.direction in ("backward", "both"):
        hole |= consistency_occlusion(b, f, config.alpha, config.beta)
    if config.motion_boundaries:
        hole |= _motion_boundary(f) | _motion_boundary(b)
    return _clean(hole, config.open_px, config.min_area)


def _as_hw(size: Union[None, int, Tuple[int, int]]) -> Optional[Tuple[int, int]]:
    if size is None:
        return None
    if isinstance(size, int):
        size = (size, size)
    h, w = int(size[0]), int(size[1])
    if h < 8 or w < 8:
        raise PConvError(f"frame size must be at least 8x8, got {w}x{h}")
    return h, w


def _to_grey(frame: np.ndarray, size: Optional[Tuple[int, int]], where: str) -> np.ndarray:
    if frame is None or frame.size == 0:
        raise PConvError(f"cannot decode frame {where}")
    if frame.dtype != np.uint8:
        frame = cv2.normalize(frame, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if frame.ndim == 3:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY if frame.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    if size is not None and frame.shape != size:
        frame = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return frame


def _natural_key(p: Path) -> list:
    """Sort key that puts frame2.png before frame10.png."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def _frame_files(folder: Path) -> List[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES),
                  key=_natural_key)


def iter_frames(
    source: PathLike,
    size: Union[None, int, Tuple[int, int]] = None,
    step: int = 1,
    max_frames: Optional[int] = None,
) -> Iterator[np.ndarray]:
    """Grey uint8 frames of a video file or a folder of images, every ``step``-th, resized to ``size``.

    ``size`` is ``(height, width)`` or one int for a square; frames are images, so they resize
    with area interpolation. Raises PConvError for a missing/unreadable source or mixed sizes.
    """
    source = Path(source)
    hw = _as_hw(size)
    if step < 1:
        raise PConvError(f"frame step must be >= 1, got {step}")
    if not source.exists():
        raise PConvError(f"video source {source} does not exist")
    count = 0
    first_shape = None
    if source.is_dir():
        files = _frame_files(source)
        for i, p in enumerate(files[::step]):
            if max_frames is not None and count >= max_frames:
                return
            frame = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
            if frame is None:
                raise PConvError(f"cannot read frame {p} as an image; remove it or convert it to PNG")
            g = _to_grey(frame, hw, str(p))
            if first_shape is None:
                first_shape = g.shape
            elif g.shape != first_shape:
                raise PConvError(
                    f"frame {p} is {g.shape[1]}x{g.shape[0]} but earlier frames are "
                    f"{first_shape[1]}x{first_shape[0]}; pass a size (--size) to resize all frames"
                )
            count += 1
            yield g
        return
    cap = cv2.VideoCapture(str(source))
    try:
        if not cap.isOpened():
            raise PConvError(
                f"cannot open {source} as a video; give a video file OpenCV can decode (e.g. .mp4, .avi) "
                "or a folder of frame images"
            )
        index = 0
        while max_frames is None or count < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            if index % step == 0:
                count += 1
                yield _to_grey(frame, hw, f"{index} of {source}")
            index += 1
    finally:
        cap.release()


def video_masks(
    source: PathLike,
    config: FlowMaskConfig = FlowMaskConfig(),
    size: Union[None, int, Tuple[int, int]] = None,
    step: int = 1,
    max_frames: Optional[int] = None,
) -> Iterator[Tuple[int, np.ndarray]]:
    """Yield ``(pair_index, hole)`` for each pair of consecutive (sampled) frames of a video.

    Raises PConvError if the source has no frames or only one (a mask needs two frames).
    Empty masks are yielded too; filter them by ratio if you need holes.
    """
    config.check()
    prev = None
    n = 0
    for i, frame in enumerate(iter_frames(source, size, step, max_frames)):
        if prev is not None:
            yield i - 1, flow_hole_mask(prev, frame, config)
        prev = frame
        n = i + 1
    if n == 0:
        raise PConvError(f"video {source} has no frames (empty or undecodable); nothing to compute flow on")
    if n == 1:
        raise PConvError(f"video {source} has only one frame; flow masks need at least two consecutive frames")

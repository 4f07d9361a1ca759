"""Where the network runs on a photo: the windows of each strategy, at a scale it can bridge.

A PConv U-Net fills a hole from its edge inwards: each encoder layer shrinks the hole by about
half its kernel at that layer's resolution, and training showed it holes of at most 60 % of a
256² crop. A hole far wider than that reach is filled with the network's bias: a flat block with
a bright rim. So every strategy runs the network where the hole's inscribed radius (the largest
distance from a hole pixel to the known region) is at most ``reach`` network pixels, downscaling
the window just enough when it is wider, and gives each hole enough of the scene around it:

* ``original``: the whole photo at full resolution when every hole is within reach; a photo
  with wider holes runs once more for them, downscaled until they are within reach. On a photo
  larger than ``NET_TILE·S`` the holes within reach run at full resolution in windows around
  them instead (the crop strategy's, never downscaled): the same fill at a fraction of the cost.
* ``crop``: per group of nearby holes a window of the group's bounding box plus a margin of
  ``context`` × its size (at least ``crop_margin``, at least S×S), so the hole stays a modest
  share of what the network sees; downscaled to ``2·S`` on its long side when larger, and further
  when the hole is still out of reach. Small holes (at most S long, within reach at full
  resolution: specks, blemishes, dust) are gathered by tile of ``NET_TILE·S`` instead, one
  window per tile downscaled to ``NET_TILE_SIDE·S``, so that many of them cost about one pass
  over the photo at half resolution.
* ``resize``: the whole photo at S on its long side (further down when the hole is out of reach).

The photographic fill's texture is computed per box too (:func:`texture_boxes`): a wide hole in
its own context box, the small ones gathered by tile, so that the cost follows the photo's area
once and not once per hole.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import List, Optional, Tuple

import cv2
import numpy as np

__all__ = ["Window", "plan_windows", "hole_regions", "hole_radius", "grow_box", "fit_long_side", "TextureBox",
           "texture_boxes", "REACH", "CONTEXT", "TEXTURE_TILE", "NET_TILE", "NET_TILE_SIDE"]

#: the widest hole (inscribed radius, network px) the network is asked to fill
REACH = 48
#: context margin around a crop window's holes, as a share of their bounding box's long side
CONTEXT = 0.5
#: small holes' texture is computed per tile of at most this many × S a side
TEXTURE_TILE = 6
#: small holes go to the network per tile of at most this many × S a side ...
NET_TILE = 6
#: ... in a window downscaled to this many × S on its long side (crop strategy; experiment 29)
NET_TILE_SIDE = 3


def hole_radius(hole: np.ndarray) -> float:
    """The hole's inscribed radius: the largest distance (px) from a hole pixel to the known region."""
    if not hole.any():
        return 0.0
    padded = np.pad(hole.astype(np.uint8), 1, constant_values=0)
    return float(cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE).max())


@dataclass
class Window:
    """One network run: crop box (y0, y1, x0, x1), the size the network sees, the pixels to paste."""

    image_index: int
    box: Tuple[int, int, int, int]
    net_size: Tuple[int, int]  # (h, w) the window is resized to before the network
    paste: np.ndarray  # bool, box-shaped: hole pixels this window is responsible for
    out: Optional[np.ndarray] = None


def _label_cells(cells: np.ndarray) -> Tuple[np.ndarray, int]:
    """8-connected component labels of a small bool grid (0 = background)."""
    labels = np.zeros(cells.shape, np.int32)
    n = 0
    gh, gw = cells.shape
    for y0, x0 in zip(*np.nonzero(cells)):
        if labels[y0, x0]:
            continue
        n += 1
        labels[y0, x0] = n
        queue = deque([(int(y0), int(x0))])
        while queue:
            y, x = queue.popleft()
            for yy in (y - 1, y, y + 1):
                if yy < 0 or yy >= gh:
                    continue
                for xx in (x - 1, x, x + 1):
                    if 0 <= xx < gw and cells[yy, xx] and not labels[yy, xx]:
                        labels[yy, xx] = n
                        queue.append((yy, xx))
    return labels, n


def _dilate(cells: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation of a bool grid by a (2r+1)² square (separable shifts)."""
    out = cells.copy()
    for axis in (0, 1):
        src = out.copy()
        for s in range(1, r + 1):
            if axis == 0:
                out[s:] |= src[:-s]
                out[:-s] |= src[s:]
            else:
                out[:, s:] |= src[:, :-s]
                out[:, :-s] |= src[:, s:]
    return out


def hole_regions(hole: np.ndarray, merge_distance: int) -> List[Tuple[Tuple[int, int, int, int], np.ndarray]]:
    """Group the hole pixels into regions (holes closer than about ``merge_distance`` px join).

    Returns ``[(bbox (y0, y1, x0, x1), own)]`` where ``own`` is the bbox-shaped bool array of the
    region's hole pixels; every hole pixel belongs to exactly one region. Works on a coarse grid
    of cells (at most ~256 on a side), so it stays fast on 12-Mpx masks.
    """
    h, w = hole.shape
    cell = max(4, math.ceil(max(h, w) / 256))
    gh, gw = math.ceil(h / cell), math.ceil(w / cell)
    padded = np.zeros((gh * cell, gw * cell), bool)
    padded[:h, :w] = hole
    cells = padded.reshape(gh, cell, gw, cell).any(axis=(1, 3))
    grown = _dilate(cells, max(0, math.ceil(merge_distance / (2 * cell))))
    labels, n = _label_cells(grown)
    labels = labels * cells  # only cells that hold hole pixels own pixels
    regions = []
    objects = _find_objects(labels, n)
    for k, (cy0, cy1, cx0, cx1) in enumerate(objects, start=1):
        if cy1 <= cy0:
            continue
        own_cells = labels[cy0:cy1, cx0:cx1] == k
        own = np.repeat(np.repeat(own_cells, cell, axis=0), cell, axis=1)
        y0, x0 = cy0 * cell, cx0 * cell
        y1, x1 = min(cy1 * cell, h), min(cx1 * cell, w)
        own = own[: y1 - y0, : x1 - x0] & hole[y0:y1, x0:x1]
        ys, xs = np.nonzero(own)
        if ys.size == 0:
            continue
        by0, by1, bx0, bx1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        regions.append(((y0 + by0, y0 + by1, x0 + bx0, x0 + bx1), own[by0:by1, bx0:bx1]))
    return regions


def _find_objects(labels: np.ndarray, n: int) -> List[Tuple[int, int, int, int]]:
    """Bounding boxes (y0, y1, x0, x1) of labels 1..n (empty box (0, 0, 0, 0) for a missing label)."""
    boxes = [[labels.shape[0], 0, labels.shape[1], 0] for _ in range(n)]
    ys, xs = np.nonzero(labels)
    ks = labels[ys, xs] - 1
    if ks.size:
        for arr, lo, hi in ((ys, 0, 1), (xs, 2, 3)):
            mins = np.full(n, np.iinfo(np.int64).max)
            maxs = np.full(n, -1)
            np.minimum.at(mins, ks, arr)
            np.maximum.at(maxs, ks, arr)
            for k in range(n):
                boxes[k][lo], boxes[k][hi] = int(mins[k]), int(maxs[k]) + 1
    return [tuple(b) if b[1] > b[0] else (0, 0, 0, 0) for b in boxes]  # type: ignore[misc]


def grow_box(box: Tuple[int, int, int, int], margin: int, min_size: int, h: int, w: int) -> Tuple[int, int, int, int]:
    """Box plus ``margin`` on each side, grown to at least ``min_size`` per side, kept inside the image."""
    y0, y1, x0, x1 = box

    def grow(a: int, b: int, limit: int) -> Tuple[int, int]:
        a, b = a - margin, b + margin
        if b - a < min_size:
            extra = min_size - (b - a)
            a -= extra // 2
            b += extra - extra // 2
        if b - a >= limit:
            return 0, limit
        if a < 0:
            a, b = 0, b - a
        if b > limit:
            a, b = a - (b - limit), limit
        return a, b

    y0, y1 = grow(y0, y1, h)
    x0, x1 = grow(x0, x1, w)
    return y0, y1, x0, x1


def fit_long_side(h: int, w: int, size: int) -> Tuple[int, int]:
    """(h, w) scaled so that the long side is ``size`` (never upscaled)."""
    if max(h, w) <= size:
        return h, w
    s = size / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))




def _scaled(h: int, w: int, scale: float) -> Tuple[int, int]:
    return max(1, round(h * scale)), max(1, round(w * scale))


def plan_windows(index: int, hole: np.ndarray, strategy: str, size: Optional[int], crop_margin: int,
                 reach: Optional[float] = REACH, context: float = CONTEXT) -> List[Window]:
    """The network runs for one photo's ``hole`` under ``strategy`` ("original", "crop", "resize").

    ``size``: the network's training size S (None for a classical method: windows at full
    resolution, no reach); ``reach``: the widest hole radius in network px (None = no limit).
    Every hole pixel is pasted from exactly one window.
    """
    h, w = hole.shape
    limit = reach if (reach is not None and size is not None) else None

    def within_reach(net: Tuple[int, int], box_h: int, radius: float) -> Tuple[int, int]:
        """``net`` shrunk further when the hole's radius there exceeds the reach."""
        if limit is None or radius <= 0:
            return net
        s = net[0] / box_h
        if radius * s <= limit:
            return net
        return _scaled(net[0], net[1], limit / (radius * s))

    if strategy == "original" or (strategy == "resize" and (size is None or max(h, w) <= size)):
        if limit is None:
            return [Window(index, (0, h, 0, w), (h, w), hole)]
        out, rest = [], hole
        local = strategy == "original" and max(h, w) > NET_TILE * size
        if local:
            # Holes within reach at full resolution in windows around them, small ones by tile:
            # the same fill as one pass over the whole photo, without its cost (a 12 MP pass
            # holds several GB of activations).
            out, rest = _tiled_windows(index, hole, size, crop_margin, context, limit, downscale=False)
        near = np.zeros_like(hole)
        for bbox, own in hole_regions(rest, merge_distance=2 * crop_margin):
            radius = hole_radius(own)
            if local and radius <= limit:
                y0, y1, x0, x1 = box = grow_box(bbox, _context(bbox, crop_margin, context), size, h, w)
                out.append(Window(index, box, (y1 - y0, x1 - x0), _paste_mask(box, [(bbox, own)])))
                continue
            paste = np.zeros_like(hole)
            paste[bbox[0]:bbox[1], bbox[2]:bbox[3]] = own
            if radius <= limit:
                near |= paste
            else:
                out.append(Window(index, (0, h, 0, w), within_reach((h, w), h, radius), paste))
        if near.any():
            out.append(Window(index, (0, h, 0, w), (h, w), near))
        return out
    if strategy == "resize" and size is not None:
        net = within_reach(fit_long_side(h, w, size), h, hole_radius(hole))
        return [Window(index, (0, h, 0, w), net, hole)]
    out, rest = [], hole
    if size is not None and limit is not None:
        out, rest = _tiled_windows(index, hole, size, crop_margin, context, limit)
    min_size = size if size is not None else 0
    for bbox, own in hole_regions(rest, merge_distance=2 * crop_margin):
        margin = crop_margin if size is None else _context(bbox, crop_margin, context)
        y0, y1, x0, x1 = box = grow_box(bbox, margin, min_size, h, w)
        paste = _paste_mask(box, [(bbox, own)])
        if size is None:
            out.append(Window(index, box, (y1 - y0, x1 - x0), paste))
            continue
        net = within_reach(fit_long_side(y1 - y0, x1 - x0, 2 * size), y1 - y0, hole_radius(own))
        out.append(Window(index, box, net, paste))
    return out


@dataclass
class TextureBox:
    """One texture computation: a box of the photo, the hole pixels its result is pasted on, and
    whether they form one wide hole (inscribed radius at least ``wide_radius``)."""

    box: Tuple[int, int, int, int]  #: (y0, y1, x0, x1)
    paste: np.ndarray               #: bool, the box's shape
    wide: bool


def texture_boxes(hole: np.ndarray, size: int, margin: int, wide_radius: float) -> List[TextureBox]:
    """Where the photographic fill's texture is computed on a photo larger than ``2·size``.

    A region of holes (holes closer than ``2·margin`` join) at least ``wide_radius`` wide gets its
    own context box: its bounding box plus half its size (at least ``margin``), at least
    ``2·size`` a side. The other holes are taken one by one and gathered by the tile (of at most
    ``TEXTURE_TILE·size`` a side) that holds their centre; a tile's box is the union of its holes'
    boxes (each grown by ``margin``, or half its size), at least ``2·size`` a side. Every hole
    pixel is pasted from exactly one box, so a hole never straddles two computations, and
    hundreds of specks cost about one pass over the photo rather than one box each.
    """
    h, w = hole.shape
    boxes: List[TextureBox] = []
    rest = hole.copy()
    for bbox, own in hole_regions(hole, merge_distance=2 * margin):
        if hole_radius(own) < wide_radius:
            continue
        y0, y1, x0, x1 = bbox
        box = grow_box(bbox, max(margin, (y1 - y0) // 2, (x1 - x0) // 2), 2 * size, h, w)
        boxes.append(TextureBox(box, _paste_mask(box, [(bbox, own)]), wide=True))
        rest[y0:y1, x0:x1][own] = False
    for parts in _by_tile(hole_regions(rest, merge_distance=0), TEXTURE_TILE * size, h, w):
        union = _union([grow_box(b, max(margin, (b[1] - b[0]) // 2, (b[3] - b[2]) // 2), 0, h, w) for b, _ in parts])
        box = grow_box(union, 0, 2 * size, h, w)
        boxes.append(TextureBox(box, _paste_mask(box, parts), wide=False))
    return boxes


def _context(bbox: Tuple[int, int, int, int], margin: int, context: float) -> int:
    """The context margin around a hole's bounding box: ``context`` × its long side, at least ``margin``."""
    return max(margin, round(context * max(bbox[1] - bbox[0], bbox[3] - bbox[2])))


def _union(boxes: List[Tuple[int, int, int, int]]) -> Tuple[int, int, int, int]:
    return min(b[0] for b in boxes), max(b[1] for b in boxes), min(b[2] for b in boxes), max(b[3] for b in boxes)


def _paste_mask(box: Tuple[int, int, int, int], parts: list) -> np.ndarray:
    """Bool, ``box``-shaped: the pixels of ``parts`` ((bbox, own) pairs, ``own`` bbox-shaped) inside it."""
    y0, y1, x0, x1 = box
    paste = np.zeros((y1 - y0, x1 - x0), bool)
    for (by0, by1, bx0, bx1), own in parts:
        paste[by0 - y0: by1 - y0, bx0 - x0: bx1 - x0] |= own
    return paste


def _by_tile(parts: list, tile: int, h: int, w: int) -> List[list]:
    """``parts`` (tuples starting with a bbox) grouped by the tile of a grid of at most ``tile`` px
    (an even split of the photo) that holds each bbox's centre, in the tiles' order."""
    ny, nx = math.ceil(h / tile), math.ceil(w / tile)
    groups: dict = {}
    for part in parts:
        y0, y1, x0, x1 = part[0]
        groups.setdefault((((y0 + y1) // 2) * ny // h, ((x0 + x1) // 2) * nx // w), []).append(part)
    return [groups[key] for key in sorted(groups)]


def _tiled_windows(index: int, hole: np.ndarray, size: int, margin: int, context: float,
                   reach: float, downscale: bool = True) -> Tuple[List[Window], np.ndarray]:
    """Windows for the small holes, and the holes left for the strategy's other windows.

    A hole (one component) is small when it is at most S on its long side and within ``reach``
    at full resolution. Small holes are gathered by the tile of ``NET_TILE·S`` a side that holds
    their centre; a tile's window is the union of its holes' boxes (each grown by ``context`` ×
    its size, at least ``margin``), at least S×S, downscaled to ``NET_TILE_SIDE·S`` on its long
    side (``downscale``, the crop strategy) or at full resolution (``original``). Merged into regions
    instead, hundreds of specks would make windows as large as the photo, each downscaled 5–6×
    and overlapping the others.
    """
    h, w = hole.shape
    rest = hole.copy()
    small = []
    for bbox, own in hole_regions(hole, merge_distance=0):
        y0, y1, x0, x1 = bbox
        if max(y1 - y0, x1 - x0) > size or hole_radius(own) > reach:
            continue
        small.append((bbox, own, grow_box(bbox, _context(bbox, margin, context), 0, h, w)))
        rest[y0:y1, x0:x1][own] = False
    out = []
    for parts in _by_tile(small, NET_TILE * size, h, w):
        y0, y1, x0, x1 = box = grow_box(_union([grown for _, _, grown in parts]), 0, size, h, w)
        paste = _paste_mask(box, [(bbox, own) for bbox, own, _ in parts])
        # within reach at full resolution, so within reach downscaled too
        net = fit_long_side(y1 - y0, x1 - x0, NET_TILE_SIDE * size) if downscale else (y1 - y0, x1 - x0)
        out.append(Window(index, box, net, paste))
    return out, rest

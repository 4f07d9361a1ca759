"""Texture transfer: give a smooth fill the fine detail of the photo around the hole.

A network trained for PSNR paints the low frequencies of a hole well (colour, shading, the course
of edges) and leaves its fine detail out: grass, gravel and water come out as fog. This module adds
to the fill a detail layer (what a Gaussian of ``sigma`` removes) copied from the known part of the
same photo:

1. Split the photo (hole pixels holding the fill) into ``low = blur(photo, sigma)`` and
   ``detail = photo − low``.
2. Cover the hole with blocks of ``block`` px on a grid of half that stride. A block's descriptor
   is its context window (``context`` blocks a side) average-pooled to a 4×4 grid of low-layer
   colours: "green above, grey below", not fine detail, which the fill does not have.
3. For every hole block, find among the blocks lying wholly in the known region (sources) the
   nearest descriptors (exact search, one matrix product per chunk). Blocks that overlap the known
   region take, among the ``rerank`` nearest, the source whose detail correlates best with their
   known detail, so the texture continues across the hole's edge; the others draw one of the
   ``candidates`` nearest with a seeded generator, so a flat fill does not repeat one tile.
4. Coherence: for ``propagation`` rounds a block adopts its neighbour's source, shifted by their
   distance, when that source is nearly as close (``coherence``): neighbours then copy one
   continuous piece of texture rather than a patchwork.
5. Paste each source's detail with a sin² window. Where overlapping blocks copy one continuous piece
   the weighted mean reproduces it; where they copy unrelated pieces, dividing by the root of the
   squared weights instead keeps the detail's contrast (variance-preserving blending).
6. Add ``gain`` × the pasted detail to the fill in the hole (parts narrower than ``min_width`` px
   may keep the fill as it is); known pixels stay the photo's exactly.

Pure tensor code; deterministic for a given ``seed`` (the search is exact, the draw is seeded).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F

from pconv.errors import PConvError

__all__ = ["TextureConfig", "transfer_detail", "gaussian_blur", "high_pass"]


@dataclass(frozen=True)
class TextureConfig:
    """Settings of :func:`transfer_detail` (defaults chosen by measurement, MODEL_CARD.md)."""

    sigma: float = 2.5          #: the split between low and detail layers (Gaussian sigma, px)
    block: int = 16             #: side of a pasted detail block (px); the grid stride is half of it
    context: int = 3            #: descriptor window, in blocks (odd): the block and its neighbours
    candidates: int = 4         #: draw the source among this many nearest descriptors
    source_stride: int = 4      #: sources are taken on a grid of this stride (px)
    max_sources: int = 20000    #: cap on the number of source blocks (stride grows beyond it)
    gain: float = 0.85          #: scale of the pasted detail
    #: hole parts narrower than this (px) keep the fill as it is (scratches, specks); 0 = none
    min_width: int = 0
    propagation: int = 4        #: rounds in which blocks may adopt a neighbour's (shifted) source
    coherence: float = 1.5      #: ... when its descriptor distance is within this factor of their own
    rerank: int = 16            #: blocks on the hole's edge choose among this many nearest sources ...
    edge_known: float = 0.1     #: ... by agreement with their known detail, when this share of them is known

    def __post_init__(self) -> None:
        if self.sigma <= 0:
            raise PConvError(f"texture sigma must be > 0, got {self.sigma}")
        if self.block < 4 or self.block % 2:
            raise PConvError(f"texture block must be an even number >= 4, got {self.block}")
        if self.context < 1 or self.context % 2 == 0:
            raise PConvError(f"texture context must be an odd number of blocks, got {self.context}")
        if self.candidates < 1 or self.source_stride < 1 or self.max_sources < 1:
            raise PConvError("texture candidates, source_stride and max_sources must be >= 1")
        if self.gain < 0 or self.min_width < 0:
            raise PConvError("texture gain and min_width must be >= 0")


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3.0 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) with reflected borders (OpenCV's default border)."""
    k = _gaussian_kernel(sigma).to(x)
    r = k.numel() // 2
    c = x.shape[1]
    if min(x.shape[-2:]) <= r:
        x = F.pad(x, (r, r, r, r), mode="replicate")
    else:
        x = F.pad(x, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def high_pass(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``x − gaussian_blur(x, sigma)``: the detail layer."""
    return x - gaussian_blur(x, sigma)


def _box_mean(x: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over every ``size``×``size`` window of (C, H, W), "valid" positions only (summed-area table)."""
    c, h, w = x.shape
    table = torch.zeros(c, h + 1, w + 1, dtype=torch.float64)
    table[:, 1:, 1:] = x.double().cumsum(1).cumsum(2)
    s = table[:, size:, size:] - table[:, :-size, size:] - table[:, size:, :-size] + table[:, :-size, :-size]
    return (s / (size * size)).float()


def _grid(lo: int, hi: int, step: int, size: int, limit: int) -> np.ndarray:
    """Block origins every ``step`` px so that blocks of ``size`` cover [lo, hi), kept in [0, limit - size]."""
    start = lo - size + step
    starts = np.arange(start, hi, step)
    return np.clip(starts, 0, max(0, limit - size))


def _descriptors(pooled: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, cell: int) -> torch.Tensor:
    """Descriptor of blocks at (ys, xs): the context window's 4×4 grid of pooled low-layer colours.

    ``pooled`` is the low layer average-pooled over ``cell``-px cells at stride 1 (one value per
    pixel origin), padded by the context margin; a descriptor samples it at 4×4 cell offsets.
    """
    offsets = torch.arange(4) * cell
    oy = ys[:, None] + offsets[None, :]  # (n, 4)
    ox = xs[:, None] + offsets[None, :]
    c = pooled.shape[0]
    vals = pooled[:, oy[:, :, None], ox[:, None, :]]  # (C, n, 4, 4)
    return vals.permute(1, 0, 2, 3).reshape(ys.numel(), c * 16)


def transfer_detail(
    image: np.ndarray,
    hole: np.ndarray,
    config: TextureConfig = TextureConfig(),
    seed: int = 0,
) -> np.ndarray:
    """Replace the detail layer of ``image`` inside ``hole`` with detail copied from the known region.

    ``image``: uint8 (H, W, 3) whose hole pixels hold a smooth fill; ``hole``: bool (H, W), True =
    hole. Returns uint8 (H, W, 3); pixels outside the hole are ``image``'s exactly. When no block
    lies wholly outside the hole (a hole nearly everywhere), the image is returned unchanged.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise PConvError(f"transfer_detail needs a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    if hole.shape != image.shape[:2]:
        raise PConvError(f"hole shape {hole.shape} does not match the image's {image.shape[:2]}")
    if not hole.any():
        return image.copy()
    cfg = config
    h, w = hole.shape
    b = min(cfg.block, (min(h, w) // 2) * 2)
    if b < 4:
        return image.copy()
    step = b // 2
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float().div_(255.0)
    low = gaussian_blur(x, cfg.sigma)
    detail = (x - low)[0]
    low = low[0]

    # Descriptor cells: the context window (ctx·b px) is split 4×4; pool the low layer over one cell.
    ctx = cfg.context * b
    cell = max(1, ctx // 4)
    margin = (ctx - b) // 2
    padded = F.pad(low[None], (margin, margin + ctx, margin, margin + ctx), mode="replicate")[0]
    pooled = _box_mean(padded, cell)  # value at (y, x) = mean over cell from (y, x)

    hole_t = torch.from_numpy(hole)
    # Sources: blocks with no hole pixel (a box sum over the hole map).
    hole_sum = _box_mean(hole_t[None].float(), b)[0]  # (h-b+1, w-b+1)
    stride = cfg.source_stride
    while True:
        sy = torch.arange(0, h - b + 1, stride)
        sx = torch.arange(0, w - b + 1, stride)
        if sy.numel() * sx.numel() <= cfg.max_sources or stride >= b:
            break
        stride *= 2
    free = hole_sum[sy[:, None], sx[None, :]] == 0
    src_y, src_x = (sy[:, None].expand_as(free)[free], sx[None, :].expand_as(free)[free])
    if src_y.numel() == 0:
        return image.copy()

    # Targets: grid blocks that hold hole pixels.
    ys_all, xs_all = np.nonzero(hole)
    ty = torch.from_numpy(_grid(int(ys_all.min()), int(ys_all.max()) + 1, step, b, h))
    tx = torch.from_numpy(_grid(int(xs_all.min()), int(xs_all.max()) + 1, step, b, w))
    ty, tx = torch.unique(ty), torch.unique(tx)
    has_hole = hole_sum[ty[:, None], tx[None, :]] > 0
    tgt_y, tgt_x = ty[:, None].expand_as(has_hole)[has_hole], tx[None, :].expand_as(has_hole)[has_hole]

    d_src = _descriptors(pooled, src_y, src_x, cell)
    d_tgt = _descriptors(pooled, tgt_y, tgt_x, cell)
    k = min(cfg.candidates, d_src.shape[0])
    kk = min(max(k, cfg.rerank), d_src.shape[0])
    src_sq = (d_src * d_src).sum(1)
    tgt_sq = (d_tgt * d_tgt).sum(1)
    known_frac = 1.0 - hole_sum[tgt_y, tgt_x]
    choice = torch.empty(d_tgt.shape[0], dtype=torch.long)
    gen = torch.Generator().manual_seed(int(seed))
    dy = torch.arange(b)
    known = (~hole_t).float()
    for start in range(0, d_tgt.shape[0], 256):
        stop = min(start + 256, d_tgt.shape[0])
        q = d_tgt[start:stop]
        dist = src_sq[None, :] - 2.0 * (q @ d_src.T) + tgt_sq[start:stop, None]
        top = torch.topk(dist, kk, dim=1, largest=False).indices  # (nq, kk), nearest first
        rows = torch.arange(stop - start)
        pick = top[rows, torch.randint(0, k, (stop - start,), generator=gen)]
        # Blocks that overlap the known region: among the kk nearest, take the source whose detail
        # correlates best (cosine over the known pixels) with the block's known detail, so the copy
        # continues the texture across the hole's edge. Cosine, not squared error, which would
        # favour the sources with the least detail.
        edge = known_frac[start:stop] >= cfg.edge_known
        if edge.any():
            e = torch.nonzero(edge)[:, 0]
            ty_e, tx_e = tgt_y[start:stop][e], tgt_x[start:stop][e]
            t_det = detail[:, ty_e[:, None, None] + dy[None, :, None], tx_e[:, None, None] + dy[None, None, :]]
            t_known = known[ty_e[:, None, None] + dy[None, :, None], tx_e[:, None, None] + dy[None, None, :]]
            cand = top[e]  # (ne, kk)
            cyy, cxx = src_y[cand], src_x[cand]
            c_det = detail[:, cyy[:, :, None, None] + dy[None, None, :, None], cxx[:, :, None, None] + dy[None, None, None, :]]
            c_det = c_det * t_known[None, :, None]
            dot = (c_det * t_det[:, :, None]).sum((0, 3, 4))  # (ne, kk)
            norm = c_det.square().sum((0, 3, 4)).sqrt().clamp_min(1e-6)
            pick[e] = cand[torch.arange(e.numel()), (dot / norm).argmax(1)]
        choice[start:stop] = pick
    cy, cx = src_y[choice].clone(), src_x[choice].clone()
    best_d = ((_descriptors(pooled, cy, cx, cell) - d_tgt) ** 2).sum(1)
    fixed = known_frac >= cfg.edge_known

    # Coherence: a block takes its neighbour's source, shifted by their distance, when that source
    # is free of holes and its descriptor is nearly as close as the block's own best. Neighbouring
    # blocks then copy one continuous piece of texture instead of a patchwork.
    grid = torch.full(has_hole.shape, -1, dtype=torch.long)
    grid[has_hole] = torch.arange(tgt_y.numel())
    gy, gx = torch.nonzero(has_hole, as_tuple=True)
    for _ in range(cfg.propagation):
        for oy, ox in ((0, -1), (-1, 0), (0, 1), (1, 0)):
            ny_g, nx_g = gy + oy, gx + ox
            inside_g = (ny_g >= 0) & (ny_g < grid.shape[0]) & (nx_g >= 0) & (nx_g < grid.shape[1])
            nb = torch.where(inside_g, grid[ny_g.clamp(0, grid.shape[0] - 1), nx_g.clamp(0, grid.shape[1] - 1)], -1)
            has = nb >= 0
            if not has.any():
                continue
            j = nb.clamp_min(0)
            ny, nx = cy[j] + (tgt_y - tgt_y[j]), cx[j] + (tgt_x - tgt_x[j])  # the neighbour's source, shifted
            inside = (ny >= 0) & (ny <= h - b) & (nx >= 0) & (nx <= w - b)
            ny, nx = torch.where(has & inside, ny, cy), torch.where(has & inside, nx, cx)
            ok = has & inside & (hole_sum[ny, nx] == 0) & ~fixed & ((ny != cy) | (nx != cx))
            d_new = ((_descriptors(pooled, ny, nx, cell) - d_tgt) ** 2).sum(1)
            take = ok & (d_new <= best_d * cfg.coherence + 1e-8)
            cy, cx = torch.where(take, ny, cy), torch.where(take, nx, cx)

    # Paste: gather each chosen source block's detail, window it (sin², which sums to one at half
    # overlap) and accumulate it at the target. Where the overlapping blocks copy one continuous
    # piece (equal displacements) the plain weighted mean reproduces it; where they copy unrelated
    # pieces a plain mean would lose contrast, so there the sum is divided by the root of the
    # squared weights instead, which keeps the detail's variance (Heitz and Neyret's blending).
    win1 = torch.sin(math.pi * (torch.arange(b, dtype=torch.float32) + 0.5) / b) ** 2
    window = win1[:, None] * win1[None, :]
    n = tgt_y.numel()
    raw = detail[:, cy[:, None, None] + dy[None, :, None], cx[:, None, None] + dy[None, None, :]]  # (3, n, b, b)
    flat = ((tgt_y[:, None, None] + dy[None, :, None]) * w + (tgt_x[:, None, None] + dy[None, None, :])).reshape(-1)
    wn = window.expand(n, b, b)
    disp_y = (cy - tgt_y).float()[:, None, None]
    disp_x = (cx - tgt_x).float()[:, None, None]

    def accumulate(values: torch.Tensor) -> torch.Tensor:
        acc = torch.zeros(h * w)
        return acc.index_add_(0, flat, values.reshape(-1)).view(h, w)

    s1 = accumulate(wn).clamp_min(1e-6)
    s2 = accumulate(wn * wn).clamp_min(1e-12)
    my, mx = accumulate(wn * disp_y) / s1, accumulate(wn * disp_x) / s1
    spread = accumulate(wn * (disp_y ** 2 + disp_x ** 2)) / s1 - my ** 2 - mx ** 2
    coherent = torch.exp(-spread.clamp_min(0) / 4.0)
    norm = coherent * s1 + (1 - coherent) * s2.sqrt()
    canvas = torch.zeros(3, h * w).index_add_(1, flat, (raw * window).reshape(3, -1)).view(3, h, w) / norm

    if cfg.min_width > 1:
        import cv2

        kernel = np.ones((cfg.min_width, cfg.min_width), np.uint8)
        wide = cv2.morphologyEx(hole.astype(np.uint8), cv2.MORPH_OPEN, kernel).astype(bool)
        canvas = canvas * torch.from_numpy(wide)
    out = x[0] + cfg.gain * canvas
    out = out.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8).permute(1, 2, 0).numpy()
    return np.where(hole[:, :, None], out, image)

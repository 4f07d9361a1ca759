"""Texture transfer: give a smooth fill the fine detail of the photo around the hole.

A network trained for PSNR paints the low frequencies of a hole well (colour, shading, the course
of edges) and leaves its fine detail out: grass, gravel and water come out as fog. This module adds
to the fill a detail layer (what a Gaussian of ``sigma`` removes) copied from the known part of the
same photo:

1. Split the photo (hole pixels holding the fill) into ``low = blur(photo, sigma)`` and
   ``detail = photo − low``.
2. Cover the hole with blocks of ``block`` px on a grid of half that stride. A block's descriptor
   is its context window (``context`` blocks a side) average-pooled to a 4×4 grid of low-layer
   colours: "green above, grey below", not fine detail, which the fill does not have; plus, on the
   same grid, how strong the known detail is around it (the geometric mean of its magnitude over
   known pixels, weighted by a Gaussian of ``energy_sigma``, × ``energy_weight``): blocks beside sky
   pick smooth sources, blocks beside rock rough ones, where the fill's fog alone cannot tell them
   apart; a few strong edges (another object's outline beside the hole) barely raise it.
3. For every hole block, find among the blocks lying wholly in the known region (sources) the
   nearest descriptors (exact search, one matrix product per chunk). Blocks that overlap the known
   region take, among the ``rerank`` nearest, the source whose detail correlates best with their
   known detail, so the texture continues across the hole's edge; the others draw one of the
   ``candidates`` nearest with a seeded generator, so a flat fill does not repeat one tile. Where few
   sources serve many blocks (a large hole, a small known region) a source serves at most
   ``max_repeat`` × its fair share of blocks; the rest move down their list (``spread`` nearest).
4. Coherence: for ``propagation`` rounds a block adopts its neighbour's source, shifted by their
   distance, when that source is nearly as close (``coherence``): neighbours then copy one
   continuous piece of texture rather than a patchwork.
5. Paste each source's detail with a sin² window. Where overlapping blocks copy one continuous piece
   the weighted mean reproduces it; where they copy unrelated pieces, dividing by the root of the
   squared weights instead keeps the detail's contrast (variance-preserving blending).
6. Add ``gain`` × the pasted detail to the fill in the hole (parts narrower than ``min_width`` px
   may keep the fill as it is); known pixels stay the photo's exactly.
7. Deep inside a hole the network's fill is foggy in the mid frequencies too, so the same sources
   also give a mid band (``blur(photo, sigma) − blur(photo, mid_sigma)``), added × ``mid_gain`` with
   a weight that grows from 0 at ``mid_start`` px from the hole's edge to 1 ``mid_ramp`` px further
   in: near the edge the fill is right and stays so.

Tensor code (OpenCV for the blurs and distances); deterministic for a given ``seed`` (the search
is exact, the draw and the visiting order are seeded).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from pconv.errors import PConvError

__all__ = ["TextureConfig", "transfer_detail", "gaussian_blur", "high_pass", "mid_weight", "detail_strength"]


@dataclass(frozen=True)
class TextureConfig:
    """Settings of :func:`transfer_detail` (defaults chosen by measurement, MODEL_CARD.md)."""

    sigma: float = 2.5          #: the split between low and detail layers (Gaussian sigma, px)
    block: int = 16             #: side of a pasted detail block (px); the grid stride is half of it
    context: int = 3            #: descriptor window, in blocks (odd): the block and its neighbours
    energy_weight: float = 6.0  #: weight of the known detail's strength in the descriptor; 0 = colours only
    energy_sigma: float = 32.0  #: ... smoothed over this Gaussian sigma (px)
    #: ... as a geometric mean of the detail's magnitude ("geometric"), which a few strong edges
    #: (an object's outline beside smooth ground) barely raise, or as its RMS ("rms")
    energy_mean: str = "geometric"
    candidates: int = 4         #: draw the source among this many nearest descriptors
    source_stride: int = 4      #: sources are taken on a grid of this stride (px)
    max_sources: int = 8000     #: cap on the number of source blocks (their stride grows beyond it)
    gain: float = 0.85          #: scale of the pasted detail
    #: hole parts narrower than this (px) keep the fill as it is (scratches, specks); 0 = none
    min_width: int = 5
    propagation: int = 4        #: rounds in which blocks may adopt a neighbour's (shifted) source
    coherence: float = 1.5      #: ... when its descriptor distance is within this factor of their own
    rerank: int = 16            #: blocks on the hole's edge choose among this many nearest sources ...
    edge_known: float = 0.1     #: ... by agreement with their known detail, when this share of them is known
    #: a source serves at most this many times its fair share (blocks / sources) of the blocks off
    #: the hole's edge, so a large fill is not one tile repeated; 0 = no limit
    max_repeat: float = 4.0
    spread: int = 64            #: ... the others take the nearest source under the limit among this many
    mid_sigma: float = 8.0      #: the mid band lies between Gaussians of ``sigma`` and this (px)
    mid_gain: float = 1.0       #: scale of the pasted mid band, deep in the hole; 0 = none
    mid_start: float = 4.0      #: the mid band starts this far from the hole's edge (px) ...
    mid_ramp: float = 12.0      #: ... and reaches its full gain this much further in (px)

    def __post_init__(self) -> None:
        if self.sigma <= 0:
            raise PConvError(f"texture sigma must be > 0, got {self.sigma}")
        if self.block < 4 or self.block % 2:
            raise PConvError(f"texture block must be an even number >= 4, got {self.block}")
        if self.context < 1 or self.context % 2 == 0:
            raise PConvError(f"texture context must be an odd number of blocks, got {self.context}")
        if self.candidates < 1 or self.source_stride < 1 or self.max_sources < 1 or self.spread < 1:
            raise PConvError("texture candidates, source_stride, max_sources and spread must be >= 1")
        if self.max_repeat < 0:
            raise PConvError(f"texture max_repeat must be >= 0 (0 = no limit), got {self.max_repeat}")
        if self.gain < 0 or self.min_width < 0:
            raise PConvError("texture gain and min_width must be >= 0")
        if self.energy_weight < 0 or self.energy_sigma <= 0:
            raise PConvError("texture energy_weight must be >= 0 and energy_sigma > 0")
        if self.energy_mean not in ("geometric", "rms"):
            raise PConvError(f"texture energy_mean must be 'geometric' or 'rms', got {self.energy_mean!r}")
        if self.mid_sigma <= self.sigma:
            raise PConvError(f"texture mid_sigma must be > sigma ({self.sigma}), got {self.mid_sigma}")
        if self.mid_gain < 0 or self.mid_start < 0 or self.mid_ramp <= 0:
            raise PConvError("texture mid_gain and mid_start must be >= 0 and mid_ramp > 0")


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3.0 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) with reflected borders (OpenCV's default border).

    On the CPU, float32 images larger than the kernel go through OpenCV's separable filter (the
    same kernel and border, ~10× faster than ``conv2d`` for the wide kernels of the mid band)."""
    k = _gaussian_kernel(sigma)
    if x.device.type == "cpu" and x.dtype == torch.float32 and min(x.shape[-2:]) > k.numel() // 2:
        kernel = k.double().numpy()
        planes = x.detach().reshape(-1, *x.shape[-2:]).contiguous().numpy()
        out = np.empty_like(planes)
        for i, plane in enumerate(planes):
            cv2.sepFilter2D(plane, -1, kernel, kernel, dst=out[i], borderType=cv2.BORDER_REFLECT_101)
        return torch.from_numpy(out).view(x.shape)
    return _blur_conv(x, k)


def _blur_conv(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """:func:`gaussian_blur` as two 1-D convolutions (any device and dtype; replicated borders on
    images no larger than the kernel)."""
    k = k.to(x)
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


def mid_weight(hole: np.ndarray, start: float, ramp: float) -> torch.Tensor:
    """(H, W) weight of the mid band: 0 up to ``start`` px (Euclidean) from the nearest known pixel,
    rising linearly to 1 over the next ``ramp`` px; 0 on known pixels."""
    depth = cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return torch.from_numpy(np.clip((depth - start) / ramp, 0.0, 1.0)).float()


#: The geometric mean's floor (a quarter of one grey level) and its ratio to the RMS on Gaussian
#: noise: E[log|X|] = log σ − (γ + log 2) / 2 for X ~ N(0, σ²).
_MAGNITUDE_FLOOR = 0.25 / 255.0
_GEOMETRIC_TO_RMS = math.exp((0.5772156649 + math.log(2.0)) / 2.0)


def detail_strength(detail: torch.Tensor, hole: np.ndarray, sigma: float, mean: str = "geometric") -> torch.Tensor:
    """(H, W) strength of the known pixels' grey detail around every pixel (a Gaussian of ``sigma``
    weighting the known pixels only): how rough the photo is near each place, holes included.

    ``mean="rms"``: the root of the mean square. ``"geometric"``: the geometric mean of the
    magnitude, scaled by the factor that makes both equal on Gaussian noise; rough ground (dense
    detail) reads alike either way, while a few strong edges in smooth surroundings (an object's
    outline beside a blurred background) raise the RMS far more than the geometric mean."""
    if mean not in ("geometric", "rms"):
        raise PConvError(f"detail strength mean must be 'geometric' or 'rms', got {mean!r}")
    known = torch.from_numpy(~hole).float()[None, None]
    weight = gaussian_blur(known, sigma).clamp_min_(1e-3)
    grey = detail.mean(0)[None, None]  # a new plane: the steps below work on it in place
    if mean == "rms":
        mean_square = gaussian_blur(grey.square_().mul_(known), sigma).div_(weight)
        return mean_square.clamp_min_(0).sqrt_()[0, 0]
    # Logarithms above the floor's (>= 0), so that far inside a hole, where the weight is clamped,
    # the strength falls to 0 as the RMS does.
    log_mag = grey.abs_().div_(_MAGNITUDE_FLOOR).log1p_().mul_(known)
    mean_log = gaussian_blur(log_mag, sigma).div_(weight)
    return mean_log.expm1_().mul_(_MAGNITUDE_FLOOR).mul_(_GEOMETRIC_TO_RMS)[0, 0]


def _box_mean(x: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over every ``size``×``size`` window of (C, H, W), "valid" positions only.

    OpenCV's box filter anchored at the window's corner (it sums in double precision): the same
    values as a summed-area table, ~15× faster and without its float64 copies of the image."""
    c, h, w = x.shape
    planes = x.detach().float().contiguous().numpy()
    out = np.empty((c, h - size + 1, w - size + 1), np.float32)
    for i, plane in enumerate(planes):
        mean = cv2.boxFilter(plane, cv2.CV_32F, (size, size), anchor=(0, 0), normalize=True,
                             borderType=cv2.BORDER_REPLICATE)
        out[i] = mean[: h - size + 1, : w - size + 1]
    return torch.from_numpy(out)


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


def _blocks(t: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, b: int) -> torch.Tensor:
    """The b×b blocks of ``t`` (..., H, W) at origins (ys, xs) of any equal shape: (..., *ys.shape, b, b)."""
    d = torch.arange(b)
    return t[..., ys[..., None, None] + d[:, None], xs[..., None, None] + d[None, :]]


@dataclass
class _Photo:
    """What the steps below share about one photo: its layers, hole maps and block geometry."""

    image: torch.Tensor     #: (3, H, W) in [0, 1]
    detail: torch.Tensor    #: (3, H, W): image − its Gaussian blur
    layers: torch.Tensor    #: what is pasted: the detail, then (with a mid band) the mid band
    pooled: torch.Tensor    #: the low layer's cell means, for descriptors
    known: torch.Tensor     #: (H, W) float, 1 = known
    hole_share: torch.Tensor  #: (H−b+1, W−b+1): share of hole pixels in the block at each origin
    block: int
    cell: int

    def descriptors(self, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        return _descriptors(self.pooled, ys, xs, self.cell)

    def free(self, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        """Blocks at these origins lie inside the photo and wholly in the known region."""
        h, w = self.known.shape
        inside = (ys >= 0) & (ys <= h - self.block) & (xs >= 0) & (xs <= w - self.block)
        share = self.hole_share[ys.clamp(0, h - self.block), xs.clamp(0, w - self.block)]
        return inside & (share == 0)


def _prepare(image: np.ndarray, hole: np.ndarray, b: int, cfg: TextureConfig) -> _Photo:
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float().div_(255.0)
    low = gaussian_blur(x, cfg.sigma)
    # Descriptor cells: the context window (context·b px) split 4×4; one mean per cell origin.
    ctx = cfg.context * b
    cell = max(1, ctx // 4)
    margin = (ctx - b) // 2
    hole_t = torch.from_numpy(hole)
    # The detail and the mid band share one tensor (the detail is a view of it), and the feature
    # planes are padded and pooled one at a time: a 12 MP photo holds no plane twice.
    _, _, h, w = x.shape
    layers = torch.empty((6 if cfg.mid_gain > 0 else 3), h, w)
    torch.sub(x[0], low[0], out=layers[:3])
    if cfg.mid_gain > 0:
        torch.sub(low[0], gaussian_blur(x, cfg.mid_sigma)[0], out=layers[3:])
    detail = layers[:3]
    planes = list(low[0])
    if cfg.energy_weight > 0:
        planes.append(cfg.energy_weight * detail_strength(detail, hole, cfg.energy_sigma, cfg.energy_mean))
    pooled = torch.empty(len(planes), h + ctx + 2 * margin - cell + 1, w + ctx + 2 * margin - cell + 1)
    for i, plane in enumerate(planes):
        padded = F.pad(plane[None, None], (margin, margin + ctx, margin, margin + ctx), mode="replicate")
        pooled[i] = _box_mean(padded[0], cell)[0]
    return _Photo(image=x[0], detail=detail, layers=layers, pooled=pooled, known=(~hole_t).float(),
                  hole_share=_box_mean(hole_t[None].float(), b)[0], block=b, cell=cell)


def _sources(photo: _Photo, cfg: TextureConfig) -> Tuple[torch.Tensor, torch.Tensor]:
    """Origins of the blocks to copy from: on a grid (coarser on big photos), wholly known."""
    h, w = photo.known.shape
    b, stride = photo.block, cfg.source_stride
    while True:
        sy, sx = torch.arange(0, h - b + 1, stride), torch.arange(0, w - b + 1, stride)
        if sy.numel() * sx.numel() <= cfg.max_sources:
            break
        stride *= 2
    ys, xs = torch.meshgrid(sy, sx, indexing="ij")
    free = photo.free(ys, xs)
    return ys[free], xs[free]


def _targets(photo: _Photo, hole: np.ndarray) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Origins of the blocks to paint (half-block grid over the hole's box, blocks holding hole
    pixels) and the grid of their indices (−1 = no block), for neighbour lookups."""
    h, w = hole.shape
    b = photo.block
    ys_all, xs_all = np.nonzero(hole)
    ty = torch.unique(torch.from_numpy(_grid(int(ys_all.min()), int(ys_all.max()) + 1, b // 2, b, h)))
    tx = torch.unique(torch.from_numpy(_grid(int(xs_all.min()), int(xs_all.max()) + 1, b // 2, b, w)))
    gy, gx = torch.meshgrid(ty, tx, indexing="ij")
    has_hole = photo.hole_share[gy, gx] > 0
    grid = torch.full(has_hole.shape, -1, dtype=torch.long)
    grid[has_hole] = torch.arange(int(has_hole.sum()))
    return gy[has_hole], gx[has_hole], grid


def _match(photo: _Photo, src: Tuple[torch.Tensor, torch.Tensor], tgt: Tuple[torch.Tensor, torch.Tensor],
           edge: torch.Tensor, cfg: TextureConfig, seed: int) -> torch.Tensor:
    """Index into the sources for every target: a seeded draw among the nearest descriptors, or on
    the hole's edge (``edge``) the nearest source whose detail correlates best with the known detail."""
    d_src, d_tgt = photo.descriptors(*src), photo.descriptors(*tgt)
    k = min(cfg.candidates, d_src.shape[0])
    kr = min(max(k, cfg.rerank), d_src.shape[0])
    kk = min(max(kr, cfg.spread if cfg.max_repeat > 0 else 0), d_src.shape[0])
    src_sq = (d_src * d_src).sum(1)
    gen = torch.Generator().manual_seed(int(seed))
    choice = torch.empty(d_tgt.shape[0], dtype=torch.long)
    tops = []
    for start in range(0, d_tgt.shape[0], 256):
        stop = min(start + 256, d_tgt.shape[0])
        q = d_tgt[start:stop]
        dist = src_sq[None, :] - 2.0 * (q @ d_src.T)  # + |q|², the same for every source
        top = torch.topk(dist, kk, dim=1, largest=False).indices  # (nq, kk), nearest first
        pick = top[torch.arange(stop - start), torch.randint(0, k, (stop - start,), generator=gen)]
        e = torch.nonzero(edge[start:stop])[:, 0]
        if e.numel():
            # Cosine over the known pixels, not squared error, which would favour sources with the
            # least detail.
            ty, tx = tgt[0][start:stop][e], tgt[1][start:stop][e]
            t_det, t_known = _blocks(photo.detail, ty, tx, photo.block), _blocks(photo.known, ty, tx, photo.block)
            cand = top[e, :kr]
            c_det = _blocks(photo.detail, src[0][cand], src[1][cand], photo.block) * t_known[:, None]
            dot = (c_det * t_det[:, :, None]).sum((0, 3, 4))  # (ne, kr)
            norm = c_det.square().sum((0, 3, 4)).sqrt().clamp_min(1e-6)
            pick[e] = cand[torch.arange(e.numel()), (dot / norm).argmax(1)]
        choice[start:stop] = pick
        tops.append(top)
    if cfg.max_repeat > 0:
        choice = _limit_repeats(choice, torch.cat(tops), edge, d_src.shape[0], cfg.max_repeat, gen)
    return choice


def _limit_repeats(choice: torch.Tensor, nearest: torch.Tensor, edge: torch.Tensor, n_src: int,
                   max_repeat: float, gen: torch.Generator) -> torch.Tensor:
    """Visit the blocks off the edge in a seeded order; a block keeps its drawn source while that
    source serves fewer than ``max_repeat`` × (blocks / sources) blocks, else takes the nearest
    source of its list (``nearest``, nearest first) still under that limit, else the least used."""
    limit = max(1, math.ceil(max_repeat * choice.numel() / n_src))
    pick, near = choice.numpy().copy(), nearest.numpy()
    uses = np.bincount(pick[edge.numpy()], minlength=n_src)
    order = torch.randperm(choice.numel(), generator=gen).numpy()
    for i in order[~edge.numpy()[order]]:
        if uses[pick[i]] >= limit:
            u = uses[near[i]]
            pick[i] = near[i][np.argmax(u < limit)] if (u < limit).any() else near[i][np.argmin(u)]
        uses[pick[i]] += 1
    return torch.from_numpy(pick)


def _propagate(photo: _Photo, cy: torch.Tensor, cx: torch.Tensor, tgt: Tuple[torch.Tensor, torch.Tensor],
               grid: torch.Tensor, fixed: torch.Tensor, cfg: TextureConfig) -> Tuple[torch.Tensor, torch.Tensor]:
    """Coherence: a block (not ``fixed``) adopts its neighbour's source, shifted by their distance,
    when that source is free and its descriptor is within ``coherence`` × the block's own distance;
    neighbours then copy one continuous piece of texture instead of a patchwork."""
    ty, tx = tgt
    d_tgt = photo.descriptors(ty, tx)
    best = ((photo.descriptors(cy, cx) - d_tgt) ** 2).sum(1)
    gy, gx = torch.nonzero(grid >= 0, as_tuple=True)
    gh, gw = grid.shape
    for _ in range(cfg.propagation):
        for oy, ox in ((0, -1), (-1, 0), (0, 1), (1, 0)):
            ny, nx = gy + oy, gx + ox
            inside = (ny >= 0) & (ny < gh) & (nx >= 0) & (nx < gw)
            nb = torch.where(inside, grid[ny.clamp(0, gh - 1), nx.clamp(0, gw - 1)], -1)
            j = nb.clamp_min(0)
            sy, sx = cy[j] + (ty - ty[j]), cx[j] + (tx - tx[j])  # the neighbour's source, shifted
            ok = (nb >= 0) & ~fixed & photo.free(sy, sx) & ((sy != cy) | (sx != cx))
            if not ok.any():
                continue
            sy, sx = torch.where(ok, sy, cy), torch.where(ok, sx, cx)
            take = ok & (((photo.descriptors(sy, sx) - d_tgt) ** 2).sum(1) <= best * cfg.coherence + 1e-8)
            cy, cx = torch.where(take, sy, cy), torch.where(take, sx, cx)
    return cy, cx


def _paste(photo: _Photo, cy: torch.Tensor, cx: torch.Tensor, ty: torch.Tensor, tx: torch.Tensor,
           region: Optional[Tuple[int, int, int, int]] = None) -> torch.Tensor:
    """The sources' layers (detail, mid band), windowed (sin², which sums to one at half overlap)
    and accumulated at the targets. Where overlapping blocks copy one continuous piece (equal
    displacements) the weighted mean reproduces it; where they copy unrelated pieces a mean would
    lose contrast, so there the sum is divided by the root of the squared weights instead, which
    keeps the detail's variance (Heitz and Neyret's blending).

    ``region`` (y0, y1, x0, x1): the part of the photo returned, which must hold every target
    block (default: the whole photo); the accumulators are that size, not the photo's."""
    y0, y1, x0, x1 = region if region is not None else (0, photo.known.shape[0], 0, photo.known.shape[1])
    h, w = y1 - y0, x1 - x0
    b = photo.block
    win1 = torch.sin(math.pi * (torch.arange(b, dtype=torch.float32) + 0.5) / b) ** 2
    window = (win1[:, None] * win1[None, :]).expand(ty.numel(), b, b)
    d = torch.arange(b)
    flat = ((ty[:, None, None] - y0 + d[None, :, None]) * w + (tx[:, None, None] - x0 + d[None, None, :])).reshape(-1)

    def accumulate(values: torch.Tensor) -> torch.Tensor:
        return torch.zeros(h * w).index_add_(0, flat, values.reshape(-1)).view(h, w)

    disp_y, disp_x = (cy - ty).float()[:, None, None], (cx - tx).float()[:, None, None]
    s1 = accumulate(window).clamp_min(1e-6)
    s2 = accumulate(window * window).clamp_min(1e-12)
    my, mx = accumulate(window * disp_y) / s1, accumulate(window * disp_x) / s1
    spread = accumulate(window * (disp_y ** 2 + disp_x ** 2)) / s1 - my ** 2 - mx ** 2
    coherent = torch.exp(-spread.clamp_min(0) / 4.0)
    norm = coherent * s1 + (1 - coherent) * s2.sqrt()
    # One layer at a time: the windowed blocks of all layers at once would be 4× the region's size each.
    return torch.stack([accumulate(_blocks(layer, cy, cx, b) * window) / norm for layer in photo.layers])


def transfer_detail(
    image: np.ndarray,
    hole: np.ndarray,
    config: TextureConfig = TextureConfig(),
    seed: int = 0,
) -> np.ndarray:
    """Add to the fill in ``hole`` detail copied from the known region of ``image``.

    ``image``: uint8 (H, W, 3) whose hole pixels hold a smooth fill; ``hole``: bool (H, W), True =
    hole. Returns uint8 (H, W, 3); pixels outside the hole are ``image``'s exactly. When no block
    lies wholly outside the hole (a hole nearly everywhere), the image is returned unchanged.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise PConvError(f"transfer_detail needs a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    if hole.shape != image.shape[:2]:
        raise PConvError(f"hole shape {hole.shape} does not match the image's {image.shape[:2]}")
    b = min(config.block, (min(hole.shape) // 2) * 2)
    if not hole.any() or b < 4:
        return image.copy()
    photo = _prepare(image, hole, b, config)
    src = _sources(photo, config)
    if src[0].numel() == 0:
        return image.copy()
    ty, tx, grid = _targets(photo, hole)
    edge = photo.hole_share[ty, tx] <= 1.0 - config.edge_known  # blocks with enough known pixels
    choice = _match(photo, src, (ty, tx), edge, config, seed)
    cy, cx = _propagate(photo, src[0][choice], src[1][choice], (ty, tx), grid, edge, config)
    # Only the targets' box is painted (every hole pixel lies in a target block): on a photo much
    # larger than its holes, nothing of the photo's size is allocated past this point.
    y0, y1, x0, x1 = int(ty.min()), int(ty.max()) + b, int(tx.min()), int(tx.max()) + b
    pasted = _paste(photo, cy, cx, ty, tx, (y0, y1, x0, x1))
    sub = hole[y0:y1, x0:x1]
    canvas = config.gain * pasted[:3]
    if config.min_width > 1:
        canvas = canvas * torch.from_numpy(_opened(hole, (y0, y1, x0, x1), config.min_width))
    if config.mid_gain > 0:
        # the same depth as on the whole photo: the box holds the hole's bounding box and a ring of known pixels
        # around it (or ends at the photo's edge), so every hole pixel's nearest known pixel is inside
        canvas = canvas + config.mid_gain * pasted[3:] * mid_weight(sub, config.mid_start, config.mid_ramp)
    out = (photo.image[:, y0:y1, x0:x1] + canvas).clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
    result = image.copy()
    result[y0:y1, x0:x1] = np.where(sub[:, :, None], out.permute(1, 2, 0).numpy(), image[y0:y1, x0:x1])
    return result


def _opened(hole: np.ndarray, box: Tuple[int, int, int, int], width: int) -> np.ndarray:
    """The hole's morphological opening by a ``width``-px square (its parts at least that wide),
    within ``box``: computed on the box grown by twice the square's reach, so the same as on the
    whole photo."""
    y0, y1, x0, x1 = box
    h, w = hole.shape
    pad = width
    gy0, gy1, gx0, gx1 = max(0, y0 - pad), min(h, y1 + pad), max(0, x0 - pad), min(w, x1 + pad)
    kernel = np.ones((width, width), np.uint8)
    opened = cv2.morphologyEx(hole[gy0:gy1, gx0:gx1].astype(np.uint8), cv2.MORPH_OPEN, kernel) > 0
    return opened[y0 - gy0: y1 - gy0, x0 - gx0: x1 - gx0]

"""Pull-push fill: a smooth, parameter-free fill of the holes from the valid pixels alone.

Normalised convolution (Knutsson & Westin 1993), the ancestor of the partial convolution, on an
image pyramid (the "pull-push" of Gortler et al. 1996). Going down, each level holds the 2×2 means
of the weighted values, s_{l+1} = pool(s_l), and of the weights, w_{l+1} = pool(w_l), starting from
s_0 = X⊙M and w_0 = M. Going up, each level keeps its own valid part and takes the rest from the
bilinearly upsampled coarser fill:

    f_L = s_L / w_L,    f_l = s_l + (1 − w_l) · up(f_{l+1}),    so f_0 = X⊙M + (1 − M) · up(f_1)

and a few Jacobi steps of Laplace's equation at each level smooth the holes towards a harmonic
fill (a multigrid solve). Known pixels come back exactly; a one-pixel hole gets the mean of its
four neighbours; a large hole a smooth blend of its surroundings. Like the partial convolution it
never reads a hole pixel, so the result does not depend on what the hole holds. A
:class:`pconv.model.PConvUNet` with ``fill_residual`` adds its output to this fill.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from pconv.errors import PConvError

__all__ = ["pull_push_fill"]


@torch.no_grad()
def pull_push_fill(image: Tensor, mask: Tensor, iterations: int = 48, fine_iterations: int = 16,
                   levels: Optional[int] = None, biharmonic: bool = False) -> Tensor:
    """Fill the holes of ``image`` (B, C, H, W) where ``mask`` (B, 1 or C, H, W) is 0 (1 = valid).

    Pools ``levels`` times (None: while both sides stay even and above 1 pixel; a fixed count keeps
    a traced graph valid for every input size, as the network does with its depth). A
    coarsest-level pixel with no valid pixel under it takes the image's mean valid value. After
    each level's upsampling, ``iterations`` Jacobi steps (``fine_iterations`` at full resolution,
    where they cost the most). float32 inside; returns ``image``'s dtype. On NVIDIA's masks at 256²
    it scores level with biharmonic overall, ahead of OpenCV's methods (MODEL_CARD.md), in 28 ms
    an image on one core.

    ``biharmonic=True`` follows each level's Laplace steps with as many damped Jacobi steps of the
    biharmonic equation (Δ²f = 0), which continues gradients, not only values, across a hole: a
    thin hole gets a curved profile instead of a straight one. On NVIDIA's masks at 256² it gains
    0.1–0.3 dB over Laplace alone in every bucket (most in the smallest) and leads scikit-image's
    biharmonic in four of the six (MODEL_CARD.md), at 2–3 times the cost (benchmarks/bench_fill.py).
    """
    x = image.float()
    w = mask.float()
    if w.shape[1] != 1:  # a multi-channel mask: each channel weighs its own values
        w = w.expand_as(x)
    sums, weights = [x * w], [w]

    def can_pool(t: Tensor) -> bool:
        return t.shape[-1] % 2 == 0 and t.shape[-2] % 2 == 0 and min(t.shape[-2:]) > 1

    while (levels is None and can_pool(sums[-1])) or (levels is not None and len(sums) <= levels):
        if not can_pool(sums[-1]):
            raise PConvError(f"cannot pool a {tuple(sums[-1].shape[-2:])} level: the image's sides must be "
                             f"multiples of 2**levels ({2 ** levels})")
        sums.append(F.avg_pool2d(sums[-1], 2))
        weights.append(F.avg_pool2d(weights[-1], 2))
    s, wl = sums[-1], weights[-1]
    total_w = weights[0].sum((2, 3), keepdim=True)
    mean = (sums[0].sum((2, 3), keepdim=True) / total_w.clamp_min(1e-12)).expand_as(s)
    f = torch.where(wl > 0, s / wl.clamp_min(1e-12), mean)
    for level in range(len(sums) - 2, -1, -1):
        s, wl = sums[level], weights[level]
        up = F.interpolate(f, size=s.shape[-2:], mode="bilinear", align_corners=False)
        fixed, steps = wl >= 1.0, iterations if level else fine_iterations
        f = _relax(s + (1.0 - wl) * up, fixed, steps)
        if biharmonic:
            f = _relax_biharmonic(f, fixed, steps)
    return f.to(image.dtype)


def _relax(f: Tensor, fixed: Tensor, iterations: int) -> Tensor:
    """Jacobi steps of Laplace's equation on the pixels that are not ``fixed``: each becomes the
    mean of its four neighbours (edges replicated); fixed pixels keep their values.

    Where few pixels are free (small holes, the common case at full resolution), only those are
    updated, by gathering their neighbours; the result is bitwise the same as the dense update.
    """
    fixed = fixed.expand_as(f)
    if iterations > 0 and not (torch.jit.is_tracing() or torch.jit.is_scripting()):
        free = (~fixed).reshape(-1).nonzero().squeeze(1)
        if free.numel() * _SPARSE_BELOW <= f.numel():
            return _relax_free_pixels(f, free, iterations)
    for _ in range(iterations):
        f = torch.where(fixed, f, _neighbour_sum(f).mul_(0.25))
    return f


#: Update only the free pixels when they (with their ring, for the biharmonic steps) are at most
#: 1/_SPARSE_BELOW of all; benchmarks/bench_fill.py compares both paths (BENCHMARKS.md).
_SPARSE_BELOW = 4


def _relax_free_pixels(f: Tensor, free: Tensor, iterations: int) -> Tensor:
    """:func:`_relax` on the flat indices ``free`` of the pixels that change, in the same
    arithmetic order (up + down + left + right, times 1/4)."""
    h, w = f.shape[-2:]
    flat = f.reshape(-1).clone()
    if free.numel() == 0:
        return flat.view_as(f)
    up, down, left, right = _neighbours(free, h, w)
    for _ in range(iterations):
        avg = flat[up] + flat[down]
        avg += flat[left]
        avg += flat[right]
        flat.index_copy_(0, free, avg.mul_(0.25))
    return flat.view_as(f)


#: Damping of the biharmonic Jacobi steps: the undamped iteration diverges (the 13-point stencil's
#: eigenvalues reach 64 against a diagonal of 20); steps of ω/20·Δ²f converge for ω < 0.625.
_BIHARMONIC_OMEGA = 0.6


def _neighbour_sum(f: Tensor) -> Tensor:
    """Sum of the four neighbours (up + down + left + right, in that order), edges replicated.
    In-place adds: every fresh full-size temporary costs page faults on a CPU."""
    p = F.pad(f, (1, 1, 1, 1), mode="replicate")
    out = p[..., :-2, 1:-1] + p[..., 2:, 1:-1]
    out += p[..., 1:-1, :-2]
    out += p[..., 1:-1, 2:]
    return out


def _laplacian(f: Tensor) -> Tensor:
    """Five-point Laplacian with replicated edges."""
    return _neighbour_sum(f).sub_(f, alpha=4.0)


def _relax_biharmonic(f: Tensor, fixed: Tensor, iterations: int) -> Tensor:
    """Damped Jacobi steps of Δ²f = 0 (Δ² as the Laplacian of the Laplacian) on the pixels that
    are not ``fixed``; fixed pixels keep their values and act as the boundary condition.

    Where the free pixels and their neighbours are few, only those are computed (gathers); the
    result equals the dense steps to float rounding."""
    if iterations == 0:
        return f
    fixed = fixed.expand_as(f)
    if not (torch.jit.is_tracing() or torch.jit.is_scripting()):
        free = ~fixed
        near = free.clone()  # the free pixels and their four neighbours: where Δf is needed
        near[..., 1:, :] |= free[..., :-1, :]
        near[..., :-1, :] |= free[..., 1:, :]
        near[..., :, 1:] |= free[..., :, :-1]
        near[..., :, :-1] |= free[..., :, 1:]
        near_idx = near.reshape(-1).nonzero().squeeze(1)
        if near_idx.numel() * _SPARSE_BELOW <= f.numel():
            return _relax_biharmonic_free_pixels(f, free.reshape(-1).nonzero().squeeze(1), near_idx, iterations)
    step = (~fixed).to(f.dtype).mul_(-_BIHARMONIC_OMEGA / 20.0)  # 0 on fixed pixels
    f = f.clone()
    for _ in range(iterations):
        f.addcmul_(step, _laplacian(_laplacian(f)))
    return f


def _neighbours(idx: Tensor, h: int, w: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Flat indices of the up, down, left and right neighbours of the flat indices ``idx`` in
    (..., h, w) planes, clamped at the edges (a border pixel is its own outside neighbour)."""
    x = idx % w
    y = (idx // w) % h
    row = idx - x
    return (row - w * (y > 0).long() + x, row + w * (y < h - 1).long() + x,
            row + (x - 1).clamp_min(0), row + (x + 1).clamp_max(w - 1))


def _relax_biharmonic_free_pixels(f: Tensor, free: Tensor, near: Tensor, iterations: int) -> Tensor:
    """:func:`_relax_biharmonic` computing Δf on ``near`` (free pixels and their neighbours) and
    Δ²f on ``free`` only, with the dense version's order of operations."""
    h, w = f.shape[-2:]
    flat = f.reshape(-1).clone()
    lap = torch.zeros_like(flat)  # Δf, valid on `near`, the only entries read
    n_up, n_down, n_left, n_right = _neighbours(near, h, w)
    f_up, f_down, f_left, f_right = _neighbours(free, h, w)
    step = -_BIHARMONIC_OMEGA / 20.0
    for _ in range(iterations):
        t = flat[n_up] + flat[n_down]
        t += flat[n_left]
        t += flat[n_right]
        lap.index_copy_(0, near, t.sub_(flat[near], alpha=4.0))
        b = lap[f_up] + lap[f_down]
        b += lap[f_left]
        b += lap[f_right]
        b.sub_(lap[free], alpha=4.0)
        flat.index_add_(0, free, b, alpha=step)
    return flat.view_as(f)

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

import warnings
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
    it scores level with biharmonic overall, ahead of OpenCV's methods (MODEL_CARD.md), in 6–10 ms
    an image (benchmarks/bench_fill.py).

    ``biharmonic=True`` follows each level's Laplace steps with as many damped Jacobi steps of the
    biharmonic equation (Δ²f = 0), which continues gradients, not only values, across a hole: a
    thin hole gets a curved profile instead of a straight one. On NVIDIA's masks at 256² it gains
    0.1–0.3 dB over Laplace alone in every bucket (most in the smallest) and leads scikit-image's
    biharmonic in four of the six (MODEL_CARD.md), at 1.8–3 times the cost (benchmarks/bench_fill.py).
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
        up = _upsample2x(f)
        fixed, steps = wl >= 1.0, iterations if level else fine_iterations
        f = _relax_level(s + (1.0 - wl) * up, fixed, steps, biharmonic)
    return f.to(image.dtype)


def _upsample2x(f: Tensor) -> Tensor:
    """Bilinear 2× upsampling (``align_corners=False``, borders clamped), one side after the other.

    The values of ``F.interpolate(f, scale_factor=2, mode="bilinear")`` to float rounding, but
    rounded the same whatever the number of threads: PyTorch's CPU kernel rounds some pixels one
    unit in the last place differently depending on how its loop is split across threads, which
    made an inpainted photo differ by a grey level between a 1-thread and a 2-thread process.
    Products and sums of separate tensor operations are rounded once per element, however split.
    """
    for dim in (-1, -2):
        n = f.shape[dim]
        before = torch.cat([f.narrow(dim, 0, 1), f.narrow(dim, 0, n - 1)], dim)  # f[i-1], clamped
        after = torch.cat([f.narrow(dim, 1, n - 1), f.narrow(dim, n - 1, 1)], dim)  # f[i+1], clamped
        even = before * 0.25 + f * 0.75
        odd = f * 0.75 + after * 0.25
        f = torch.stack([even, odd], dim).flatten(dim - 1, dim)  # interleave: even, odd, even, ...
    return f


def _relax_level(f: Tensor, fixed: Tensor, steps: int, biharmonic: bool) -> Tensor:
    """One pyramid level's smoothing: ``steps`` Jacobi steps of Laplace's equation on the pixels
    that are not ``fixed``, then (``biharmonic``) as many damped Jacobi steps of Δ²f = 0.

    Each step is an affine map of the free pixels' values, x ← A·x + b, with A a sparse matrix of
    the stencil between free pixels and b what the fixed pixels give. Built once per level, a step
    costs one sparse product instead of a dozen small tensor operations, which dominated on the
    coarse levels on a CPU (benchmarks/bench_fill.py). A traced or compiled graph (ONNX, TorchScript,
    torch.compile: the sparse operators have data-dependent sizes), a GPU
    (where small operations are cheap to queue) or a level with more than ``_MAX_FREE`` free
    values runs the dense stencil instead: the same result to float rounding (tests/test_fill.py).
    """
    if steps == 0:
        return f
    if f.device.type == "cpu" and not (torch.jit.is_tracing() or torch.jit.is_scripting()
                                       or torch.compiler.is_compiling()):
        out = _relax_sparse(f, fixed, steps, biharmonic)
        if out is not None:
            return out
    f = _relax(f, fixed, steps)
    return _relax_biharmonic(f, fixed, steps) if biharmonic else f


#: Above this many free values a level runs the dense stencil: the sparse matrices' temporaries
#: take ~0.6 KB per free value (only the classical ``pullpush`` fill of a large photo gets there).
_MAX_FREE = 1 << 20

#: Damping of the biharmonic Jacobi steps: the undamped iteration diverges (the 13-point stencil's
#: eigenvalues reach 64 against a diagonal of 20); steps of ω/20·Δ²f converge for ω < 0.625.
_BIHARMONIC_OMEGA = 0.6

# The free-pixel operators are CSR tensors; torch warns once that its CSR support is "beta". The
# two operations used here (construction from indices, sparse @ dense) are long-standing.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)


def _relax_sparse(f: Tensor, fixed: Tensor, steps: int, biharmonic: bool) -> Optional[Tensor]:
    """:func:`_relax_level` as sparse products over the free values; None when there are too many.

    With a one-channel mask the unknowns are pixels and the channels are the columns of x (one
    operator for all channels); with a per-channel mask every channel value is its own unknown."""
    b_, c, h, w = f.shape
    per_pixel = fixed.shape[1] == 1

    def values(t: Tensor) -> Tensor:  # (B, C, H, W) -> (unknowns, columns)
        return t.permute(0, 2, 3, 1).reshape(-1, c) if per_pixel else t.reshape(-1, 1)

    free = (~fixed).reshape(-1).nonzero().squeeze(1)
    n = free.numel()
    if n == 0:
        return f
    if n > _MAX_FREE:
        return None
    pos = torch.full((fixed.numel(),), -1, dtype=torch.int32)
    pos[free] = torch.arange(n, dtype=torch.int32)
    ring = torch.stack(_neighbours(free, h, w))  # (4, n): up, down, left, right, edges clamped
    held = torch.where(fixed, f, torch.zeros((), dtype=f.dtype))  # fixed values, 0 on free pixels

    # Laplace: x_i ← (sum of the four neighbours) / 4; fixed neighbours are constants.
    a = _free_operator(pos, ring, torch.full((4,), 0.25))
    b = values(_stencil(held, 0.0, 0.25))[free]
    start = values(f)
    x = start.new_zeros(n + 1, start.shape[1])  # row n stays 0: the column of every fixed tap
    x[:n] = start[free]
    y = torch.zeros_like(x)
    for _ in range(steps):
        torch.addmm(b, a, x, out=y[:n])
        x, y = y, x
    if biharmonic:
        # x_i ← x_i + s·Δ(Δf)_i. With t_0 the pixel itself and t_1..4 its neighbours,
        # Δ(Δf)_i = Σ_j Σ_k D_j D_k f(t_k(t_j(i))), D = (−4, 1, 1, 1, 1): the pixel (16), each
        # neighbour (−4 −4) and each neighbour's neighbour (1), repeats included at the edges.
        # Of the 16 neighbours' neighbours, the diagonal ones come in equal pairs (clamping at the
        # edges acts per axis, so up-then-left is left-then-up): 4 taps of weight 2 instead of 8
        # taps; the 4 straight two-steps and the 4 returns (the pixel itself, except at an edge)
        # stay: 17 taps a row instead of 21.
        s = -_BIHARMONIC_OMEGA / 20.0
        up, down, left, right = ring  # below, a_b is the b-neighbour of the a-neighbour
        up_up, up_down, up_left, up_right = _neighbours(up, h, w)
        down_up, down_down, down_left, down_right = _neighbours(down, h, w)
        _, _, left_left, left_right = _neighbours(left, h, w)
        _, _, right_left, right_right = _neighbours(right, h, w)
        taps = torch.stack((free, up, down, left, right, up_left, up_right, down_left, down_right,
                            up_up, down_down, left_left, right_right, up_down, down_up, left_right, right_left))
        coefs = torch.tensor([1.0 + 16.0 * s] + [-8.0 * s] * 4 + [2.0 * s] * 4 + [s] * 8)
        a = _free_operator(pos, taps, coefs)
        b = values(_stencil(_stencil(held, -4.0, 1.0), -4.0, 1.0).mul_(s))[free]
        for _ in range(steps):
            torch.addmm(b, a, x, out=y[:n])
            x, y = y, x
    out = start.clone()
    out[free] = x[:n]
    if per_pixel:
        return out.view(b_, h, w, c).permute(0, 3, 1, 2).contiguous()
    return out.view_as(f)


def _free_operator(pos: Tensor, taps: Tensor, coefs: Tensor) -> Tensor:
    """The n×(n+1) CSR matrix with, in row i, ``coefs[t]`` at column ``pos[taps[t, i]]`` for each
    tap t: a free pixel's position, or column n (a row of zeros in x) for a fixed pixel. Every row
    holds all its taps, repeats included (a product sums them), so nothing is sorted or compacted."""
    t, n = taps.shape
    cols = pos[taps.t().contiguous()]  # (n, t), row-major: CSR order; -1 on fixed pixels
    cols = torch.where(cols < 0, n, cols)
    crow = torch.arange(0, t * (n + 1), t, dtype=torch.int32)
    vals = coefs.to(torch.float32).repeat(n)
    return torch.sparse_csr_tensor(crow, cols.view(-1), vals, (n, n + 1), check_invariants=False)


def _relax(f: Tensor, fixed: Tensor, iterations: int) -> Tensor:
    """Dense Jacobi steps of Laplace's equation on the pixels that are not ``fixed``: each becomes
    the mean of its four neighbours (edges replicated); fixed pixels keep their values."""
    fixed = fixed.expand_as(f)
    for _ in range(iterations):
        f = torch.where(fixed, f, _stencil(f, 0.0, 0.25))
    return f


def _stencil(f: Tensor, centre: float, side: float) -> Tensor:
    """``side`` × (sum of the four neighbours) + ``centre`` × the pixel, edges replicated.

    Eager: shifted slices (faster than a depthwise convolution on a CPU, bench_fill's last row).
    Traced: one depthwise convolution, since every step of every level is unrolled into the graph:
    the pad and one convolution node instead of the pad, four slices and up to five arithmetic
    nodes (onnxruntime at 256² 137 → 92 ms, bench_inference)."""
    p = F.pad(f, (1, 1, 1, 1), mode="replicate")
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        k = [[[[0.0, side, 0.0], [side, centre, side], [0.0, side, 0.0]]]] * f.shape[1]
        return F.conv2d(p, torch.tensor(k, dtype=f.dtype, device=f.device), groups=f.shape[1])
    out = p[..., :-2, 1:-1] + p[..., 2:, 1:-1]  # in place from here: fresh temporaries cost page faults
    out += p[..., 1:-1, :-2]
    out += p[..., 1:-1, 2:]
    if side != 1.0:
        out.mul_(side)
    return out.add_(f, alpha=centre) if centre else out


def _relax_biharmonic(f: Tensor, fixed: Tensor, iterations: int) -> Tensor:
    """Dense damped Jacobi steps of Δ²f = 0 (Δ² as the Laplacian of the Laplacian) on the pixels
    that are not ``fixed``; fixed pixels keep their values and act as the boundary condition."""
    step = (~fixed.expand_as(f)).to(f.dtype).mul_(-_BIHARMONIC_OMEGA / 20.0)  # 0 on fixed pixels
    f = f.clone()
    for _ in range(iterations):
        f.addcmul_(step, _stencil(_stencil(f, -4.0, 1.0), -4.0, 1.0))
    return f


def _neighbours(idx: Tensor, h: int, w: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Flat indices of the up, down, left and right neighbours of the flat indices ``idx`` in
    (..., h, w) planes, clamped at the edges (a border pixel is its own outside neighbour)."""
    x = idx % w
    y = (idx // w) % h
    row = idx - x
    return (row - w * (y > 0).long() + x, row + w * (y < h - 1).long() + x,
            row + (x - 1).clamp_min(0), row + (x + 1).clamp_max(w - 1))

"""The training objective of Liu et al. (ECCV 2018), term by term, and the weighted sum.

    L_total = 1·L_valid + 6·L_hole + 0.05·L_perceptual + 120·(L_style_out + L_style_comp) + 0.1·L_tv

M is the mask (1 = valid, 0 = hole), I_comp = M⊙I_gt + (1−M)⊙I_out. Every L1 is size-averaged (the
authors' FAQ): divided by the element count of the tensor it is taken over, then averaged over the
batch. Features Ψ_p are VGG16 pool1, pool2, pool3 on torchvision's scale (:mod:`pconv.vgg`).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pconv.errors import PConvError

__all__ = [
    "hole_loss",
    "valid_loss",
    "perceptual_loss",
    "gram_matrix",
    "style_loss",
    "tv_region",
    "tv_loss",
    "ssim_loss",
    "hole_mse_loss",
    "psnr_loss",
    "LossWeights",
    "InpaintingLoss",
]

PRECISIONS = ("auto", "bf16", "fp32")


def hole_loss(output: Tensor, gt: Tensor, mask: Tensor) -> Tensor:
    """‖(1−M)⊙(I_out−I_gt)‖₁ / N with N = C·H·W of ``gt``, averaged over the batch."""
    return ((1.0 - mask) * (output - gt)).abs().mean()


def valid_loss(output: Tensor, gt: Tensor, mask: Tensor) -> Tensor:
    """‖M⊙(I_out−I_gt)‖₁ / N with N = C·H·W of ``gt``, averaged over the batch."""
    return (mask * (output - gt)).abs().mean()


class _L1Mean(torch.autograd.Function):
    """mean(|a − b|) in fp32, gradient to ``a`` only; ``b`` may broadcast against ``a``.

    Autograd's own version (``(a − b).abs().mean()``) multiplies the sign by an expanded scalar
    gradient in backward, which takes a slow strided path on CPU for channels_last features; here
    backward is one multiply by a 0-dim scale and keeps ``a``'s dtype and memory format.
    """

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor) -> Tensor:  # type: ignore[override]
        d = a.float() - b.float()
        ctx.save_for_backward(torch.sign(d).to(a.dtype))
        ctx.a_shape = a.shape
        return d.abs().mean()

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (sign,) = ctx.saved_tensors
        scale = (grad / sign.numel()).to(sign.dtype)
        return (sign * scale).reshape(ctx.a_shape), None


def _l1_mean(a: Tensor, b: Tensor) -> Tensor:
    """mean(|a − b|), fp32; ``b`` is treated as a constant (ground-truth features)."""
    if b.requires_grad:
        return (a.float() - b.float()).abs().mean()
    return _L1Mean.apply(a, b)


def perceptual_loss(feats_out: Sequence[Tensor], feats_comp: Sequence[Tensor], feats_gt: Sequence[Tensor]) -> Tensor:
    """Σ_p ‖Ψ_p(I_out)−Ψ_p(I_gt)‖₁/N_Ψp + Σ_p ‖Ψ_p(I_comp)−Ψ_p(I_gt)‖₁/N_Ψp (N_Ψp = C_p·H_p·W_p)."""
    if not (len(feats_out) == len(feats_comp) == len(feats_gt)):
        raise PConvError("perceptual_loss: the three feature lists must have the same number of layers")
    total = feats_gt[0].new_zeros((), dtype=torch.float32)
    for fo, fc, fg in zip(feats_out, feats_comp, feats_gt):
        total = total + _l1_mean(fo, fg) + _l1_mean(fc, fg)
    return total


def gram_matrix(feat: Tensor) -> Tensor:
    """K·ΨᵀΨ with K = 1/(C·H·W): (B, C, H, W) → (B, C, C), computed in fp32."""
    b, c, h, w = feat.shape
    if c > 1 and feat.is_contiguous(memory_format=torch.channels_last) and not feat.is_contiguous():
        # channels_last is (B, H·W, C) in memory: multiply in that layout so that no copy is made
        # and the gradient comes back channels_last too (a mismatch costs a full copy in backward).
        f = feat.float().permute(0, 2, 3, 1).reshape(b, h * w, c)
        return torch.bmm(f.transpose(1, 2), f) / float(c * h * w)
    f = feat.float().reshape(b, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / float(c * h * w)


def style_loss(feats: Sequence[Tensor], feats_gt: Sequence[Tensor]) -> Tensor:
    """Σ_p ‖K_p(Ψ_pᵀΨ_p − Ψ_p,gtᵀΨ_p,gt)‖₁ / C_p² (size-averaged over the Gram matrix), batch mean.

    Use it with Ψ(I_out) for L_style_out and with Ψ(I_comp) for L_style_comp.
    """
    if len(feats) != len(feats_gt):
        raise PConvError("style_loss: the two feature lists must have the same number of layers")
    total = feats_gt[0].new_zeros((), dtype=torch.float32)
    for f, fg in zip(feats, feats_gt):
        total = total + (gram_matrix(f) - gram_matrix(fg)).abs().mean()
    return total


def tv_region(mask: Tensor) -> Tensor:
    """R: the hole region (mask == 0) dilated by one pixel with a 3×3 square (8-neighbourhood); 1 in R.

    Computed per mask channel; (B, 1|C, H, W) in, same shape out, float.
    """
    hole = (mask < 0.5).to(torch.float32)
    return F.max_pool2d(hole, kernel_size=3, stride=1, padding=1)


def tv_loss(comp: Tensor, mask: Tensor) -> Tensor:
    """Total variation of I_comp over R, the 1-pixel dilation of the hole (the paper's P).

    A horizontal pair (i, j)–(i, j+1) or vertical pair (i, j)–(i+1, j) counts iff *both* pixels are in
    R (the paper's condition). Every pair touching the hole is in R, so this covers all of the hole's
    inner and boundary differences; pairs with both pixels in the outer ring compare ground-truth
    values and carry no gradient. The sum of |differences| over counted pairs (all channels) is
    divided by N = C·H·W of I_comp (size-averaged like the other terms), then averaged over the batch.
    A one-channel mask applies to all channels.
    """
    r = tv_region(mask).to(comp.dtype)
    pair_h = r[..., :, 1:] * r[..., :, :-1]
    pair_v = r[..., 1:, :] * r[..., :-1, :]
    dh = (comp[..., :, 1:] - comp[..., :, :-1]).abs()
    dv = (comp[..., 1:, :] - comp[..., :-1, :]).abs()
    if r.shape[1] == 1:  # sum channels first: fewer full-size temporaries (allocation dominates on CPU)
        dh, dv = dh.sum(1, keepdim=True), dv.sum(1, keepdim=True)
    b, c, h, w = comp.shape
    return ((dh * pair_h).sum() + (dv * pair_v).sum()) / float(b * c * h * w)


def ssim_loss(comp: Tensor, gt: Tensor, window: int = 7, data_range: float = 1.0) -> Tensor:
    """1 − SSIM(I_comp, I_gt): differentiable, with exactly the evaluation's SSIM
    (:func:`pconv.metrics.ssim`: scikit-image's uniform ``window``² window, K1 = 0.01, K2 = 0.03,
    sample covariance, mean over channels and the windows that fit inside the image), averaged over
    the batch. Not part of the paper's loss: an optional term (``w_ssim``) for the local structure
    that SSIM scores and L1 does not see. Computed in float32."""
    if min(comp.shape[-2:]) < window:
        raise PConvError(f"SSIM needs images of at least {window}x{window} pixels, got {tuple(comp.shape[-2:])}")
    x, y = comp.float(), gt.float()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    n = window * window
    cov_norm = n / (n - 1)

    def mean(t: Tensor) -> Tensor:
        return F.avg_pool2d(t, window, stride=1)

    ux, uy = mean(x), mean(y)
    vx = cov_norm * (mean(x * x) - ux * ux)
    vy = cov_norm * (mean(y * y) - uy * uy)
    vxy = cov_norm * (mean(x * y) - ux * uy)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return 1.0 - s.mean()


def _hole_squared_error(output: Tensor, gt: Tensor, mask: Tensor) -> Tensor:
    """Σ over each image of (1−M)⊙(I_out − I_gt)², shape (B,), in float32."""
    se = (output.float() - gt.float()).pow(2)
    if mask.shape[1] == 1:  # one mask for all channels: sum the channels first
        se = se.sum(1, keepdim=True)
    return (se * (1.0 - mask.float())).flatten(1).sum(1)


def hole_mse_loss(output: Tensor, gt: Tensor, mask: Tensor) -> Tensor:
    """Σ((1−M)⊙(I_out − I_gt)²) / N_{I_gt}: L_hole with squares instead of absolute values."""
    return _hole_squared_error(output, gt, mask).sum() / float(gt.numel())


def psnr_loss(output: Tensor, gt: Tensor, mask: Tensor, floor: float = 1e-5) -> Tensor:
    """Mean over the images of 10·log10(MSE_i + ``floor``), MSE_i the composite's mean squared error
    (the hole's squared error over all of image i's values): minus the PSNR an evaluation reports.

    Its gradient weighs each image by 1/MSE_i, so a dB gained on a small hole counts as much as a
    dB on a large one; a size-averaged error lets the large holes' errors dominate the batch.
    ``floor`` caps that weight (at 50 dB: a near-perfect tiny hole does not take over the batch)."""
    mse = _hole_squared_error(output, gt, mask) / float(gt[0].numel())
    return 10.0 * torch.log10(mse + floor).mean()


def _valid_hole(output: Tensor, gt: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor]:
    """(L_valid, L_hole) from one |I_out − I_gt|: same values as valid_loss/hole_loss for a binary mask."""
    ad = (output - gt).abs()
    if mask.shape[1] == 1:
        ad = ad.sum(1, keepdim=True)
    n = float(gt.numel())
    return (ad * mask).sum() / n, (ad * (1.0 - mask)).sum() / n


@dataclass
class LossWeights:
    """Weights of the terms; the defaults are the paper's. ``style`` multiplies L_style_out and
    L_style_comp each. A weight of 0 skips computing that term."""

    valid: float = 1.0
    hole: float = 6.0
    perceptual: float = 0.05
    style: float = 120.0
    tv: float = 0.1
    #: not in the paper: 1 − SSIM of the composite (see ssim_loss); 0 = off
    ssim: float = 0.0
    #: not in the paper: mean squared error in the hole, size-averaged like L_hole (see
    #: hole_mse_loss); PSNR is an MSE measure, L1 optimises a median instead; 0 = off
    hole_mse: float = 0.0
    #: not in the paper: minus the mean per-image PSNR of the composite (see psnr_loss); 0 = off
    psnr: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = float(getattr(self, f.name))
            if not v >= 0.0 or v == float("inf"):
                raise PConvError(f"loss weight {f.name} must be a finite number ≥ 0, got {getattr(self, f.name)!r}")
            setattr(self, f.name, v)

    @property
    def needs_vgg(self) -> bool:
        return self.perceptual > 0 or self.style > 0


class InpaintingLoss(nn.Module):
    """The paper's total loss. ``forward(output, gt, mask)`` → ``(total, terms)``.

    ``terms`` maps each computed term to a detached 0-dim tensor: ``valid``, ``hole``,
    ``perceptual``, ``style_out``, ``style_comp``, ``tv`` (unweighted) and the same names with a
    ``_w`` suffix (weighted, as summed into ``total``); terms with weight 0 are absent.

    ``vgg``: a frozen :class:`pconv.vgg.VGG16Features`; loaded with :func:`pconv.vgg.load_vgg16_features`
    when needed and not given (never when perceptual = style = 0).
    ``precision``: "bf16" runs the VGG forward/backward under bf16 autocast (losses, Gram matrices and
    L1s stay fp32): on real photos the total is within 4e-4 of fp32 (relative), the gradient to the
    output has cosine ≈ 0.998 with fp32's, and the loss runs 1.75× faster on an AVX-512 BF16 CPU (BENCHMARKS.md, "Loss").
    "fp32" runs everything in fp32. "auto" (default) picks bf16 where the hardware runs it natively
    (CUDA with bf16 support; CPUs with AVX512-BF16/AMX through oneDNN) and fp32 elsewhere, where bf16
    would be emulated and slower. ``channels_last`` stores the VGG and its input in channels_last
    memory format, oneDNN's native layout (as fast or faster in our measurements; results identical).
    """

    def __init__(
        self,
        weights: Optional[LossWeights] = None,
        vgg: Optional[nn.Module] = None,
        precision: str = "auto",
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.weights = weights if weights is not None else LossWeights()
        if precision not in PRECISIONS:
            raise PConvError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        self.channels_last = bool(channels_last)
        if self.weights.needs_vgg:
            if vgg is None:
                from pconv.vgg import load_vgg16_features

                vgg = load_vgg16_features()
            vgg.eval()
            vgg.requires_grad_(False)
            if self.channels_last:
                vgg = vgg.to(memory_format=torch.channels_last)
            self.vgg: Optional[nn.Module] = vgg
        else:
            self.vgg = None

    def train(self, mode: bool = True) -> "InpaintingLoss":
        """The loss network stays in eval mode whatever the parent does."""
        super().train(mode)
        if self.vgg is not None:
            self.vgg.eval()
        return self

    def _features(self, x: Tensor) -> List[Tensor]:
        assert self.vgg is not None
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self._bf16(x.device):
            with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16):
                return list(self.vgg(x))
        return list(self.vgg(x.float()))

    def _bf16(self, device: torch.device) -> bool:
        if self.precision != "auto":
            return self.precision == "bf16"
        from pconv.device import resolve_precision  # the project's one rule for "auto"

        return resolve_precision("auto", device) == "bf16"

    @staticmethod
    def _check(output: Tensor, gt: Tensor, mask: Tensor) -> None:
        if output.dim() != 4 or output.shape != gt.shape:
            raise PConvError(
                f"output and gt must be (B, C, H, W) of the same shape, got {tuple(output.shape)} and {tuple(gt.shape)}"
            )
        if mask.dim() != 4 or mask.shape[0] != gt.shape[0] or mask.shape[1] not in (1, gt.shape[1]) \
                or mask.shape[2:] != gt.shape[2:]:
            raise PConvError(
                f"mask must be (B, 1 or {gt.shape[1]}, H, W) matching {tuple(gt.shape)}, got {tuple(mask.shape)}"
            )

    def forward(self, output: Tensor, gt: Tensor, mask: Tensor):  # -> Tuple[Tensor, Dict[str, Tensor]]
        self._check(output, gt, mask)
        w = self.weights
        mask = mask.to(output.dtype)
        gt = gt.to(output.dtype)
        comp = torch.lerp(output, gt, mask)  # M⊙I_gt + (1−M)⊙I_out, exactly gt / output where M is 1 / 0
        terms: Dict[str, Tensor] = {}
        if w.valid > 0 or w.hole > 0:
            valid, hole = _valid_hole(output, gt, mask)
            if w.valid > 0:
                terms["valid"] = valid
            if w.hole > 0:
                terms["hole"] = hole
        if w.tv > 0:
            terms["tv"] = tv_loss(comp, mask)
        if w.ssim > 0:
            terms["ssim"] = ssim_loss(comp, gt)
        if w.hole_mse > 0:
            terms["hole_mse"] = hole_mse_loss(output, gt, mask)
        if w.psnr > 0:
            terms["psnr"] = psnr_loss(output, gt, mask)
        if w.needs_vgg:
            if self.vgg is None:
                raise PConvError("perceptual/style weights are > 0 but this InpaintingLoss has no VGG network")
            b = output.shape[0]
            # One VGG pass over output and composite together; the terms below equal
            # perceptual_loss / style_loss on the two halves, without slicing the features (each
            # slice costs a full-size zero-fill and copy in backward).
            feats = self._features(torch.cat([output, comp], dim=0))
            with torch.no_grad():
                f_gt = [f.detach() for f in self._features(gt)]
            if w.perceptual > 0:
                total_p = output.new_zeros((), dtype=torch.float32)
                for f, fg in zip(feats, f_gt):
                    # mean over both halves = (mean_out + mean_comp) / 2
                    total_p = total_p + 2.0 * _l1_mean(f.view(2, b, *f.shape[1:]), fg)
                terms["perceptual"] = total_p
            if w.style > 0:
                s_out = output.new_zeros((), dtype=torch.float32)
                s_comp = output.new_zeros((), dtype=torch.float32)
                for f, fg in zip(feats, f_gt):
                    g, g_gt = gram_matrix(f), gram_matrix(fg)
                    s_out = s_out + (g[:b] - g_gt).abs().mean()
                    s_comp = s_comp + (g[b:] - g_gt).abs().mean()
                terms["style_out"] = s_out
                terms["style_comp"] = s_comp
        scale = {"valid": w.valid, "hole": w.hole, "tv": w.tv, "perceptual": w.perceptual,
                 "style_out": w.style, "style_comp": w.style, "ssim": w.ssim, "hole_mse": w.hole_mse,
                 "psnr": w.psnr}
        total = output.new_zeros((), dtype=torch.float32)
        logged: Dict[str, Tensor] = {}
        for name, value in terms.items():
            weighted = value.float() * scale[name]
            total = total + weighted
            logged[name] = value.detach()
            logged[name + "_w"] = weighted.detach()
        logged["total"] = total.detach()
        return total, logged

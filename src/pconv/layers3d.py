"""Partial convolution in 3-D (volumes, video clips): the paper's Eq. 1-2 over (D, H, W) windows.

    out  = W^T (X ⊙ M) · sum(1)/sum(M) + b     where sum(M) > 0, else 0
    m'   = 1                                  where sum(M) > 0, else 0

As in :mod:`pconv.layers` (same polarity, 1 = valid; same options): sum(1) = C_in·kd·kh·kw, sum(M)
is a box sum of the channel-summed mask, computed in float32 without autograd and outside
autocast; ``mask=None`` makes the layer partial-convolution-based padding.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _triple

from pconv.errors import PConvError
from pconv.layers import _check_weight, _valid_channels, check_binary_mask

__all__ = ["partial_conv3d", "mask_update3d", "PartialConv3d"]

_IntTriple = Union[int, Tuple[int, int, int]]


def _box_sum3d(t: Tensor, kernel_size: Tuple[int, ...], stride: Tuple[int, ...], padding: Tuple[int, ...],
               dilation: Tuple[int, ...]) -> Tensor:
    """Sum of ``t`` (B, 1, D, H, W) over every (dilated) kernel window: a ones-kernel convolution."""
    ones = torch.ones(1, 1, *kernel_size, dtype=t.dtype, device=t.device)
    return F.conv3d(t.contiguous(), ones, None, stride, padding, dilation)


@torch.no_grad()
def _window_scale3d(channel_sum: Tensor, in_channels: int, kernel_size: Tuple[int, ...], stride: Tuple[int, ...],
                    padding: Tuple[int, ...], dilation: Tuple[int, ...]) -> Tuple[Tensor, Tensor]:
    """``(scale, new_mask)`` (B, 1, D', H', W') float32 from the per-voxel count of valid channels."""
    with torch.autocast(device_type=channel_sum.device.type, enabled=False):
        window_sum = _box_sum3d(channel_sum.float(), kernel_size, stride, padding, dilation)
        valid = window_sum > 0.5  # integer counts; the threshold absorbs any convolution rounding
        total = float(in_channels * kernel_size[0] * kernel_size[1] * kernel_size[2])
        return torch.where(valid, total / window_sum, 0.0), valid.float()


def mask_update3d(mask: Tensor, in_channels: int, kernel_size: _IntTriple, stride: _IntTriple = 1,
                  padding: _IntTriple = 0, dilation: _IntTriple = 1) -> Tuple[Tensor, Tensor]:
    """``(scale, new_mask)``, both (B, 1, D', H', W') float32, for a (B, 1 or C, D, H, W) mask."""
    return _window_scale3d(_valid_channels(mask, in_channels), in_channels, _triple(kernel_size), _triple(stride),
                           _triple(padding), _triple(dilation))


def partial_conv3d(
    x: Tensor,
    mask: Optional[Tensor],
    weight: Tensor,
    bias: Optional[Tensor] = None,
    stride: _IntTriple = 1,
    padding: _IntTriple = 0,
    dilation: _IntTriple = 1,
) -> Tuple[Tensor, Tensor]:
    """Partial convolution of ``x`` (B, C, D, H, W) under ``mask`` (B or 1, C or 1, D, H, W; 1 = valid).

    ``mask=None`` means "all valid inside the volume" (partial-convolution-based padding). Returns
    ``(output, new_mask)``, ``new_mask`` (B, 1, D', H', W'), shared by all output channels."""
    stride, padding, dilation = _triple(stride), _triple(padding), _triple(dilation)
    if x.dim() != 5:
        raise PConvError(f"partial_conv3d takes (B, C, D, H, W) input, got shape {tuple(x.shape)}")
    in_channels = x.shape[1]
    _check_weight(weight, in_channels)
    if mask is None:
        mask = x.new_ones(x.shape[0], 1, *x.shape[2:], dtype=torch.float32)
        x_masked = x
    else:
        if mask.dim() != 5 or mask.shape[0] not in (1, x.shape[0]) or mask.shape[1] not in (1, in_channels) \
                or mask.shape[2:] != x.shape[2:]:
            raise PConvError(f"mask of shape {tuple(mask.shape)} does not fit input of shape {tuple(x.shape)}: "
                             "expected (B, C, D, H, W) or (B, 1, D, H, W) with the input's D, H and W")
        mask = mask.expand(x.shape[0], -1, -1, -1, -1)
        x_masked = x * mask.to(x.dtype)
    kernel = (weight.shape[2], weight.shape[3], weight.shape[4])
    scale, new_mask = mask_update3d(mask, in_channels, kernel, stride, padding, dilation)
    raw = F.conv3d(x_masked, weight, None, stride, padding, dilation)
    scale = scale.to(raw.dtype)
    if bias is None:
        return raw * scale, new_mask
    return torch.addcmul(bias.to(raw.dtype).view(1, -1, 1, 1, 1) * new_mask.to(raw.dtype), raw, scale), new_mask


class PartialConv3d(nn.Conv3d):
    """``nn.Conv3d`` whose forward is a partial convolution; ``forward(x, mask) -> (out, new_mask)``.

    The 3-D counterpart of :class:`pconv.PartialConv2d`: state_dict keys of a plain conv,
    ``check_mask=True`` rejects non-binary masks, groups=1 and integer padding only."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: _IntTriple, stride: _IntTriple = 1,
                 padding: _IntTriple = 0, dilation: _IntTriple = 1, groups: int = 1, bias: bool = True,
                 check_mask: bool = True) -> None:
        if groups != 1:
            raise PConvError(f"PartialConv3d supports groups=1 only, got groups={groups}")
        if isinstance(padding, str):
            raise PConvError("PartialConv3d takes integer padding, not padding='same'/'valid'")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, 1, bias)
        self.check_mask = check_mask

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:  # type: ignore[override]
        if mask is not None and self.check_mask:
            check_binary_mask(mask)
        return partial_conv3d(x, mask, self.weight, self.bias, self.stride, self.padding, self.dilation)

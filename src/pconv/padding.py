"""Partial-convolution-based padding for any CNN (Liu, Shih, Wang, Reda, Sapra, Yu, Tao, Catanzaro, 2018).

The region outside the image is a hole: a convolution whose window crosses the border is
re-weighted by the share of the window inside the image, instead of averaging in zeros::

    out = conv(x, zero padding) · ratio + b,   ratio = (kernel volume) / (in-image taps of the window)

``ratio`` depends only on the input's spatial shape and the convolution's geometry, never on the
data or the channels, so it is computed once per (shape, device, dtype) with the partial
convolution's own mask arithmetic (:mod:`pconv.layers`, :mod:`pconv.layers3d`) and cached. Away
from the border ``ratio`` is 1 and the output is the plain convolution's.

:func:`partial_padding` swaps the class of every zero-padded ``nn.Conv2d`` / ``nn.Conv3d`` (exact
types; subclasses are left alone) for a subclass whose only change is ``forward``: parameters,
buffers, hooks and ``state_dict`` keys stay as they are, so trained weights load unchanged.

Supported: any stride, dilation, groups and bias; integer or ``"same"`` padding (asymmetric for
even kernels); bf16/fp16 autocast (the ratio is cast to the convolution's output dtype); channels_last;
``torch.compile`` (the ratio is recomputed inside the graph, where the compiler folds it);
ONNX export through the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``) at the
traced input size: the ratio becomes a constant of the graph, so the exported model takes that
size only.
"""
from __future__ import annotations

import copy
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pconv.errors import PConvError
from pconv.layers import _window_scale
from pconv.layers3d import _window_scale3d

__all__ = ["partial_padding", "PartialPaddingConv2d", "PartialPaddingConv3d", "padding_ratio"]

_MAX_CACHED = 64  # shapes per layer; a network sees a handful, dynamic-size inference a few more


def padding_ratio(spatial: Sequence[int], kernel_size: Sequence[int], stride: Sequence[int],
                  pads: Sequence[Tuple[int, int]], dilation: Sequence[int], device: torch.device,
                  dtype: torch.dtype) -> Tuple[Tensor, Optional[Tensor]]:
    """``(ratio, valid)``, each (1, 1, *out_spatial): kernel volume over in-image taps of each
    window (0 for a window wholly outside), and the updated mask (1 where any tap is inside), or
    None when every window has one (padding smaller than the kernel's extent: the usual case).

    ``pads`` is ``(before, after)`` per spatial dimension. The in-image indicator is padded here
    and the window sums run unpadded, which covers asymmetric padding too."""
    return _ratio_of(torch.ones(1, 1, *spatial, device=device, dtype=torch.float32), kernel_size, stride, pads,
                     dilation, dtype)


def _ratio_of(ones: Tensor, kernel_size: Sequence[int], stride: Sequence[int], pads: Sequence[Tuple[int, int]],
              dilation: Sequence[int], dtype: torch.dtype) -> Tuple[Tensor, Optional[Tensor]]:
    """:func:`padding_ratio` of the in-image indicator ``ones`` (1, 1, *spatial)."""
    spatial = ones.shape[2:]
    flat = [p for before_after in reversed(list(pads)) for p in before_after]
    inside = F.pad(ones, flat)
    zero = (0,) * len(spatial)
    if len(spatial) == 2:
        ratio, valid = _window_scale(inside, 1, tuple(kernel_size), tuple(stride), zero, tuple(dilation))
    else:
        ratio, valid = _window_scale3d(inside, 1, tuple(kernel_size), tuple(stride), zero, tuple(dilation))
    all_valid = all(k_extent > max(a, b) for k_extent, (a, b) in
                    zip(((k - 1) * d + 1 for k, d in zip(kernel_size, dilation)), pads))
    return ratio.to(dtype), None if all_valid else valid.to(dtype)


class _PartialPadding:
    """The forward shared by the 2-D and 3-D converted convolutions (a mixin over nn.ConvNd)."""

    _pads: Tuple[Tuple[int, int], ...]
    _ratio_cache: Dict[tuple, Tuple[Tensor, Optional[Tensor]]]

    def _setup_partial_padding(self) -> None:
        conv: nn.modules.conv._ConvNd = self  # type: ignore[assignment]
        self._pads = _resolve_pads(conv)
        self._ratio_cache = {}

    def _ratio(self, x: Tensor, dtype: torch.dtype) -> Tuple[Tensor, Optional[Tensor]]:
        """The ratio map for the (unpadded) input ``x``: cached, or built in the traced/compiled graph."""
        conv: nn.modules.conv._ConvNd = self  # type: ignore[assignment]
        if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
            # from the input itself, so that an exported graph follows its size (dynamic axes)
            ones = torch.ones_like(x[:1, :1], dtype=torch.float32)
            return _ratio_of(ones, conv.kernel_size, conv.stride, self._pads, conv.dilation, dtype)
        spatial, device = tuple(x.shape[2:]), x.device
        key = (spatial, device, dtype)
        found = self._ratio_cache.get(key)
        if found is None:
            if len(self._ratio_cache) >= _MAX_CACHED:
                self._ratio_cache.clear()
            found = padding_ratio(spatial, conv.kernel_size, conv.stride, self._pads, conv.dilation, device, dtype)
            self._ratio_cache[key] = found
        return found

    def _partial_forward(self, x: Tensor, conv_fn) -> Tensor:
        conv: nn.modules.conv._ConvNd = self  # type: ignore[assignment]
        inp = x
        if all(a == b for a, b in self._pads):
            padding = tuple(a for a, _ in self._pads)
        else:
            x = F.pad(x, [p for before_after in reversed(self._pads) for p in before_after])
            padding = (0,) * len(self._pads)
        raw = conv_fn(x, conv.weight, None, conv.stride, padding, conv.dilation, conv.groups)
        ratio, valid = self._ratio(inp, raw.dtype)
        # In place: the convolution's backward does not need its output (no second full-size tensor).
        raw = raw.mul_(ratio)
        if conv.bias is None:
            return raw
        bias = conv.bias.to(raw.dtype).view((1, -1) + (1,) * len(self._pads))
        return raw.add_(bias if valid is None else bias * valid)

    def __deepcopy__(self, memo):  # the cache is derived data: a copy starts empty
        cls = type(self)
        new = cls.__new__(cls)
        memo[id(self)] = new
        for k, v in self.__dict__.items():
            new.__dict__[k] = {} if k == "_ratio_cache" else copy.deepcopy(v, memo)
        return new


class PartialPaddingConv2d(_PartialPadding, nn.Conv2d):
    """``nn.Conv2d`` with partial-convolution-based padding; same parameters and state_dict keys."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return self._partial_forward(x, F.conv2d)


class PartialPaddingConv3d(_PartialPadding, nn.Conv3d):
    """``nn.Conv3d`` with partial-convolution-based padding; same parameters and state_dict keys."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return self._partial_forward(x, F.conv3d)


def _resolve_pads(conv: nn.modules.conv._ConvNd) -> Tuple[Tuple[int, int], ...]:
    """``(before, after)`` per spatial dimension, as PyTorch pads for integer or "same" padding."""
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return tuple((0, 0) for _ in conv.kernel_size)
        pads = []
        for k, d in zip(conv.kernel_size, conv.dilation):
            total = d * (k - 1)
            pads.append((total // 2, total - total // 2))  # PyTorch puts the extra one after
        return tuple(pads)
    return tuple((p, p) for p in conv.padding)


def _is_zero_padded(m: nn.Module) -> bool:
    if type(m) not in (nn.Conv2d, nn.Conv3d) or m.padding_mode != "zeros":
        return False
    return any(a or b for a, b in _resolve_pads(m))


def partial_padding(module: nn.Module, inplace: bool = False) -> nn.Module:
    """``module`` with every zero-padded ``nn.Conv2d``/``nn.Conv3d`` using partial-convolution-based
    padding; a copy unless ``inplace=True``.

    Weights, buffers, hooks and ``state_dict`` keys are unchanged (``load_state_dict`` of the
    original's weights works on the result and vice versa). Convolutions without padding, with
    another ``padding_mode`` ("reflect", "replicate", "circular") and subclasses of the conv classes
    are left as they are. A module itself a conv converts too (the copy is returned)."""
    if not isinstance(module, nn.Module):
        raise PConvError(f"partial_padding takes an nn.Module, got {type(module).__name__}")
    if not inplace:
        module = copy.deepcopy(module)
    for m in module.modules():
        if _is_zero_padded(m):
            m.__class__ = PartialPaddingConv2d if type(m) is nn.Conv2d else PartialPaddingConv3d
            m._setup_partial_padding()
    return module

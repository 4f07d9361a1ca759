"""PartialConv3d against a reference written here: explicit loops over every output window.

Reference, per output voxel: the window's taps (with stride, dilation, zero padding of features and
mask); sum(M) = number of valid (channel, tap) entries; out = Σ W·X·M · (C·kd·kh·kw)/sum(M) + b
where sum(M) > 0, else 0; m' = 1[sum(M) > 0].
"""
from __future__ import annotations

import itertools

import pytest
import torch

from pconv import PartialConv3d, partial_conv3d
from pconv.errors import PConvError


def loop_reference(x, mask, weight, bias, stride, padding, dilation):
    x, weight = x.double(), weight.double()
    mask = mask.double().expand(x.shape[0], x.shape[1], *x.shape[2:])
    b, c, *size = x.shape
    o, _, *k = weight.shape
    out_size = [(size[i] + 2 * padding[i] - dilation[i] * (k[i] - 1) - 1) // stride[i] + 1 for i in range(3)]
    out = torch.zeros(b, o, *out_size, dtype=torch.float64)
    new = torch.zeros(b, 1, *out_size, dtype=torch.float64)
    for n in range(b):
        for pos in itertools.product(*(range(s) for s in out_size)):
            acc = torch.zeros(o, dtype=torch.float64)
            count = 0.0
            for tap in itertools.product(*(range(kk) for kk in k)):
                idx = [pos[i] * stride[i] - padding[i] + tap[i] * dilation[i] for i in range(3)]
                if not all(0 <= idx[i] < size[i] for i in range(3)):
                    continue  # zero padding: a hole
                xm = x[n, :, idx[0], idx[1], idx[2]] * mask[n, :, idx[0], idx[1], idx[2]]
                acc += weight[:, :, tap[0], tap[1], tap[2]] @ xm
                count += float(mask[n, :, idx[0], idx[1], idx[2]].sum())
            if count > 0:
                total = c * k[0] * k[1] * k[2]
                out[n, :, pos[0], pos[1], pos[2]] = acc * total / count + (bias.double() if bias is not None else 0)
                new[n, 0, pos[0], pos[1], pos[2]] = 1
    return out, new


CASES = [  # kernel, stride, padding, dilation
    ((3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1)),
    ((2, 3, 2), (1, 2, 1), (1, 1, 0), (1, 1, 1)),   # even kernels
    ((3, 3, 3), (2, 2, 2), (2, 1, 2), (2, 1, 1)),   # stride and dilation
    ((1, 3, 3), (1, 1, 2), (0, 2, 1), (1, 2, 1)),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("mask_channels", [1, 3])
def test_matches_loop_reference(case, bias, mask_channels):
    kernel, stride, padding, dilation = case
    gen = torch.Generator().manual_seed(hash((case, bias, mask_channels)) % 2**31)
    x = torch.randn(2, 3, 5, 6, 4, generator=gen)
    mask = (torch.rand(2, mask_channels, 5, 6, 4, generator=gen) < 0.5).float()
    mask[1] = 0  # a sample with no valid voxel: every output is 0, the new mask too
    mask[1, 0, 0, 0, 0] = 1  # one valid entry: windows with sum(M) = 1 (3 for a one-channel mask)
    layer = PartialConv3d(3, 4, kernel, stride, padding, dilation, bias=bias)
    with torch.no_grad():
        if bias:
            layer.bias.copy_(torch.randn(4, generator=gen))
        out, new_mask = layer(x, mask)
    ref, ref_mask = loop_reference(x, mask, layer.weight, layer.bias, stride, padding, dilation)
    assert out.shape == ref.shape and new_mask.shape == ref_mask.shape
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(new_mask.double(), ref_mask)


def test_mask_none_is_padding_and_equals_all_valid():
    x = torch.randn(1, 2, 4, 5, 3)
    w = torch.randn(3, 2, 3, 3, 3)
    b = torch.randn(3)
    out, new_mask = partial_conv3d(x, None, w, b, 1, 1, 1)
    ref, _ = loop_reference(x, torch.ones(1, 1, 4, 5, 3), w, b, (1,) * 3, (1,) * 3, (1,) * 3)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
    assert bool((new_mask == 1).all())
    # Away from the border (every tap inside): the plain convolution.
    plain = torch.nn.functional.conv3d(x, w, b, 1, 1)
    torch.testing.assert_close(out[:, :, 1:-1, 1:-1, 1:-1], plain[:, :, 1:-1, 1:-1, 1:-1])


def test_one_channel_mask_broadcasts_like_the_expanded_mask():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 4, 4, 4, generator=gen)
    m = (torch.rand(2, 1, 4, 4, 4, generator=gen) < 0.6).float()
    w = torch.randn(2, 3, 3, 3, 3, generator=gen)
    a = partial_conv3d(x, m, w, None, 1, 1)
    b = partial_conv3d(x, m.expand(-1, 3, -1, -1, -1), w, None, 1, 1)
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])


def test_gradients_match_the_reference():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(1, 2, 3, 4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    m = (torch.rand(1, 2, 3, 4, 3, generator=gen) < 0.6).double()
    w = torch.randn(2, 2, 2, 3, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, generator=gen, dtype=torch.float64, requires_grad=True)
    out, _ = partial_conv3d(x, m, w, b, 1, (1, 1, 0), 1)
    grads = torch.autograd.grad(out.square().sum(), (x, w, b))
    ref, _ = loop_reference(x, m, w, b, (1,) * 3, (1, 1, 0), (1,) * 3)
    ref_grads = torch.autograd.grad(ref.square().sum(), (x, w, b))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-6, atol=1e-6)  # the ratio is float32 by design


def test_bf16_autocast_close_to_float32():
    gen = torch.Generator().manual_seed(5)
    layer = PartialConv3d(4, 4, 3, padding=1)
    x = torch.randn(1, 4, 6, 6, 6, generator=gen)
    m = (torch.rand(1, 4, 6, 6, 6, generator=gen) < 0.7).float()
    full, full_mask = layer(x, m)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half, half_mask = layer(x, m)
    assert half.dtype == torch.bfloat16 and half_mask.dtype == torch.float32
    torch.testing.assert_close(half_mask, full_mask)  # counts stay exact in float32
    torch.testing.assert_close(half.float(), full, rtol=3e-2, atol=3e-2)


def test_errors_name_the_problem():
    layer = PartialConv3d(2, 2, 3, padding=1)
    x = torch.randn(1, 2, 4, 4, 4)
    with pytest.raises(PConvError, match="binary"):
        layer(x, torch.full((1, 1, 4, 4, 4), 0.5))
    with pytest.raises(PConvError, match="does not fit"):
        layer(x, torch.ones(1, 1, 4, 4, 5))
    with pytest.raises(PConvError, match=r"\(B, C, D, H, W\)"):
        layer(torch.randn(1, 2, 4, 4), None)
    with pytest.raises(PConvError, match="channels"):
        layer(torch.randn(1, 3, 4, 4, 4), None)
    with pytest.raises(PConvError, match="groups=1"):
        PartialConv3d(2, 2, 3, groups=2)
    with pytest.raises(PConvError, match="integer padding"):
        PartialConv3d(2, 2, 3, padding="same")


def test_state_dict_keys_of_a_plain_conv3d():
    layer = PartialConv3d(2, 3, 3, padding=1)
    plain = torch.nn.Conv3d(2, 3, 3, padding=1)
    assert list(layer.state_dict()) == list(plain.state_dict())
    layer.load_state_dict(plain.state_dict())
    torch.testing.assert_close(layer.weight, plain.weight)

"""PartialConv2d against a naive reference of the paper's Eq. 1-2, plus its contracts.

Reference (written here, independently of pconv.layers): sum(M) is an explicit convolution of the
full multi-channel mask with an all-ones in×kh×kw kernel; then
    out = W^T(X⊙M) · sum(1)/sum(M) + b   where sum(M) > 0, else 0;   m' = 1[sum(M) > 0].
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pconv.errors import PConvError
from pconv.layers import PartialConv2d, partial_conv2d, partial_conv2d_cat


def reference_pconv(x, mask, weight, bias, stride, padding, dilation):
    """Naive partial convolution in float64; ``mask`` (B, 1 or C, H, W), 1 = valid."""
    x, weight = x.double(), weight.double()
    mask = mask.double().expand(-1, x.shape[1], -1, -1)
    cin, kh, kw = weight.shape[1:]
    ones = torch.ones(1, cin, kh, kw, dtype=torch.float64)
    sum_m = F.conv2d(mask, ones, None, stride, padding, dilation)  # (B, 1, H', W')
    raw = F.conv2d(x * mask, weight, None, stride, padding, dilation)
    valid = sum_m > 0
    out = raw * (cin * kh * kw) / torch.where(valid, sum_m, torch.ones_like(sum_m))
    if bias is not None:
        out = out + bias.double().view(1, -1, 1, 1)
    out = torch.where(valid, out, torch.zeros_like(out))
    return out, valid.double()


def random_mask(shape, p_valid=0.6, gen=None):
    return (torch.rand(shape, generator=gen) < p_valid).float()


CASES = [
    # kernel, stride, padding, dilation
    (1, 1, 0, 1),
    (3, 1, 1, 1),
    (3, 2, 1, 1),
    (5, 2, 2, 1),
    (7, 2, 3, 1),
    (3, 1, 2, 2),
    (3, 2, 0, 1),
    (5, 1, 4, 2),
    ((3, 5), (1, 2), (1, 2), 1),
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("bias", [True, False])
def test_matches_reference_multichannel_mask(case, bias):
    kernel, stride, padding, dilation = CASES[case]
    gen = torch.Generator().manual_seed(100 + 2 * case + int(bias))
    cin, cout = 4, 6
    layer = PartialConv2d(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation, bias=bias)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 0.3)
        if bias:
            layer.bias.copy_(torch.randn(cout, generator=gen))
    x = torch.randn(2, cin, 13, 16, generator=gen)
    mask = random_mask((2, cin, 13, 16), 0.5, gen)
    mask[0, :, :6, :6] = 0  # a big hole so that some windows see no valid pixel at all
    out, new_mask = layer(x, mask)
    ref_out, ref_mask = reference_pconv(x, mask, layer.weight, layer.bias, layer.stride, layer.padding, layer.dilation)
    assert out.shape == ref_out.shape
    assert new_mask.shape == (2, 1) + ref_out.shape[2:]
    assert torch.equal(new_mask.double(), ref_mask)
    assert (ref_mask == 0).any() and (ref_mask == 1).any()  # both cases are exercised
    torch.testing.assert_close(out.double(), ref_out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel,stride,padding,dilation", CASES[:5])
def test_one_channel_mask_broadcasts(kernel, stride, padding, dilation):
    torch.manual_seed(1)
    layer = PartialConv2d(3, 5, kernel, stride=stride, padding=padding, dilation=dilation)
    x = torch.randn(2, 3, 12, 12)
    mask1 = random_mask((2, 1, 12, 12))
    out1, m1 = layer(x, mask1)
    out3, m3 = layer(x, mask1.expand(-1, 3, -1, -1).contiguous())
    ref, ref_m = reference_pconv(x, mask1, layer.weight, layer.bias, layer.stride, layer.padding, layer.dilation)
    torch.testing.assert_close(out1.double(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out1, out3, rtol=1e-6, atol=1e-6)
    assert torch.equal(m1, m3) and torch.equal(m1.double(), ref_m)


def test_mask_batch_of_one_broadcasts_over_batch():
    torch.manual_seed(2)
    layer = PartialConv2d(3, 4, 3, padding=1)
    x = torch.randn(3, 3, 8, 8)
    mask = random_mask((1, 3, 8, 8))
    out, m = layer(x, mask)
    out_full, m_full = layer(x, mask.expand(3, -1, -1, -1))
    torch.testing.assert_close(out, out_full)
    assert torch.equal(m, m_full)


def test_functional_equals_module():
    torch.manual_seed(3)
    layer = PartialConv2d(4, 4, 3, stride=2, padding=1)
    x, mask = torch.randn(1, 4, 10, 10), random_mask((1, 4, 10, 10))
    a = layer(x, mask)
    b = partial_conv2d(x, mask, layer.weight, layer.bias, 2, 1, 1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_all_valid_mask_without_padding_is_plain_conv():
    torch.manual_seed(4)
    layer = PartialConv2d(3, 4, 3, padding=0)
    x = torch.randn(2, 3, 9, 9)
    out, m = layer(x, torch.ones(2, 3, 9, 9))
    torch.testing.assert_close(out, F.conv2d(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)
    assert torch.equal(m, torch.ones_like(m))


def test_mask_none_is_partial_conv_padding():
    """No mask: ones inside the image, zero-padded outside, so border outputs are rescaled."""
    torch.manual_seed(5)
    layer = PartialConv2d(2, 3, 3, padding=1, bias=True)
    x = torch.randn(1, 2, 7, 9)
    out, m = layer(x)
    ref, ref_m = reference_pconv(x, torch.ones(1, 2, 7, 9), layer.weight, layer.bias, 1, 1, 1)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(m, torch.ones(1, 1, 7, 9))
    plain = F.conv2d(x, layer.weight, None, 1, 1)
    # Interior: the window sees no padding, same as a plain conv.
    torch.testing.assert_close(out[..., 1:-1, 1:-1], (plain + layer.bias.view(1, -1, 1, 1))[..., 1:-1, 1:-1])
    # Corner: 4 of 9 pixels inside, so the zero-padded conv is scaled by 9/4; edge (not corner): 9/6.
    torch.testing.assert_close(out[..., 0, 0], plain[..., 0, 0] * 9 / 4 + layer.bias.view(1, -1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[..., 0, 4], plain[..., 0, 4] * 9 / 6 + layer.bias.view(1, -1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("value", [0.5, 2.0, -1.0, 0.999])
def test_non_binary_mask_rejected_with_clear_message(value):
    layer = PartialConv2d(3, 3, 3, padding=1)
    mask = torch.ones(1, 3, 6, 6)
    mask[0, 0, 2, 2] = value
    with pytest.raises(PConvError, match=r"binary.*0 and 1.*mask > 0\.5"):
        layer(torch.randn(1, 3, 6, 6), mask)


def test_integer_and_bool_masks_accepted_when_binary():
    torch.manual_seed(6)
    layer = PartialConv2d(3, 3, 3, padding=1)
    x = torch.randn(1, 3, 6, 6)
    mask = random_mask((1, 3, 6, 6))
    ref = layer(x, mask)
    for m in (mask.bool(), mask.long(), mask.to(torch.uint8)):
        out = layer(x, m)
        torch.testing.assert_close(out[0], ref[0])
        assert torch.equal(out[1], ref[1])
    bad = mask.long()
    bad[0, 0, 0, 0] = 3
    with pytest.raises(PConvError, match="binary"):
        layer(x, bad)


def test_groups_and_string_padding_refused():
    with pytest.raises(PConvError, match="groups"):
        PartialConv2d(4, 4, 3, groups=2)
    with pytest.raises(PConvError, match="padding"):
        PartialConv2d(4, 4, 3, padding="same")


def test_mask_shape_mismatch_is_pconv_error():
    layer = PartialConv2d(3, 3, 3, padding=1)
    with pytest.raises(PConvError, match="does not fit"):
        layer(torch.randn(1, 3, 8, 8), torch.ones(1, 2, 8, 8))
    with pytest.raises(PConvError, match="does not fit"):
        layer(torch.randn(1, 3, 8, 8), torch.ones(1, 3, 8, 7))


def test_gradcheck_float64():
    torch.manual_seed(7)
    layer = PartialConv2d(2, 3, 3, stride=2, padding=1).double()
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    mask = random_mask((1, 2, 6, 6)).double()
    mask[0, :, :3, :3] = 0

    def f(x, w, b):
        return partial_conv2d(x, mask, w, b, 2, 1, 1)[0]

    w = layer.weight.detach().clone().requires_grad_(True)
    b = layer.bias.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (x, w, b), eps=1e-6, atol=1e-6)
    assert torch.autograd.gradgradcheck(f, (x, w, b), eps=1e-6, atol=1e-6)


def test_gradient_is_zero_inside_hole():
    """Hole pixels do not influence the output, so their gradient is exactly zero."""
    torch.manual_seed(8)
    layer = PartialConv2d(3, 4, 3, padding=1)
    x = torch.randn(1, 3, 8, 8, requires_grad=True)
    mask = torch.ones(1, 3, 8, 8)
    mask[:, :, 2:5, 3:6] = 0
    out, _ = layer(x, mask)
    out.square().sum().backward()
    assert torch.all(x.grad[mask == 0] == 0)
    assert torch.any(x.grad[mask == 1] != 0)


def test_bf16_autocast_close_to_fp32():
    torch.manual_seed(9)
    layer = PartialConv2d(8, 8, 3, padding=1)
    x = torch.randn(2, 8, 16, 16)
    mask = random_mask((2, 8, 16, 16))
    ref, ref_m = layer(x, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, m = layer(x, mask)
    assert out.dtype == torch.bfloat16
    assert torch.equal(m, ref_m)  # the mask arithmetic is not rounded by bf16
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), ref, rtol=3e-2, atol=3e-2)
    rel = (out.float() - ref).norm() / ref.norm()
    assert rel < 1e-2


def test_channels_last_same_result():
    torch.manual_seed(10)
    layer = PartialConv2d(8, 6, 3, stride=2, padding=1)
    x = torch.randn(2, 8, 16, 16)
    mask = random_mask((2, 8, 16, 16))
    ref, ref_m = layer(x, mask)
    layer_cl = PartialConv2d(8, 6, 3, stride=2, padding=1).to(memory_format=torch.channels_last)
    layer_cl.load_state_dict(layer.state_dict())
    for m in (mask, mask.to(memory_format=torch.channels_last)):
        out, new_m = layer_cl(x.to(memory_format=torch.channels_last), m)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        assert torch.equal(new_m, ref_m)


def test_no_state_between_calls():
    """Mask A, then B (other shape and values), then A again: A's result equals a fresh call."""
    torch.manual_seed(11)
    layer = PartialConv2d(3, 4, 3, padding=1)
    x_a, mask_a = torch.randn(2, 3, 10, 10), random_mask((2, 3, 10, 10), 0.7)
    x_b, mask_b = torch.randn(1, 3, 6, 8), random_mask((1, 3, 6, 8), 0.3)
    fresh = PartialConv2d(3, 4, 3, padding=1)
    fresh.load_state_dict(layer.state_dict())
    first = layer(x_a, mask_a)
    layer(x_b, mask_b)
    layer(x_a, torch.ones_like(mask_a))  # same shape as A, different mask
    again = layer(x_a, mask_a)
    new = fresh(x_a, mask_a)
    for a, b in zip((first, again), (new, new)):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not any(buf is not None for buf in layer.buffers())  # no cached tensors


def test_all_zero_mask_gives_zeros_and_finite_gradients():
    torch.manual_seed(12)
    layer = PartialConv2d(3, 4, 3, stride=2, padding=1, bias=True)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    out, m = layer(x, torch.zeros(2, 3, 8, 8))
    assert torch.equal(out, torch.zeros_like(out))  # no bias where nothing is valid
    assert torch.equal(m, torch.zeros_like(m))
    (out.sum() + out.square().sum()).backward()
    for g in (x.grad, layer.weight.grad, layer.bias.grad):
        assert g is not None and torch.isfinite(g).all()


def test_mask_has_no_autograd_and_output_mask_is_float():
    layer = PartialConv2d(3, 4, 3, padding=1)
    x = torch.randn(1, 3, 8, 8, requires_grad=True)
    mask = torch.ones(1, 3, 8, 8, requires_grad=True)
    out, m = layer(x, mask)
    assert not m.requires_grad and m.dtype == torch.float32


def test_hole_values_do_not_matter():
    torch.manual_seed(13)
    layer = PartialConv2d(3, 4, 5, stride=2, padding=2)
    x = torch.randn(1, 3, 12, 12)
    mask = random_mask((1, 3, 12, 12), 0.5)
    base = layer(x, mask)[0]
    for fill in (torch.zeros_like(x), torch.randn_like(x) * 100, torch.full_like(x, 1e6)):
        x2 = torch.where(mask.bool(), x, fill)
        assert torch.equal(layer(x2, mask)[0], base)



@pytest.mark.parametrize("bias", [True, False])
def test_backward_matches_reference_in_both_layouts(bias):
    """Gradients of input, weight and bias equal the reference's, NCHW and channels_last."""
    torch.manual_seed(14)
    layer = PartialConv2d(6, 5, 3, stride=1, padding=1, bias=bias)
    x0 = torch.randn(2, 6, 10, 12)
    mask = random_mask((2, 6, 10, 12), 0.5)
    mask[1, :, :5, :5] = 0
    g = torch.randn(2, 5, 10, 12)

    w = layer.weight.detach().double().requires_grad_(True)
    b = layer.bias.detach().double().requires_grad_(True) if bias else None
    xr = x0.double().requires_grad_(True)
    ref, _ = reference_pconv(xr, mask, w, b, 1, 1, 1)
    ref.backward(g.double())

    for fmt in (torch.contiguous_format, torch.channels_last):
        layer.zero_grad()
        lay = layer.to(memory_format=fmt)
        x = x0.clone(memory_format=fmt).requires_grad_(True)
        out, _ = lay(x, mask.contiguous(memory_format=fmt))
        out.backward(g.contiguous(memory_format=fmt))
        torch.testing.assert_close(x.grad.double(), xr.grad, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(lay.weight.grad.double(), w.grad, rtol=1e-5, atol=1e-4)
        if bias:
            torch.testing.assert_close(lay.bias.grad.double(), b.grad, rtol=1e-5, atol=1e-4)


def test_bf16_autocast_backward_close_to_fp32():
    torch.manual_seed(15)
    layer = PartialConv2d(8, 8, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(2, 8, 16, 16).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    mask = random_mask((2, 8, 16, 16))
    out, _ = layer(x, mask)
    out.square().sum().backward()
    ref = [t.grad.clone() for t in (x, layer.weight, layer.bias)]
    x.grad = None
    layer.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = layer(x, mask)
    out.float().square().sum().backward()
    for got, want in zip((x.grad, layer.weight.grad, layer.bias.grad), ref):
        assert got.dtype == torch.float32 and torch.isfinite(got).all()
        assert (got - want).norm() / want.norm() < 3e-2


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
def test_traces_for_export():
    """torch.jit.trace sees plain ops (the fast custom autograd path is skipped while tracing)."""
    torch.manual_seed(16)
    layer = PartialConv2d(3, 4, 3, padding=1).eval()
    x, mask = torch.randn(1, 3, 8, 8), random_mask((1, 3, 8, 8))
    class OutputOnly(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = layer

        def forward(self, a, b):
            return self.layer(a, b)[0]

    with torch.no_grad():
        traced = torch.jit.trace(OutputOnly(), (x, mask), check_trace=False)
        assert "ScaleAddMaskedBias" not in str(traced.graph)
        x2, mask2 = torch.randn(1, 3, 8, 8), random_mask((1, 3, 8, 8))
        torch.testing.assert_close(traced(x2, mask2), layer(x2, mask2)[0])


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_cat_of_parts_equals_conv_of_concatenation(channels_last, bias):
    """partial_conv2d_cat([(x1, m1), (x2, m2), (x3, m3)]) == partial_conv2d(cat(x), cat(expanded m)),
    values, updated mask and gradients; parts with one-channel and with per-channel masks."""
    g = torch.Generator().manual_seed(5)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    shapes = [(2, 4, 12, 10), (2, 3, 12, 10), (2, 2, 12, 10)]
    xs = [torch.randn(*s, generator=g).contiguous(memory_format=fmt).requires_grad_(True) for s in shapes]
    ms = [random_mask((2, 1, 12, 10), 0.5, g), random_mask((2, 1, 12, 10), 0.3, g), random_mask(shapes[2], 0.6, g)]
    ms[1][1] = 0.0  # one part fully invalid in one sample
    w = torch.randn(5, 9, 3, 3, generator=g, requires_grad=True)
    b = torch.randn(5, generator=g, requires_grad=True) if bias else None
    out, new_mask = partial_conv2d_cat(list(zip(xs, ms)), w, b, stride=2, padding=1)
    xs_ref = [x.detach().clone().requires_grad_(True) for x in xs]
    w_ref = w.detach().clone().requires_grad_(True)
    b_ref = b.detach().clone().requires_grad_(True) if bias else None
    cat_m = torch.cat([m.expand(-1, x.shape[1], -1, -1) for x, m in zip(xs, ms)], dim=1)
    ref, ref_mask = partial_conv2d(torch.cat(xs_ref, dim=1), cat_m, w_ref, b_ref, stride=2, padding=1)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(new_mask, ref_mask, rtol=0, atol=0)
    up = torch.randn(out.shape, generator=g)
    (out * up).sum().backward()
    (ref * up).sum().backward()
    for a, r in zip(xs + [w] + ([b] if bias else []), xs_ref + [w_ref] + ([b_ref] if bias else [])):
        torch.testing.assert_close(a.grad, r.grad, rtol=1e-5, atol=1e-5)


def test_cat_of_mixed_parts_under_autocast():
    """The U-Net's last layers concatenate bf16 channels_last features with an fp32 contiguous fill
    and hole map, and parts whose mask has no hole. Same result as the concatenation in fp32 (to
    bf16 rounding), gradients for every part, and the output stays channels_last."""
    g = torch.Generator().manual_seed(9)
    feats = torch.randn(2, 6, 16, 16, generator=g).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    fill = torch.randn(2, 3, 16, 16, generator=g)
    hole_map = torch.rand(2, 1, 16, 16, generator=g)
    xs = [t.requires_grad_(True) for t in (feats, fill, hole_map)]
    ms = [random_mask((2, 1, 16, 16), 0.7, g), torch.ones(2, 1, 16, 16), torch.ones(2, 1, 16, 16)]
    w = torch.randn(4, 10, 3, 3, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = partial_conv2d_cat(list(zip(xs, ms)), w, None, padding=1)
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last)
    cat_m = torch.cat([m.expand(-1, x.shape[1], -1, -1) for x, m in zip(xs, ms)], dim=1)
    ref, _ = partial_conv2d(torch.cat([x.detach().float() for x in xs], 1), cat_m, w, None, padding=1)
    torch.testing.assert_close(out.float(), ref, rtol=0.02, atol=0.05)
    out.float().sum().backward()
    for x, m in zip(xs, ms):
        assert x.grad is not None and x.grad.dtype == x.dtype and torch.isfinite(x.grad.float()).all()
        assert torch.all(x.grad.float() * (1 - m) == 0)  # no gradient into hole pixels
    assert hole_map.grad.abs().sum() > 0


def test_cat_of_parts_rejects_bad_masks_clearly():
    x = torch.randn(1, 4, 8, 8)
    with pytest.raises(PConvError, match="each part's mask"):
        partial_conv2d_cat([(x, torch.ones(1, 2, 8, 8))], torch.randn(3, 4, 3, 3))
    with pytest.raises(PConvError, match="at least one"):
        partial_conv2d_cat([], torch.randn(3, 4, 3, 3))
    with pytest.raises(PConvError, match="weight expects"):
        partial_conv2d_cat([(x, torch.ones(1, 1, 8, 8))], torch.randn(3, 5, 3, 3))


@pytest.mark.parametrize("hole", [0, 4, 9, 12])
def test_channels_last_with_bias_matches_reference_for_any_share_of_empty_windows(hole):
    """With a bias, pixels whose window holds no valid input must be 0, not b. channels_last
    zeroes them row by row when they are few and in one pass when they are many: both ways
    (and none at all) equal the reference."""
    torch.manual_seed(21)
    layer = PartialConv2d(5, 7, 3, padding=1).to(memory_format=torch.channels_last)
    with torch.no_grad():
        layer.bias.uniform_(0.5, 1.0)
    x = torch.randn(2, 5, 16, 16)
    mask = torch.ones(2, 5, 16, 16)
    mask[:, :, :hole, :hole] = 0
    out, new_mask = layer(x.contiguous(memory_format=torch.channels_last), mask)
    ref, ref_mask = reference_pconv(x, mask, layer.weight, layer.bias, 1, 1, 1)
    assert torch.equal(new_mask.double(), ref_mask)
    empty_share = float((ref_mask == 0).double().mean())
    assert empty_share == pytest.approx(max(hole - 1, 0) ** 2 / 256)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)

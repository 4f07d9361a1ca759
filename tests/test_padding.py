"""partial_padding: the converted convolutions against a reference written here.

Reference: the original (zero-padded) convolution without its bias, multiplied at each output
position by (kernel volume)/(number of the window's taps inside the input), counted with explicit
loops over the window, plus the bias (0 instead where no tap is inside).
"""
from __future__ import annotations

import copy
import itertools
import re
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pconv import PartialConv2d, partial_padding
from pconv.errors import PConvError
from pconv.padding import PartialPaddingConv2d, PartialPaddingConv3d

ROOT = Path(__file__).resolve().parents[1]


def pads_of(conv):
    """(before, after) per dimension, written from PyTorch's documented rule for "same"."""
    if conv.padding == "same":
        out = []
        for k, d in zip(conv.kernel_size, conv.dilation):
            total = d * (k - 1)
            out.append((total // 2, total - total // 2))
        return out
    return [(p, p) for p in conv.padding]


def loop_ratio(size, conv):
    """(ratio, inside) over the output grid, by counting each window's in-image taps."""
    pads = pads_of(conv)
    k, s, d = conv.kernel_size, conv.stride, conv.dilation
    out = [(size[i] + sum(pads[i]) - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(len(size))]
    ratio = torch.zeros(out, dtype=torch.float64)
    inside = torch.zeros(out, dtype=torch.float64)
    volume = 1
    for kk in k:
        volume *= kk
    for pos in itertools.product(*(range(o) for o in out)):
        count = sum(all(0 <= pos[i] * s[i] - pads[i][0] + tap[i] * d[i] < size[i] for i in range(len(size)))
                    for tap in itertools.product(*(range(kk) for kk in k)))
        if count:
            ratio[pos], inside[pos] = volume / count, 1
    return ratio, inside


def reference(conv, x):
    """The formula, from the unconverted conv's zero-padded output."""
    fn = F.conv2d if x.dim() == 4 else F.conv3d
    raw = fn(x.double(), conv.weight.double(), None, conv.stride, conv.padding, conv.dilation, conv.groups)
    ratio, inside = loop_ratio(x.shape[2:], conv)
    out = raw * ratio
    if conv.bias is not None:
        out = out + conv.bias.double().view(1, -1, *([1] * (x.dim() - 2))) * inside
    return out


CASES_2D = [  # kernel, stride, padding, dilation, groups
    (3, 1, 1, 1, 1),
    (3, 2, 1, 1, 2),
    (4, 1, 2, 1, 1),        # even kernel, symmetric padding
    (4, 1, "same", 1, 1),   # even kernel, asymmetric padding
    (5, 2, 2, 1, 4),        # depthwise-style groups
    (3, 1, 2, 2, 1),        # dilation
    ((3, 5), (2, 1), (1, 2), (1, 2), 2),
    (3, 1, 3, 1, 1),        # padding past the kernel: windows wholly outside
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's note on its own copy
@pytest.mark.parametrize("case", CASES_2D)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_follows_the_formula(case, bias):
    kernel, stride, padding, dilation, groups = case
    torch.manual_seed(7)
    conv = nn.Conv2d(4, 8, kernel, stride, padding, dilation, groups, bias=bias)
    if bias:
        nn.init.normal_(conv.bias)
    x = torch.randn(2, 4, 9, 13)
    converted = partial_padding(conv)
    out = converted(x)
    torch.testing.assert_close(out.double(), reference(conv, x), rtol=1e-5, atol=1e-5)
    # Away from the border (ratio 1): the original's output, bit for bit up to float rounding.
    ratio, _ = loop_ratio(x.shape[2:], conv)
    interior = ratio == 1
    assert interior.any() and (~interior).any()
    torch.testing.assert_close(out[..., interior], conv(x)[..., interior])
    assert not torch.allclose(out[..., ~interior], conv(x)[..., ~interior])


def test_gradients_follow_the_formula():
    torch.manual_seed(6)
    conv = nn.Conv2d(3, 4, 3, 2, 1, bias=True).double()
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64, requires_grad=True)
    converted = partial_padding(conv)
    got = torch.autograd.grad(converted(x).square().sum(), (x, converted.weight, converted.bias))
    want = torch.autograd.grad(reference(conv, x).square().sum(), (x, conv.weight, conv.bias))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_conv2d_equals_partial_conv2d_without_mask():
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 5, 3, 2, 1)
    layer = PartialConv2d(3, 5, 3, 2, 1)
    layer.load_state_dict(conv.state_dict())
    x = torch.randn(2, 3, 10, 11)
    torch.testing.assert_close(partial_padding(conv)(x), layer(x)[0])


CASES_3D = [
    (3, 1, 1, 1, 1),
    (2, 1, 1, 1, 2),            # even kernel
    ((3, 2, 3), (2, 1, 1), (1, 1, 2), (1, 1, 2), 1),
]


@pytest.mark.parametrize("case", CASES_3D)
@pytest.mark.parametrize("bias", [True, False])
def test_conv3d_follows_the_formula(case, bias):
    kernel, stride, padding, dilation, groups = case
    torch.manual_seed(8)
    conv = nn.Conv3d(2, 4, kernel, stride, padding, dilation, groups, bias=bias)
    x = torch.randn(1, 2, 5, 4, 6)
    converted = partial_padding(conv)
    assert isinstance(converted, PartialPaddingConv3d)
    out = converted(x)
    torch.testing.assert_close(out.double(), reference(conv, x), rtol=1e-5, atol=1e-5)
    ratio, _ = loop_ratio(x.shape[2:], conv)
    torch.testing.assert_close(out[..., ratio == 1], conv(x)[..., ratio == 1])


def small_net():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"),   # not zero padding: left alone
        nn.Conv2d(8, 8, 1),                                       # no padding: nothing to do
        nn.Sequential(nn.Conv2d(8, 4, 3, stride=2, padding=1, bias=False)),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2),
    )


def test_conversion_keeps_weights_buffers_and_keys():
    torch.manual_seed(2)
    net = small_net().eval()
    net[1].running_mean.normal_()
    converted = partial_padding(net)
    assert [type(m) for m in net.modules()].count(PartialPaddingConv2d) == 0  # the original is untouched
    kinds = [type(m).__name__ for m in converted.modules() if isinstance(m, nn.Conv2d)]
    assert kinds == ["PartialPaddingConv2d", "Conv2d", "Conv2d", "PartialPaddingConv2d"]
    assert list(converted.state_dict()) == list(net.state_dict())
    for (k, a), b in zip(net.state_dict().items(), converted.state_dict().values()):
        assert torch.equal(a, b), k
        assert a.data_ptr() != b.data_ptr()  # a copy, not shared
    # Round trip: weights saved from either load strictly into the other.
    fresh = partial_padding(small_net())
    fresh.load_state_dict(net.state_dict())
    back = small_net()
    back.load_state_dict(converted.state_dict())
    x = torch.randn(2, 3, 12, 12)
    torch.testing.assert_close(fresh.eval()(x), converted(x))
    torch.testing.assert_close(back.eval()(x), net(x))


def test_inplace_converts_the_module_itself():
    net = small_net()
    assert partial_padding(net, inplace=True) is net
    assert isinstance(net[0], PartialPaddingConv2d) and isinstance(net[0], nn.Conv2d)
    with pytest.raises(PConvError, match="nn.Module"):
        partial_padding(torch.zeros(3))


def test_ratio_is_cached_per_shape_and_copies_start_empty():
    conv = partial_padding(nn.Conv2d(2, 2, 3, padding=1))
    conv(torch.randn(1, 2, 8, 8))
    conv(torch.randn(3, 2, 8, 8))         # the batch does not matter
    assert len(conv._ratio_cache) == 1
    conv(torch.randn(1, 2, 8, 10))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        conv(torch.randn(1, 2, 8, 8))
    assert len(conv._ratio_cache) == 3    # (shape, device, dtype)
    assert copy.deepcopy(conv)._ratio_cache == {}


def test_bf16_autocast_and_channels_last():
    torch.manual_seed(3)
    net = partial_padding(small_net()).eval()
    x = torch.randn(2, 3, 16, 16)
    full = net(x)
    cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
    torch.testing.assert_close(cl(x.contiguous(memory_format=torch.channels_last)), full, rtol=1e-5, atol=1e-5)
    conv = net[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = conv(x)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), conv(x), rtol=3e-2, atol=3e-2)


def test_torch_compile_without_graph_breaks():
    torch.manual_seed(4)
    net = partial_padding(small_net()).eval()
    x = torch.randn(2, 3, 12, 12)
    compiled = torch.compile(net, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), net(x))


def test_onnx_export_follows_the_input_size():
    import onnxruntime as ort  # the [export] extra, installed by make test
    import io

    torch.manual_seed(5)
    net = partial_padding(small_net()).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.randn(1, 3, 12, 12), buf, input_names=["x"], output_names=["y"], dynamo=False,
                          dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}})
    runtime = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 12, 12), (2, 3, 9, 14)]:
        x = torch.randn(shape)
        y = runtime.run(["y"], {"x": x.numpy()})[0]
        torch.testing.assert_close(torch.from_numpy(y), net(x), rtol=1e-4, atol=1e-5)


def test_readme_example_runs():
    """The README's example under "Partial convolution as padding", as written."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Partial convolution as padding", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "README has no python block under 'Partial convolution as padding'"
    exec(compile(code.group(1), "README.md", "exec"), {})

"""The opt-in fused CPU kernels (pconv.fused): each kernel against the PyTorch ops it replaces, the layer
with them against the layer without them and against the naive reference, and the errors where they
cannot run. The kernels compile once per machine (tens of seconds, then torch's extension cache)."""
from __future__ import annotations

import os
import platform

import pytest
import torch

import pconv.fused as fused
from pconv import PConvError, PartialConv2d, fused_cpu_kernels_unavailable, use_fused_cpu_kernels
from test_layers import reference_pconv

REASON = fused_cpu_kernels_unavailable()
#: The kernels need an x86-64 CPU with AVX-512 BF16 (hardware), g++ and ninja (software: the dev extra
#: declares ninja). CI runs their tests wherever the CPU allows; missing software there is a failure.
CPU_CAPABLE = (platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64")
               and all(flag in fused._cpu_flags() for flag in fused._CPU_FLAGS))
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
CL = torch.channels_last


@pytest.fixture
def kernels():
    """The compiled kernels, switched on for the test and off again after it. Where they cannot run,
    the test is skipped with the reason, or fails under CI when only software is missing."""
    if REASON is not None:
        if IN_CI and CPU_CAPABLE:
            pytest.fail(f"CI must test the fused CPU kernels on this CPU, but {REASON}; the dev extra "
                        "(pip install -e '.[dev]') brings ninja", pytrace=False)
        pytest.skip(f"fused CPU kernels cannot run here: {REASON}")
    previous = use_fused_cpu_kernels(True)
    yield fused.active()
    use_fused_cpu_kernels(previous)


def rows(c: int, p: int = 4500, seed: int = 0):  # 4500 pixels: three of scale_grad's 2048-row chunks
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(p, c, generator=gen) * 3
    m = (torch.rand(p, c, generator=gen) > 0.4).float()
    return x, m


@pytest.mark.parametrize("c", [16, 40, 7, 128])  # whole vectors, a tail, only a tail
def test_kernels_equal_the_ops_they_replace(kernels, c):
    x, m = rows(c)
    for bf16 in (False, True):
        masked, count = kernels.mask_count(x, m, bf16)
        expected = x * m
        assert torch.equal(masked, expected.bfloat16() if bf16 else expected)  # bf16: same rounding
        assert torch.equal(count, m.sum(1))
    for g in (x, x.bfloat16()):
        assert torch.equal(kernels.mask_grad(g, m), g.float() * m)
        scale = torch.rand(x.shape[0]) * 3
        weight = (torch.rand(x.shape[0]) > 0.2).float()
        scaled, bias_grad = kernels.scale_grad(g, scale, weight)
        assert scaled.dtype == g.dtype and torch.equal(scaled, (g.float() * scale[:, None]).to(g.dtype))
        terms = g.double() * weight.double()[:, None]  # float32 sums: within float32 rounding of the exact
        assert ((bias_grad.double() - terms.sum(0)).abs() <= 1e-6 * terms.abs().sum(0) + 1e-9).all()


@pytest.mark.parametrize("p", [64, 37, 1030])  # whole vectors, a tail, more than one pixel block
def test_planes_kernels_equal_the_ops_they_replace(kernels, p):
    gen = torch.Generator().manual_seed(p)
    x = torch.randn(2, 5, p, generator=gen) * 3
    m = (torch.rand(2, 5, p, generator=gen) > 0.4).float()
    for bf16 in (False, True):
        masked, count = kernels.mask_count_planes(x, m, bf16)
        expected = x * m
        assert torch.equal(masked, expected.bfloat16() if bf16 else expected)
        assert torch.equal(count, m.sum(1))
    for g in (x, x.bfloat16()):
        scale = torch.rand(2, p, generator=gen) * 3
        weight = (torch.rand(2, p, generator=gen) > 0.2).float()
        scaled, bias_grad = kernels.scale_grad_planes(g, scale, weight)
        assert scaled.dtype == g.dtype and torch.equal(scaled, (g.float() * scale[:, None]).to(g.dtype))
        torch.testing.assert_close(bias_grad, (g.float() * weight[:, None]).sum((0, 2)), rtol=1e-5, atol=1e-4)


def test_kernels_reject_wrong_shapes(kernels):
    x, m = rows(16)
    with pytest.raises(RuntimeError, match="one shape"):
        kernels.mask_count(x, m[:, :8].contiguous(), False)
    with pytest.raises(RuntimeError, match="one value per row"):
        kernels.scale_grad(x, torch.ones(5), torch.ones(x.shape[0]))
    with pytest.raises(RuntimeError, match="one value per pixel"):
        kernels.scale_grad_planes(x[None], torch.ones(5), torch.ones(5))
    with pytest.raises(RuntimeError, match="contiguous"):
        kernels.mask_grad(x.t(), m.t())


def layer_step(layer, x0, mask, grad, autocast):
    layer.zero_grad(set_to_none=True)
    x = x0.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out, new_mask = layer(x, mask)
    out.backward(grad.to(out.dtype))
    bias_grad = layer.bias.grad if layer.bias is not None else None
    return out, new_mask, x.grad, layer.weight.grad, bias_grad


@pytest.mark.parametrize("fmt", [CL, torch.contiguous_format], ids=["channels_last", "NCHW"])
@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize("cin,cout,stride,bias", [(32, 24, 1, True), (20, 8, 2, True), (16, 16, 1, False)])
def test_layer_with_kernels_equals_layer_without(kernels, fmt, autocast, cin, cout, stride, bias):
    gen = torch.Generator().manual_seed(cin + stride)
    layer = PartialConv2d(cin, cout, 3, stride=stride, padding=1, bias=bias).to(memory_format=fmt)
    x = torch.randn(2, cin, 19, 21, generator=gen).contiguous(memory_format=fmt)
    mask = (torch.rand(2, cin, 19, 21, generator=gen) > 0.3).float()
    mask[:, :, 4:12, 5:15] = 0  # a hole wider than the kernel: some outputs have no valid input
    mask = mask.contiguous(memory_format=fmt)
    h, w = (19 - 1) // stride + 1, (21 - 1) // stride + 1
    grad = torch.randn(2, cout, h, w, generator=gen).contiguous(memory_format=fmt)

    suffix = "" if fmt == CL else "_planes"
    names = ("mask_count" + suffix, "mask_grad", "scale_grad" + suffix)
    originals = {name: getattr(kernels, name) for name in names}
    calls = dict.fromkeys(originals, 0)

    def spy(name):  # count the kernel calls: the fused path ran
        def call(*args):
            calls[name] += 1
            return originals[name](*args)
        return call

    for name in originals:
        setattr(kernels, name, spy(name))
    try:
        with_kernels = layer_step(layer, x, mask, grad, autocast)
    finally:
        for name, fn in originals.items():
            setattr(kernels, name, fn)
    assert calls == {names[0]: 1, names[1]: 1, names[2]: int(bias)}
    use_fused_cpu_kernels(False)
    without = layer_step(layer, x, mask, grad, autocast)

    for a, b in zip(with_kernels[:4], without[:4]):
        assert a.dtype == b.dtype and torch.equal(a, b)
    if bias:  # summed in another order: compare both with the exact sum of grad · m'
        grad_in = grad.to(with_kernels[0].dtype)  # what backward() received
        exact = (grad_in.double() * with_kernels[1].double()).sum((0, 2, 3))
        if autocast:  # the bias gradient is bf16: within one bf16 step (2**-7 relative) of the exact sum
            exact = exact.to(torch.bfloat16).double()
        tol = dict(rtol=2**-7, atol=1e-3) if autocast else dict(rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(with_kernels[4].double(), exact, **tol)
        if autocast:  # the PyTorch path rounds each image's sum to bf16 before adding them up (NCHW)
            per_image = (grad_in.double() * with_kernels[1].double()).sum((2, 3)).abs().sum(0)
            assert ((without[4].double() - exact).abs() <= (per_image + exact.abs()) * 2**-8 + 1e-6).all()
        else:
            torch.testing.assert_close(without[4].double(), exact, rtol=3e-5, atol=3e-4)
    if not autocast:
        ref, ref_mask = reference_pconv(x, mask, layer.weight, layer.bias, stride, 1, 1)
        torch.testing.assert_close(with_kernels[0].double(), ref, rtol=1e-5, atol=1e-5)
        assert torch.equal(with_kernels[1].expand_as(ref_mask).double(), ref_mask)


def test_layer_falls_back_where_the_kernels_do_not_apply(kernels):
    """Input and mask in different layouts, a one-channel mask, a float64 input: the PyTorch path, same
    result, no kernel call."""
    x = torch.randn(1, 16, 9, 9)
    cases = [(x, (torch.rand(1, 16, 9, 9) > 0.3).float().contiguous(memory_format=CL)),
             (x.contiguous(memory_format=CL), (torch.rand(1, 1, 9, 9) > 0.3).float()),
             (x.double().contiguous(memory_format=CL),
              (torch.rand(1, 16, 9, 9) > 0.3).double().contiguous(memory_format=CL))]
    originals = {name: getattr(kernels, name) for name in ("mask_count", "mask_count_planes")}

    def fail(*args):
        raise AssertionError("the fused masking ran on an input it does not take")

    for xi, mi in cases:
        layer = PartialConv2d(16, 8, 3, padding=1).to(xi.dtype)
        for name in originals:
            setattr(kernels, name, fail)
        try:
            with torch.no_grad():
                on = layer(xi, mi)[0]
        finally:
            for name, fn in originals.items():
                setattr(kernels, name, fn)
        use_fused_cpu_kernels(False)
        with torch.no_grad():
            off = layer(xi, mi)[0]
        use_fused_cpu_kernels(True)
        assert torch.equal(on, off)


def test_enabling_where_they_cannot_run_names_the_reason(monkeypatch):
    monkeypatch.setattr(fused, "_module", None)
    monkeypatch.setattr(fused, "fused_cpu_kernels_unavailable", lambda: "this CPU lacks avx512_bf16 (...)")
    with pytest.raises(PConvError, match="cannot run here: this CPU lacks avx512_bf16.*default PyTorch kernels"):
        use_fused_cpu_kernels(True)
    assert fused.active() is None  # still off: the layer keeps working
    assert use_fused_cpu_kernels(False) is False


def test_a_failed_compile_is_a_clear_error(monkeypatch):
    import torch.utils.cpp_extension as ext

    def broken(*args, **kwargs):
        raise RuntimeError("Error building extension 'pconv_fused_cpu'\ng++: fatal error: killed")

    monkeypatch.setattr(fused, "_module", None)
    monkeypatch.setattr(fused, "fused_cpu_kernels_unavailable", lambda: None)
    monkeypatch.setattr(ext, "load", broken)
    with pytest.raises(PConvError, match="could not compile .*g\\+\\+: fatal error: killed"):
        use_fused_cpu_kernels(True)
    assert fused.active() is None


def test_switch_returns_the_previous_setting(monkeypatch):
    monkeypatch.setattr(fused, "_load", lambda: None)  # no compile needed to test the switch
    monkeypatch.setattr(fused, "_enabled", False)
    assert use_fused_cpu_kernels(True) is False
    assert use_fused_cpu_kernels(True) is True
    assert use_fused_cpu_kernels(False) is True
    assert use_fused_cpu_kernels(False) is False


def test_the_forward_pass_setting_decides_the_backward(kernels):
    """Switching the kernels off between forward and backward (or on) does not mix the two paths."""
    layer = PartialConv2d(16, 8, 3, padding=1).to(memory_format=CL)
    x = torch.randn(1, 16, 9, 9).contiguous(memory_format=CL).requires_grad_(True)
    mask = (torch.rand(1, 16, 9, 9) > 0.3).float().contiguous(memory_format=CL)
    original, calls = kernels.scale_grad, []

    def spy(*args):
        calls.append(1)
        return original(*args)

    kernels.scale_grad = spy
    try:
        out = layer(x, mask)[0]  # on
        use_fused_cpu_kernels(False)
        out.backward(torch.randn_like(out))  # channels_last, like out
        assert len(calls) == 1
        out = layer(x, mask)[0]  # off
        use_fused_cpu_kernels(True)
        out.backward(torch.randn_like(out))
        assert len(calls) == 1
    finally:
        kernels.scale_grad = original

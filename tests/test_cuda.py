"""CUDA against CPU: the layer, U-Net, loss, smooth fill and inference give the CPU's results on a GPU.

Marked ``cuda`` (``pytest -m cuda``; benchmarks/accelerator_check.py runs them). Without a CUDA
GPU every test here is skipped with the reason shown in pytest's summary.

Tolerances: fp32 comparisons run with TF32 off (cuDNN and cuBLAS in full fp32), so CPU and GPU
differ only by the order of float32 additions: 1e-4 relative on layer outputs and gradients,
2e-4 absolute on the U-Net's [0, 1] output after 14 layers, exact on masks. Inference compares the
uint8 photos: at most 2 levels (rounding of values that land near a half level), and bf16 on the
GPU against fp32 on the CPU within the bound the CPU's own bf16 test uses (8 levels).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="no CUDA GPU: the CUDA-against-CPU tests need one (benchmarks/accelerator_check.py)"),
]

CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def full_fp32():
    """TF32 off for the test (it rounds fp32 convolutions to 10-bit mantissas on Ampere and later)."""
    conv, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, matmul


def _holes(b: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(b, c, h, w, generator=g) > 0.2).float()
    mask[:, :, h // 4: h // 2, w // 3: w // 2 + 3] = 0  # a large hole as well as specks
    return mask


def _grads(module: torch.nn.Module, *inputs: torch.Tensor):
    return [p.grad for p in module.parameters() if p.grad is not None] + [t.grad for t in inputs]


@pytest.mark.parametrize("mask_channels", [1, 16])
def test_partial_conv_layer(mask_channels):
    from pconv.layers import PartialConv2d

    torch.manual_seed(0)
    cpu = PartialConv2d(16, 24, 3, stride=2, padding=1)
    gpu = PartialConv2d(16, 24, 3, stride=2, padding=1).to(CUDA)
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(2, 16, 40, 36, requires_grad=True)
    xg = x.detach().to(CUDA).requires_grad_(True)
    mask = _holes(2, mask_channels, 40, 36)
    out, new_mask = cpu(x, mask)
    out_g, new_mask_g = gpu(xg, mask.to(CUDA))
    assert torch.equal(new_mask_g.cpu(), new_mask)
    torch.testing.assert_close(out_g.cpu(), out, rtol=1e-4, atol=1e-5)
    grad = torch.randn_like(out)
    out.backward(grad)
    out_g.backward(grad.to(CUDA))
    for a, b in zip(_grads(gpu, xg), _grads(cpu, x)):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("config", ["paper", "cpu-fill-bh"])
def test_unet_forward_and_backward(config):
    from pconv.model import build_model

    torch.manual_seed(0)
    cpu = build_model(config).train()
    for p in cpu.parameters():  # fill_residual starts its last layer at zero: give every layer weights
        if p.dim() > 1 and float(p.abs().max()) == 0:
            torch.nn.init.normal_(p, std=0.02)
    gpu = build_model(config).to(CUDA).train()
    gpu.load_state_dict(cpu.state_dict())
    size = 2 * cpu.config.multiple  # bottleneck 2×2: BatchNorm sees more than two values a channel
    g = torch.Generator().manual_seed(1)
    image = torch.rand(2, 3, size, size, generator=g)
    mask = _holes(2, 1, size, size)
    out = cpu(image, mask)
    out_g = gpu(image.to(CUDA), mask.to(CUDA))
    torch.testing.assert_close(out_g.cpu(), out, rtol=0, atol=2e-4)
    out.square().mean().backward()
    out_g.square().mean().backward()
    for (name, a), b in zip(gpu.named_parameters(), cpu.parameters()):
        torch.testing.assert_close(a.grad.cpu(), b.grad, rtol=1e-3, atol=1e-5, msg=name)
    for name, buf in gpu.named_buffers():  # BatchNorm running statistics
        torch.testing.assert_close(buf.cpu(), dict(cpu.named_buffers())[name], rtol=1e-4, atol=1e-5, msg=name)
    cpu.eval()
    gpu.eval()
    with torch.no_grad():
        torch.testing.assert_close(gpu(image.to(CUDA), mask.to(CUDA)).cpu(), cpu(image, mask), rtol=0, atol=2e-4)


def test_inpainting_loss():
    from pconv.losses import InpaintingLoss, LossWeights
    from pconv.vgg import VGG16Features

    torch.manual_seed(0)
    vgg = VGG16Features()  # random weights: the same operations as the pretrained network
    weights = LossWeights(ssim=0.5, hole_mse=2.0, psnr=0.01)  # every term
    cpu = InpaintingLoss(weights, vgg=vgg, precision="fp32")
    gpu = InpaintingLoss(weights, vgg=VGG16Features(), precision="fp32").to(CUDA)
    gpu.vgg.load_state_dict(vgg.state_dict())
    g = torch.Generator().manual_seed(2)
    gt = torch.rand(2, 3, 64, 64, generator=g)
    out = torch.rand(2, 3, 64, 64, generator=g).requires_grad_(True)
    out_g = out.detach().to(CUDA).requires_grad_(True)
    mask = _holes(2, 1, 64, 64)
    total, terms = cpu(out, gt, mask)
    total_g, terms_g = gpu(out_g, gt.to(CUDA), mask.to(CUDA))
    assert terms.keys() == terms_g.keys()
    for k in terms:
        torch.testing.assert_close(terms_g[k].cpu(), terms[k], rtol=1e-4, atol=1e-6, msg=k)
    total.backward()
    total_g.backward()
    torch.testing.assert_close(out_g.grad.cpu(), out.grad, rtol=1e-3, atol=1e-7)


@pytest.mark.parametrize("biharmonic", [False, True])
@pytest.mark.parametrize("mask_channels", [1, 3])
def test_smooth_fill(biharmonic, mask_channels):
    """The CPU fills with sparse products, the GPU with the dense stencil: the same result."""
    from pconv.fill import pull_push_fill

    g = torch.Generator().manual_seed(3)
    image = torch.rand(2, 3, 96, 80, generator=g) * 2 - 1
    mask = _holes(2, mask_channels, 96, 80)
    ref = pull_push_fill(image, mask, levels=5, biharmonic=biharmonic)
    out = pull_push_fill(image.to(CUDA), mask.to(CUDA), levels=5, biharmonic=biharmonic)
    torch.testing.assert_close(out.cpu(), ref, rtol=0, atol=1e-5)


def _photo(h: int, w: int) -> tuple:
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (w + h)], -1)
    rgb = np.clip(rgb + rng.integers(-20, 21, rgb.shape), 0, 255).astype(np.uint8)
    hole = np.zeros((h, w), bool)
    hole[h // 3: h // 3 + 60, w // 4: w // 4 + 90] = True
    hole[10:14, :] = True  # a thin scratch
    return rgb, hole


@pytest.mark.parametrize("size", [(300, 420), (900, 1300)])  # original strategy, then crops
def test_inference(size):
    from pconv.inference import Inpainter

    rgb, hole = _photo(*size)
    ref = Inpainter(method="pconv", device="cpu", precision="fp32").inpaint(rgb, hole)
    out = Inpainter(method="pconv", device="cuda", precision="fp32").inpaint(rgb, hole)
    assert out.strategy == ref.strategy
    diff = np.abs(out.image.astype(int) - ref.image.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.01, (diff.max(), diff.mean())
    np.testing.assert_array_equal(out.image[~hole], rgb[~hole])
    bf16 = Inpainter(method="pconv", device="cuda", precision="bf16").inpaint(rgb, hole)
    assert np.abs(bf16.image.astype(int) - ref.image.astype(int)).max() <= 8

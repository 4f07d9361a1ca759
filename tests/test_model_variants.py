"""The U-Net's layer variants: the paper's "Conv" baseline (ordinary convolutions over a placeholder),
its mask-channel form, and partial convolutions with zero padding at the border."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pconv.config import TrainConfig
from pconv.errors import PConvError
from pconv.model import CONFIGS, IMAGENET_MEAN, VARIANTS, PConvBlock, PConvUNet, PConvUNetConfig
from pconv.train import train
from pconv.weights import load_model, save_weights

SMALL = PConvUNetConfig(channels=(6, 8, 8), kernels=(5, 3, 3), image_size=32)  # multiple of 8


def seeded(config: PConvUNetConfig, seed: int = 0) -> PConvUNet:
    torch.manual_seed(seed)
    model = PConvUNet(config)
    with torch.no_grad():  # BN that is not the identity in eval mode
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    return model.eval()


def holes(b: int, h: int, w: int, seed: int = 0, border: bool = False) -> torch.Tensor:
    """(B, 1, H, W) mask, 1 = valid: a block hole inside the image (and one on the border)."""
    mask = torch.ones(b, 1, h, w)
    mask[:, :, h // 3:h // 2, w // 4:w // 2] = 0
    if border:
        mask[:, :, : h // 5, : w // 6] = 0
    g = torch.Generator().manual_seed(seed)
    mask[torch.rand(b, 1, h, w, generator=g) < 0.05] = 0
    return mask


def reference_unet(model: PConvUNet, x: torch.Tensor) -> torch.Tensor:
    """A plain U-Net of ordinary zero-padded convolutions with ``model``'s weights, written out here:
    encoder convs of stride 2 (BN but on the first, ReLU), nearest upsampling, concatenation with the
    skip, 3×3 conv, BN and LeakyReLU(0.2) but on the last layer; input and output in [-1, 1]."""
    def conv(block, t):
        c = block.conv
        t = F.conv2d(t, c.weight, c.bias, c.stride, c.padding)
        if block.bn is not None:
            bn = block.bn
            t = (t - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(bn.running_var.view(1, -1, 1, 1) + bn.eps) \
                * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
        return t

    feats = [x]
    for block in model.encoder:
        feats.append(torch.relu(conv(block, feats[-1])))
    h = feats.pop()
    for i, block in enumerate(model.decoder):
        h = torch.cat([F.interpolate(h, scale_factor=2, mode="nearest"), feats.pop()], 1)
        h = conv(block, h)
        if i < len(model.decoder) - 1:
            h = F.leaky_relu(h, 0.2)
    return h


# ------------------------------------------------------------------- the Conv baseline


def test_conv_baseline_equals_a_plain_unet_on_the_placeholder_filled_image():
    model = seeded(replace(SMALL, variant="conv"))
    image, mask = torch.rand(2, 3, 32, 32), holes(2, 32, 32, border=True)
    fill = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    filled = torch.where(mask > 0.5, image, fill)
    with torch.no_grad():
        out = model(image, mask)
        ref = reference_unet(model, filled * 2 - 1) * 0.5 + 0.5
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_conv_baseline_sees_holes_only_through_the_placeholder():
    model = seeded(replace(SMALL, variant="conv"))
    image, mask = torch.rand(2, 3, 32, 32), holes(2, 32, 32)
    hole = (mask == 0).expand(-1, 3, -1, -1)
    with torch.no_grad():
        ref = model(image, mask)
        for other in (torch.zeros_like(image), torch.rand_like(image), torch.full_like(image, 1e6)):
            assert torch.equal(model(torch.where(hole, other, image), mask), ref)
        # The mask tells it nothing else: the placeholder-filled image with no hole at all is the same.
        filled = torch.where(hole, torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).expand_as(image), image)
        torch.testing.assert_close(model(filled, torch.ones_like(mask)), ref, atol=1e-6, rtol=1e-6)
        # ... and the placeholder does matter.
        grey = seeded(replace(SMALL, variant="conv", hole_fill=(0.5, 0.5, 0.5)))
        assert (grey(image, mask) - ref).abs().max() > 1e-3
    # A partial-convolution network is not fooled: filled image and no hole differ from the holed image.
    pconv = seeded(SMALL)
    with torch.no_grad():
        assert (pconv(filled, torch.ones_like(mask)) - pconv(image, mask)).abs().max() > 1e-3


def test_conv_mask_takes_the_mask_as_an_input_channel():
    config = replace(SMALL, variant="conv-mask")
    model = seeded(config)
    assert model.encoder[0].conv.weight.shape[1] == 4 and model.decoder[-1].conv.weight.shape[1] == 6 + 4
    image, mask = torch.rand(2, 3, 32, 32), holes(2, 32, 32)
    hole = (mask == 0).expand(-1, 3, -1, -1)
    fill = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).expand_as(image)
    filled = torch.where(hole, fill, image)
    with torch.no_grad():
        out = model(image, mask)
        assert torch.equal(model(torch.where(hole, torch.rand_like(image), image), mask), out)
        # Unlike "conv", the mask itself is seen: the same pixels with no hole give another output.
        assert (model(filled, torch.ones_like(mask)) - out).abs().max() > 1e-4
        x = torch.cat([filled * 2 - 1, mask], 1)
        torch.testing.assert_close(out, reference_unet(model, x) * 0.5 + 0.5, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------- zero padding vs partial padding


@pytest.mark.parametrize("kernel,stride", [(3, 1), (5, 2), (7, 2)])
def test_zero_padding_block_equals_partial_padding_away_from_the_border(kernel, stride):
    torch.manual_seed(kernel)
    partial = PConvBlock(4, 5, kernel, stride, bn=False, act=None, layer="partial")
    zeros = PConvBlock(4, 5, kernel, stride, bn=False, act=None, layer="zeros")
    zeros.load_state_dict(partial.state_dict())
    x = torch.randn(2, 4, 24, 24)
    mask = torch.ones(2, 1, 24, 24)
    mask[:, :, 9:14, 8:15] = 0
    out_p, m_p = partial(x, mask)
    out_z, m_z = zeros(x, mask)
    # Output pixels whose window lies inside the image: the same. The rest differ.
    r = kernel // 2
    lo, hi = -(-r // stride), (24 + r - kernel) // stride + 1  # first / one past the last inner output
    inner = (slice(None), slice(None), slice(lo, hi), slice(lo, hi))
    torch.testing.assert_close(out_z[inner], out_p[inner], atol=1e-5, rtol=1e-5)
    assert torch.equal(m_z[inner], m_p[inner])
    ring = torch.ones_like(out_p, dtype=torch.bool)
    ring[inner] = False
    assert (out_z - out_p)[ring].abs().max() > 1e-2
    # Zero padding: the border window is W·x over the inside pixels, unscaled by the share inside.
    ref = F.conv2d(x * mask, partial.conv.weight, partial.conv.bias, stride, r)
    corner = (slice(None), slice(None), 0, 0)
    torch.testing.assert_close(out_z[corner], ref[corner], atol=1e-5, rtol=1e-5)
    ones = F.conv2d(mask, torch.ones(1, 1, kernel, kernel), None, stride, r)
    valid = 4 * ones[corner]
    torch.testing.assert_close(out_p[corner], (ref[corner] - partial.conv.bias.view(1, -1)) * (4 * kernel * kernel)
                               / valid + partial.conv.bias.view(1, -1), atol=1e-4, rtol=1e-4)


def test_zero_padding_unet_differs_from_partial_padding_only_near_the_border():
    config = PConvUNetConfig(channels=(4, 6), kernels=(3, 3), image_size=64)
    partial, zeros = seeded(config), seeded(replace(config, variant="pconv-zeros"))
    zeros.load_state_dict(partial.state_dict())
    image, mask = torch.rand(1, 3, 64, 64), torch.ones(1, 1, 64, 64)
    mask[:, :, 28:36, 26:38] = 0
    with torch.no_grad():
        diff = (zeros(image, mask) - partial(image, mask)).abs()
        hole = (mask == 0).expand(-1, 3, -1, -1)
        other = torch.where(hole, torch.rand_like(image) * 100, image)
        assert torch.equal(zeros(other, mask), zeros(image, mask))  # still never reads a hole pixel
    assert diff[..., 20:44, 20:44].max() < 1e-5  # the receptive field of the centre stays inside
    assert diff[..., :2, :].max() > 1e-3 and diff[..., :, -2:].max() > 1e-3


# ------------------------------------------------------------------- configuration, files, training


def test_variants_build_train_a_step_and_round_trip_through_files(tmp_path):
    image, mask = torch.rand(2, 3, 32, 32), holes(2, 32, 32, border=True)
    for variant in VARIANTS:
        model = seeded(replace(SMALL, variant=variant)).train()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        loss = (model(image, mask) - image).abs().mean()
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        opt.step()
        assert not torch.equal(before["encoder.0.conv.weight"], model.state_dict()["encoder.0.conv.weight"])
        path = save_weights(model, tmp_path / f"{variant}.safetensors")
        loaded = load_model(path).eval()
        assert loaded.config.variant == variant
        with torch.no_grad():
            assert torch.equal(loaded(image, mask), model.eval()(image, mask))


def test_default_configuration_files_are_unchanged_by_the_variant_fields():
    data = CONFIGS["cpu"].to_dict()
    assert "variant" not in data and "hole_fill" not in data
    assert PConvUNetConfig.from_dict(data) == CONFIGS["cpu"]
    conv = replace(CONFIGS["cpu"], variant="conv", hole_fill=(0.5, 0.4, 0.3))
    assert conv.to_dict()["variant"] == "conv" and conv.to_dict()["hole_fill"] == [0.5, 0.4, 0.3]
    assert PConvUNetConfig.from_dict(json.loads(json.dumps(conv.to_dict()))) == conv


def test_variant_errors_name_the_fix():
    with pytest.raises(PConvError, match="unknown model variant 'gated'.*pconv, pconv-zeros, conv, conv-mask"):
        replace(SMALL, variant="gated")
    with pytest.raises(PConvError, match="paper's architecture only"):
        replace(CONFIGS["cpu-head"], variant="conv")
    with pytest.raises(PConvError, match="hole_fill must hold 3 values in"):
        replace(SMALL, variant="conv", hole_fill=(0.5, 2.0, 0.5))


def _photos(folder: Path, n: int = 6, size: int = 40) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return folder


def test_train_model_variant_field(tmp_path):
    config = TrainConfig(data=str(_photos(tmp_path / "photos")), out=str(tmp_path / "run"),
                         model={"channels": [8, 8], "kernels": [5, 3], "image_size": 32}, model_variant="conv",
                         image_size=32, batch_size=2, val_count=1, steps=2, workers=0, threads=1,
                         w_perceptual=0.0, w_style=0.0, val_every=2, ckpt_every=2, tensorboard=False,
                         precision="fp32")
    exported = train(config, progress=False)
    assert load_model(exported).config.variant == "conv"
    # Resuming keeps the variant (the recorded model configuration holds it).
    again = train(config.replace(steps=3), resume=True, progress=False)
    assert load_model(again).config.variant == "conv"
    with pytest.raises(PConvError, match="unknown model variant"):
        train(config.replace(out=str(tmp_path / "bad"), model_variant="nope"), progress=False)

"""PConvUNet: hole invariance, mask update, robustness, architecture size, BN freezing, weights I/O."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from pconv.errors import PConvError
from pconv.model import CONFIGS, PConvUNet, PConvUNetConfig, build_model
from pconv.weights import load_model, save_weights

TINY = PConvUNetConfig(channels=(8, 16, 16), kernels=(7, 5, 3), image_size=32)  # multiple of 8


def seeded_model(config, seed=0):
    torch.manual_seed(seed)
    model = PConvUNet(config)
    # Random BN statistics/affines so that BN is not the identity in eval mode.
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    return model


def hole_mask(b, c, h, w, seed=0):
    """Random irregular-ish hole: a few rectangles plus salt noise (1 = valid, 0 = hole)."""
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(b, c, h, w, generator=g) > 0.1).float()
    for i in range(b):
        y, x = (torch.randint(0, h // 2, (2,), generator=g)).tolist()
        mask[i, :, y:y + h // 3, x:x + w // 4] = 0
    return mask


# ---------------------------------------------------------------- hole invariance


@pytest.mark.parametrize("name", ["cpu", "cpu-head", "cpu-fill", "cpu-fill-bh"])
@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("mask_channels", [1, 3])
def test_hole_invariance_cpu_config(name, train, mask_channels):
    """Pixels inside the hole have no influence at all on the output (zeros, noise, 1e6)."""
    model = seeded_model(CONFIGS[name]).train(train)
    image = torch.rand(2, 3, 128, 128)
    mask = hole_mask(2, mask_channels, 128, 128, seed=1)
    assert (mask == 0).any()
    hole = (mask == 0).expand(-1, 3, -1, -1)
    fills = [torch.zeros_like(image), torch.randn_like(image) * 10, torch.full_like(image, 1e6)]
    with torch.no_grad():
        ref = model(image, mask)
        assert torch.isfinite(ref).all()
        for fill in fills:
            out = model(torch.where(hole, fill, image), mask)
            assert torch.equal(out, ref)
    # The valid pixels do matter (the test above is not vacuous).
    with torch.no_grad():
        other = model(torch.where(hole, image, torch.rand_like(image)), mask)
    assert not torch.equal(other, ref)


def test_hole_invariance_tiny_config_with_grad():
    model = seeded_model(TINY).train()
    image = torch.rand(2, 3, 32, 32, requires_grad=True)
    mask = hole_mask(2, 3, 32, 32, seed=2)
    out = model(image, mask)
    out.square().sum().backward()
    assert torch.all(image.grad[mask == 0] == 0)
    assert torch.any(image.grad[mask == 1] != 0)


# ---------------------------------------------------------------- mask update


def _collect_masks(model, image, mask):
    """Updated masks of each encoder and decoder block, in forward order."""
    masks = []
    hooks = [blk.register_forward_hook(lambda mod, inp, out: masks.append(out[1].clone()))
             for blk in list(model.encoder) + list(model.decoder)]
    try:
        with torch.no_grad():
            model(image, mask)
    finally:
        for h in hooks:
            h.remove()
    return masks[:model.config.depth], masks[model.config.depth:]


def reference_unet_forward(model, image, mask):
    """The U-Net as the paper draws it: features and masks concatenated (masks expanded to every
    channel) and each partial conv run on the full concatenated mask."""
    from pconv.layers import partial_conv2d

    def block(blk, x, m):
        c = blk.conv
        x, m = partial_conv2d(x, m, c.weight, c.bias, c.stride, c.padding, c.dilation)
        if blk.bn is not None:
            x = blk.bn(x)
        if blk.act is not None:
            x = blk.act(x)
        return x, m

    m = mask.expand(-1, 3, -1, -1)
    x = image * 2 - 1
    skips = [(x, m)]
    h = x
    for blk in model.encoder:
        h, m = block(blk, h, m)
        skips.append((h, m))
    skips.pop()
    # The hole-aware head's extra inputs: the hole map (and the smooth fill) as always-valid channels.
    from pconv.fill import pull_push_fill

    ones = torch.ones_like(mask[:, :1])
    fill = pull_push_fill(image * 2 - 1, mask, levels=model.config.depth) if model.config.fill_residual else None
    hole = [(1 - mask.mean(1, keepdim=True), ones)] if model.head is not None else []
    if fill is not None and hole:
        hole.append((fill, ones))

    def cat(parts):
        return (torch.cat([x for x, _ in parts], dim=1),
                torch.cat([mm.expand(-1, x.shape[1], -1, -1) for x, mm in parts], dim=1))

    for i, blk in enumerate(model.decoder):
        sh, sm = skips.pop()
        h = torch.nn.functional.interpolate(h, scale_factor=2.0, mode="nearest")
        m = torch.nn.functional.interpolate(m, scale_factor=2.0, mode="nearest")
        last = i == len(model.decoder) - 1
        h, m = block(blk, *cat([(h, m), (sh, sm)] + (hole if last else [])))
    if model.head is not None:
        h, m = block(model.head, *cat([(h, m), (x, mask.expand(-1, 3, -1, -1))] + hole))
    if fill is not None:
        h = h + fill
    return h * 0.5 + 0.5


@pytest.mark.parametrize("head_channels,fill", [(0, False), (4, False), (4, True), (0, True)])
@pytest.mark.parametrize("mask_channels", [1, 3])
def test_forward_equals_concatenated_mask_reference(mask_channels, head_channels, fill):
    config = PConvUNetConfig(channels=(8, 16, 16), kernels=(5, 3, 3), head_channels=head_channels,
                             fill_residual=fill, image_size=32)
    model = seeded_model(config).eval()
    if fill:  # leave the zero initialisation of the residual branch: make it do something
        last = model.head if model.head is not None else model.decoder[-1]
        torch.nn.init.normal_(last.conv.weight, std=0.05)
    image = torch.rand(2, 3, 32, 32)
    mask = hole_mask(2, mask_channels, 32, 32, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(model(image, mask), reference_unet_forward(model, image, mask), rtol=1e-5, atol=1e-6)


def test_forward_hooks_see_every_block():
    model = seeded_model(PConvUNetConfig(channels=(8, 16, 16), kernels=(5, 3, 3), image_size=32)).eval()
    enc, dec = _collect_masks(model, torch.rand(1, 3, 32, 32), hole_mask(1, 1, 32, 32))
    assert len(enc) == 3 and len(dec) == 3
    assert [tuple(m.shape[2:]) for m in dec] == [(8, 8), (16, 16), (32, 32)]


def test_small_hole_disappears_from_mask():
    model = PConvUNet(CONFIGS["cpu"]).eval()
    mask = torch.ones(1, 1, 128, 128)
    mask[..., 50:66, 60:76] = 0  # 16×16 hole, far smaller than the receptive field
    enc, dec = _collect_masks(model, torch.rand(1, 3, 128, 128), mask)
    assert (enc[0] == 0).any(), "the first layer (7×7, stride 2) cannot fill a 16×16 hole"
    first_full = next(i for i, m in enumerate(enc) if bool((m == 1).all()))
    assert 0 < first_full < len(enc) - 1
    assert all(bool((m == 1).all()) for m in enc[first_full:])
    # Hole counts never grow along the encoder (in pixels of the input they cover).
    holes = [int((m == 0).sum()) * 4 ** (i + 1) for i, m in enumerate(enc)]
    assert holes == sorted(holes, reverse=True)
    assert all(bool((m == 1).all()) for m in dec)  # the decoder sees a filled mask, output included


def test_updated_mask_matches_windows():
    """First layer: m' is 1 exactly where the 7×7/stride-2 window meets a valid pixel."""
    model = PConvUNet(TINY).eval()
    mask = torch.ones(1, 1, 32, 32)
    mask[..., 4:20, 8:24] = 0
    enc, _ = _collect_masks(model, torch.rand(1, 3, 32, 32), mask)
    # Direct: output (i, j) covers rows 2i-3..2i+3, cols 2j-3..2j+3 (clipped to the image).
    expected = torch.zeros(1, 1, 16, 16)
    for i in range(16):
        for j in range(16):
            r0, r1, c0, c1 = max(2 * i - 3, 0), min(2 * i + 4, 32), max(2 * j - 3, 0), min(2 * j + 4, 32)
            expected[0, 0, i, j] = float(mask[0, 0, r0:r1, c0:c1].any())
    assert torch.equal(enc[0], expected)


# ---------------------------------------------------------------- degenerate input


@pytest.mark.parametrize("train", [True, False])
def test_all_zero_mask_is_finite_forward_and_backward(train):
    model = seeded_model(TINY).train(train)
    image = torch.rand(2, 3, 32, 32, requires_grad=True)
    out = model(image, torch.zeros(2, 1, 32, 32))
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    assert torch.isfinite(image.grad).all()
    for name, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


def test_every_parameter_gets_a_gradient():
    model = seeded_model(TINY).train()
    image, mask = torch.rand(2, 3, 32, 32), hole_mask(2, 1, 32, 32, seed=3)
    (model(image, mask) - image).abs().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


# ---------------------------------------------------------------- architecture


def expected_param_count(channels, kernels, image_channels=3, head_channels=0, fill_residual=False):
    """Count from the paper's description, independently of the model code.

    Encoder level i: k_i×k_i conv from the previous level (the image for i = 0) to channels[i];
    level 0 has a bias and no BN, the others BN (gamma, beta) and no bias.
    Decoder, one level per encoder level, deepest first: 3×3 conv over [upsampled features, skip]
    where the skip is the encoder level above (the image for the last one); output channels =
    the skip's channels; BN except for the last layer, which has a bias instead.
    """
    total = 0
    prev = image_channels
    for i, (c, k) in enumerate(zip(channels, kernels)):
        total += prev * c * k * k + (c if i == 0 else 2 * c)
        prev = c
    up = channels[-1]
    skips = [image_channels] + list(channels[:-1])
    for n, skip in enumerate(reversed(skips)):
        last = n == len(skips) - 1
        if last and head_channels:
            # Hole-aware head: [features, image, hole map (, fill)] -> head_channels (BN), then
            # [head features, image, hole map (, fill)] -> image (bias).
            extra = 1 + (image_channels if fill_residual else 0)
            total += (up + skip + extra) * head_channels * 9 + 2 * head_channels
            total += (head_channels + skip + extra) * skip * 9 + skip
        else:
            total += (up + skip) * skip * 9 + (skip if last else 2 * skip)
        up = skip
    return total


def test_paper_parameter_count():
    model = PConvUNet(CONFIGS["paper"])
    n = sum(p.numel() for p in model.parameters())
    # The paper's network as its text describes it, written out here rather than read from CONFIGS.
    channels = (64, 128, 256, 512, 512, 512, 512, 512)
    kernels = (7, 5, 5, 3, 3, 3, 3, 3)
    assert CONFIGS["paper"].channels == channels and CONFIGS["paper"].kernels == kernels
    expected = expected_param_count(channels, kernels)
    # By hand for the first layers: PConv1 3→64 7×7 + bias; PConv2 64→128 5×5 + BN.
    assert expected > 3 * 64 * 49 + 64 + 64 * 128 * 25 + 256
    assert n == expected
    assert 32_000_000 < n < 34_000_000  # "~33M"


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_parameter_count_of_shipped_configs(name):
    c = CONFIGS[name]
    assert sum(p.numel() for p in PConvUNet(c).parameters()) == \
        expected_param_count(c.channels, c.kernels, head_channels=c.head_channels, fill_residual=c.fill_residual)


@pytest.mark.parametrize("name, biharmonic", [("cpu-fill", False), ("cpu-fill-bh", True)])
def test_fill_residual_model_starts_as_the_fill(name, biharmonic):
    """A fresh fill_residual model outputs exactly the pull-push fill (its residual branch starts
    at zero), so training begins from a sound classical fill."""
    from pconv.fill import pull_push_fill

    model = build_model(name).eval()
    image, mask = torch.rand(1, 3, 128, 128), hole_mask(1, 1, 128, 128, seed=6)
    with torch.no_grad():
        out = model(image, mask)
    fill = pull_push_fill(image * 2 - 1, mask, levels=7, biharmonic=biharmonic) * 0.5 + 0.5
    torch.testing.assert_close(out, fill, atol=1e-6, rtol=0)
    assert torch.isfinite(out).all()
    assert not torch.equal(out, image)  # the holes were filled, not copied


def test_biharmonic_fill_needs_the_fill_residual():
    with pytest.raises(PConvError, match="set fill_residual too"):
        PConvUNetConfig(channels=(8,), kernels=(3,), fill_biharmonic=True)
    assert CONFIGS["cpu-fill-bh"] == PConvUNetConfig(**{**CONFIGS["cpu-fill"].__dict__, "fill_biharmonic": True,
                                                        "thin_hole_fill": 5})


def test_thin_hole_fill_options_are_checked():
    with pytest.raises(PConvError, match="set fill_residual too"):
        PConvUNetConfig(channels=(8,), kernels=(3,), thin_hole_fill=5)
    for bad in (1, 4, -3):
        with pytest.raises(PConvError, match="odd width >= 3"):
            PConvUNetConfig(channels=(8,), kernels=(3,), fill_residual=True, thin_hole_fill=bad)


@pytest.mark.parametrize("mask_channels", [1, 3])
def test_thin_hole_parts_keep_the_fill_and_wide_ones_get_the_residual(mask_channels):
    """With thin_hole_fill=5 the output equals the smooth fill exactly on hole parts narrower than
    5 px (a 1 px scratch, a 4 px stroke, a speck) and the ungated network on a wide hole, its rim
    included; the ungated network differs from the fill on both (the test is not vacuous)."""
    from dataclasses import replace

    from pconv.fill import pull_push_fill

    torch.manual_seed(0)
    config = CONFIGS["cpu-fill-bh"]
    gated = PConvUNet(config).eval()
    for p in gated.parameters():  # a non-zero residual branch (it starts at zero)
        p.data.add_(torch.randn_like(p) * 0.05)
    plain = PConvUNet(replace(config, thin_hole_fill=0)).eval()
    plain.load_state_dict(gated.state_dict())
    image = torch.rand(1, 3, 128, 128)
    mask = torch.ones(1, mask_channels, 128, 128)
    mask[..., 20, 10:100] = 0           # 1 px scratch
    mask[..., 40:44, 10:100] = 0        # 4 px stroke
    mask[..., 100, 100] = 0             # speck
    mask[..., 60:90, 20:60] = 0         # a 30×40 hole
    thin = torch.zeros(128, 128, dtype=torch.bool)
    thin[20, 10:100] = thin[40:44, 10:100] = thin[100, 100] = True
    wide = torch.zeros(128, 128, dtype=torch.bool)
    wide[60:90, 20:60] = True
    with torch.no_grad():
        out, ref = gated(image, mask), plain(image, mask)
    fill = pull_push_fill(image * 2 - 1, mask, levels=7, biharmonic=True) * 0.5 + 0.5
    torch.testing.assert_close(out[..., thin], fill[..., thin], atol=1e-6, rtol=0)
    torch.testing.assert_close(out[..., wide], ref[..., wide], atol=1e-6, rtol=0)
    assert (ref[..., thin] - fill[..., thin]).abs().max() > 1e-3
    assert (out[..., wide] - fill[..., wide]).abs().max() > 1e-3


def test_negative_head_channels_is_a_clear_error():
    with pytest.raises(PConvError, match="head_channels must be >= 0"):
        PConvUNetConfig(channels=(8,), kernels=(3,), head_channels=-1)


def test_cpu_head_is_cpu_plus_a_head():
    cpu, head = CONFIGS["cpu"], CONFIGS["cpu-head"]
    assert head.channels == cpu.channels and head.kernels == cpu.kernels and head.head_channels == 16
    assert cpu.head_channels == 0 and CONFIGS["paper"].head_channels == 0


def test_head_sees_a_one_pixel_hole():
    """The paper's last layer sees a one-pixel hole only as a ~1 % change of its re-normalisation;
    the head's hole map makes the hole an input of its own. With the hole map's weights alone
    non-zero, the head's output moves at the hole pixel and nowhere outside its 3×3 window."""
    model = seeded_model(PConvUNetConfig(channels=(8, 16, 16), kernels=(5, 3, 3), head_channels=4,
                                         image_size=32)).eval()
    with torch.no_grad():
        model.head.conv.weight.zero_()
        model.head.conv.weight[:, -1] = 1.0  # the hole-map channel
        image = torch.rand(1, 3, 32, 32)
        mask = torch.ones(1, 1, 32, 32)
        full = model(image, mask)
        mask[0, 0, 10, 12] = 0
        holed = model(image, mask)
    changed = (holed - full).abs().amax(1)[0] > 1e-4
    assert changed[10, 12]
    assert changed.nonzero().tolist() == [[y, x] for y in range(9, 12) for x in range(11, 14)]


def test_cpu_config_is_half_width_depth_7():
    cpu, paper = CONFIGS["cpu"], CONFIGS["paper"]
    assert cpu.depth == 7 and cpu.multiple == 128 and cpu.image_size == 256
    assert cpu.channels == tuple(c // 2 for c in paper.channels[:7])


@pytest.mark.parametrize("name,h,w", [("cpu", 128, 256), ("cpu", 256, 256), ("paper", 256, 256)])
def test_output_shapes(name, h, w):
    model = build_model(name).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, h, w), torch.ones(1, 1, h, w))
    assert out.shape == (1, 3, h, w)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_tiny_config_shapes_and_batch():
    model = PConvUNet(TINY).eval()
    with torch.no_grad():
        out = model(torch.rand(3, 3, 16, 24), torch.ones(3, 3, 16, 24))
    assert out.shape == (3, 3, 16, 24)


@pytest.mark.parametrize("h,w", [(120, 128), (128, 192), (64, 64)])
def test_size_not_multiple_is_clear_error(h, w):
    model = build_model("cpu")
    with pytest.raises(PConvError, match=r"multiples of 128 \(2\*\*depth, depth=7\)"):
        model(torch.rand(1, 3, h, w), torch.ones(1, 1, h, w))


def test_bad_inputs_are_pconv_errors():
    model = PConvUNet(TINY)
    with pytest.raises(PConvError, match="image must be"):
        model(torch.rand(1, 4, 16, 16), torch.ones(1, 1, 16, 16))
    with pytest.raises(PConvError, match="mask must be"):
        model(torch.rand(1, 3, 16, 16), torch.ones(1, 2, 16, 16))
    with pytest.raises(PConvError, match="binary"):
        model(torch.rand(1, 3, 16, 16), torch.full((1, 1, 16, 16), 0.5))
    with pytest.raises(PConvError, match="unknown model configuration"):
        build_model("huge")
    with pytest.raises(PConvError):
        PConvUNetConfig(channels=(8, 16), kernels=(3,))
    with pytest.raises(PConvError, match="odd"):
        PConvUNetConfig(channels=(8,), kernels=(4,))


def test_config_dict_round_trip():
    for c in list(CONFIGS.values()) + [TINY]:
        d = json.loads(json.dumps(c.to_dict()))
        assert PConvUNetConfig.from_dict(d) == c
        assert build_model(d).config == c
    with pytest.raises(PConvError, match="unknown model configuration fields"):
        PConvUNetConfig.from_dict({"width": 3})


# ---------------------------------------------------------------- BN freezing


def _bn_state(bns):
    return [(bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()) for bn in bns]


def test_freeze_encoder_bn():
    model = seeded_model(TINY).train()
    model.freeze_encoder_bn()
    model.train()  # re-entering train mode must keep the encoder BN frozen
    enc_bns = [b.bn for b in model.encoder if b.bn is not None]
    dec_bns = [b.bn for b in model.decoder if b.bn is not None]
    assert enc_bns and dec_bns
    assert all(not bn.training for bn in enc_bns) and all(bn.training for bn in dec_bns)
    enc_before, dec_before = _bn_state(enc_bns), _bn_state(dec_bns)
    out = model(torch.rand(2, 3, 32, 32), hole_mask(2, 1, 32, 32))
    out.mean().backward()
    for (m0, v0, n0), bn in zip(enc_before, enc_bns):
        assert torch.equal(bn.running_mean, m0) and torch.equal(bn.running_var, v0)
        assert torch.equal(bn.num_batches_tracked, n0)
        assert bn.weight.requires_grad and bn.weight.grad is not None  # affine stays trainable
    for (m0, v0, n0), bn in zip(dec_before, dec_bns):
        assert not torch.equal(bn.running_mean, m0) and not torch.equal(bn.running_var, v0)
        assert int(bn.num_batches_tracked) == int(n0) + 1
    # Unfreezing restores normal training behaviour.
    model.freeze_encoder_bn(False)
    assert all(bn.training for bn in enc_bns)
    model(torch.rand(2, 3, 32, 32), hole_mask(2, 1, 32, 32))
    assert not torch.equal(enc_bns[0].running_mean, enc_before[0][0])


def test_frozen_encoder_bn_in_eval_mode_stays_eval():
    model = PConvUNet(TINY).freeze_encoder_bn().eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert not any(b.bn.training for b in model.encoder if b.bn is not None)


# ---------------------------------------------------------------- weights round trip


def _trained_tiny():
    model = seeded_model(TINY, seed=5).train()
    with torch.no_grad():
        model(torch.rand(2, 3, 32, 32), hole_mask(2, 1, 32, 32))  # non-default BN statistics
    return model.eval()


def test_save_load_round_trip_fp32_exact(tmp_path):
    model = _trained_tiny()
    path = save_weights(model, tmp_path / "tiny.safetensors", metadata={"note": "test"})
    loaded = load_model(path)
    assert loaded.config == TINY and not loaded.training
    assert loaded.weights_metadata["pconv.note"] == "test"
    sd, sd2 = model.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys()
    for k in sd:
        assert sd[k].dtype == sd2[k].dtype and torch.equal(sd[k], sd2[k]), k
    image, mask = torch.rand(1, 3, 32, 32), hole_mask(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(image, mask), loaded(image, mask))
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write leaves no temp file


def test_save_load_round_trip_fp16_close(tmp_path):
    model = _trained_tiny()
    path = save_weights(model, tmp_path / "tiny16.safetensors", dtype=torch.float16)
    assert path.stat().st_size < 0.6 * save_weights(model, tmp_path / "tiny32.safetensors").stat().st_size
    loaded = load_model(path)
    for k, v in model.state_dict().items():
        w = loaded.state_dict()[k]
        assert w.dtype == v.dtype, k  # loaded back as float32
        torch.testing.assert_close(w, v, rtol=1e-3, atol=1e-3)
    image, mask = torch.rand(1, 3, 32, 32), hole_mask(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(image, mask), model(image, mask), rtol=1e-2, atol=1e-2)


def test_load_model_overrides_parameter_free_options_and_refuses_the_rest(tmp_path):
    """load_model(..., overrides=) changes a stored option that has no tensors (the thin-hole gate),
    and turns an unknown field or a field that changes the tensors into a clear error."""
    from dataclasses import replace

    model = seeded_model(replace(TINY, head_channels=4, fill_residual=True), seed=2).eval()
    path = save_weights(model, tmp_path / "fill.safetensors")
    gated = load_model(path, overrides={"thin_hole_fill": 3})
    assert gated.config == replace(model.config, thin_hole_fill=3)
    for k, v in model.state_dict().items():
        assert torch.equal(gated.state_dict()[k], v), k
    with pytest.raises(PConvError, match="unknown model configuration fields"):
        load_model(path, overrides={"thin_holes": 3})
    with pytest.raises(PConvError, match="odd width >= 3"):
        load_model(path, overrides={"thin_hole_fill": 4})
    with pytest.raises(PConvError, match="does not fit"):
        load_model(path, overrides={"head_channels": 8})


def test_load_model_bad_content_is_pconv_error(tmp_path):
    from safetensors.torch import save_file

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"this is not a safetensors file at all")
    with pytest.raises(PConvError, match="not a readable safetensors"):
        load_model(garbage)

    pt = tmp_path / "garbage.pt"
    pt.write_bytes(b"not a pickle, not a zip")
    with pytest.raises(PConvError, match="weights_only"):
        load_model(pt)

    with pytest.raises(PConvError, match="does not exist"):
        load_model(tmp_path / "missing.safetensors")

    wrong = tmp_path / "wrong.safetensors"  # valid file, tensors do not fit the declared config
    save_file({"encoder.0.conv.weight": torch.zeros(2, 2)}, str(wrong),
              metadata={"pconv.config": json.dumps(TINY.to_dict())})
    with pytest.raises(PConvError, match="does not fit"):
        load_model(wrong)

    no_config = tmp_path / "noconfig.safetensors"  # no metadata and no named configuration fits
    save_file({"x": torch.zeros(3)}, str(no_config))
    with pytest.raises(PConvError, match="no pconv.config"):
        load_model(no_config)

    bad_meta = tmp_path / "badmeta.safetensors"
    save_file({"x": torch.zeros(3)}, str(bad_meta), metadata={"pconv.config": "{not json"})
    with pytest.raises(PConvError, match="not valid JSON"):
        load_model(bad_meta)

    bad_types = tmp_path / "badtypes.safetensors"
    save_file({"x": torch.zeros(3)}, str(bad_types), metadata={"pconv.config": json.dumps({"channels": ["a"]})})
    with pytest.raises(PConvError, match="not a valid configuration"):
        load_model(bad_types)

    bad_fields = tmp_path / "badfields.safetensors"
    save_file({"x": torch.zeros(3)}, str(bad_fields), metadata={"pconv.config": json.dumps({"depth": 3})})
    with pytest.raises(PConvError, match="unknown model configuration fields"):
        load_model(bad_fields)


@pytest.mark.parametrize("size", [3, 5, 7])
def test_thin_hole_gate_is_a_morphological_opening(size):
    """The gate equals the opening written with max pooling (erosion as a pool of the negated hole,
    padding ignored): valid pixels and hole pixels inside a size×size square of hole get 1."""
    from pconv.model import _wide_hole_or_valid

    gen = torch.Generator().manual_seed(size)
    for shape, p_hole in (((2, 1, 37, 29), 0.5), ((1, 1, 64, 64), 0.9), ((3, 1, 8, 8), 0.1)):
        mask = (torch.rand(shape, generator=gen) > p_hole).float()
        mask[0, 0, 2:2 + size, 3:3 + size] = 0  # at least one square of hole that survives
        hole = 1.0 - mask
        core = -F.max_pool2d(-hole, size, 1, size // 2)
        expected = mask + F.max_pool2d(core, size, 1, size // 2)
        gate = _wide_hole_or_valid(mask, size)
        assert torch.equal(gate, expected)
        assert (gate[0, 0, 2:2 + size, 3:3 + size] == 1).all()

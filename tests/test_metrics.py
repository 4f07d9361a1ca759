"""Metrics against hand-computed values: ℓ1, PSNR, SSIM, hole-only variants."""
import math

import numpy as np
import pytest

from pconv.errors import PConvError
from pconv.metrics import hole_l1, hole_psnr, image_metrics, l1, mse, psnr, ssim


@pytest.fixture
def img():
    return np.random.default_rng(0).random((24, 20, 3)) * 0.8 + 0.1


def test_identical_images(img):
    assert l1(img, img) == 0.0
    assert mse(img, img) == 0.0
    assert psnr(img, img) == math.inf
    assert ssim(img, img) == pytest.approx(1.0)
    hole = np.zeros(img.shape[:2], bool)
    hole[5:10, 5:12] = True
    assert hole_l1(img, img, hole) == 0.0
    assert hole_psnr(img, img, hole) == math.inf


@pytest.mark.parametrize("offset, expected_psnr", [(0.1, 20.0), (0.01, 40.0), (0.05, 20 * math.log10(20))])
def test_constant_offset(img, offset, expected_psnr):
    other = img + offset
    assert l1(img, other) == pytest.approx(offset)
    assert mse(img, other) == pytest.approx(offset ** 2)
    assert psnr(img, other) == pytest.approx(expected_psnr)
    assert psnr(other, img) == pytest.approx(expected_psnr)


def test_hole_only_metrics_ignore_known_pixels(img):
    hole = np.zeros(img.shape[:2], bool)
    hole[:6] = True  # 6 of 24 rows: a quarter of the image
    other = img.copy()
    other[hole] += 0.1
    assert hole_l1(img, other, hole) == pytest.approx(0.1)
    assert hole_psnr(img, other, hole) == pytest.approx(20.0)
    assert l1(img, other) == pytest.approx(0.025)
    assert psnr(img, other) == pytest.approx(10 * math.log10(1 / (0.01 * 0.25)))
    empty = np.zeros(img.shape[:2], bool)
    assert math.isnan(hole_l1(img, other, empty)) and math.isnan(hole_psnr(img, other, empty))


def test_ssim_of_constant_images_is_the_luminance_term():
    # With no variance SSIM reduces to (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1), C1 = (0.01 * 1)^2.
    a = np.full((16, 16, 3), 0.5)
    b = np.full((16, 16, 3), 0.6)
    c1 = 0.01 ** 2
    assert ssim(a, b) == pytest.approx((2 * 0.5 * 0.6 + c1) / (0.25 + 0.36 + c1), rel=1e-9)


def test_ssim_orders_degradations(img):
    rng = np.random.default_rng(1)
    light = np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1)
    heavy = np.clip(img + rng.normal(0, 0.2, img.shape), 0, 1)
    assert 1.0 > ssim(img, light) > ssim(img, heavy)
    assert ssim(img, light) == pytest.approx(ssim(light, img))
    assert 0.0 < ssim(img[..., 0], light[..., 0]) < 1.0  # greyscale works too


def test_uint8_is_scaled_to_unit_range():
    a = np.zeros((8, 8, 3), np.uint8)
    b = np.full((8, 8, 3), 255, np.uint8)
    assert l1(a, b) == 1.0
    assert psnr(a, b) == 0.0


def test_image_metrics_bundle(img):
    hole = np.zeros(img.shape[:2], bool)
    hole[2:4, 2:4] = True
    m = image_metrics(img + 0.1, img, hole)
    assert set(m) == {"l1", "psnr", "ssim", "hole_l1", "hole_psnr"}
    assert m["psnr"] == pytest.approx(20.0) and m["hole_psnr"] == pytest.approx(20.0)
    assert set(image_metrics(img, img)) == {"l1", "psnr", "ssim"}


def test_bad_inputs_are_clear_errors(img):
    with pytest.raises(PConvError, match="differ in shape"):
        l1(img, img[:10])
    with pytest.raises(PConvError, match="at least 7x7"):
        ssim(img[:5, :5], img[:5, :5])
    with pytest.raises(PConvError, match="hole mask shape"):
        hole_l1(img, img, np.zeros((3, 3), bool))
    with pytest.raises(PConvError, match="float array"):
        l1(np.zeros((4, 4), np.int64), np.zeros((4, 4), np.int64))


# ------------------------------------------------------------------------------ detail ratio
def _detail_by_hand(rgb: np.ndarray, hole: np.ndarray) -> float:
    """Grey (ITU-R 601) minus a sigma-1.5 Gaussian with OpenCV's border (reflect-101), independently."""
    from scipy.ndimage import gaussian_filter

    grey = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    low = gaussian_filter(grey, 1.5, mode="mirror", truncate=4.0)
    return float(np.abs(grey - low)[hole].mean())


def _ramp(size: int = 32) -> np.ndarray:
    return np.linspace(0.2, 0.8, size)[None, :, None] * np.ones((size, size, 3))


def _textured(seed: int = 0, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(_ramp(size) + rng.normal(0, 0.05, (size, size, 3)), 0, 1)


def test_hole_detail_matches_a_hand_computed_value():
    from pconv.metrics import hole_detail

    img = _textured()
    hole = np.zeros((32, 32), bool)
    hole[8:20, 10:26] = True
    assert hole_detail(img, hole) == pytest.approx(_detail_by_hand(img, hole), rel=1e-4)


def test_detail_ratio_flat_truth_noise():
    from pconv.metrics import detail_ratio

    gt = _textured()
    hole = np.zeros((32, 32), bool)
    hole[8:24, 8:24] = True
    flat = gt.copy()
    flat[hole] = _ramp()[hole]  # a smooth fill: the ramp without its texture
    flat_ratio = detail_ratio(flat, gt, hole)
    assert detail_ratio(gt, gt, hole) == 1.0
    # the smooth fill's only "detail" is the known texture next to the hole's edge, seen through the blur
    assert 0 <= flat_ratio < 0.35
    inner = np.zeros_like(hole)
    inner[14:18, 14:18] = True  # beyond the blur's reach (4 sigma = 6 px) from the known texture
    assert detail_ratio(flat, gt, inner) == pytest.approx(0.0, abs=1e-5)  # a linear ramp has no detail
    noisy = np.clip(gt + np.random.default_rng(1).normal(0, 0.05, gt.shape) * hole[..., None], 0, 1)
    assert detail_ratio(noisy, gt, hole) > 1.2  # added noise raises it
    assert math.isnan(detail_ratio(gt, np.full_like(gt, 0.5), hole))  # a flat truth has no scale


def test_detail_measures_refuse_bad_input():
    from pconv.metrics import hole_detail

    with pytest.raises(PConvError, match="RGB"):
        hole_detail(np.zeros((8, 8)), np.ones((8, 8), bool))
    with pytest.raises(PConvError, match="does not match"):
        hole_detail(np.zeros((8, 8, 3)), np.ones((4, 8), bool))

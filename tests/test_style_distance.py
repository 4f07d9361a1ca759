"""The style distance: arithmetic against a hand-written Gram, and its behaviour with the real VGG16."""
import numpy as np
import pytest
import torch

from pconv.errors import PConvError
from pconv.style_distance import MIN_BOX, StyleDistance, hole_box
from test_losses import tiny_vgg  # tests/ is on sys.path under pytest's default import mode


def _photo(seed: int = 0, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([0.3 + 0.4 * x, 0.5 - 0.2 * y, 0.4 + 0.2 * x * y], axis=-1)
    stripes = 0.08 * np.sin(x * 40 + 3 * y)[..., None]
    return (np.clip(base + stripes + rng.normal(0, 0.03, base.shape), 0, 1) * 255).round().astype(np.uint8)


def _hole(size: int = 64) -> np.ndarray:
    hole = np.zeros((size, size), bool)
    hole[20:44, 16:40] = True
    return hole


def test_hole_box_grows_to_the_minimum_inside_the_image():
    hole = np.zeros((100, 80), bool)
    hole[2:6, 75:78] = True
    y0, y1, x0, x1 = hole_box(hole)
    assert (y1 - y0, x1 - x0) == (MIN_BOX, MIN_BOX) and y0 == 0 and x1 == 80
    assert y0 <= 2 and y1 >= 6 and x0 <= 75
    big = np.zeros((100, 80), bool)
    big[10:90, 5:70] = True
    assert hole_box(big) == (10, 90, 5, 70)
    assert hole_box(np.ones((20, 10), bool)) == (0, 20, 0, 10)  # smaller than the minimum: the whole image
    with pytest.raises(PConvError, match="empty"):
        hole_box(np.zeros((8, 8), bool))


def test_value_matches_a_hand_written_gram_distance():
    vgg = tiny_vgg(3)
    metric = StyleDistance(vgg)
    gt, out = _photo(0), _photo(1)
    hole = _hole()
    y0, y1, x0, x1 = hole_box(hole)
    t = lambda a: torch.from_numpy(a[y0:y1, x0:x1].astype(np.float32) / 255).permute(2, 0, 1)[None]
    expected = 0.0
    with torch.no_grad():
        for fa, fb in zip(vgg(t(out)), vgg(t(gt))):
            c, n = fa.shape[1], fa.shape[2] * fa.shape[3]
            ga = torch.einsum("ci,di->cd", fa[0].reshape(c, n), fa[0].reshape(c, n)) / (c * n)
            gb = torch.einsum("ci,di->cd", fb[0].reshape(c, n), fb[0].reshape(c, n)) / (c * n)
            expected += float((ga - gb).abs().mean())
    assert metric(out, gt, hole) == pytest.approx(expected, rel=1e-4)
    assert metric(gt, gt, hole) == 0.0


def test_flat_fill_and_noise_score_worse_than_the_truth_with_the_real_vgg():
    """Pretrained VGG16 (the loss's weights, installed by `make`): truth 0, flat and noisy fills > 0."""
    metric = StyleDistance()
    gt, hole = _photo(0), _hole()
    flat = gt.copy()
    flat[hole] = gt[hole].mean(axis=0).round().astype(np.uint8)
    noisy = np.clip(gt.astype(np.int16) + np.random.default_rng(2).normal(0, 25, gt.shape).round().astype(np.int16)
                    * hole[..., None], 0, 255).astype(np.uint8)
    d_flat, d_noisy = metric(flat, gt, hole), metric(noisy, gt, hole)
    assert metric(gt, gt, hole) == 0.0
    assert d_flat > 0 and d_noisy > 0
    # more noise, further away: the distance grows with the wrong kind of texture
    noisier = np.clip(gt.astype(np.int16) + np.random.default_rng(2).normal(0, 60, gt.shape).round().astype(np.int16)
                      * hole[..., None], 0, 255).astype(np.uint8)
    assert metric(noisier, gt, hole) > d_noisy


def test_bad_input_is_a_clear_error():
    metric = StyleDistance(tiny_vgg())
    with pytest.raises(PConvError, match="one shape"):
        metric(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8), np.ones((8, 8), bool))
    with pytest.raises(PConvError, match="does not match"):
        metric(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8), np.ones((4, 8), bool))

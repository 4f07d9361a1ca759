"""pconv.data.random_crop: resampling only the crop equals resizing the whole photo, then cropping."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pconv.data import random_crop


def _full_resize_then_crop(im: Image.Image, size: int, rng: np.random.Generator, max_zoom_out: float = 3.0):
    """The obvious pipeline random_crop shortcuts, drawing the same random numbers in the same order."""
    short = min(im.size)
    hi = max(size, min(short, int(max_zoom_out * size)))
    target = int(rng.integers(size, hi + 1))
    w, h = max(size, round(im.width * target / short)), max(size, round(im.height * target / short))
    full = im.resize((w, h), Image.BILINEAR, reducing_gap=2.0)
    x, y = int(rng.integers(0, w - size + 1)), int(rng.integers(0, h - size + 1))
    arr = np.array(full.crop((x, y, x + size, y + size)))
    return arr[:, ::-1] if rng.random() < 0.5 else arr


@pytest.mark.parametrize("shape", [(600, 900), (256, 300), (200, 180), (1000, 700)])
def test_random_crop_equals_resize_then_crop(shape):
    h, w = shape
    g = np.random.default_rng(1)
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 255 // (w + h))], -1)
    rgb = np.clip(smooth + g.integers(-40, 41, (h, w, 3)), 0, 255).astype(np.uint8)  # texture, not just ramps
    im = Image.fromarray(rgb)
    for seed in range(5):
        a = random_crop(im, 128, np.random.default_rng(seed))
        b = _full_resize_then_crop(im, 128, np.random.default_rng(seed))
        assert a.shape == (128, 128, 3) and a.dtype == np.uint8 and a.flags.c_contiguous
        diff = np.abs(a.astype(int) - b.astype(int))
        assert diff.max() <= 2 and diff.mean() < 0.1  # resampling rounding only


def test_max_zoom_out_one_is_the_whole_scene():
    """max_zoom_out=1: the short side is resized to the crop size, so a square photo is seen
    whole; larger values show closer views (parts of it)."""
    arr = np.zeros((512, 512, 3), np.uint8)
    arr[:, 256:] = 255  # left half black, right half white
    im = Image.fromarray(arr)
    for seed in range(5):
        crop = random_crop(im, 256, np.random.default_rng(seed), max_zoom_out=1.0)
        assert abs(float((crop > 127).mean()) - 0.5) < 0.01
    shares = [float((random_crop(im, 256, np.random.default_rng(s), max_zoom_out=2.0) > 127).mean())
              for s in range(20)]
    assert max(shares) - min(shares) > 0.3


def test_train_config_checks_max_zoom_out():
    from pconv.config import TrainConfig
    from pconv.errors import PConvError

    assert TrainConfig(max_zoom_out=1.0).max_zoom_out == 1.0
    with pytest.raises(PConvError, match="max_zoom_out"):
        TrainConfig(max_zoom_out=0.5)


def test_photo_cache_gives_the_same_samples(tmp_path):
    """cache_photos: the same samples as reading every time; after preload() the photos come from
    memory (a photo deleted afterwards is still served)."""
    import torch

    from pconv.data import MaskSampler, TrainDataset

    g = np.random.default_rng(0)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"p{i}.jpg")
        Image.fromarray(g.integers(0, 256, (40 + 8 * i, 56, 3), dtype=np.uint8)).save(paths[-1])
    masks = MaskSampler("mixed", 32, (0.05, 0.3))
    plain = TrainDataset(paths, 32, masks, seed=3)
    cached = TrainDataset(paths, 32, masks, seed=3, cache_photos=True)
    assert plain.preload() == 0
    assert cached.preload() == sum(56 * (40 + 8 * i) * 3 for i in range(3))
    keys = [(0, 0), (0, 1), (2, 1), (5, 2)]
    before = [cached[k] for k in keys]
    for key, (image, mask) in zip(keys, before):
        ref_image, ref_mask = plain[key]
        assert torch.equal(image, ref_image) and torch.equal(mask, ref_mask), key
    paths[1].unlink()  # from memory now: the same sample, no warning about an unreadable file
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image, mask = cached[(2, 1)]
    assert torch.equal(image, before[2][0]) and torch.equal(mask, before[2][1])

"""Classical baselines: each fills the hole, known pixels stay exactly, errors name the fix."""
import sys

import numpy as np
import pytest

from pconv.baselines import BASELINES, available_methods, fill
from pconv.errors import PConvError


def _has_patchmatch() -> bool:
    try:
        import patchmatch
    except ImportError:
        return False
    return bool(getattr(patchmatch, "patchmatch_available", False))


METHODS = [pytest.param(m, marks=pytest.mark.skipif(m == "patchmatch" and not _has_patchmatch(),
                                                     reason="optional pypatchmatch not installed"))
           for m in BASELINES]


@pytest.fixture
def ramp():
    y, x = np.mgrid[0:48, 0:48]
    image = np.stack([x * 4, y * 4, (x + y) * 2], -1).astype(np.uint8)
    hole = np.zeros((48, 48), bool)
    hole[16:30, 18:34] = True
    return image, hole


def test_names():
    assert set(BASELINES) == {"telea", "ns", "biharmonic", "patchmatch", "pullpush", "pullpush-bh"}


@pytest.mark.parametrize("method", METHODS)
def test_fills_the_hole_and_keeps_known_pixels(method, ramp):
    image, hole = ramp
    garbage = image.copy()
    garbage[hole] = np.random.default_rng(0).integers(0, 256, (int(hole.sum()), 3))
    out = fill(method, garbage, hole)
    assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(out[~hole], garbage[~hole])  # known pixels exactly as given
    assert np.abs(out[hole].astype(int) - garbage[hole]).mean() > 20  # the garbage was replaced
    # on a smooth ramp every method lands near the true values, and never reads the hole's content
    assert np.abs(out[hole].astype(int) - image[hole]).mean() < 12
    np.testing.assert_array_equal(out, fill(method, image, hole))


def test_biharmonic_reproduces_a_linear_ramp(ramp):
    image, hole = ramp
    out = fill("biharmonic", image, hole)
    assert np.abs(out.astype(int) - image).max() <= 1


def test_radius_option_changes_opencv_fill(ramp):
    image, hole = ramp
    image = image.copy()
    image[::3] = 255 - image[::3]  # texture, so the neighbourhood size matters
    assert not np.array_equal(fill("telea", image, hole, radius=1), fill("telea", image, hole, radius=9))


@pytest.mark.skipif(not _has_patchmatch(), reason="optional pypatchmatch not installed")
def test_patchmatch_is_deterministic_for_a_seed(ramp):
    image, hole = ramp
    noisy = np.clip(image + np.random.default_rng(2).integers(0, 60, image.shape), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(fill("patchmatch", noisy, hole, seed=3), fill("patchmatch", noisy, hole, seed=3))


@pytest.mark.parametrize("method", list(BASELINES))
def test_empty_hole_returns_the_input(method, ramp):
    image, _ = ramp
    out = fill(method, image, np.zeros(image.shape[:2], bool))
    np.testing.assert_array_equal(out, image)
    assert out is not image


def test_unknown_method_lists_the_available_ones(ramp):
    with pytest.raises(PConvError, match="telea, ns, biharmonic, patchmatch"):
        fill("deepfill", *ramp)


def test_bad_option_and_bad_input(ramp):
    image, hole = ramp
    with pytest.raises(PConvError, match="radius"):
        fill("telea", image, hole, patch_size=3)
    with pytest.raises(PConvError, match="uint8"):
        fill("telea", image.astype(np.float32), hole)
    with pytest.raises(PConvError, match="bool"):
        fill("telea", image, hole.astype(np.uint8))
    with pytest.raises(PConvError, match="must match"):
        fill("telea", image, hole[:10])


def test_missing_optional_dependency_says_what_to_install(ramp, monkeypatch):
    monkeypatch.setitem(sys.modules, "patchmatch", None)  # import now raises ImportError
    with pytest.raises(PConvError, match="pip install pypatchmatch"):
        fill("patchmatch", *ramp)
    assert "patchmatch" not in available_methods()
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(PConvError, match="opencv-python-headless"):
        fill("ns", *ramp)

"""PatchMatch's texture band over the network's structure (pconv.patch_texture).

Each step has a test that fails without it (checked by breaking each once):
- the PatchMatch band is added at all            -> test_band_adds_texture_to_a_flat_fill
- only the band above ``sigma`` (structure kept)  -> test_low_frequencies_stay_the_fills
- the band fades where PatchMatch's colours leave the fill's (``agreement``)
                                                  -> test_band_fades_where_patchmatch_copies_other_colours,
                                                     test_agreement_weight_is_a_gaussian_of_the_colour_difference
- the seed reaches PatchMatch                     -> test_deterministic_and_seeded
- the hole's content never reaches the search     -> test_known_pixels_exact_and_hole_never_read
  (zeroed and left out of the downscale; PatchMatch ignores masked pixels too, so the test
  still passes with both removed: it checks the property, not the step)
- wide regions only (``min_radius``), mid band off, then the detail transfer
                                                  -> test_inpainter_bands_wide_regions_only
- the fallback without pypatchmatch               -> test_without_pypatchmatch_the_detail_transfer_alone
"""
from __future__ import annotations

import os
from dataclasses import replace

import cv2
import numpy as np
import pytest

import pconv
from pconv.errors import PConvError
from pconv.inference import Inpainter
from pconv.patch_texture import PatchTextureConfig, agreement_weight, patch_texture, patchmatch_available
from pconv.planning import hole_regions
from pconv.texture import TextureConfig, transfer_detail

# pypatchmatch is optional for users; `make test` installs it, and under CI its absence fails.
pytestmark = pytest.mark.skipif(not patchmatch_available() and os.environ.get("CI") != "true",
                                reason="pypatchmatch is not installed (pip install 'pconv[patchmatch]')")


def test_pypatchmatch_is_installed_where_ci_runs() -> None:
    assert patchmatch_available(), "pypatchmatch is missing: pip install 'pconv[patchmatch]' (make test does)"


def _photo(h: int = 240, w: int = 320, seed: int = 0) -> np.ndarray:
    """Left half red, right half blue, both with a strong fine texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    tex = 40 * np.sin(xx / 2.3) * np.sin(yy / 3.1) + rng.normal(0, 12, (h, w))
    base = np.where((xx < w // 2)[:, :, None], [200, 60, 60], [60, 60, 200])
    return np.clip(base + tex[:, :, None], 0, 255).astype(np.uint8)


def _disk(h: int, w: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (yy - h // 2) ** 2 + (xx - w // 2) ** 2 <= r * r


def _grey_fill(image: np.ndarray, hole: np.ndarray, level: int = 128) -> np.ndarray:
    return np.where(hole[:, :, None], np.uint8(level), image)


def test_exported_from_package() -> None:
    import importlib

    assert pconv.PatchTextureConfig is PatchTextureConfig
    # the module stays reachable under its name (no function of the same name shadows it)
    assert importlib.import_module("pconv.patch_texture").patch_texture is patch_texture
    assert pconv.patch_texture.patch_texture is patch_texture


def test_known_pixels_exact_and_hole_never_read() -> None:
    image = _photo()
    hole = _disk(*image.shape[:2], 50)
    fill = _grey_fill(image, hole)
    out = patch_texture(image, hole, fill)
    np.testing.assert_array_equal(out[~hole], image[~hole])
    other = image.copy()
    other[hole] = 255 - other[hole]
    np.testing.assert_array_equal(patch_texture(other, hole, fill), out)


def test_deterministic_and_seeded() -> None:
    image = _photo()
    hole = _disk(*image.shape[:2], 50)
    fill = _grey_fill(image, hole)
    a = patch_texture(image, hole, fill, seed=3)
    np.testing.assert_array_equal(patch_texture(image, hole, fill, seed=3), a)
    assert (patch_texture(image, hole, fill, seed=4) != a).any()


def _agreeing_fill(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """A smooth fill with the right colours: what the network paints where it has the structure."""
    return np.where(hole[:, :, None], cv2.GaussianBlur(image, (0, 0), 24.0), image)


def _fine_detail(out: np.ndarray, where: np.ndarray) -> float:
    grey = out.astype(np.float32).mean(2)
    return float(np.abs(grey - cv2.GaussianBlur(grey, (0, 0), 2.0))[where].mean())


def test_band_adds_texture_to_a_flat_fill() -> None:
    image = _photo()
    hole = _disk(*image.shape[:2], 50)
    inner = _disk(*hole.shape, 40)
    out = patch_texture(image, hole, _agreeing_fill(image, hole))
    assert _fine_detail(out, inner) > 0.4 * _fine_detail(image, inner)


def test_band_fades_where_patchmatch_copies_other_colours() -> None:
    """The fill says white where PatchMatch copies red and blue: another object's pieces. Their
    band is left out (agreement on) or added (off); with a fill of the right colours it stays."""
    image = _photo()
    hole = _disk(*image.shape[:2], 50)
    inner = _disk(*hole.shape, 40)
    grey = _grey_fill(image, hole, level=235)
    faded = _fine_detail(patch_texture(image, hole, grey), inner)
    kept = _fine_detail(patch_texture(image, hole, grey, PatchTextureConfig(agreement=0)), inner)
    assert faded < 0.3 * kept
    loose = _fine_detail(patch_texture(image, hole, grey, PatchTextureConfig(agreement=2000)), inner)
    assert loose > 0.9 * kept  # the scale sets how far the colours may differ
    agreeing = _agreeing_fill(image, hole)
    on = _fine_detail(patch_texture(image, hole, agreeing), inner)
    assert on > 0.7 * _fine_detail(patch_texture(image, hole, agreeing, PatchTextureConfig(agreement=0)), inner)


def test_agreement_weight_is_a_gaussian_of_the_colour_difference() -> None:
    low = np.full((20, 30, 3), 100.0, np.float32)
    fill = np.full((20, 30, 3), 100, np.uint8)
    np.testing.assert_allclose(agreement_weight(low, fill, 4.0, 48.0), 1.0)
    fill[:] = (148, 52, 100)  # RMS over the channels: sqrt((48² + 48² + 0) / 3)
    expected = np.exp(-(48.0 ** 2 * 2 / 3) / 48.0 ** 2)
    np.testing.assert_allclose(agreement_weight(low, fill, 4.0, 48.0), expected, rtol=1e-5)
    np.testing.assert_allclose(agreement_weight(low, fill, 4.0, 96.0), expected ** 0.25, rtol=1e-5)
    yy, xx = np.mgrid[0:20, 0:30]
    fill = np.repeat(np.where((yy + xx) % 2 == 0, 160, 40)[:, :, None], 3, 2).astype(np.uint8)  # mean 100
    assert agreement_weight(low, fill, 4.0, 48.0)[5:15, 5:25].min() > 0.98  # compared below sigma


def test_low_frequencies_stay_the_fills() -> None:
    """The fill says grey; PatchMatch would copy red and blue. The band keeps the grey."""
    image = _photo()
    hole = _disk(*image.shape[:2], 60)
    fill = _grey_fill(image, hole)
    cfg = PatchTextureConfig(sigma=4.0)
    out = patch_texture(image, hole, fill, cfg).astype(np.float32)
    low = cv2.GaussianBlur(out - fill, (0, 0), 12.0)
    inner = _disk(*hole.shape, 35)
    assert np.abs(low[inner]).mean() < 12.0
    assert np.abs(out[inner].mean(0) - 128).max() < 12.0  # neither red nor blue on average


def test_config_errors() -> None:
    for bad in (dict(scale=0), dict(scale=1.5), dict(sigma=0), dict(patch_size=0), dict(max_side=10),
                dict(min_radius=-1), dict(agreement=-1)):
        with pytest.raises(PConvError):
            PatchTextureConfig(**bad)
    image = _photo()
    with pytest.raises(PConvError, match="must match"):
        patch_texture(image, np.zeros((5, 5), bool), image)


@pytest.fixture(scope="module")
def wide_case() -> tuple:
    """A photo larger than 2·S with one wide hole and one thin scratch far from it."""
    image = _photo(560, 760, seed=1)
    hole = np.zeros(image.shape[:2], bool)
    hole |= _disk(560, 760, 70) & (np.mgrid[0:560, 0:760][1] < 500)
    hole[40:44, 600:740] = True  # a scratch, 4 px wide
    return image, hole


def test_inpainter_bands_wide_regions_only(wide_case: tuple) -> None:
    image, hole = wide_case
    with_band = Inpainter(patch_texture=PatchTextureConfig(min_radius=24))
    result = with_band.inpaint(image, hole).image
    without = Inpainter(patch_texture=False).inpaint(image, hole).image
    smooth = Inpainter(method="pconv-smooth").inpaint(image, hole).image
    regions = hole_regions(hole, merge_distance=2 * with_band.crop_margin)
    assert len(regions) == 2
    for (y0, y1, x0, x1), own in regions:
        wide = own.sum() > 1000
        a, b = result[y0:y1, x0:x1][own], without[y0:y1, x0:x1][own]
        if not wide:
            np.testing.assert_array_equal(a, b)  # the scratch: detail transfer alone
            continue
        # the wide hole: band on the network's fill, then the detail transfer without its mid band,
        # computed here step by step over the same context box
        h, w = hole.shape
        margin = max(with_band.crop_margin, (y1 - y0) // 2, (x1 - x0) // 2)
        from pconv.planning import grow_box

        by0, by1, bx0, bx1 = grow_box((y0, y1, x0, x1), margin, 2 * with_band.image_size, h, w)
        box, box_hole = smooth[by0:by1, bx0:bx1], hole[by0:by1, bx0:bx1]
        banded = patch_texture(box, box_hole, box, with_band.patch_texture, 0)
        expected = transfer_detail(banded, box_hole, replace(TextureConfig(), mid_gain=0.0), 0)
        paste = np.zeros(box_hole.shape, bool)
        paste[y0 - by0:y1 - by0, x0 - bx0:x1 - bx0] = own
        np.testing.assert_array_equal(result[by0:by1, bx0:bx1][paste], expected[paste])
        assert (a != b).mean() > 0.5


def test_without_pypatchmatch_the_detail_transfer_alone(wide_case: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    image, hole = wide_case
    expected = Inpainter(patch_texture=False).inpaint(image, hole).image
    monkeypatch.setattr("pconv.inference.patchmatch_available", lambda: False)
    np.testing.assert_array_equal(Inpainter().inpaint(image, hole).image, expected)

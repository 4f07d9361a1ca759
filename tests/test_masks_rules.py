"""The one mask rule: alpha layers, coloured and grey strokes, threshold, polarity, and its warnings.

The reference below is written per pixel from the rule's text (pconv.masks.rules' docstring), and
every way into pconv (a mask file, a Pillow image, a numpy array) must agree with it.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from pconv.errors import PConvError
from pconv.inference import Inpainter, to_hole_array
from pconv.masks import read_mask_file
from pconv import MaskWarning
from pconv.masks.rules import LARGE_HOLE, mask_problem, to_hole


def reference_hole(rgba: np.ndarray, threshold: float = 0.5, invert: bool = False) -> np.ndarray:
    """Per pixel: alpha if the alpha varies over the image, else the brightest of R, G, B; > threshold."""
    h, w = rgba.shape[:2]
    alphas = {int(rgba[y, x, 3]) for y in range(h) for x in range(w)}
    out = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            r, g, b, a = (int(v) for v in rgba[y, x])
            level = a / 255 if len(alphas) > 1 else max(r, g, b) / 255
            out[y, x] = (level > threshold) != invert
    return out


def strokes(h: int = 24, w: int = 32) -> np.ndarray:
    hole = np.zeros((h, w), bool)
    hole[4:9, 3:28] = True
    hole[12:20, 10:14] = True
    return hole


def layer(colour, alpha: int = 255, h: int = 24, w: int = 32) -> np.ndarray:
    """Strokes of ``colour`` at ``alpha`` on a fully transparent background (an editor's layer)."""
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[strokes(h, w)] = (*colour, alpha)
    return rgba


def opaque(colour, background=(0, 0, 0), h: int = 24, w: int = 32) -> np.ndarray:
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[...] = (*background, 255)
    rgba[strokes(h, w)] = (*colour, 255)
    return rgba


CASES = {
    "white on black": opaque((255, 255, 255)),
    "red strokes on black": opaque((255, 0, 0)),
    "blue strokes on black": opaque((0, 0, 255)),
    "page colour on black": opaque((255, 48, 96)),
    "light grey on black": opaque((192, 192, 192)),
    "IOPaint-style coloured layer": layer((255, 48, 96)),
    "black strokes on a transparent layer": layer((0, 0, 0)),
    "light grey at 60% opacity on a transparent layer": layer((192, 192, 192), alpha=153),
}


@pytest.mark.parametrize("name", CASES)
def test_every_editor_style_gives_the_strokes_in_every_interface(tmp_path, name):
    rgba = CASES[name]
    expected = reference_hole(rgba)
    np.testing.assert_array_equal(expected, strokes())  # all these styles mean "the strokes are the hole"
    im = Image.fromarray(rgba, "RGBA")
    if rgba[..., 3].min() == 255:
        im = im.convert("RGB")  # an opaque mask is saved without alpha, as editors do
    im.save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask_file(tmp_path / "m.png"), expected)  # CLI
    np.testing.assert_array_equal(to_hole_array(im), expected)  # library, Pillow
    np.testing.assert_array_equal(to_hole_array(np.asarray(im)), expected)  # library, numpy
    np.testing.assert_array_equal(read_mask_file(tmp_path / "m.png", invert=True), ~expected)


def test_rule_matches_the_reference_on_random_masks(tmp_path):
    rng = np.random.default_rng(0)
    for trial in range(20):
        rgba = rng.integers(0, 256, (6, 7, 4), dtype=np.uint8)
        if trial % 2:
            rgba[..., 3] = 255  # opaque: the colour decides
        threshold = float(rng.choice([0.1, 0.5, 0.8]))
        for invert in (False, True):
            expected = reference_hole(rgba, threshold, invert)
            np.testing.assert_array_equal(to_hole(rgba, invert, threshold), expected)
            np.testing.assert_array_equal(to_hole(Image.fromarray(rgba, "RGBA"), invert, threshold), expected)


def test_uniform_alpha_is_ignored_and_palette_transparency_is_alpha(tmp_path):
    rgba = opaque((255, 255, 255))
    rgba[..., 3] = 128  # the whole layer at half opacity: alpha carries no shape
    np.testing.assert_array_equal(to_hole(Image.fromarray(rgba, "RGBA")), strokes())
    pal = Image.fromarray(layer((0, 200, 0)), "RGBA").convert("P")  # GIF/PNG-8 with a transparent colour
    pal.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    np.testing.assert_array_equal(read_mask_file(tmp_path / "p.png"), strokes())


def test_anti_aliasing_and_dark_noise_stay_out():
    grey = np.array([[0, 30, 127, 128, 255]], np.uint8)
    assert to_hole(grey).tolist() == [[False, False, False, True, True]]
    assert to_hole(grey, threshold=0.1).tolist() == [[False, True, True, True, True]]
    with pytest.raises(PConvError, match="threshold"):
        to_hole(grey, threshold=1.0)


def test_problems_name_the_fix_of_the_interface():
    empty = np.zeros((10, 10), bool)
    text = mask_problem(empty, flag="--invert-mask", threshold_flag="--threshold")
    assert "no hole" in text and "--invert-mask" in text and "--threshold" in text and ";" not in text
    assert "drop --invert-mask" in mask_problem(empty, invert=True)
    most = np.ones((10, 10), bool)
    most[0, :3] = False  # 97 % hole
    text = mask_problem(most, flag="invert_mask=true")
    assert "97.0%" in text and "use invert_mask=true" in text and ";" not in text
    assert "drop --invert-mask" in mask_problem(most, invert=True)
    half = np.zeros((10, 10), bool)
    half[:, :int(10 * LARGE_HOLE)] = True  # exactly LARGE_HOLE: not over it
    assert mask_problem(half) is None
    assert mask_problem(np.ones((4, 4), bool)) is None  # all hole is an error of its own, not a hint


def test_library_warns_about_inverted_and_empty_masks():
    photo = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    inverted = np.ones((32, 32), bool)
    inverted[8:14, 8:20] = False
    inpainter = Inpainter(method="telea")
    with pytest.warns(MaskWarning, match=r"93.0% of the image.*invert_mask=True"):
        result = inpainter.inpaint(photo, inverted)
    assert result.hole_fraction > LARGE_HOLE
    with pytest.warns(MaskWarning, match="no hole"):
        result = inpainter.inpaint(photo, np.zeros((32, 32), np.uint8))
    assert result.empty_mask
    with warnings.catch_warnings():
        warnings.simplefilter("error", MaskWarning)
        inpainter.inpaint(photo, ~inverted)  # a sensible mask: no word

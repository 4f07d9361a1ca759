"""Window planning: every strategy runs the network only where it can bridge the hole."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pconv.inference import Inpainter
from pconv.metrics import hole_psnr
from pconv.planning import NET_TILE, NET_TILE_SIDE, REACH, TEXTURE_TILE, hole_radius, plan_windows, texture_boxes


def _disk(h: int, w: int, cy: int, cx: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_hole_radius_is_the_inscribed_radius() -> None:
    hole = np.zeros((101, 101), bool)
    hole[20:81, 30:71] = True  # 61 x 41: the centre is 21 px from the nearest known pixel
    assert hole_radius(hole) == pytest.approx(21, abs=0.6)
    assert hole_radius(_disk(200, 200, 100, 100, 50)) == pytest.approx(51, abs=1.5)
    assert hole_radius(np.zeros((5, 5), bool)) == 0.0


def _net_radius(win, hole: np.ndarray) -> float:
    y0, y1, x0, x1 = win.box
    return hole_radius(win.paste) * win.net_size[0] / (y1 - y0)


@pytest.mark.parametrize("strategy", ["original", "crop", "resize"])
def test_every_window_keeps_its_holes_within_reach(strategy: str) -> None:
    h, w = 1000, 1500
    hole = _disk(h, w, 500, 700, 300) | _disk(h, w, 100, 100, 10)
    windows = plan_windows(0, hole, strategy, 256, 64)
    covered = np.zeros((h, w), np.int32)
    for win in windows:
        y0, y1, x0, x1 = win.box
        covered[y0:y1, x0:x1] += win.paste
        assert _net_radius(win, hole) <= REACH + 1.5
    np.testing.assert_array_equal(covered, hole.astype(np.int32))  # each hole pixel from exactly one window


def test_original_keeps_small_holes_at_full_resolution() -> None:
    hole = _disk(600, 800, 300, 400, 30)
    (win,) = plan_windows(0, hole, "original", 256, 64)
    assert win.net_size == (600, 800) and win.box == (0, 600, 0, 800)


def test_crop_window_gives_the_hole_context() -> None:
    hole = np.zeros((2000, 3000), bool)
    hole[800:1200, 1200:1800] = True  # 400 x 600
    (win,) = plan_windows(0, hole, "crop", 256, 64)
    y0, y1, x0, x1 = win.box
    assert (y1 - y0) >= 2 * 400 - 1 and (x1 - x0) >= 2 * 600 - 1  # half the hole's size on each side
    assert hole[y0:y1, x0:x1].mean() <= 0.3


def test_classical_methods_plan_at_full_resolution() -> None:
    hole = _disk(600, 800, 300, 400, 200)
    (win,) = plan_windows(0, hole, "original", None, 64)
    assert win.net_size == (600, 800)


def _landscape(h: int, w: int) -> np.ndarray:
    """Sky (a gradient with soft clouds) over hills over a meadow: smooth, so a good fill scores high."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(0)
    clouds = np.asarray(Image.fromarray(rng.normal(0, 1, (h // 32, w // 32)).astype(np.float32), "F")
                        .resize((w, h), Image.Resampling.BICUBIC))
    sky = np.stack([90 + 60 * yy / h + 12 * clouds, 140 + 50 * yy / h + 12 * clouds, 230 - 20 * yy / h + 8 * clouds], 2)
    ridge = 0.55 * h + 0.05 * h * np.sin(xx / w * 7.0)
    ground = np.stack([60 + 30 * (yy - ridge) / h, 120 + 20 * np.sin(xx / 37.0), 50 + 0 * yy], 2)
    return np.where((yy < ridge)[:, :, None], sky, ground).clip(0, 255).astype(np.uint8)


def test_no_strategy_paints_a_block_in_a_large_hole() -> None:
    """A hole far wider than the network's reach: every strategy within 1 dB of the best one.

    Before the reach rule, ``original`` ran the network over a hole of radius ~2.5x its reach and
    painted its bias there (a flat block ~6 dB below ``crop`` on 2000 px landscapes).
    """
    h, w = 600, 900
    image = _landscape(h, w)
    hole = np.zeros((h, w), bool)
    hole[150:450, 225:675] = True  # radius 150 > 2 x reach
    inpainter = Inpainter(method="pconv-smooth")
    scores = {s: hole_psnr(inpainter.inpaint(image, hole, strategy=s).image, image, hole)
              for s in ("original", "crop", "resize")}
    best = max(scores.values())
    assert all(v >= best - 1.0 for v in scores.values()), scores


def _specks(h: int, w: int, count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hole = np.zeros((h, w), bool)
    for _ in range(count):
        hole |= _disk(h, w, int(rng.integers(0, h)), int(rng.integers(0, w)), int(rng.integers(3, 12)))
    return hole


def test_texture_boxes_paste_every_hole_pixel_once_and_gather_specks_by_tile() -> None:
    """Many specks cost one box per tile, not one per speck; a wide hole keeps its own box."""
    size, h, w = 64, 1000, 1300  # tiles of TEXTURE_TILE * 64 px: 3 x 4 of them
    wide = _disk(h, w, 500, 650, 120)
    hole = _specks(h, w, 150) & ~_disk(h, w, 500, 650, 260) | wide
    boxes = texture_boxes(hole, size, margin=16, wide_radius=48)
    pasted = np.zeros((h, w), np.int32)
    for job in boxes:
        y0, y1, x0, x1 = job.box
        assert job.paste.shape == (y1 - y0, x1 - x0)
        assert min(y1 - y0, x1 - x0) >= 2 * size
        assert not (job.paste & ~hole[y0:y1, x0:x1]).any()
        pasted[y0:y1, x0:x1] += job.paste
    np.testing.assert_array_equal(pasted, hole.astype(np.int32))  # every hole pixel exactly once
    tiles = -(-h // (TEXTURE_TILE * size)) * -(-w // (TEXTURE_TILE * size))
    assert [job.wide for job in boxes].count(True) == 1
    assert len(boxes) <= tiles + 1
    (big,) = [job for job in boxes if job.wide]
    y0, y1, x0, x1 = big.box
    np.testing.assert_array_equal(big.paste, wide[y0:y1, x0:x1])
    assert (y1 - y0) >= 240 * 2 and (x1 - x0) >= 240 * 2  # its bounding box plus half its size


def test_texture_boxes_keep_a_speck_whole_where_it_crosses_a_tile_border() -> None:
    size = 32
    tile = TEXTURE_TILE * size
    hole = _disk(400, 800, 200, tile, 10)  # centred on the border between two tiles
    (job,) = texture_boxes(hole, size, margin=16, wide_radius=48)
    y0, y1, x0, x1 = job.box
    assert job.paste.sum() == hole.sum() and not job.wide


def test_crop_gathers_small_holes_by_tile_at_about_half_resolution() -> None:
    """Specks go to the network one window per tile (not merged into photo-sized regions that are
    downscaled 5-6x); each keeps its context margin; a wide hole keeps its own region window."""
    size, margin, h, w = 64, 16, 1000, 1300  # tiles of NET_TILE * 64 px
    wide = _disk(h, w, 500, 650, 120)
    specks = _specks(h, w, 150) & ~_disk(h, w, 500, 650, 260)
    hole = specks | wide
    windows = plan_windows(0, hole, "crop", size, margin)
    pasted = np.zeros((h, w), np.int32)
    for win in windows:
        y0, y1, x0, x1 = win.box
        pasted[y0:y1, x0:x1] += win.paste
    np.testing.assert_array_equal(pasted, hole.astype(np.int32))  # every hole pixel exactly once
    (big,) = [win for win in windows if (win.paste & wide[win.box[0]:win.box[1], win.box[2]:win.box[3]]).any()]
    y0, y1, x0, x1 = big.box
    np.testing.assert_array_equal(big.paste, wide[y0:y1, x0:x1])
    small = [win for win in windows if win is not big]
    tiles = -(-h // (NET_TILE * size)) * -(-w // (NET_TILE * size))
    assert 0 < len(small) <= tiles
    for win in small:
        y0, y1, x0, x1 = win.box
        assert max(win.net_size) <= NET_TILE_SIDE * size
        assert win.net_size[0] / (y1 - y0) >= NET_TILE_SIDE * size / (NET_TILE * size + 2 * 30)
        ys, xs = np.nonzero(win.paste)
        for lo, hi, top, limit in ((ys.min(), ys.max(), y0, h), (xs.min(), xs.max(), x0, w)):
            assert top + lo >= margin or top == 0  # the holes' context margin, unless at the edge
            assert top + hi + margin < limit or top + win.paste.shape[0 if limit == h else 1] == limit


def test_crop_fills_scattered_specks_better_than_merged_regions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many small holes over a large photo: the tiled windows fill them closer to the truth than
    the region windows they would otherwise merge into (as large as the photo, downscaled)."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:900, 0:1700]
    photo = np.stack([128 + 60 * np.sin(xx / 9.0 + c) * np.cos(yy / 13.0) for c in range(3)], -1)
    photo = (photo + rng.normal(0, 4, photo.shape)).clip(0, 255).astype(np.uint8)
    hole = _specks(900, 1700, 160, seed=3)
    inpainter = Inpainter(method="pconv-smooth")
    tiled = inpainter.inpaint(photo, hole, strategy="crop").image
    tiles = inpainter.last_result.windows
    monkeypatch.setattr("pconv.planning._tiled_windows", lambda index, hole, *args: ([], hole))
    merged = inpainter.inpaint(photo, hole, strategy="crop").image
    assert tiles > 1 and inpainter.last_result.windows == 1
    assert hole_psnr(tiled, photo, hole) > hole_psnr(merged, photo, hole) + 0.5


def test_original_on_a_large_photo_runs_holes_within_reach_in_full_resolution_windows_around_them() -> None:
    """Above NET_TILE·S, `original` keeps full resolution for every hole within reach but not one pass
    over the whole photo: windows around the holes (specks by tile); a wide hole still gets its
    downscaled pass."""
    size, margin = 64, 16
    h, w = NET_TILE * size + 300, NET_TILE * size + 500
    wide = _disk(h, w, 300, 400, 120)
    scratch = np.zeros((h, w), bool)
    scratch[h - 40: h - 34, 100: 100 + 3 * size] = True  # within reach, longer than S: a region window
    hole = _specks(h, w, 60) & ~_disk(h, w, 300, 400, 260) | scratch | wide
    windows = plan_windows(0, hole, "original", size, margin)
    pasted = np.zeros((h, w), np.int32)
    for win in windows:
        y0, y1, x0, x1 = win.box
        pasted[y0:y1, x0:x1] += win.paste
        assert _net_radius(win, hole) <= REACH + 1.5
        if (win.paste & wide[y0:y1, x0:x1]).any():
            assert win.box == (0, h, 0, w) and win.net_size[0] < h  # the wide hole: downscaled
        else:
            assert win.net_size == (y1 - y0, x1 - x0)  # full resolution
            assert (y1 - y0) * (x1 - x0) < h * w / 2  # around the holes, not the whole photo
    np.testing.assert_array_equal(pasted, hole.astype(np.int32))
    small = plan_windows(0, hole[: NET_TILE * size, : NET_TILE * size], "original", size, margin)
    assert any(win.box == (0, NET_TILE * size, 0, NET_TILE * size) and win.net_size == (NET_TILE * size,) * 2
               for win in small)  # a photo of one tile: one full-resolution pass, as before

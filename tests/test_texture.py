"""Detail transfer (pconv.texture): exactness, determinism, what it copies, and its errors."""
import numpy as np
import pytest
import torch

from pconv.errors import PConvError
from pconv.metrics import detail_ratio, hole_detail
from pconv.texture import TextureConfig, detail_strength, gaussian_blur, high_pass, mid_weight, transfer_detail


def _scene(size: int = 96, seed: int = 0):
    """A smooth colour ramp with a stationary texture on it, a square hole, and the ideal smooth fill."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    smooth = np.stack([0.3 + 0.4 * x, 0.6 - 0.3 * y, 0.4 + 0.1 * x], axis=-1)
    texture = rng.normal(0, 0.06, (size, size, 1))
    photo = (np.clip(smooth + texture, 0, 1) * 255).round().astype(np.uint8)
    hole = np.zeros((size, size), bool)
    hole[28:68, 30:70] = True
    fill = photo.copy()
    fill[hole] = (smooth[hole] * 255).round().astype(np.uint8)
    return photo, hole, fill


def test_known_pixels_exact_and_hole_gains_the_photos_detail():
    photo, hole, fill = _scene()
    out = transfer_detail(fill, hole)
    np.testing.assert_array_equal(out[~hole], photo[~hole])
    assert detail_ratio(fill, photo, hole) < 0.3
    assert 0.8 < detail_ratio(out, photo, hole) < 1.25  # the copied detail has the photo's strength
    # the fill's low layer is kept: blurred, the result still matches the smooth fill in the hole's middle
    f = lambda a: gaussian_blur(torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255, 3.0)[0]
    inner = np.zeros_like(hole)
    inner[38:58, 40:60] = True
    diff = (f(out) - f(fill)).abs().permute(1, 2, 0).numpy()[inner]
    assert diff.mean() < 0.02


def test_deterministic_for_a_seed_and_the_seed_matters():
    photo, hole, fill = _scene()
    a, b = transfer_detail(fill, hole, seed=3), transfer_detail(fill, hole, seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, transfer_detail(fill, hole, seed=4))


def test_no_detail_in_the_photo_means_nothing_is_added():
    """A photo without texture (a linear ramp) has no detail to copy: the fill comes back unchanged."""
    size = 64
    ramp = np.linspace(40, 200, size)[None, :, None] * np.ones((size, size, 3))
    photo = ramp.round().astype(np.uint8)
    hole = np.zeros((size, size), bool)
    hole[20:44, 20:44] = True
    out = transfer_detail(photo, hole)
    assert np.abs(out.astype(int) - photo.astype(int)).max() <= 1  # rounding of the ramp's own detail only


def test_the_copied_detail_comes_from_the_known_region():
    """The known region's detail (a fine checkerboard) is what fills the hole."""
    size = 64
    photo = np.full((size, size, 3), 128, np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    checker = ((yy // 2 + xx // 2) % 2 * 60 - 30).astype(np.int16)
    photo = np.clip(photo + checker[..., None], 0, 255).astype(np.uint8)
    hole = np.zeros((size, size), bool)
    hole[16:48, 16:48] = True
    fill = photo.copy()
    fill[hole] = 128
    out = transfer_detail(fill, hole)
    assert hole_detail(out, hole) > 0.5 * hole_detail(photo, hole)
    hp = high_pass(torch.from_numpy(out).permute(2, 0, 1)[None].float(), 1.5)[0, 0].numpy()
    ref = high_pass(torch.from_numpy(photo).permute(2, 0, 1)[None].float(), 1.5)[0, 0].numpy()
    inner = np.zeros_like(hole)
    inner[24:40, 24:40] = True
    # the pasted detail is the checkerboard's, up to a shift: |correlation| with a shifted copy is high
    best = max(abs(np.corrcoef(hp[inner], np.roll(ref, (dy, dx), (0, 1))[inner])[0, 1])
               for dy in range(4) for dx in range(4))
    assert best > 0.8


def test_edge_cases():
    photo, hole, fill = _scene(48)
    np.testing.assert_array_equal(transfer_detail(fill, np.zeros_like(hole)), fill)  # no hole
    everywhere = np.ones_like(hole)
    everywhere[0, 0] = False  # no block lies wholly outside the hole: nothing to copy from
    np.testing.assert_array_equal(transfer_detail(fill, everywhere), fill)
    tiny = np.zeros((3, 5, 3), np.uint8)
    np.testing.assert_array_equal(transfer_detail(tiny, np.ones((3, 5), bool)), tiny)


def test_bad_input_and_settings_are_clear_errors():
    photo, hole, fill = _scene(32)
    with pytest.raises(PConvError, match="uint8"):
        transfer_detail(fill.astype(np.float32), hole)
    with pytest.raises(PConvError, match="does not match"):
        transfer_detail(fill, hole[:16])
    with pytest.raises(PConvError, match="block"):
        TextureConfig(block=7)
    with pytest.raises(PConvError, match="sigma"):
        TextureConfig(sigma=0)
    with pytest.raises(PConvError, match="context"):
        TextureConfig(context=2)
    with pytest.raises(PConvError, match="mid_sigma"):
        TextureConfig(mid_sigma=2.0)
    with pytest.raises(PConvError, match="mid_ramp"):
        TextureConfig(mid_ramp=0)
    with pytest.raises(PConvError, match="max_repeat"):
        TextureConfig(max_repeat=-1)
    with pytest.raises(PConvError, match="energy_sigma"):
        TextureConfig(energy_sigma=0)
    with pytest.raises(PConvError, match="energy_weight"):
        TextureConfig(energy_weight=-1)
    with pytest.raises(PConvError, match="mid_gain"):
        TextureConfig(mid_gain=-0.5)
    with pytest.raises(PConvError, match="spread"):
        TextureConfig(spread=0)


def test_mid_weight_grows_with_the_distance_from_the_known_region():
    hole = np.zeros((60, 60), bool)
    hole[10:50, 10:50] = True  # a 40 px square: its centre lies 20 px from the known region
    w = mid_weight(hole, start=4.0, ramp=12.0).numpy()
    assert w[~hole].max() == 0.0
    assert w[10, 30] == 0.0 and w[13, 30] == 0.0  # 1 and 4 px from the edge: not yet
    assert w[19, 30] == pytest.approx((10 - 4) / 12, abs=1e-5)  # 10 px in: halfway up the ramp
    assert w[29, 29] == 1.0  # the centre: full
    assert np.all(np.diff(w[10:30, 30]) >= 0)  # never falls going inwards


def _blobs(size: int = 128, seed: int = 0):
    """A photo whose texture is coarse (blobs of ~10 px: mid band, little fine detail), a 64 px
    square hole and a flat fill of the photo's mean colour."""
    rng = np.random.default_rng(seed)
    noise = torch.from_numpy(rng.normal(0, 1, (1, 3, size, size))).float()
    coarse = gaussian_blur(noise, 4.0)[0].permute(1, 2, 0).numpy()
    photo = np.clip(128 + 60 * coarse / coarse.std(), 0, 255).round().astype(np.uint8)
    hole = np.zeros((size, size), bool)
    hole[32:96, 32:96] = True
    fill = photo.copy()
    fill[hole] = photo[~hole].mean(0).round().astype(np.uint8)
    return photo, hole, fill


def test_the_mid_band_restores_coarse_texture_deep_in_the_hole_and_leaves_the_edge_alone():
    photo, hole, fill = _blobs()
    with_mid, without = transfer_detail(fill, hole), transfer_detail(fill, hole, TextureConfig(mid_gain=0))
    np.testing.assert_array_equal(with_mid[~hole], photo[~hole])
    # within mid_start px of the edge the two agree exactly; deeper in they differ
    near = hole & (mid_weight(hole, 4.0, 12.0).numpy() == 0)
    np.testing.assert_array_equal(with_mid[near], without[near])

    def mid_energy(a: np.ndarray) -> float:
        x = torch.from_numpy(a).permute(2, 0, 1)[None].float()
        band = (gaussian_blur(x, 2.5) - gaussian_blur(x, 8.0))[0].permute(1, 2, 0).numpy()
        return float(np.abs(band[48:80, 48:80]).mean())  # the hole's core, 16+ px from its edge

    assert mid_energy(without) < 0.3 * mid_energy(photo)  # fine detail alone leaves the blobs out
    assert 0.5 * mid_energy(photo) < mid_energy(with_mid) < 1.4 * mid_energy(photo)


def test_repeat_limit_spreads_blocks_over_sources_and_keeps_draws_under_it():
    from pconv.texture import _limit_repeats

    n_tgt, n_src = 40, 10
    nearest = torch.stack([torch.roll(torch.arange(n_src), -i) for i in range(n_tgt)])  # each its own order
    choice = torch.zeros(n_tgt, dtype=torch.long)  # every block drew source 0
    edge = torch.zeros(n_tgt, dtype=torch.bool)
    edge[:3] = True  # edge blocks keep their pick whatever the count
    out = _limit_repeats(choice, nearest, edge, n_src, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(out[:3], choice[:3])
    counts = torch.bincount(out[3:], minlength=n_src)
    assert int(counts.max()) <= 4 and int(counts[0]) <= 4 - 3  # limit = 1.0 × 40 / 10; the edge used 3 of 0's
    for i in range(3, n_tgt):  # a moved block took the first source of its list under the limit
        assert out[i] in nearest[i][: n_src].tolist()
    again = _limit_repeats(choice, nearest, edge, n_src, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    # under the limit, every draw stands
    spread = torch.arange(n_tgt) % n_src
    assert torch.equal(_limit_repeats(spread, nearest, edge, n_src, 1.0, torch.Generator().manual_seed(0)), spread)


def test_repeat_limit_changes_only_fills_that_hit_it():
    photo, hole, fill = _blobs()
    unlimited = transfer_detail(fill, hole, TextureConfig(max_repeat=0))
    np.testing.assert_array_equal(transfer_detail(fill, hole, TextureConfig(max_repeat=1e6)), unlimited)
    big = np.zeros_like(hole)
    big[32:] = True  # three quarters of the photo, filled flat: many blocks, alike, for few sources
    limited, free = transfer_detail(fill, big), transfer_detail(fill, big, TextureConfig(max_repeat=0))
    assert not np.array_equal(limited, free)
    np.testing.assert_array_equal(limited[~big], fill[~big])


@pytest.mark.parametrize("sigma", [1.0, 2.5, 8.0])
def test_gaussian_blur_fast_path_equals_the_convolution(sigma):
    from pconv.texture import _blur_conv, _gaussian_kernel

    x = torch.rand(2, 3, 40, 57, generator=torch.Generator().manual_seed(0))
    fast = gaussian_blur(x, sigma)
    assert fast.shape == x.shape
    torch.testing.assert_close(fast, _blur_conv(x, _gaussian_kernel(sigma)), atol=1e-5, rtol=0)
    tiny = x[:, :, :5, :6]  # smaller than the kernel: the convolution, with replicated borders
    torch.testing.assert_close(gaussian_blur(tiny, sigma), _blur_conv(tiny, _gaussian_kernel(sigma)))


def test_the_source_cap_holds_on_large_photos():
    """Past the block size the source stride keeps growing, so the search stays within max_sources."""
    from pconv.texture import _prepare, _sources

    photo, hole, fill = _scene(200)
    cfg = TextureConfig(max_sources=50)
    ys, xs = _sources(_prepare(fill, hole, cfg.block, cfg), cfg)
    assert 0 < ys.numel() <= 50
    assert (ys % 32 == 0).all() and (xs % 32 == 0).all()  # stride 4 doubled to 32, past the 16 px block
    out = transfer_detail(fill, hole, cfg)
    np.testing.assert_array_equal(out[~hole], photo[~hole])
    assert detail_ratio(out, photo, hole) > 0.5


def test_detail_strength_is_the_known_detail_rms_nearby():
    detail = torch.zeros(3, 64, 64)
    detail[:, 32:] = torch.where(torch.arange(64) % 2 == 0, 0.1, -0.1)  # rough below, smooth above
    hole = np.zeros((64, 64), bool)
    hole[24:40, 24:40] = True
    detail[:, hole] = 5.0  # what the hole holds is never read
    s = detail_strength(detail, hole, sigma=4.0).numpy()
    assert s[2, 30] < 1e-6 and abs(s[60, 30] - 0.1) < 1e-4  # far from the border: the side's own RMS
    assert s[26, 30] < 0.03 < 0.07 < s[37, 30] < 0.1 + 1e-6  # inside the hole: the nearer side's


def test_each_side_of_a_hole_copies_the_texture_beside_it():
    """Sky above, rock below, both grey on average; a fog fill of the same grey in a hole across
    both. By colour the flat fill is nearest the flat sky everywhere; the known detail's strength
    sends the rock side to rough sources and keeps the sky side smooth."""
    rng = np.random.default_rng(0)
    size = 128
    photo = np.full((size, size, 3), 128.0)
    photo[size // 2:] += rng.normal(0, 25, (size // 2, size, 1))
    photo = photo.clip(0, 255).round().astype(np.uint8)
    hole = np.zeros((size, size), bool)
    hole[32:96, 40:88] = True
    fill = photo.copy()
    fill[hole] = 128

    def halves(out: np.ndarray):
        up, down = hole.copy(), hole.copy()
        up[size // 2:], down[:size // 2] = False, False
        return hole_detail(out, up), hole_detail(out, down)

    up, down = halves(transfer_detail(fill, hole))
    assert up < 0.1 * down  # the sky side stays smooth, the rock side is rough
    assert down > 0.5 * hole_detail(photo, hole & (np.arange(size) >= size // 2)[:, None])
    _, down0 = halves(transfer_detail(fill, hole, TextureConfig(energy_weight=0)))
    assert down0 < 0.3 * down  # by colour alone the rock side copies sky too

"""Detail transfer (pconv.texture): exactness, determinism, what each step does, and its errors.

Every step and every ``TextureConfig`` setting has a test that fails when the step is removed or
the setting ignored. Measured by ``scripts/mutation_check.py --only texture`` (each break applied to
a copy of the source, this file run against it); the break, then the tests that failed (``test_``
left off):

- no coherence step: coherence_lets_neighbours_copy_one_continuous_piece
- propagation rounds ignored: coherence_lets_neighbours_copy_one_continuous_piece
- coherence factor ignored: coherence_lets_neighbours_copy_one_continuous_piece
- coherence moves the edge blocks too: coherence_lets_neighbours_copy_one_continuous_piece,
  edge_blocks_continue_the_known_texture_across_the_edge
- coherence adopts sources that overlap the hole: coherence_lets_neighbours_copy_one_continuous_piece
- no thin-hole gate: thin_hole_parts_keep_the_fill_as_it_is
- min_width ignored: thin_hole_parts_keep_the_fill_as_it_is
- no edge re-ranking: edge_blocks_continue_the_known_texture_across_the_edge,
  every_setting_reaches_the_result[rerank-8]
- rerank ignored: edge_blocks_continue_the_known_texture_across_the_edge,
  every_setting_reaches_the_result[rerank-8]
- re-ranking by squared error instead of correlation: edge_blocks_rerank_by_correlation_not_by_squared_error
- edge_known ignored: edge_blocks_continue_the_known_texture_across_the_edge
- no repeat limit: spread_sets_how_far_down_its_list_a_block_may_move,
  repeat_limit_changes_only_fills_that_hit_it, every_setting_reaches_the_result[spread-20]
- max_repeat ignored: repeat_limit_spreads_blocks_over_sources_and_keeps_draws_under_it,
  repeat_limit_changes_only_fills_that_hit_it
- the farthest source under the limit: repeat_limit_spreads_blocks_over_sources_and_keeps_draws_under_it
- a full list falls back to its first source, not the least used:
  repeat_limit_falls_back_to_the_least_used_source_of_a_full_list
- the repeat limit moves the edge blocks too:
  repeat_limit_spreads_blocks_over_sources_and_keeps_draws_under_it,
  repeat_limit_falls_back_to_the_least_used_source_of_a_full_list,
  edge_blocks_continue_the_known_texture_across_the_edge
- the edge's uses not counted: repeat_limit_spreads_blocks_over_sources_and_keeps_draws_under_it,
  repeat_limit_falls_back_to_the_least_used_source_of_a_full_list,
  coherence_lets_neighbours_copy_one_continuous_piece
- spread ignored: spread_sets_how_far_down_its_list_a_block_may_move,
  every_setting_reaches_the_result[spread-20]
- no mid band: the_mid_band_restores_coarse_texture_deep_in_the_hole_and_leaves_the_edge_alone,
  mid_band_settings_scale_place_and_size_it
- mid_gain ignored (as 1): mid_band_settings_scale_place_and_size_it
- mid_sigma ignored: mid_band_settings_scale_place_and_size_it
- mid_start ignored: mid_band_settings_scale_place_and_size_it
- mid_ramp ignored: mid_band_settings_scale_place_and_size_it
- mid band at full weight up to the edge: mid_weight_grows_with_the_distance_from_the_known_region,
  thin_hole_parts_keep_the_fill_as_it_is, mid_band_settings_scale_place_and_size_it
- no detail-strength descriptor: each_side_of_a_hole_copies_the_texture_beside_it,
  detail_strength_descriptor_follows_energy_weight_and_energy_sigma,
  every_setting_reaches_the_result[energy_sigma-8.0]
- energy_weight ignored (as 6): detail_strength_descriptor_follows_energy_weight_and_energy_sigma
- energy_sigma ignored: detail_strength_descriptor_follows_energy_weight_and_energy_sigma,
  every_setting_reaches_the_result[energy_sigma-8.0]
- energy_mean ignored (as the RMS): a_few_strong_edges_beside_a_hole_do_not_call_rough_texture_into_it
- the geometric strength without its scale to the RMS:
  geometric_strength_reads_dense_detail_as_the_rms_and_a_few_edges_low
- detail strength reads the hole's pixels too: detail_strength_is_the_known_detail_rms_nearby,
  edge_blocks_continue_the_known_texture_across_the_edge
- no source cap: the_source_cap_holds_on_large_photos
- max_sources ignored: the_source_cap_holds_on_large_photos
- source_stride ignored: sources_lie_on_the_stride_grid_wholly_in_the_known_region,
  every_setting_reaches_the_result[source_stride-8]
- sources may overlap the hole: known_pixels_exact_and_hole_gains_the_photos_detail,
  the_copied_detail_comes_from_the_known_region, edge_cases
- candidates ignored (as 4): edge_blocks_continue_the_known_texture_across_the_edge,
  candidates_set_how_many_nearest_sources_the_draw_picks_from, every_setting_reaches_the_result[candidates-2]
- no draw, always the nearest: candidates_set_how_many_nearest_sources_the_draw_picks_from,
  every_setting_reaches_the_result[candidates-2]
- seed ignored: deterministic_for_a_seed_and_the_seed_matters,
  candidates_set_how_many_nearest_sources_the_draw_picks_from
- gain ignored (as 0.85): gain_scales_the_pasted_detail
- sigma ignored: sigma_splits_off_the_detail_that_is_copied
- block ignored: every_setting_reaches_the_result[block-8]
- context ignored: every_setting_reaches_the_result[context-1]
- plain mean instead of variance-preserving blending: known_pixels_exact_and_hole_gains_the_photos_detail,
  paste_reproduces_one_continuous_piece_and_leaves_no_seams
- no sin² window: edge_blocks_continue_the_known_texture_across_the_edge,
  paste_reproduces_one_continuous_piece_and_leaves_no_seams
- known pixels not restored: thin_hole_parts_keep_the_fill_as_it_is
- the fast blur's border replicated, not reflected: gaussian_blur_fast_path_equals_the_convolution[1.0],
  gaussian_blur_fast_path_equals_the_convolution[2.5], gaussian_blur_fast_path_equals_the_convolution[8.0]
"""
import numpy as np
import pytest
import torch

from pconv.errors import PConvError
from pconv.metrics import detail_ratio, hole_detail
from pconv.texture import (TextureConfig, _limit_repeats, detail_strength, gaussian_blur, high_pass, mid_weight,
                           transfer_detail)


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
    with pytest.raises(PConvError, match="energy_mean"):
        TextureConfig(energy_mean="median")
    with pytest.raises(PConvError, match="'geometric' or 'rms'"):
        detail_strength(torch.zeros(3, 8, 8), np.zeros((8, 8), bool), 2.0, "median")
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
    n_tgt, n_src = 40, 10
    nearest = torch.stack([torch.roll(torch.arange(n_src), -i) for i in range(n_tgt)])  # each its own order
    choice = torch.zeros(n_tgt, dtype=torch.long)  # every block drew source 0
    edge = torch.zeros(n_tgt, dtype=torch.bool)
    edge[:3] = True  # edge blocks keep their pick whatever the count
    out = _limit_repeats(choice, nearest, edge, n_src, 2.0, torch.Generator().manual_seed(0))
    limit = 8  # 2.0 x 40 blocks / 10 sources: room for 80 uses, so most sources stay under it
    assert torch.equal(out[:3], choice[:3])
    counts = torch.bincount(out, minlength=n_src)  # the edge's uses count against the limit too
    assert int(counts.max()) <= limit and int(counts[0]) == limit
    for i in range(3, n_tgt):
        if out[i] == choice[i]:
            continue
        # a moved block took the first source of its list under the limit: every source before it
        # in the list had reached the limit by then (and counts only grow)
        place = nearest[i].tolist().index(int(out[i]))
        assert all(int(counts[s]) >= limit for s in nearest[i][:place].tolist()), i
    assert int((out[3:] != 0).sum()) == n_tgt - limit  # only the blocks over the limit moved
    again = _limit_repeats(choice, nearest, edge, n_src, 2.0, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    # under the limit, every draw stands
    spread = torch.arange(n_tgt) % n_src
    assert torch.equal(_limit_repeats(spread, nearest, edge, n_src, 1.0, torch.Generator().manual_seed(0)), spread)


def test_repeat_limit_falls_back_to_the_least_used_source_of_a_full_list():
    """Lists shorter than the sources (``spread``): when every source of a block's list is at the
    limit, the block takes the least used of them."""
    n_src = 4
    choice = torch.tensor([0, 0, 0, 1, 1, 1, 1, 0])  # limit = ceil(1.0 x 8 / 4) = 2
    nearest = torch.tensor([[1, 0]] * 8)  # every list: source 1 first, then 0
    edge = torch.tensor([False, False, False, True, True, True, True, False])  # the edge puts 4 uses on 1
    out = _limit_repeats(choice, nearest, edge, n_src, 1.0, torch.Generator().manual_seed(0))
    assert out[edge].tolist() == [1, 1, 1, 1]
    # off the edge: two blocks keep 0; the others find 1 (4 uses) and 0 (2, then 3) at the limit:
    # they take 0, the less used, not the first of their list
    assert out[~edge].tolist() == [0, 0, 0, 0]


def test_spread_sets_how_far_down_its_list_a_block_may_move(monkeypatch):
    """The lists handed to the repeat limit are ``spread`` long (at least ``rerank``)."""
    import pconv.texture as texture

    widths = []
    real = texture._limit_repeats

    def spy(choice, nearest, *args):
        widths.append(nearest.shape[1])
        return real(choice, nearest, *args)

    monkeypatch.setattr(texture, "_limit_repeats", spy)
    photo, hole, fill = _blobs()
    for spread in (3, 40):
        transfer_detail(fill, hole, TextureConfig(spread=spread))
    assert widths == [16, 40]  # 3 < rerank (16): the rerank list; 40: itself
    transfer_detail(fill, hole, TextureConfig(max_repeat=0))
    assert len(widths) == 2  # no limit: not called


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
    s = detail_strength(detail, hole, sigma=4.0, mean="rms").numpy()
    assert s[2, 30] < 1e-6 and abs(s[60, 30] - 0.1) < 1e-4  # far from the border: the side's own RMS
    assert s[26, 30] < 0.03 < 0.07 < s[37, 30] < 0.1 + 1e-6  # inside the hole: the nearer side's


def test_geometric_strength_reads_dense_detail_as_the_rms_and_a_few_edges_low():
    """On Gaussian noise the geometric strength equals the RMS (within the floor's few per cent);
    two thin strong lines across smooth ground raise the RMS, barely the geometric mean; the hole's
    pixels are never read, and far inside a hole the strength falls to 0 as the RMS does."""
    g = torch.Generator().manual_seed(0)
    detail = torch.zeros(3, 96, 96)
    detail[:, :, 48:] = torch.randn(96, 48, generator=g) * 0.05  # rough ground, right
    detail[:, 40:42, :48] = 0.4  # two lines across smooth ground, left
    detail[:, 60:62, :48] = -0.4
    hole = np.zeros((96, 96), bool)
    rms = detail_strength(detail, hole, 8.0, "rms")
    geo = detail_strength(detail, hole, 8.0, "geometric")
    assert abs(float(geo[50, 80] / rms[50, 80]) - 1) < 0.12  # dense detail: alike
    assert float(rms[50, 20]) > 0.1 and float(geo[50, 20]) < 0.25 * float(rms[50, 20])  # sparse edges
    hole[:, 44:] = True
    inside = detail_strength(detail, hole, 8.0, "geometric")
    detail[:, hole] = 5.0
    torch.testing.assert_close(detail_strength(detail, hole, 8.0, "geometric"), inside)  # the hole is never read
    assert float(inside[:, 90:].max()) < 1e-4  # far inside: 0


def test_a_few_strong_edges_beside_a_hole_do_not_call_rough_texture_into_it():
    """Flat ground with thin dark lines (another object's outline left beside the hole) on the
    left, rough ground of the same mean on the right, and a hole in the flat ground below the
    lines. By the RMS the lines make the place look rough and the hole copies rough ground; by the
    geometric mean (the default) it stays as smooth as the ground around it."""
    rng = np.random.default_rng(0)
    size = 192
    photo = np.full((size, size, 3), 128.0)
    photo[:, 128:] += rng.normal(0, 25, (size, size - 128, 1))
    for y in (50, 56, 62):
        photo[y:y + 2, 0:90] = 40.0
    photo = photo.clip(0, 255).round().astype(np.uint8)
    hole = np.zeros((size, size), bool)
    hole[64:140, 8:80] = True
    fill = photo.copy()
    fill[hole] = 128
    inner = hole.copy()
    inner[64:76] = False  # off the edge blocks, which continue the lines
    rough = hole_detail(photo, np.arange(size)[None, :].repeat(size, 0) >= 128)
    geometric = hole_detail(transfer_detail(fill, hole), inner)
    rms = hole_detail(transfer_detail(fill, hole, TextureConfig(energy_mean="rms")), inner)
    assert rms > 0.08 * rough and geometric < 0.05 * rms


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


def _internals(fill: np.ndarray, hole: np.ndarray, cfg: TextureConfig = TextureConfig()):
    """The photo, sources, targets, edge flags and matched source origins, as transfer_detail makes them."""
    from pconv.texture import _match, _prepare, _sources, _targets

    photo = _prepare(fill, hole, cfg.block, cfg)
    src = _sources(photo, cfg)
    ty, tx, grid = _targets(photo, hole)
    edge = photo.hole_share[ty, tx] <= 1.0 - cfg.edge_known
    choice = _match(photo, src, (ty, tx), edge, cfg, 0)
    return photo, (ty, tx), grid, edge, src[0][choice], src[1][choice]


def _coherent_share(tgt, grid: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor) -> float:
    """Share of horizontally or vertically adjacent target blocks that copy with one displacement."""
    dy, dx = cy - tgt[0], cx - tgt[1]
    same, pairs = 0, 0
    for a in range(grid.shape[0]):
        for b in range(grid.shape[1]):
            for na, nb in ((a + 1, b), (a, b + 1)):
                if grid[a, b] >= 0 and na < grid.shape[0] and nb < grid.shape[1] and grid[na, nb] >= 0:
                    i, j = int(grid[a, b]), int(grid[na, nb])
                    pairs += 1
                    same += int(dy[i] == dy[j] and dx[i] == dx[j])
    return same / pairs


def test_coherence_lets_neighbours_copy_one_continuous_piece():
    """``_propagate``: blocks adopt a neighbour's shifted source when it is nearly as close
    (``coherence``), over ``propagation`` rounds; edge blocks stay, sources stay wholly known."""
    from pconv.texture import _propagate

    photo, hole, fill = _blobs()
    p, tgt, grid, edge, cy0, cx0 = _internals(fill, hole)
    d_tgt = p.descriptors(*tgt)

    def run(**settings):
        cy, cx = _propagate(p, cy0, cx0, tgt, grid, edge, TextureConfig(**settings))
        return cy, cx, ((p.descriptors(cy, cx) - d_tgt) ** 2).sum(1)

    d0 = ((p.descriptors(cy0, cx0) - d_tgt) ** 2).sum(1)
    cy, cx, _ = run(propagation=0)
    assert torch.equal(cy, cy0) and torch.equal(cx, cx0)  # no rounds: the matches stand
    before = _coherent_share(tgt, grid, cy0, cx0)
    results = {}
    for rounds, factor in ((1, 1.5), (4, 1.5), (4, 1.0)):
        cy, cx, d = run(propagation=rounds, coherence=factor)
        results[rounds, factor] = (cy, cx)
        moved = (cy != cy0) | (cx != cx0)
        assert not moved[edge].any()  # blocks on the hole's edge keep their re-ranked source
        hy, hx = np.nonzero(hole)
        for y, x in zip(cy[moved].tolist(), cx[moved].tolist()):  # adopted sources: wholly known
            assert not hole[y:y + p.block, x:x + p.block].any()
        assert (d <= factor * d0 + 1e-6).all()  # never more than `coherence` x the matched distance
    default = results[4, 1.5]
    assert _coherent_share(tgt, grid, *default) > before + 0.15  # neighbours now copy one piece
    assert not torch.equal(default[0], results[1, 1.5][0]) or not torch.equal(default[1], results[1, 1.5][1])
    strict_moved = int(((results[4, 1.0][0] != cy0) | (results[4, 1.0][1] != cx0)).sum())
    loose_moved = int(((default[0] != cy0) | (default[1] != cx0)).sum())
    assert 0 < strict_moved < loose_moved  # a looser factor adopts more
    # end to end, the step changes what is pasted
    assert not np.array_equal(transfer_detail(fill, hole), transfer_detail(fill, hole, TextureConfig(propagation=0)))


def test_thin_hole_parts_keep_the_fill_as_it_is():
    """``min_width``: a 3 px scratch keeps its fill exactly, a large hole beside it gains detail; with
    a gate narrower than the scratch (or none) the scratch gains detail too."""
    photo, hole, fill = _scene(96)
    scratch = np.zeros_like(hole)
    scratch[80:83, 10:86] = True
    both = hole | scratch
    fill[scratch] = photo[scratch].mean(0).round().astype(np.uint8)
    for width, gated in ((5, True), (7, True), (3, False), (0, False)):
        out = transfer_detail(fill, both, TextureConfig(min_width=width))
        assert np.array_equal(out[scratch], fill[scratch]) == gated, width
        assert (out[hole] != fill[hole]).any(-1).mean() > 0.9  # the square gains detail either way
        np.testing.assert_array_equal(out[~both], fill[~both])  # blocks reach over the known pixels: kept


def _stripes(size: int = 96):
    """Slanted grey stripes (period 7 px, so sources on a 4 px grid differ in phase), a square hole
    filled flat, and the ring of hole pixels within 4 px of the known region."""
    import cv2

    yy, xx = np.mgrid[0:size, 0:size]
    stripes = 128 + 40 * np.sin(2 * np.pi * (xx + 0.3 * yy) / 7.0)
    photo = np.repeat(stripes[..., None], 3, -1).round().astype(np.uint8)
    hole = np.zeros((size, size), bool)
    hole[30:66, 30:66] = True
    fill = photo.copy()
    fill[hole] = 128
    depth = cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, 5)
    return photo, hole, fill, hole & (depth <= 4)


def test_edge_blocks_continue_the_known_texture_across_the_edge():
    """Re-ranking: blocks on the hole's edge take, among ``rerank`` nearest, the source whose detail
    agrees with their known pixels, so the stripes run on in phase; without it (``edge_known`` =
    1: no block counts as an edge block) the phase is random."""
    photo, hole, fill, ring = _stripes()

    def ring_correlation(cfg: TextureConfig) -> float:
        out = transfer_detail(fill, hole, cfg).astype(float)[..., 0]
        return float(np.corrcoef(out[ring], photo[..., 0].astype(float)[ring])[0, 1])

    default = ring_correlation(TextureConfig())
    assert default > 0.9
    assert ring_correlation(TextureConfig(edge_known=1.0)) < 0.6  # no edge blocks: no re-ranking
    assert ring_correlation(TextureConfig(edge_known=0.5)) < default - 0.05  # fewer edge blocks
    assert ring_correlation(TextureConfig(rerank=4)) < default - 0.05  # a shorter list to choose from
    assert ring_correlation(TextureConfig(rerank=1, candidates=1)) < 0.3  # nothing to choose from


def test_gain_scales_the_pasted_detail():
    photo, hole, fill = _blobs()
    no_mid = dict(mid_gain=0)
    np.testing.assert_array_equal(transfer_detail(fill, hole, TextureConfig(gain=0, **no_mid)), fill)
    half = transfer_detail(fill, hole, TextureConfig(gain=0.5, **no_mid)).astype(float) - fill
    full = transfer_detail(fill, hole, TextureConfig(gain=1.0, **no_mid)).astype(float) - fill
    assert np.abs(full[hole]).mean() > 5
    assert np.abs(full - 2 * half).max() <= 1.0  # linear, up to rounding to whole grey levels


def _depth(hole: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def test_mid_band_settings_scale_place_and_size_it():
    """``mid_gain`` scales the band linearly, ``mid_start`` and ``mid_ramp`` set where it begins and
    how fast it grows, ``mid_sigma`` its coarsest scale."""
    photo, hole, fill = _blobs()
    depth = _depth(hole)
    base = transfer_detail(fill, hole, TextureConfig(mid_gain=0)).astype(float)

    def band(**settings) -> np.ndarray:
        return transfer_detail(fill, hole, TextureConfig(**settings)).astype(float) - base

    core = depth > 20
    one, half = band(mid_gain=1.0), band(mid_gain=0.5)
    assert np.abs(one[core]).mean() > 10
    assert (np.abs(one - 2 * half)[core] <= 1.0).mean() > 0.95  # linear (up to rounding and clipping)
    late = band(mid_start=10.0)
    assert np.abs(late[hole & (depth <= 10)]).max() == 0  # nothing before mid_start px ...
    assert np.abs(late[hole & (depth > 12)]).mean() > 2  # ... and the band after it
    steep, gentle = band(mid_ramp=1.0), band(mid_ramp=12.0)
    shallow = hole & (depth > 5) & (depth <= 8)
    assert np.abs(steep[shallow]).mean() > 2.5 * np.abs(gentle[shallow]).mean()  # full gain at 5 px, not 1/12
    assert np.abs(band(mid_sigma=4.0)[core]).mean() < 0.6 * np.abs(one[core]).mean()  # a narrower band


def test_sigma_splits_off_the_detail_that_is_copied():
    """A larger ``sigma`` puts coarser structure into the detail layer: more of the blobs are copied."""
    photo, hole, fill = _blobs()
    core = _depth(hole) > 20

    def added(sigma: float) -> float:
        out = transfer_detail(fill, hole, TextureConfig(sigma=sigma, mid_gain=0)).astype(float)
        return float(np.abs(out - fill)[core].mean())

    assert added(1.0) < 0.5 * added(2.5) < 0.5 * added(6.0)


def test_detail_strength_descriptor_follows_energy_weight_and_energy_sigma():
    """The descriptor's strength channel is ``energy_weight`` × the known detail's RMS, smoothed by
    ``energy_sigma``: inside the hole just above rough ground it reads the rock more the wider the
    Gaussian."""
    from pconv.texture import _prepare

    rng = np.random.default_rng(0)
    size = 128
    photo = np.full((size, size, 3), 128.0)
    photo[size // 2:] += rng.normal(0, 25, (size // 2, size, 1))
    photo = photo.clip(0, 255).round().astype(np.uint8)
    hole = np.zeros((size, size), bool)
    hole[32:96, 40:88] = True

    def pooled(**settings) -> torch.Tensor:
        cfg = TextureConfig(**settings)
        return _prepare(photo, hole, cfg.block, cfg).pooled

    default, light = pooled(), pooled(energy_weight=1.5)
    assert default.shape[0] == 4 and pooled(energy_weight=0).shape[0] == 3  # colours (+ strength)
    torch.testing.assert_close(light[:3], default[:3])
    torch.testing.assert_close(light[3], default[3] / 4, rtol=1e-5, atol=1e-6)  # linear in the weight
    # pooled[3] at (y, x) is the cell mean starting at (y - margin, x - margin), margin = 16 px
    above = (slice(40 + 16, 52 + 16), slice(50 + 16, 78 + 16))  # 12 to 24 px above the rough half
    narrow, wide = pooled(energy_sigma=4.0)[3][above].mean(), pooled(energy_sigma=64.0)[3][above].mean()
    assert narrow < 0.3 * wide


def test_sources_lie_on_the_stride_grid_wholly_in_the_known_region():
    """Every block on the ``source_stride`` grid that holds no hole pixel, and no other."""
    from pconv.texture import _prepare, _sources

    photo, hole, fill = _scene(96)
    for stride in (4, 8):
        cfg = TextureConfig(source_stride=stride)
        ys, xs = _sources(_prepare(fill, hole, cfg.block, cfg), cfg)
        b = cfg.block
        expected = {(y, x) for y in range(0, 96 - b + 1, stride) for x in range(0, 96 - b + 1, stride)
                    if not hole[y:y + b, x:x + b].any()}
        assert set(zip(ys.tolist(), xs.tolist())) == expected


def test_candidates_set_how_many_nearest_sources_the_draw_picks_from():
    """With one candidate (and no repeat limit, whose visiting order is seeded) the seed cannot
    matter; with several it does."""
    photo, hole, fill = _blobs()

    def pair(n: int):
        cfg = TextureConfig(candidates=n, max_repeat=0)
        return transfer_detail(fill, hole, cfg, seed=3), transfer_detail(fill, hole, cfg, seed=4)

    np.testing.assert_array_equal(*pair(1))
    assert not np.array_equal(*pair(4))
    assert not np.array_equal(pair(2)[0], pair(4)[0])


def test_paste_reproduces_one_continuous_piece_and_leaves_no_seams():
    """``_paste``: blocks with one displacement give the shifted layer exactly (weights sum to one);
    blocks copying unrelated places blend without steps at the block borders (the sin² window)."""
    from pconv.texture import _Photo, _paste

    size, b = 96, 16
    layer = gaussian_blur(torch.randn(1, 1, size, size, generator=torch.Generator().manual_seed(0)), 6.0)[0]
    layer = layer / layer.std()
    photo = _Photo(image=torch.zeros(3, size, size), detail=layer, layers=layer, pooled=torch.zeros(1),
                   known=torch.ones(size, size), hole_share=torch.zeros(size - b + 1, size - b + 1), block=b, cell=1)
    ys, xs = torch.meshgrid(torch.arange(16, 64, b // 2), torch.arange(16, 64, b // 2), indexing="ij")
    ty, tx = ys.reshape(-1), xs.reshape(-1)
    inner = (slice(24, 64), slice(24, 64))  # covered by four blocks everywhere
    shifted = _paste(photo, ty + 5, tx - 3, ty, tx)[0]
    torch.testing.assert_close(shifted[inner], layer[0].roll((-5, 3), (0, 1))[inner], atol=1e-5, rtol=0)
    g = torch.Generator().manual_seed(1)
    mixed = _paste(photo, torch.randint(0, size - b, ty.shape, generator=g),
                   torch.randint(0, size - b, tx.shape, generator=g), ty, tx)[0][inner]
    steps = mixed.diff(dim=1).abs()  # steps[:, j]: between columns 24 + j and 25 + j
    border = steps[:, 7::8].mean()  # into columns 32, 40, ...: where blocks start and end
    assert border < 1.3 * steps.mean()
    assert 0.7 < float(mixed.std()) < 1.4  # the blend keeps the layer's contrast


@pytest.mark.parametrize("field, value", [("block", 8), ("context", 1), ("candidates", 2), ("source_stride", 8),
                                          ("spread", 20), ("rerank", 8), ("energy_sigma", 8.0)])
def test_every_setting_reaches_the_result(field, value):
    """A safety net: each setting, changed, changes the fill (known pixels stay exact)."""
    photo, hole, fill = _blobs()
    out = transfer_detail(fill, hole, TextureConfig(**{field: value}))
    np.testing.assert_array_equal(out[~hole], fill[~hole])
    assert not np.array_equal(out, transfer_detail(fill, hole))


def test_edge_blocks_rerank_by_correlation_not_by_squared_error():
    """Rough noise on the left half, flat grey on the right, the same mean colour, and a hole in the
    rough half. By colour alone (``energy_weight=0``) an edge block's nearest sources are rough and
    flat alike; no rough source matches its known noise, so a flat one has the least squared error
    against it, while the correlation picks the rough source that agrees best: the texture goes on
    across the edge."""
    import cv2

    rng = np.random.default_rng(0)
    size = 128
    photo = np.full((size, size, 3), 128.0)
    photo[:, :64] += rng.normal(0, 25, (size, 64, 1))
    photo = photo.clip(0, 255).round().astype(np.uint8)
    hole = np.zeros((size, size), bool)
    hole[40:88, 12:52] = True
    fill = photo.copy()
    fill[hole] = 128
    ring = hole & (cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, 5) <= 6)

    def ring_detail(**settings) -> float:
        out = transfer_detail(fill, hole, TextureConfig(energy_weight=0, **settings))
        return hole_detail(out, ring) / hole_detail(photo, ring)

    reranked, drawn = ring_detail(), ring_detail(edge_known=1.0)  # edge_known=1: no block re-ranked
    assert reranked > 0.25 and reranked > 2 * drawn


def test_box_mean_is_the_mean_of_every_valid_window() -> None:
    """The descriptor cells' means, against a direct loop over the windows."""
    from pconv.texture import _box_mean

    x = torch.rand(2, 23, 31, generator=torch.Generator().manual_seed(0)) * 100
    size = 5
    got = _box_mean(x, size)
    assert got.shape == (2, 23 - size + 1, 31 - size + 1)
    ref = np.array([[[x[c, i:i + size, j:j + size].double().mean().item() for j in range(31 - size + 1)]
                     for i in range(23 - size + 1)] for c in range(2)])
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-6, atol=1e-5)


def test_painting_only_the_targets_box_matches_the_whole_photo() -> None:
    """transfer_detail paints the hole's box alone: the opening (parts at least ``min_width`` wide)
    and the mid band's depth computed there equal the whole photo's, holes at the edge included."""
    import cv2

    from pconv.texture import _opened

    rng = np.random.default_rng(0)
    for trial in range(8):
        hole = np.zeros((90, 120), bool)
        for _ in range(3):
            y, x, r = rng.integers(0, 90), rng.integers(0, 120), rng.integers(2, 15)
            hole[max(0, y - r): y + r, max(0, x - r): x + 2 * r] = True
        ys, xs = np.nonzero(hole)
        tight = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
        for width in (2, 3, 5, 8):
            full = cv2.morphologyEx(hole.astype(np.uint8), cv2.MORPH_OPEN, np.ones((width, width), np.uint8)) > 0
            np.testing.assert_array_equal(_opened(hole, tight, width), full[tight[0]:tight[1], tight[2]:tight[3]])
        y0, y1, x0, x1 = max(0, tight[0] - 1), min(90, tight[1] + 1), max(0, tight[2] - 1), min(120, tight[3] + 1)
        torch.testing.assert_close(mid_weight(hole[y0:y1, x0:x1], 2.0, 5.0),
                                   mid_weight(hole, 2.0, 5.0)[y0:y1, x0:x1], rtol=0, atol=1e-6)

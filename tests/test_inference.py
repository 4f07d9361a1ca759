"""pconv.inference.Inpainter: any size, strategies, exact known pixels, masks, alpha, errors."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pconv
from pconv.errors import PConvError
from pconv.inference import Inpainter, _grow_box, hole_regions, to_hole_array
from pconv.model import PConvUNet, PConvUNetConfig
from pconv.weights import save_weights

TINY = PConvUNetConfig(channels=(8, 16, 16), kernels=(7, 5, 3), image_size=64)  # multiple 8


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = PConvUNet(TINY)
    for m in model.modules():  # non-trivial BN statistics, so eval mode matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return save_weights(model, tmp_path_factory.mktemp("w") / "tiny.safetensors")


@pytest.fixture(scope="module")
def inp(weights: Path) -> Inpainter:
    """The network's fill alone: what the tests that rebuild the network's output by hand need."""
    return Inpainter(weights, method="pconv-smooth", precision="fp32")


@pytest.fixture(scope="module")
def photo(weights: Path) -> Inpainter:
    """The default method, the photographic fill (network + detail transfer)."""
    return Inpainter(weights, precision="fp32")


@pytest.fixture(params=["pconv-smooth", "pconv"])
def either(request: pytest.FixtureRequest, inp: Inpainter, photo: Inpainter) -> Inpainter:
    return inp if request.param == "pconv-smooth" else photo


def _img(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _hole(h: int, w: int) -> np.ndarray:
    hole = np.zeros((h, w), bool)
    hole[h // 3: h // 2 + 1, w // 4: w // 2 + 1] = True
    hole[-2:, -3:] = True
    return hole


def _reference(model: PConvUNet, rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The network by hand: pad to the multiple with padding = hole, run in fp32, crop, composite."""
    h, w = hole.shape
    m = model.config.multiple
    ph, pw = -(-h // m) * m, -(-w // m) * m
    x = torch.zeros(1, 3, ph, pw)
    x[0, :, :h, :w] = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    valid = torch.zeros(1, 1, ph, pw)
    valid[0, 0, :h, :w] = torch.from_numpy(~hole).float()
    with torch.no_grad():
        y = model.eval()(x, valid)[0, :, :h, :w].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    return np.where(hole[:, :, None], y, rgb)


def test_exported_from_package() -> None:
    assert pconv.Inpainter is Inpainter


@pytest.mark.parametrize("size", [(5, 7), (37, 53), (64, 64), (65, 8), (100, 129)])
@pytest.mark.parametrize("strategy", ["auto", "original", "crop", "resize"])
def test_known_pixels_exact_any_size(either: Inpainter, size, strategy) -> None:
    h, w = size
    rgb, hole = _img(h, w), _hole(h, w)
    res = either.inpaint(rgb, hole, strategy=strategy)
    assert res.image.shape == rgb.shape and res.image.dtype == np.uint8
    np.testing.assert_array_equal(res.image[~hole], rgb[~hole])
    assert (res.image[hole] != rgb[hole]).any(axis=-1).mean() > 0.5  # the hole was filled, not passed through
    assert res.windows >= 1 and not res.empty_mask


def test_original_matches_padded_network_by_hand(inp: Inpainter) -> None:
    rgb, hole = _img(37, 53), _hole(37, 53)
    out = inp(rgb, hole, strategy="original")
    np.testing.assert_array_equal(out, _reference(inp.model, rgb, hole))


@pytest.mark.parametrize("strategy", ["original", "crop", "resize"])
def test_hole_content_never_leaks(either: Inpainter, strategy) -> None:
    """What lies under the hole (the object to remove) cannot change the fill."""
    rgb, hole = _img(150, 170), _hole(150, 170)
    other = rgb.copy()
    other[hole] = 255 - other[hole]
    np.testing.assert_array_equal(either(rgb, hole, strategy=strategy), either(other, hole, strategy=strategy))


def test_auto_rule(inp: Inpainter) -> None:
    assert inp.choose_strategy(128, 100) == "original"  # long side <= 2 * image_size (64)
    assert inp.choose_strategy(50, 129) == "crop"
    assert inp.choose_strategy(50, 129, "resize") == "resize"
    with pytest.raises(PConvError, match="unknown strategy 'tile'"):
        inp.choose_strategy(10, 10, "tile")
    res = inp.inpaint(_img(40, 200), _hole(40, 200))
    assert res.strategy == "crop"


def test_crop_runs_the_network_on_the_window(inp: Inpainter) -> None:
    """One small hole in a big image: the fill is the network's on a training-size window around it."""
    h, w = 200, 300
    rgb = _img(h, w)
    hole = np.zeros((h, w), bool)
    hole[120:131, 280:292] = True
    res = inp.inpaint(rgb, hole, strategy="crop")
    assert res.windows == 1
    y0, y1, x0, x1 = _grow_box((120, 131, 280, 292), inp.crop_margin, 64, h, w)
    assert (y1 - y0, x1 - x0) == (64, 64) and x1 == w  # kept inside the image
    expected = _reference(inp.model, rgb[y0:y1, x0:x1], hole[y0:y1, x0:x1])
    np.testing.assert_array_equal(res.image[y0:y1, x0:x1], expected)


def test_crop_one_window_per_far_apart_hole_group(inp: Inpainter) -> None:
    h, w = 300, 400
    hole = np.zeros((h, w), bool)
    hole[10:20, 10:20] = True
    hole[12:18, 25:30] = True  # close to the first: same window
    hole[250:270, 350:380] = True
    hole[150:152, 200:300] = True
    res = inp.inpaint(_img(h, w), hole, strategy="crop")
    assert res.windows == 3


def test_crop_downscales_windows_bigger_than_training_size(inp: Inpainter) -> None:
    h, w = 300, 300
    rgb, hole = _img(h, w), np.zeros((h, w), bool)
    hole[50:250, 60:240] = True  # 200 px hole: window > 64, network sees it at 64
    res = inp.inpaint(rgb, hole, strategy="crop")
    np.testing.assert_array_equal(res.image[~hole], rgb[~hole])
    assert res.windows == 1


def test_hole_regions_partition_the_hole() -> None:
    rng = np.random.default_rng(1)
    hole = rng.random((90, 130)) > 0.995
    hole[40:60, 50:70] = True
    regions = hole_regions(hole, merge_distance=8)
    count = np.zeros(hole.shape, int)
    for (y0, y1, x0, x1), own in regions:
        assert own.shape == (y1 - y0, x1 - x0)
        count[y0:y1, x0:x1] += own
    np.testing.assert_array_equal(count, hole.astype(int))  # each hole pixel exactly once


def test_empty_mask_returns_image_unchanged(inp: Inpainter, caplog: pytest.LogCaptureFixture) -> None:
    rgb = _img(20, 30)
    with caplog.at_level(logging.INFO, logger="pconv.inference"):
        res = inp.inpaint(rgb, np.zeros((20, 30), bool))
    assert res.empty_mask and res.windows == 0
    np.testing.assert_array_equal(res.image, rgb)
    assert "no hole" in caplog.text


def test_all_hole_mask_is_an_error(inp: Inpainter) -> None:
    with pytest.raises(PConvError, match="covers the whole image.*no known pixels.*invert"):
        inp(_img(20, 30), np.ones((20, 30), bool))


def test_mask_size_mismatch_and_resize(inp: Inpainter) -> None:
    rgb = _img(40, 60)
    small = np.zeros((20, 30), bool)
    small[5:10, 5:10] = True
    with pytest.raises(PConvError, match=r"mask is 30×20.*image is 60×40.*--resize-mask"):
        inp(rgb, small)
    res = inp.inpaint(rgb, small, resize_mask=True)
    big = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)
    np.testing.assert_array_equal(res.hole, big)


def test_mask_conventions() -> None:
    u8 = np.array([[0, 127, 128, 255]], np.uint8)
    np.testing.assert_array_equal(to_hole_array(u8), [[False, False, True, True]])  # level > 0.5
    np.testing.assert_array_equal(to_hole_array(u8, invert=True), [[True, True, False, False]])
    np.testing.assert_array_equal(to_hole_array(u8, threshold=0.1), [[False, True, True, True]])
    np.testing.assert_array_equal(to_hole_array(np.array([[0.0, 0.6, 1.0]])), [[False, True, True]])
    np.testing.assert_array_equal(to_hole_array(np.array([[True, False]])), [[True, False]])
    np.testing.assert_array_equal(to_hole_array(Image.fromarray(u8, "L")), [[False, False, True, True]])
    rgb_mask = np.zeros((1, 2, 3), np.uint8)
    rgb_mask[0, 1] = 255
    np.testing.assert_array_equal(to_hole_array(rgb_mask), [[False, True]])
    with pytest.raises(PConvError, match=r"levels in \[0, 1\]"):
        to_hole_array(np.array([[0.0, 2.0]]))
    with pytest.raises(PConvError, match="threshold"):
        to_hole_array(u8, threshold=1.5)
    with pytest.raises(PConvError, match="shape"):
        to_hole_array(np.zeros((2, 2, 2, 2)))


def test_invert_mask_in_call(inp: Inpainter) -> None:
    rgb, hole = _img(30, 30), _hole(30, 30)
    a = inp(rgb, hole.astype(np.uint8) * 255)
    b = inp(rgb, (~hole).astype(np.uint8) * 255, invert_mask=True)
    np.testing.assert_array_equal(a, b)


def test_pil_in_pil_out_modes_and_alpha(inp: Inpainter) -> None:
    rgb, hole = _img(33, 41), _hole(33, 41)
    alpha = np.random.default_rng(3).integers(0, 256, (33, 41), dtype=np.uint8)
    rgba = Image.fromarray(np.concatenate([rgb, alpha[:, :, None]], axis=2), "RGBA")
    out = inp(rgba, Image.fromarray(hole.astype(np.uint8) * 255, "L"))
    assert isinstance(out, Image.Image) and out.mode == "RGBA" and out.size == (41, 33)
    o = np.asarray(out)
    np.testing.assert_array_equal(o[:, :, 3], alpha)  # alpha untouched, holes included
    np.testing.assert_array_equal(o[:, :, :3][~hole], rgb[~hole])
    grey = Image.fromarray(rgb[:, :, 0], "L")
    g = inp(grey, hole)
    assert isinstance(g, Image.Image) and g.mode == "L"
    np.testing.assert_array_equal(np.asarray(g)[~hole], rgb[:, :, 0][~hole])


def test_numpy_rgba_and_grey(inp: Inpainter) -> None:
    rgb, hole = _img(21, 22), _hole(21, 22)
    rgba = np.concatenate([rgb, np.full((21, 22, 1), 9, np.uint8)], axis=2)
    out = inp(rgba, hole)
    assert out.shape == (21, 22, 4) and (out[:, :, 3] == 9).all()
    g = inp(rgb[:, :, 1], hole)
    assert g.shape == (21, 22)
    np.testing.assert_array_equal(g[~hole], rgb[:, :, 1][~hole])


def test_bad_images_refused(inp: Inpainter) -> None:
    hole = _hole(8, 8)
    with pytest.raises(PConvError, match="uint8"):
        inp(np.zeros((8, 8, 3), np.float32), hole)
    with pytest.raises(PConvError, match="shape"):
        inp(np.zeros((8, 8, 5), np.uint8), hole)
    with pytest.raises(PConvError, match="not torch tensors"):
        inp(torch.zeros(8, 8, 3), hole)
    with pytest.raises(PConvError, match="zero size"):
        inp(np.zeros((0, 8, 3), np.uint8), np.zeros((0, 8), bool))


def test_batch_equals_single_calls(weights: Path) -> None:
    one = Inpainter(weights, precision="fp32", batch_size=1)
    many = Inpainter(weights, precision="fp32", batch_size=8)
    images = [_img(48, 48, seed=s) for s in range(3)] + [_img(30, 70, seed=9)]
    masks = [_hole(48, 48)] * 3 + [_hole(30, 70)]
    batch = many.inpaint_batch(images, masks)
    for img, mask, out in zip(images, masks, batch):
        ref = one(img, mask)
        assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1  # BLAS may sum in another order
        np.testing.assert_array_equal(out[~mask], img[~mask])
    shared = many.inpaint_batch(images[:3], _hole(48, 48))  # one mask for all
    assert len(shared) == 3
    with pytest.raises(PConvError, match="one mask per image"):
        many.inpaint_batch(images, masks[:2])


def test_bf16_close_to_fp32(weights: Path) -> None:
    rgb, hole = _img(40, 40), _hole(40, 40)
    a = Inpainter(weights, precision="fp32")(rgb, hole)
    b = Inpainter(weights, precision="bf16")(rgb, hole)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 8
    np.testing.assert_array_equal(b[~hole], rgb[~hole])


def test_baseline_method() -> None:
    pytest.importorskip("cv2")
    truth, hole = _photo_with_hole()
    painted = truth.copy()
    painted[hole] = 128
    inp = Inpainter(method="telea")
    assert inp.model is None and inp.choose_strategy(5000, 5000) == "original"
    for strategy in ("auto", "crop"):
        out = inp(painted, hole, strategy=strategy)
        np.testing.assert_array_equal(out[~hole], truth[~hole])
        assert _hole_error(out, truth, hole) < 0.5 * _hole_error(painted, truth, hole)  # filled towards the photo


def test_construction_errors(tmp_path: Path) -> None:
    with pytest.raises(PConvError, match="unknown method 'magic'"):
        Inpainter(method="magic")
    with pytest.raises(PConvError, match="does not exist"):
        Inpainter(tmp_path / "none.safetensors")
    if not torch.cuda.is_available():
        with pytest.raises(PConvError, match="no CUDA GPU"):
            Inpainter(PConvUNet(TINY), device="cuda")
    with pytest.raises(PConvError, match="precision"):
        Inpainter(PConvUNet(TINY), precision="int4")


def test_accepts_a_model_object() -> None:
    inp = Inpainter(PConvUNet(TINY), precision="fp32")
    assert inp.image_size == 64 and inp.multiple == 8


def test_readme_python_api_snippet_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's Python API example, run as written, with the shipped model."""
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Python API", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "README has no python block under 'Python API'"
    monkeypatch.chdir(tmp_path)
    exec(compile(code.group(1), "README.md", "exec"), {})
    assert Image.open(tmp_path / "filled.png").size == (640, 480)


def _photo_with_hole() -> "tuple[np.ndarray, np.ndarray]":
    """A real photo (the bundled example, 256x256 crop) and a hole away from its masked object."""
    rgb = np.asarray(Image.open(Path(pconv.__file__).parent / "assets" / "example.jpg").convert("RGB"))[:256, :256]
    hole = np.zeros(rgb.shape[:2], bool)
    hole[40:90, 60:130] = True
    hole[150:154, 20:240] = True  # a thin scratch
    return rgb.copy(), hole


def _hole_error(out: np.ndarray, truth: np.ndarray, hole: np.ndarray) -> float:
    return float(np.abs(out.astype(float) - truth.astype(float))[hole].mean())


def test_shipped_model_fills_towards_the_truth() -> None:
    """The shipped model (no fallback: a missing or broken file fails here) fills a hole painted over
    with grey much closer to the photo than the grey was, and much closer than the mean colour would be."""
    truth, hole = _photo_with_hole()
    painted = truth.copy()
    painted[hole] = 128
    out = Inpainter(precision="fp32")(painted, hole)
    np.testing.assert_array_equal(out[~hole], truth[~hole])
    mean_fill = np.where(hole[:, :, None], truth[~hole].mean(0).round().astype(np.uint8), truth)
    assert _hole_error(out, truth, hole) < 0.2 * _hole_error(painted, truth, hole)
    assert _hole_error(out, truth, hole) < 0.3 * _hole_error(mean_fill, truth, hole)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_legacy_pt_checkpoint_loads_weights_only(tmp_path: Path, inp: Inpainter) -> None:
    """A pconv training checkpoint (.pt) loads through torch.load(weights_only=True)."""
    path = tmp_path / "ckpt.pt"
    torch.save({"model": inp.model.state_dict(), "config": {"model": TINY.to_dict()}}, path)
    legacy = Inpainter(path, precision="fp32")
    rgb, hole = _img(24, 24), _hole(24, 24)
    np.testing.assert_array_equal(legacy(rgb, hole), inp(rgb, hole))
    (tmp_path / "evil.pt").write_bytes(b"\x80\x04not a state dict")
    with pytest.raises(PConvError, match="weights_only"):
        Inpainter(tmp_path / "evil.pt")


def test_flip_average_is_the_mean_of_both_passes_and_mirror_exact(weights: Path):
    inp = Inpainter(weights, method="pconv-smooth", precision="fp32", flip_average=True)
    model = inp.model
    rgb, hole = _img(64, 64, seed=3), _hole(64, 64)
    out = np.asarray(inp(rgb, hole))
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    valid = torch.from_numpy(~hole).float()[None, None]
    with torch.no_grad():
        y = (model(x, valid) + model(x.flip(3), valid.flip(3)).flip(3)) * 0.5
    ref = y[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(out, np.where(hole[:, :, None], ref, rgb))
    mirrored = np.asarray(inp(rgb[:, ::-1].copy(), hole[:, ::-1].copy()))
    np.testing.assert_array_equal(mirrored, out[:, ::-1])
    plain = np.asarray(Inpainter(weights, method="pconv-smooth", precision="fp32")(rgb, hole))
    assert not np.array_equal(plain, out)  # the second pass changes the fill


def test_photographic_fill_is_the_smooth_fill_plus_transferred_detail(inp: Inpainter, photo: Inpainter) -> None:
    """Up to 2·S the default method is exactly transfer_detail over the network's own result."""
    from pconv.texture import transfer_detail

    rgb, hole = _img(96, 120, seed=5), _hole(96, 120)
    smooth = inp(rgb, hole)
    out = photo(rgb, hole)
    np.testing.assert_array_equal(out, transfer_detail(smooth, hole, photo.texture, photo.seed))
    assert not np.array_equal(out, smooth)
    np.testing.assert_array_equal(out[~hole], rgb[~hole])


def test_texture_settings_only_for_the_photographic_fill(weights: Path) -> None:
    from pconv.texture import TextureConfig

    with pytest.raises(PConvError, match="apply to method 'pconv'"):
        Inpainter(weights, method="pconv-smooth", texture=TextureConfig())
    assert Inpainter(weights, texture=TextureConfig(gain=0.5)).texture.gain == 0.5


def test_photographic_fill_is_deterministic_and_seeded(weights: Path, photo: Inpainter) -> None:
    rgb, hole = _img(96, 96, seed=2), np.zeros((96, 96), bool)
    hole[20:76, 24:80] = True  # blocks inside the hole draw their source: the seed matters there
    np.testing.assert_array_equal(photo(rgb, hole), photo(rgb, hole))
    other = Inpainter(weights, precision="fp32", seed=1)
    assert not np.array_equal(other(rgb, hole), photo(rgb, hole))


def test_photographic_fill_of_a_large_photo_works_per_hole_region(inp: Inpainter, photo: Inpainter) -> None:
    """Above 2·S the detail is transferred per texture box (a tile of small holes); known pixels stay exact."""
    h, w = 150, 400
    rgb = _img(h, w, seed=4)
    hole = np.zeros((h, w), bool)
    hole[20:40, 30:60] = True
    hole[100:130, 330:370] = True
    out, smooth = photo(rgb, hole), inp(rgb, hole)
    np.testing.assert_array_equal(out[~hole], rgb[~hole])
    for ys, xs in ((slice(20, 40), slice(30, 60)), (slice(100, 130), slice(330, 370))):
        assert not np.array_equal(out[ys, xs], smooth[ys, xs])  # every region got detail


def test_progress_callback_rises_to_one_and_can_cancel():
    """progress(fraction, stage) rises monotonically to 1.0; an exception it raises stops the run."""
    inpainter = Inpainter(method="pconv-smooth")
    rgb = np.full((96, 128, 3), 120, np.uint8)
    hole = np.zeros((96, 128), bool)
    hole[30:60, 40:90] = True
    seen = []
    inpainter.inpaint(rgb, hole, progress=lambda f, stage: seen.append((f, stage)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and seen[-1][1] == "done"
    assert "network" in {stage for _, stage in seen}

    class Stop(Exception):
        pass

    def cancel(fraction, stage):
        if stage == "network":
            raise Stop()

    with pytest.raises(Stop):
        inpainter.inpaint(rgb, hole, progress=cancel)


def test_windows_larger_than_2s_run_in_smaller_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch holds batch_size windows of up to 2·S a side and proportionally fewer larger ones,
    so full-resolution windows of a large photo run one at a time (memory of one window)."""
    from pconv.planning import Window

    inpainter = Inpainter(method="pconv-smooth", batch_size=4)
    s2 = 2 * inpainter.image_size
    rgb = _img(3 * s2, 3 * s2, seed=1)
    hole = np.zeros(rgb.shape[:2], bool)
    hole[10:20, 10:20] = True
    sizes = [(2 * s2, 2 * s2)] * 3 + [(s2, s2 // 2)] * 5 + [(s2, s2)] * 4
    windows = [Window(0, (0, h, 0, w), (h, w), hole[:h, :w]) for h, w in sizes]
    seen = []
    real = inpainter._fill
    monkeypatch.setattr(inpainter, "_fill", lambda rgbs, holes: seen.append((rgbs[0].shape[:2], len(rgbs))) or real(rgbs, holes))
    inpainter._execute(windows, [rgb], [hole])
    assert sorted(seen) == sorted([((2 * s2, 2 * s2), 1)] * 3 + [((s2, s2 // 2), 4), ((s2, s2 // 2), 1), ((s2, s2), 4)])

"""`pconv inpaint`: single and folder modes, summaries, exit codes, and every bad-input message."""
from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
from PIL import Image

from pconv.cli import main
from pconv.model import PConvUNet, PConvUNetConfig
from pconv.weights import save_weights

TINY = PConvUNetConfig(channels=(8, 16, 16), kernels=(7, 5, 3), image_size=64)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_weights(PConvUNet(TINY), tmp_path_factory.mktemp("w") / "tiny.safetensors")


def _rgb(h: int = 30, w: int = 41, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _hole(h: int = 30, w: int = 41) -> np.ndarray:
    hole = np.zeros((h, w), bool)
    hole[8:15, 10:22] = True
    return hole


def _save_mask(path: Path, hole: np.ndarray) -> Path:
    Image.fromarray(hole.astype(np.uint8) * 255, "L").save(path)
    return path


def _pair(tmp_path: Path, h: int = 30, w: int = 41, name: str = "photo") -> "tuple[Path, Path]":
    img = tmp_path / f"{name}.png"
    Image.fromarray(_rgb(h, w)).save(img)
    return img, _save_mask(tmp_path / f"{name}_m.png", _hole(h, w))


def _run(weights: Path, *argv: str) -> int:
    return main(["inpaint", *argv, "--weights", str(weights), "--device", "cpu"])


def test_single_image(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture) -> None:
    img, mask = _pair(tmp_path)
    out = tmp_path / "out.png"
    assert _run(weights, str(img), str(mask), "-o", str(out)) == 0
    res = np.asarray(Image.open(out))
    hole = _hole()
    np.testing.assert_array_equal(res[~hole], _rgb()[~hole])  # PNG: known pixels exact
    assert f"wrote {out}" in capsys.readouterr().out
    from pconv.inference import Inpainter

    filled = np.asarray(Inpainter(weights, device="cpu")(_rgb(), hole))
    np.testing.assert_array_equal(res[hole], filled[hole])  # the hole holds the network's fill
    assert (res[hole] != _rgb()[hole]).mean() > 0.5  # not what the file held there


def _painted_photo(tmp_path: Path) -> "tuple[Path, Path, np.ndarray, np.ndarray]":
    """A real photo (256x256 crop of the bundled example) with a hole painted grey, saved as PNG;
    returns its path, the mask's path, the true pixels and the hole."""
    import pconv

    truth = np.asarray(Image.open(Path(pconv.__file__).parent / "assets" / "example.jpg").convert("RGB"))[:256, :256]
    hole = np.zeros(truth.shape[:2], bool)
    hole[40:90, 60:130] = True
    painted = truth.copy()
    painted[hole] = 128
    Image.fromarray(painted).save(tmp_path / "painted.png")
    return tmp_path / "painted.png", _save_mask(tmp_path / "painted_m.png", hole), truth, hole


def _hole_error(out: np.ndarray, truth: np.ndarray, hole: np.ndarray) -> float:
    return float(np.abs(out.astype(float) - truth.astype(float))[hole].mean())


def test_shipped_model_fills_towards_the_truth(tmp_path: Path) -> None:
    """Without --weights the shipped model runs; the painted-over hole comes back close to the photo."""
    img, mask, truth, hole = _painted_photo(tmp_path)
    assert main(["inpaint", str(img), str(mask), "-o", str(tmp_path / "out.png"), "--device", "cpu"]) == 0
    res = np.asarray(Image.open(tmp_path / "out.png"))
    np.testing.assert_array_equal(res[~hole], truth[~hole])
    assert _hole_error(res, truth, hole) < 0.2 * _hole_error(np.asarray(Image.open(img)), truth, hole)


def test_flip_average_option_matches_the_api(tmp_path: Path, weights: Path) -> None:
    from pconv.inference import Inpainter

    img, mask = _pair(tmp_path)
    out = tmp_path / "out.png"
    assert _run(weights, str(img), str(mask), "-o", str(out), "--flip-average") == 0
    expected = np.asarray(Inpainter(weights, device="cpu", flip_average=True)(_rgb(), _hole()))
    np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)


def test_refuses_existing_output_and_overwrite(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture) -> None:
    img, mask = _pair(tmp_path)
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    assert _run(weights, str(img), str(mask), "-o", str(out)) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    assert _run(weights, str(img), str(mask), "-o", str(out), "--overwrite") == 0
    assert Image.open(out).size == (41, 30)


def test_never_overwrites_an_input(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture) -> None:
    img, mask = _pair(tmp_path)
    before = img.read_bytes()
    assert _run(weights, str(img), str(mask), "-o", str(img), "--overwrite") == 2
    assert "never overwrites an input" in capsys.readouterr().err
    assert img.read_bytes() == before


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "does not exist"),
        ("text", "not an image"),
        ("truncated", "truncated or corrupt"),
        ("empty", "empty file"),
        ("bomb", "decompression bombs"),
        ("extension", "unknown extension '.xyz'"),
        ("folder", "folder .* does not exist"),
        ("mask_size", "--resize-mask"),
        ("all_hole", "covers the whole image"),
        ("missing_mask", "mask file .* does not exist"),
        ("bad_mask", "cannot read mask file"),
    ],
)
def test_bad_input_messages(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture, case: str, message: str) -> None:
    img, mask = _pair(tmp_path)
    out = tmp_path / "out.png"
    extra: List[str] = []
    if case == "missing":
        img = tmp_path / "nope.png"
    elif case == "text":
        img.write_text("not a picture")
    elif case == "truncated":
        img.write_bytes(img.read_bytes()[:60])
    elif case == "empty":
        img.write_bytes(b"")
    elif case == "bomb":
        extra = ["--max-pixels", "100"]
    elif case == "extension":
        out = tmp_path / "out.xyz"
    elif case == "folder":
        out = tmp_path / "no" / "out.png"
    elif case == "mask_size":
        _save_mask(mask, np.ones((10, 10), bool))
    elif case == "all_hole":
        _save_mask(mask, np.ones((30, 41), bool))
    elif case == "missing_mask":
        mask = tmp_path / "nomask.png"
    elif case == "bad_mask":
        mask.write_text("garbage")
    assert _run(weights, str(img), str(mask), "-o", str(out), *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("pconv inpaint: error: ")
    assert "Traceback" not in err
    import re

    assert re.search(message, err), err
    assert not out.exists()


def test_resize_mask_and_invert(tmp_path: Path, weights: Path) -> None:
    img, mask = _pair(tmp_path)
    small = np.zeros((15, 20), bool)
    small[2:5, 2:5] = True
    _save_mask(mask, small)
    assert _run(weights, str(img), str(mask), "-o", str(tmp_path / "a.png"), "--resize-mask") == 0
    _save_mask(mask, ~_hole())  # black = hole
    assert _run(weights, str(img), str(mask), "-o", str(tmp_path / "b.png"), "--invert-mask") == 0
    res = np.asarray(Image.open(tmp_path / "b.png"))
    np.testing.assert_array_equal(res[~_hole()], _rgb()[~_hole()])


def test_empty_mask_is_a_warning_naming_the_fix(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture) -> None:
    img, mask = _pair(tmp_path)
    _save_mask(mask, np.zeros((30, 41), bool))
    assert _run(weights, str(img), str(mask), "-o", str(tmp_path / "o.png")) == 0
    err = capsys.readouterr().err
    assert "pconv inpaint: warning: photo.png: the mask has no hole pixels" in err
    assert "--threshold" in err and "--invert-mask" in err and "written unchanged" in err
    assert "MaskWarning" not in err  # the command's own words, not Python's warning machinery
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o.png")), _rgb())


def test_inverted_mask_gets_a_polarity_hint(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture) -> None:
    img, mask = _pair(tmp_path)
    _save_mask(mask, ~_hole())  # white = keep: inverted for pconv
    assert _run(weights, str(img), str(mask), "-o", str(tmp_path / "o.png")) == 0
    err = capsys.readouterr().err
    assert f"pconv inpaint: warning: photo.png: the mask marks {(~_hole()).mean():.1%} of the image" in err
    assert "use --invert-mask" in err and "MaskWarning" not in err
    assert _run(weights, str(img), str(mask), "-o", str(tmp_path / "p.png"), "--invert-mask") == 0
    assert "warning" not in capsys.readouterr().err  # flipped: a small hole, nothing to say
    _save_mask(mask, _hole())
    assert _run(weights, str(img), str(mask), "-o", str(tmp_path / "q.png"), "--invert-mask") == 0
    assert "drop --invert-mask" in capsys.readouterr().err


def test_folder_mode_warns_per_photo(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture) -> None:
    inp, masks = tmp_path / "in", tmp_path / "masks"
    inp.mkdir(), masks.mkdir()
    for name, hole in (("good", _hole()), ("inverted", ~_hole()), ("empty", np.zeros((30, 41), bool))):
        Image.fromarray(_rgb()).save(inp / f"{name}.png")
        _save_mask(masks / f"{name}.png", hole)
    assert _run(weights, "--input", str(inp), "--mask", str(masks), "--output", str(tmp_path / "out")) == 0
    captured = capsys.readouterr()
    assert "pconv inpaint: warning: inverted.png: the mask marks" in captured.err
    assert "pconv inpaint: warning: empty.png: the mask has no hole pixels" in captured.err
    assert "good.png" not in captured.err
    assert "done: 3, skipped: 0, failed: 0" in captured.out and "use --invert-mask" in captured.out


def test_alpha_greyscale_exif_and_jpeg(tmp_path: Path, weights: Path) -> None:
    hole = _hole()
    mask = _save_mask(tmp_path / "m.png", hole)
    rgba = np.concatenate([_rgb(), np.full((30, 41, 1), 77, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert _run(weights, str(tmp_path / "a.png"), str(mask), "-o", str(tmp_path / "ao.png")) == 0
    ao = np.asarray(Image.open(tmp_path / "ao.png"))
    assert ao.shape == (30, 41, 4) and (ao[:, :, 3] == 77).all()

    Image.fromarray(_rgb()[:, :, 0], "L").save(tmp_path / "g.png")
    assert _run(weights, str(tmp_path / "g.png"), str(mask), "-o", str(tmp_path / "go.png")) == 0
    go = Image.open(tmp_path / "go.png")
    assert go.mode == "L"
    np.testing.assert_array_equal(np.asarray(go)[~hole], _rgb()[:, :, 0][~hole])

    # A photo stored sideways (41 high, 30 wide) with EXIF orientation 6: upright it is 30×41,
    # the mask's size, and the output is written upright.
    side = Image.fromarray(np.ascontiguousarray(np.rot90(_rgb(), k=1)))
    exif = side.getexif()
    exif[0x0112] = 6
    side.save(tmp_path / "e.jpg", exif=exif.tobytes(), quality=100)
    assert _run(weights, str(tmp_path / "e.jpg"), str(mask), "-o", str(tmp_path / "eo.jpg"), "--quality", "90") == 0
    eo = Image.open(tmp_path / "eo.jpg")
    assert eo.size == (41, 30) and eo.getexif().get(0x0112) == 1


def test_network_methods_match_the_python_api(tmp_path: Path, weights: Path) -> None:
    """`--method pconv` (the default) and `--method pconv-smooth` write what Inpainter gives."""
    from pconv.inference import Inpainter

    img, mask, truth, hole = _painted_photo(tmp_path)
    painted = np.asarray(Image.open(img))
    outputs = {}
    for method in ("pconv", "pconv-smooth"):
        out = tmp_path / f"{method}.png"
        args = [str(img), str(mask), "-o", str(out)] + (["--method", method] if method != "pconv" else [])
        assert _run(weights, *args) == 0
        outputs[method] = np.asarray(Image.open(out))
        expected = np.asarray(Inpainter(weights, method=method, device="cpu")(painted, hole))
        np.testing.assert_array_equal(outputs[method], expected)
        np.testing.assert_array_equal(outputs[method][~hole], truth[~hole])
    assert not np.array_equal(outputs["pconv"], outputs["pconv-smooth"])


def test_baseline_method(tmp_path: Path, weights: Path) -> None:
    pytest.importorskip("cv2")
    img, mask, truth, hole = _painted_photo(tmp_path)
    assert _run(weights, str(img), str(mask), "-o", str(tmp_path / "t.png"), "--method", "telea") == 0
    res = np.asarray(Image.open(tmp_path / "t.png"))
    np.testing.assert_array_equal(res[~hole], truth[~hole])
    assert _hole_error(res, truth, hole) < 0.2 * _hole_error(np.asarray(Image.open(img)), truth, hole)


# ----------------------------------------------------------------------------------- folder mode
def _folder(tmp_path: Path) -> "tuple[Path, Path]":
    inp, masks = tmp_path / "in", tmp_path / "masks"
    inp.mkdir()
    masks.mkdir()
    for i, name in enumerate(["a", "b", "c"]):
        Image.fromarray(_rgb(seed=i)).save(inp / f"{name}.png")
    _save_mask(masks / "a.png", _hole())
    _save_mask(masks / "b_mask.png", _hole())  # the _mask suffix is matched too
    (inp / "notes.txt").write_text("ignored: not an image extension")
    return inp, masks


def test_folder_mode_summary_and_exit_code(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture) -> None:
    inp, masks = _folder(tmp_path)
    out = tmp_path / "out"
    code = _run(weights, "--input", str(inp), "--mask", str(masks), "--output", str(out))
    text = capsys.readouterr().out
    assert code == 1  # c.png has no mask
    assert "done: 2, skipped: 0, failed: 1" in text
    assert "failed   c.png: no mask named c.* or c_mask.*" in text
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    # again: existing outputs are skipped, not overwritten
    code = _run(weights, "--input", str(inp), "--mask", str(masks), "--output", str(out))
    text = capsys.readouterr().out
    assert code == 1 and "done: 0, skipped: 2, failed: 1" in text and "exists (--overwrite replaces it)" in text
    _save_mask(masks / "c.png", _hole())
    code = _run(weights, "--input", str(inp), "--mask", str(masks), "--output", str(out), "--overwrite")
    assert code == 0 and "done: 3, skipped: 0, failed: 0" in capsys.readouterr().out


def test_folder_mode_one_mask_for_all_and_ext(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture) -> None:
    inp, masks = _folder(tmp_path)
    out = tmp_path / "out"
    code = _run(weights, "--input", str(inp), "--mask", str(masks / "a.png"), "--output", str(out), "--ext", "jpg")
    assert code == 0 and "done: 3" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "b.jpg", "c.jpg"]


def test_folder_mode_shared_mask_inside_input_folder(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture) -> None:
    inp, _ = _folder(tmp_path)
    mask = _save_mask(inp / "mask.png", _hole())
    code = _run(weights, "--input", str(inp), "--mask", str(mask), "--output", str(tmp_path / "o"))
    assert code == 0 and "done: 3, skipped: 0, failed: 0" in capsys.readouterr().out  # the mask is no photo


def test_folder_mode_bad_file_fails_alone(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture) -> None:
    inp, masks = _folder(tmp_path)
    _save_mask(masks / "c.png", _hole())
    (inp / "c.png").write_bytes((inp / "c.png").read_bytes()[:50])
    code = _run(weights, "--input", str(inp), "--mask", str(masks), "--output", str(tmp_path / "o"))
    text = capsys.readouterr().out
    assert code == 1 and "done: 2, skipped: 0, failed: 1" in text and "c.png: image" in text and "truncated" in text


def test_folder_mode_masks_beside_photos(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture) -> None:
    d = tmp_path / "d"
    d.mkdir()
    Image.fromarray(_rgb()).save(d / "x.png")
    _save_mask(d / "x_mask.png", _hole())
    code = _run(weights, "--input", str(d), "--mask", str(d), "--output", str(tmp_path / "o"))
    assert code == 0 and "done: 1, skipped: 0, failed: 0" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--input", "IN", "--mask", "MASKS", "--output", "IN"], "is the input folder"),
        (["--input", "nowhere", "--mask", "MASKS", "--output", "O"], "input folder .* does not exist"),
        (["--input", "IN", "--output", "O"], "needs --mask"),
        (["--input", "IN", "--mask", "MASKS", "--output", "O", "--ext", "gifx"], "unknown extension"),
        (["IMG"], "usage: pconv inpaint IMAGE MASK -o OUT"),
    ],
)
def test_folder_mode_usage_errors(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture, argv, message) -> None:
    import re

    inp, masks = _folder(tmp_path)
    subs = {"IN": str(inp), "MASKS": str(masks), "O": str(tmp_path / "o"), "IMG": str(inp / "a.png")}
    assert _run(weights, *[subs.get(a, a) for a in argv]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert sorted(p.name for p in inp.iterdir()) == ["a.png", "b.png", "c.png", "notes.txt"]


@pytest.mark.parametrize("name, content, words", [
    ("w.pt", b"e" * 64, ["w.pt", "not a PyTorch file"]),  # torch alone says "Unsupported operand 101"
    ("w.safetensors", b"garbage garbage garbage", ["w.safetensors", "header is damaged", "header too large"]),
    ("w.safetensors", b"\x01", ["w.safetensors", "1 byte(s)"]),
    ("w.safetensors", b"PK\x03\x04" + b"\x00" * 60, ["w.safetensors", "PyTorch (torch.save) file", "rename it"]),
])
def test_bad_weights_file_says_which_and_what_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                       name: str, content: bytes, words: List[str]) -> None:
    img, mask = _pair(tmp_path)
    bad = tmp_path / name
    bad.write_bytes(content)
    assert _run(bad, str(img), str(mask), "-o", str(tmp_path / "o.png")) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "(101)" not in err and "Unsupported operand" not in err
    for w in words:
        assert w in err, err
    assert "pconv train writes RUN/last.safetensors" in err

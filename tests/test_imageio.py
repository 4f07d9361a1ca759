"""pconv.imageio: decoding policies (orientation, alpha, greyscale, 16-bit), metadata, safe writes, errors."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from pconv.errors import PConvError
from pconv.imageio import FORMATS, LoadedImage, read_image, write_image


def _rgb(h: int = 6, w: int = 9, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_png_round_trip_is_exact(tmp_path: Path) -> None:
    rgb = _rgb()
    write_image(tmp_path / "a.png", rgb)
    img = read_image(tmp_path / "a.png")
    assert isinstance(img, LoadedImage)
    assert img.rgb.dtype == np.uint8 and img.rgb.shape == (6, 9, 3)
    np.testing.assert_array_equal(img.rgb, rgb)
    assert img.alpha is None and not img.greyscale and img.bit_depth == 8 and img.format == "PNG"


def test_alpha_is_kept_apart_and_written_back(tmp_path: Path) -> None:
    rgba = np.concatenate([_rgb(), np.arange(54, dtype=np.uint8).reshape(6, 9, 1) * 4], axis=2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(img.rgb, rgba[:, :, :3])
    np.testing.assert_array_equal(img.alpha, rgba[:, :, 3])
    write_image(tmp_path / "b.png", img)
    back = np.asarray(Image.open(tmp_path / "b.png"))
    np.testing.assert_array_equal(back, rgba)


def test_alpha_dropped_for_jpeg(tmp_path: Path) -> None:
    img = LoadedImage(rgb=_rgb(), alpha=np.full((6, 9), 7, np.uint8))
    write_image(tmp_path / "b.jpg", img)
    assert Image.open(tmp_path / "b.jpg").mode == "RGB"


def test_greyscale_read_as_rgb_and_written_back_grey(tmp_path: Path) -> None:
    grey = np.arange(54, dtype=np.uint8).reshape(6, 9) * 3
    Image.fromarray(grey, "L").save(tmp_path / "g.png")
    img = read_image(tmp_path / "g.png")
    assert img.greyscale and img.rgb.shape == (6, 9, 3)
    for c in range(3):
        np.testing.assert_array_equal(img.rgb[:, :, c], grey)
    write_image(tmp_path / "o.png", img)
    out = Image.open(tmp_path / "o.png")
    assert out.mode == "L"
    np.testing.assert_array_equal(np.asarray(out), grey)


def test_greyscale_with_alpha(tmp_path: Path) -> None:
    la = np.stack([np.full((4, 5), 100, np.uint8), np.full((4, 5), 30, np.uint8)], axis=2)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    img = read_image(tmp_path / "la.png")
    assert img.greyscale and (img.alpha == 30).all() and (img.rgb == 100).all()
    write_image(tmp_path / "o.png", img)
    out = Image.open(tmp_path / "o.png")
    assert out.mode == "LA"
    np.testing.assert_array_equal(np.asarray(out), la)


def test_16bit_greyscale_reduced_to_8bit(tmp_path: Path) -> None:
    a = np.array([[0, 257, 65535], [1000, 32768, 65000]], np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")  # mode I;16
    img = read_image(tmp_path / "g16.png")
    assert img.bit_depth == 16 and img.greyscale
    np.testing.assert_array_equal(img.rgb[:, :, 0], np.round(a / 257).astype(np.uint8))
    assert any("16-bit" in n for n in img.notes)


def test_16bit_rgb_png_is_read_as_8bit_and_says_so(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    a = np.full((3, 4, 3), 65535, np.uint16)
    a[0, 0] = (257 * 10, 257 * 20, 257 * 30)  # BGR on disk
    cv2.imwrite(str(tmp_path / "c16.png"), a)
    img = read_image(tmp_path / "c16.png")
    assert img.bit_depth == 16 and not img.greyscale
    assert tuple(img.rgb[0, 0]) == (30, 20, 10) and (img.rgb[1:] == 255).all()


def test_float_images_are_refused(tmp_path: Path) -> None:
    Image.fromarray(np.ones((4, 4), np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(PConvError, match="floating-point"):
        read_image(tmp_path / "f.tif")


def test_exif_orientation_applied_and_reset(tmp_path: Path) -> None:
    rgb = _rgb(4, 6)
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = 6  # the camera was rotated: display = rotate 90° clockwise
    im.save(tmp_path / "o.png", exif=exif.tobytes())
    img = read_image(tmp_path / "o.png")
    assert img.rgb.shape == (6, 4, 3)
    np.testing.assert_array_equal(img.rgb, np.rot90(rgb, k=-1))
    write_image(tmp_path / "w.png", img)
    assert Image.open(tmp_path / "w.png").getexif().get(0x0112) == 1  # never rotated twice


def test_icc_profile_kept(tmp_path: Path) -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(_rgb()).save(tmp_path / "i.png", icc_profile=icc)
    img = read_image(tmp_path / "i.png")
    assert img.icc_profile == icc
    for ext in (".png", ".jpg", ".webp", ".tif"):
        write_image(tmp_path / f"o{ext}", img)
        assert Image.open(tmp_path / f"o{ext}").info.get("icc_profile") == icc, ext


def test_jpeg_quality_option(tmp_path: Path) -> None:
    rgb = _rgb(64, 64)
    write_image(tmp_path / "hi.jpg", rgb, quality=95)
    write_image(tmp_path / "lo.jpg", rgb, quality=10)
    assert (tmp_path / "lo.jpg").stat().st_size < (tmp_path / "hi.jpg").stat().st_size
    with pytest.raises(PConvError, match="quality"):
        write_image(tmp_path / "x.jpg", rgb, quality=0)


def test_palette_image_converted(tmp_path: Path) -> None:
    Image.fromarray(_rgb()).convert("P").save(tmp_path / "p.png")
    img = read_image(tmp_path / "p.png")
    assert img.rgb.shape == (6, 9, 3) and img.mode == "P"


# ---------------------------------------------------------------------------- bad input
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PConvError, match="does not exist"):
        read_image(tmp_path / "nope.png")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(PConvError, match="empty file"):
        read_image(tmp_path / "e.png")


def test_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "t.png").write_text("hello, I am text")
    with pytest.raises(PConvError, match="not an image"):
        read_image(tmp_path / "t.png")


def test_truncated_image(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(buf, "PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(PConvError, match="truncated or corrupt"):
        read_image(tmp_path / "cut.png")


def test_zero_size_image(tmp_path: Path) -> None:
    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 5, 8, 2, 0, 0, 0)) \
        + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    (tmp_path / "z.png").write_bytes(data)
    with pytest.raises(PConvError, match=r"zero size \(0×5\)"):
        read_image(tmp_path / "z.png")


def test_decompression_bomb_limit_and_raising_it(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", _rgb(10, 10))
    with pytest.raises(PConvError, match="decompression bombs.*--max-pixels"):
        read_image(tmp_path / "a.png", max_pixels=99)
    assert read_image(tmp_path / "a.png", max_pixels=100).rgb.shape == (10, 10, 3)


def test_default_limit_is_pillows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_image(tmp_path / "a.png", _rgb(10, 10))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    with pytest.raises(PConvError, match="limit of 50"):
        read_image(tmp_path / "a.png")
    assert Image.MAX_IMAGE_PIXELS == 50  # restored after reading


def test_folder_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(PConvError, match="is a folder"):
        read_image(tmp_path)


def test_unknown_extension_lists_supported(tmp_path: Path) -> None:
    with pytest.raises(PConvError, match=r"unknown extension '\.xyz'.*\.jpg.*\.png"):
        write_image(tmp_path / "a.xyz", _rgb())
    with pytest.raises(PConvError, match="unknown extension"):
        write_image(tmp_path / "noext", _rgb())


def test_refuses_existing_output_unless_overwrite(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", _rgb(seed=1))
    with pytest.raises(PConvError, match="already exists.*--overwrite"):
        write_image(tmp_path / "a.png", _rgb(seed=2))
    np.testing.assert_array_equal(read_image(tmp_path / "a.png").rgb, _rgb(seed=1))
    write_image(tmp_path / "a.png", _rgb(seed=2), overwrite=True)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png").rgb, _rgb(seed=2))


def test_unwritable_output_folder(tmp_path: Path) -> None:
    with pytest.raises(PConvError, match="does not exist"):
        write_image(tmp_path / "missing" / "a.png", _rgb())
    (tmp_path / "file").write_text("x")
    with pytest.raises(PConvError, match="cannot write"):
        write_image(tmp_path / "file" / "a.png", _rgb())


def test_write_is_atomic_no_temp_left(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", _rgb())
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


@pytest.mark.parametrize("stage", ["encode", "write", "rename"])
def test_a_write_failing_halfway_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage) -> None:
    """Overwriting fails while encoding, after half the bytes reached the temp file, or at the
    rename: the old file stays whole, no temp file is left, and the error says why."""
    import os

    import pconv.weights
    from PIL import Image

    path = write_image(tmp_path / "a.png", _rgb(seed=1))
    old = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    if stage == "encode":
        real_save = Image.Image.save

        def half_then_fail(self, fp, *args, **kwargs):
            real_save(self, fp, *args, **kwargs)
            fp.truncate(len(fp.getvalue()) // 2)
            raise OSError("encoder stopped")

        monkeypatch.setattr(Image.Image, "save", half_then_fail)
        match = "could not encode"
    elif stage == "write":
        real_fsync = os.fsync

        def half_written(fd):  # the data went half way, then the disk filled up
            os.ftruncate(fd, os.fstat(fd).st_size // 2)
            real_fsync(fd)
            fail()

        monkeypatch.setattr(pconv.weights.os, "fsync", half_written)
        match = "No space left"
    else:
        monkeypatch.setattr(pconv.weights.os, "replace", fail)
        match = "No space left"
    with pytest.raises(PConvError, match=match):
        write_image(path, _rgb(seed=2), overwrite=True)
    assert path.read_bytes() == old
    np.testing.assert_array_equal(read_image(path).rgb, _rgb(seed=1))
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_bad_pixels_refused(tmp_path: Path) -> None:
    with pytest.raises(PConvError, match="uint8"):
        write_image(tmp_path / "a.png", np.zeros((4, 4, 3), np.float32))


def test_every_format_writes(tmp_path: Path) -> None:
    for ext in FORMATS:
        write_image(tmp_path / f"a{ext}", _rgb())
        assert read_image(tmp_path / f"a{ext}").rgb.shape == (6, 9, 3)


@pytest.mark.parametrize("fmt, keep", [("JPEG", 200), ("JPEG", 40), ("PNG", 40), ("WEBP", 30), ("TIFF", 12)])
def test_a_cut_off_file_is_called_truncated_not_another_format(tmp_path: Path, fmt: str, keep: int) -> None:
    """Bytes that start like a known format but end early are truncated, whatever step fails."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format=fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buf.getvalue()[:keep])
    with pytest.raises(PConvError, match="truncated or corrupt") as exc:
        read_image(path)
    assert "send a PNG" not in str(exc.value) and "not an image" not in str(exc.value)


def test_sniff_format_reads_the_signatures() -> None:
    from pconv.imageio import sniff_format

    for fmt, name in (("JPEG", "JPEG"), ("PNG", "PNG"), ("WEBP", "WebP"), ("GIF", "GIF"), ("BMP", "BMP"),
                      ("TIFF", "TIFF")):
        buf = io.BytesIO()
        Image.new("RGB", (4, 4)).save(buf, format=fmt)
        assert sniff_format(buf.getvalue()[:16]) == name, fmt
    assert sniff_format(b"hello, world") is None and sniff_format(b"") is None

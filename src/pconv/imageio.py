"""Reading and writing photos safely: orientation, alpha, greyscale, 16-bit, metadata, atomic writes.

Reading (:func:`read_image`) returns a :class:`LoadedImage` whose ``rgb`` is always uint8 HxWx3,
upright (EXIF orientation applied), with the alpha channel apart. Policies, in one place:

* **Greyscale** (modes ``1``, ``L``, ``LA``, ``I;16``) is expanded to RGB for the network and
  written back as greyscale (``LoadedImage.greyscale``), so a grey photo stays grey.
* **16-bit** inputs (16-bit PNG/TIFF) are reduced to 8 bits per channel (rounded), and the output
  is 8-bit: the network works in 8 bits. ``LoadedImage.bit_depth`` records the source depth and
  ``notes`` says so. 32-bit integer and float images (modes ``I``, ``F``) are refused.
* **Palette/CMYK/YCbCr/LAB/HSV** images are converted to RGB(A).
* **Decompression bombs**: images of more than ``max_pixels`` pixels (default: Pillow's
  ``Image.MAX_IMAGE_PIXELS``, about 89 Mpx) are refused before decoding; raise the limit to
  open bigger files you trust.
* Every failure (missing, empty, not an image, truncated, zero size, too big) is a
  :class:`~pconv.errors.PConvError` with the reason.

Writing (:func:`write_image`) picks the format from the extension (:data:`FORMATS`), never
overwrites an existing file unless asked, writes through a temp file + rename, and keeps the ICC
profile and EXIF where the format allows (EXIF orientation reset to 1: pixels are already upright).
"""
from __future__ import annotations

import io
import logging
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pconv.errors import PConvError
from pconv.weights import atomic_write_bytes

__all__ = ["LoadedImage", "read_image", "write_image", "FORMATS", "format_for_path", "PNG_OPTIONS", "sniff_format",
           "unreadable_reason"]

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

#: Output extension -> Pillow format name. PNG, TIFF, BMP and lossless WebP keep pixels exactly.
FORMATS: Dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
#: Pillow's PNG options for every PNG pconv writes (files and server responses). zlib level 1 with
#: run-length matching: on a 12-megapixel photo 5-6x faster to encode than zlib's default level 6,
#: for a few per cent more bytes (benchmarks/bench_png.py, BENCHMARKS.md).
PNG_OPTIONS: Dict[str, int] = {"compress_level": 1, "compress_type": zlib.Z_RLE}
_ALPHA_FORMATS = {"PNG", "WEBP", "TIFF"}
_ICC_FORMATS = {"PNG", "JPEG", "WEBP", "TIFF"}
_EXIF_FORMATS = {"PNG", "JPEG", "WEBP", "TIFF"}
_EXIF_ORIENTATION = 0x0112


@dataclass
class LoadedImage:
    """A decoded photo: upright uint8 RGB, alpha apart, and what is needed to write it back alike."""

    rgb: np.ndarray  #: uint8 (H, W, 3)
    alpha: Optional[np.ndarray] = None  #: uint8 (H, W), or None when the source has no alpha
    mode: str = "RGB"  #: the source's Pillow mode, e.g. "RGB", "LA", "I;16", "P"
    bit_depth: int = 8  #: bits per channel of the source (16 for 16-bit PNG/TIFF; pixels here are 8-bit)
    greyscale: bool = False  #: the source was greyscale; written back as greyscale
    icc_profile: Optional[bytes] = None
    exif: Optional[bytes] = None  #: EXIF with orientation reset to 1 (pixels are upright)
    format: Optional[str] = None  #: Pillow's name of the source format, e.g. "JPEG"
    path: Optional[Path] = None
    notes: List[str] = field(default_factory=list)  #: conversions applied while reading

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


def _to_8bit(a: np.ndarray) -> np.ndarray:
    """uint16 -> uint8, rounded (65535 -> 255)."""
    return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _source_bit_depth(im: Image.Image) -> int:
    if im.mode.startswith("I;16"):
        return 16
    try:  # Pillow silently reduces 16-bit RGB(A) PNGs to 8 bits; the raw mode tells.
        rawmode = im.tile[0][3][0] if isinstance(im.tile[0][3], tuple) else im.tile[0][3]
        if isinstance(rawmode, str) and ";16" in rawmode:
            return 16
    except (IndexError, TypeError, AttributeError):
        pass
    return 8


def _decode(im: Image.Image, path: Path, notes: List[str]) -> "tuple[np.ndarray, Optional[np.ndarray], bool]":
    """Pixels of an opened image as (rgb uint8, alpha uint8 or None, greyscale)."""
    mode = im.mode
    if mode in ("I", "F"):
        raise PConvError(
            f"{path} has {'32-bit integer' if mode == 'I' else 'floating-point'} pixels (Pillow mode {mode}), "
            "which pconv does not handle; convert it to an 8- or 16-bit image first"
        )
    if mode.startswith("I;16"):
        grey = _to_8bit(np.asarray(im).astype(np.uint16))
        return np.repeat(grey[:, :, None], 3, axis=2), None, True
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode in ("1", "L"):
        grey = np.asarray(im.convert("L"))
        return np.repeat(grey[:, :, None], 3, axis=2), None, True
    elif mode in ("LA", "La"):
        la = np.asarray(im.convert("LA"))
        return np.repeat(la[:, :, :1], 3, axis=2), np.ascontiguousarray(la[:, :, 1]), True
    elif mode in ("RGBa",):
        im = im.convert("RGBA")
    elif mode not in ("RGB", "RGBA"):
        notes.append(f"converted from mode {mode} to RGB")
        im = im.convert("RGBA" if "A" in mode else "RGB")
    arr = np.asarray(im)
    if im.mode == "RGBA":
        return np.ascontiguousarray(arr[:, :, :3]), np.ascontiguousarray(arr[:, :, 3]), False
    return np.ascontiguousarray(arr), None, False


def _png_zero_size(path: Path) -> Optional["tuple[int, int]"]:
    """(w, h) from a PNG header that declares a zero width or height (Pillow refuses to open it)."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError:
        return None
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        w, h = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        if w == 0 or h == 0:
            return w, h
    return None


#: File signatures of the formats pconv reads: a file that starts like one of them but does not
#: open is truncated or corrupt, not "some other kind of file".
_SIGNATURES = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
               (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


def sniff_format(head: bytes) -> Optional[str]:
    """The image format a file's first bytes announce (JPEG, PNG, WebP, GIF, BMP, TIFF), or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for sig, name in _SIGNATURES if head.startswith(sig)), None)


def unreadable_reason(head: bytes, exc: BaseException) -> str:
    """Why bytes that Pillow could not open are unreadable, in words for the person who sent them."""
    fmt = sniff_format(head)
    if fmt is not None:
        return f"it starts as a {fmt} file but is truncated or corrupt ({exc}); send the whole file again"
    return "it is not an image pconv can read; send a PNG, JPEG, WebP, BMP or TIFF file"


def read_image(path: PathLike, max_pixels: Optional[int] = None) -> LoadedImage:
    """Read a photo as upright uint8 RGB (+ alpha); see the module docstring for the policies.

    ``max_pixels``: refuse images with more pixels than this (decompression-bomb guard); None means
    Pillow's ``Image.MAX_IMAGE_PIXELS``.
    """
    path = Path(path)
    if not path.exists():
        raise PConvError(f"image {path} does not exist")
    if path.is_dir():
        raise PConvError(f"{path} is a folder, not an image file")
    if path.stat().st_size == 0:
        raise PConvError(f"image {path} is an empty file (0 bytes)")
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else int(max_pixels)
    old_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # we check the size ourselves, with our message and limit
    try:
        try:
            im = Image.open(path)
        except UnidentifiedImageError:
            zero = _png_zero_size(path)
            if zero:
                raise PConvError(f"image {path} has zero size ({zero[0]}×{zero[1]})") from None
            with open(path, "rb") as f:
                head = f.read(16)
            if sniff_format(head) is None:
                raise PConvError(f"{path} is not an image pconv can read (not a PNG/JPEG/WebP/TIFF/BMP/... file)") from None
            raise PConvError(f"image {path} cannot be read: {unreadable_reason(head, OSError('no image data'))}") from None
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            with open(path, "rb") as f:
                head = f.read(16)
            raise PConvError(f"image {path} cannot be read: {unreadable_reason(head, exc)}") from None
        with im:
            w, h = im.size
            if w == 0 or h == 0:
                raise PConvError(f"image {path} has zero size ({w}×{h})")
            if limit is not None and w * h > limit:
                raise PConvError(
                    f"image {path} has {w}×{h} = {w * h:,} pixels, more than the limit of {limit:,} that guards "
                    "against decompression bombs; if you trust the file, raise the limit (--max-pixels N, or "
                    "read_image(..., max_pixels=N))"
                )
            fmt = im.format
            depth = _source_bit_depth(im)
            icc = im.info.get("icc_profile") or None
            try:
                im.load()
            except OSError as exc:
                raise PConvError(f"image {path} is truncated or corrupt ({exc})") from None
            except (ValueError, SyntaxError, EOFError) as exc:
                raise PConvError(f"image {path} is corrupt ({exc})") from None
            try:
                exif_obj = im.getexif()
            except Exception:  # broken EXIF must not stop the photo from being read
                exif_obj = None
            upright = ImageOps.exif_transpose(im) if exif_obj and exif_obj.get(_EXIF_ORIENTATION, 1) != 1 else im
            notes: List[str] = []
            if depth == 16:
                notes.append("16-bit input reduced to 8 bits per channel (the output is 8-bit)")
            if upright is not im:
                notes.append(f"EXIF orientation {exif_obj.get(_EXIF_ORIENTATION)} applied")
            rgb, alpha, grey = _decode(upright, path, notes)
            exif_bytes: Optional[bytes] = None
            if exif_obj:
                try:
                    if _EXIF_ORIENTATION in exif_obj:
                        exif_obj[_EXIF_ORIENTATION] = 1
                    exif_bytes = exif_obj.tobytes() or None
                except Exception:
                    exif_bytes = None
            mode = im.mode
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit
    return LoadedImage(rgb=rgb, alpha=alpha, mode=mode, bit_depth=depth, greyscale=grey, icc_profile=icc,
                       exif=exif_bytes, format=fmt, path=path, notes=notes)


def format_for_path(path: PathLike) -> str:
    """Pillow format name for an output path, from its extension; PConvError if unknown."""
    ext = Path(path).suffix.lower()
    if ext not in FORMATS:
        raise PConvError(
            f"cannot tell the output format of {path}: unknown extension {ext or '(none)'!r}; "
            f"use one of {', '.join(sorted(FORMATS))}"
        )
    return FORMATS[ext]


def write_image(
    path: PathLike,
    loaded_or_rgb: Union[LoadedImage, np.ndarray],
    alpha: Optional[np.ndarray] = None,
    icc: Optional[bytes] = None,
    exif: Optional[bytes] = None,
    quality: int = 95,
    overwrite: bool = False,
    greyscale: Optional[bool] = None,
) -> Path:
    """Write an image atomically; the format follows the extension.

    ``loaded_or_rgb`` is a :class:`LoadedImage` (its alpha, ICC, EXIF and greyscale flag are used
    unless given here) or a uint8 HxWx3 array. ``quality`` applies to JPEG and lossy WebP (PNG,
    TIFF and BMP are lossless; WebP is written lossless at ``quality=100``). Alpha is dropped, with a
    warning, for formats without it (JPEG, BMP). Refuses an existing ``path`` unless ``overwrite``.
    """
    path = Path(path)
    fmt = format_for_path(path)
    if isinstance(loaded_or_rgb, LoadedImage):
        rgb = loaded_or_rgb.rgb
        alpha = loaded_or_rgb.alpha if alpha is None else alpha
        icc = loaded_or_rgb.icc_profile if icc is None else icc
        exif = loaded_or_rgb.exif if exif is None else exif
        greyscale = loaded_or_rgb.greyscale if greyscale is None else greyscale
    else:
        rgb = loaded_or_rgb
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise PConvError(f"write_image needs uint8 (H, W, 3) pixels, got {rgb.dtype} {rgb.shape}")
    if alpha is not None:
        alpha = np.asarray(alpha)
        if alpha.dtype != np.uint8 or alpha.shape != rgb.shape[:2]:
            raise PConvError(f"alpha must be uint8 {rgb.shape[:2]}, got {alpha.dtype} {alpha.shape}")
    if not 1 <= int(quality) <= 100:
        raise PConvError(f"quality must be between 1 and 100, got {quality}")
    if path.exists() and not overwrite:
        raise PConvError(f"{path} already exists; pass --overwrite (overwrite=True) to replace it")
    if path.is_dir():
        raise PConvError(f"{path} is a folder; give a file name with an extension")
    folder = path.parent
    if not folder.is_dir():
        raise PConvError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PConvError(f"cannot write {path}: folder {folder} is not writable")

    if greyscale:
        im = Image.fromarray(rgb, "RGB").convert("L")  # exact for grey pixels (R = G = B)
    else:
        im = Image.fromarray(rgb, "RGB")
    if alpha is not None:
        if fmt in _ALPHA_FORMATS:
            im = im.convert("LA" if greyscale else "RGBA")
            im.putalpha(Image.fromarray(alpha, "L"))
        else:
            log.warning("%s: format %s has no alpha channel; the alpha channel is dropped", path, fmt)
    kwargs: Dict[str, object] = {}
    if fmt == "JPEG":
        kwargs.update(quality=int(quality), subsampling=0 if quality >= 90 else 2)
    elif fmt == "WEBP":
        kwargs.update(quality=int(quality), lossless=int(quality) == 100)
    elif fmt == "PNG":
        kwargs.update(PNG_OPTIONS)
    if icc and fmt in _ICC_FORMATS:
        kwargs["icc_profile"] = icc
    if exif and fmt in _EXIF_FORMATS:
        kwargs["exif"] = exif
    buf = io.BytesIO()
    try:
        im.save(buf, format=fmt, **kwargs)
    except (OSError, ValueError, TypeError) as exc:
        if "exif" in kwargs or "icc_profile" in kwargs:  # damaged metadata must not lose the result
            log.warning("%s: metadata could not be written (%s); writing without it", path, exc)
            kwargs.pop("exif", None)
            kwargs.pop("icc_profile", None)
            buf = io.BytesIO()
            im.save(buf, format=fmt, **kwargs)
        else:
            raise PConvError(f"could not encode {path} as {fmt}: {exc}") from None
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as exc:
        raise PConvError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path

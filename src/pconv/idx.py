"""The idx format (MNIST, Fashion-MNIST) and the Fashion-MNIST files Debian installs.

An idx file is a big-endian header ``0 0 <type> <ndim>``, ``ndim`` uint32 sizes, then the array;
files may be gzip-compressed (``*.gz``), as Debian's ``dataset-fashion-mnist`` ships them in
``/usr/share/datasets/fashion-mnist``.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np

from pconv.errors import PConvError

__all__ = ["read_idx", "write_idx", "load_fashion_mnist", "fashion_mnist_dir", "FASHION_MNIST_CLASSES",
           "DEBIAN_FASHION_MNIST"]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_INSTALL = ("install it with `apt-get install dataset-fashion-mnist` (Debian, Ubuntu), or without root: "
            "`apt-get download dataset-fashion-mnist && dpkg-deb -x dataset-fashion-mnist_*.deb DIR` and "
            "pass DIR/usr/share/datasets/fashion-mnist (--data-dir, or the PCONV_FASHION_MNIST variable)")

PathLike = Union[str, os.PathLike]


def read_idx(path: PathLike) -> np.ndarray:
    """The array in an idx file (plain or gzip), in native byte order."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PConvError(f"cannot read idx file {path}: {exc.strerror}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise PConvError(f"{path} is a damaged gzip file ({exc}); download it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES or raw[3] == 0:
        raise PConvError(f"{path} is not an idx file (expected the header 0 0 <type> <ndim>)")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise PConvError(f"{path} is truncated: its header is incomplete")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    body = raw[4 + 4 * ndim:]
    if len(body) != expected:
        raise PConvError(f"{path} is truncated or padded: {len(body)} bytes of data for shape {shape}, "
                         f"expected {expected}")
    return np.frombuffer(body, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: PathLike, array: np.ndarray) -> None:
    """Write ``array`` (uint8, int8, int16, int32, float32 or float64) as an idx file (gzip if ``*.gz``)."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
             np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}
    array = np.asarray(array)
    if array.dtype not in codes:
        raise PConvError(f"idx stores uint8, int8, int16, int32, float32 or float64, not {array.dtype}")
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + np.array(array.shape, ">u4").tobytes()
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def fashion_mnist_dir(directory: Optional[PathLike] = None) -> Path:
    """Where the Fashion-MNIST idx files are: ``directory``, else $PCONV_FASHION_MNIST, else Debian's."""
    if directory is not None:
        return Path(directory)
    env = os.environ.get("PCONV_FASHION_MNIST")
    return Path(env) if env else DEBIAN_FASHION_MNIST


def _find(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise PConvError(f"Fashion-MNIST file {stem}[.gz] not found in {directory}: {_INSTALL}")


def load_fashion_mnist(split: str, directory: Optional[PathLike] = None) -> Tuple[np.ndarray, np.ndarray]:
    """``(images (N, 28, 28) uint8, labels (N,) int64)`` of the "train" (60,000) or "test" (10,000) split."""
    if split not in ("train", "test"):
        raise PConvError(f"Fashion-MNIST split must be 'train' or 'test', got {split!r}")
    folder = fashion_mnist_dir(directory)
    if not folder.is_dir():
        raise PConvError(f"Fashion-MNIST not found: no folder {folder}; {_INSTALL}")
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise PConvError(f"Fashion-MNIST files in {folder} do not match: images {images.shape}, labels {labels.shape}")
    return images, labels.astype(np.int64)

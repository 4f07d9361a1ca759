"""Labelled images for classification, held in memory as uint8 tensors, and the test-time shifts.

Sources: ``fashion-mnist`` (Debian's idx files, :mod:`pconv.idx`) or an image folder with one
sub-folder per class (``train/`` and ``val/`` inside it are taken as the two splits). Everything is
decoded once into a (N, C, H, W) uint8 tensor: the small datasets this is for fit in memory, and
batches are then plain indexing, exact and reproducible for resuming.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from pconv.errors import PConvError

__all__ = ["ClassData", "load_split", "pad_to", "shift", "BUNDLED"]

BUNDLED = ("fashion-mnist",)
_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass
class ClassData:
    images: Tensor          #: (N, C, H, W) uint8
    labels: Tensor          #: (N,) int64
    classes: List[str]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, count: int) -> "ClassData":
        """The first ``count`` items (the sources' own order; Fashion-MNIST's is shuffled already)."""
        return ClassData(self.images[:count], self.labels[:count], self.classes)


def load_split(data: str, split: str, data_dir: Optional[str] = None, image_size: Optional[int] = None,
               channels: Optional[int] = None) -> ClassData:
    """The ``split`` ("train" or "val") of ``data``: "fashion-mnist" or an image folder.

    For a folder, ``DATA/train`` and ``DATA/val`` when they exist, else ``DATA`` itself (either
    split); images are resized (shorter side) and centre-cropped to ``image_size`` (default 32) and
    converted to ``channels`` (1 = grey, 3 = RGB; default 3)."""
    if data == "fashion-mnist":
        from pconv.idx import FASHION_MNIST_CLASSES, load_fashion_mnist

        images, labels = load_fashion_mnist("train" if split == "train" else "test", data_dir)
        if image_size not in (None, images.shape[1]) or channels not in (None, 1):
            raise PConvError("fashion-mnist is 28x28 grey: leave --image-size and --channels unset")
        return ClassData(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels),
                         list(FASHION_MNIST_CLASSES))
    root = Path(data)
    if not root.is_dir():
        raise PConvError(f"dataset {data!r} is neither a folder nor one of: {', '.join(BUNDLED)}")
    folder = root / split if (root / "train").is_dir() and (root / "val").is_dir() else root
    return _load_folder(folder, image_size or 32, channels or 3)


def _load_folder(folder: Path, size: int, channels: int) -> ClassData:
    from PIL import Image, UnidentifiedImageError

    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise PConvError(f"{folder} needs one sub-folder per class (at least two), found {len(classes)}")
    if channels not in (1, 3):
        raise PConvError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    images, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (folder / name).rglob("*") if p.suffix.lower() in _EXTENSIONS)
        for path in files:
            try:
                with Image.open(path) as im:
                    im = im.convert("L" if channels == 1 else "RGB")
                    images.append(_resize_crop(im, size))
            except (OSError, UnidentifiedImageError) as exc:
                raise PConvError(f"cannot read image {path}: {exc}; remove or replace it") from None
            labels.append(label)
    if not images:
        raise PConvError(f"no images under {folder} (looked for {', '.join(sorted(_EXTENSIONS))})")
    stack = np.stack(images)
    stack = stack[:, None] if stack.ndim == 3 else stack.transpose(0, 3, 1, 2)
    return ClassData(torch.from_numpy(np.ascontiguousarray(stack)), torch.tensor(labels, dtype=torch.int64), classes)


def _resize_crop(im, size: int) -> np.ndarray:
    from PIL import Image

    w, h = im.size
    scale = size / min(w, h)
    im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
    left, top = (im.size[0] - size) // 2, (im.size[1] - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)))


def pad_to(images: Tensor, size: int) -> Tensor:
    """Centre ``images`` (N, C, H, W) on a ``size``×``size`` canvas of zeros (the background)."""
    h, w = images.shape[2:]
    if size < max(h, w):
        raise PConvError(f"cannot pad {h}x{w} images to the smaller size {size}")
    top, left = (size - h) // 2, (size - w) // 2
    out = images.new_zeros(images.shape[0], images.shape[1], size, size)
    out[:, :, top:top + h, left:left + w] = images
    return out


def shift(images: Tensor, pixels: int) -> Tensor:
    """Move the content ``pixels`` right and down (negative: left and up), filling with zeros."""
    if pixels == 0:
        return images
    h, w = images.shape[2:]
    if abs(pixels) >= min(h, w):
        raise PConvError(f"a shift of {pixels} px leaves nothing of {h}x{w} images")
    out = torch.zeros_like(images)
    p = abs(pixels)
    if pixels > 0:
        out[:, :, p:, p:] = images[:, :, :h - p, :w - p]
    else:
        out[:, :, :h - p, :w - p] = images[:, :, p:, p:]
    return out


def channel_stats(images: Tensor, limit: int = 10000) -> Tuple[List[float], List[float]]:
    """Per-channel mean and std in [0, 1] of the first ``limit`` images (the normalisation)."""
    x = images[:limit].float().div_(255)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return [float(v) for v in mean], [float(v) for v in std]

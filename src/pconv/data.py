"""Training data: photos from any folder, random crops and flips, masks drawn on the fly.

All randomness of a sample comes from ``(seed, epoch, index)``, never from a global RNG, so a
resumed run sees exactly the batches an uninterrupted run would have seen, whatever the number
of worker processes. Corrupt photos are found up front (skipped with a warning and counted);
one that breaks later is replaced by the next photo, never a crash mid-epoch.
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from pconv.errors import PConvError

__all__ = ["IMAGE_EXTENSIONS", "list_images", "scan_images", "split_train_val", "TrainDataset",
           "ValDataset", "StepBatchSampler", "MaskSampler"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


def list_images(root: str | Path, file_list: Optional[str | Path] = None) -> List[Path]:
    """Sorted image paths under ``root`` (recursive), or those named in ``file_list``."""
    root = Path(root)
    if not root.is_dir():
        raise PConvError(f"training data folder {root} does not exist or is not a folder")
    if file_list is not None:
        lines = [ln.strip() for ln in Path(file_list).read_text().splitlines()]
        paths = [root / ln for ln in lines if ln and not ln.startswith("#")]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise PConvError(f"{len(missing)} files of {file_list} do not exist, e.g. {missing[0]}")
    else:
        paths = [p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    paths = sorted(paths)
    if not paths:
        raise PConvError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {root}")
    return paths


def scan_images(paths: Sequence[Path]) -> Tuple[List[Path], List[Tuple[Path, str]]]:
    """Split ``paths`` into readable images and ``(path, reason)`` for corrupt ones (fully decoded)."""
    good, bad = [], []
    for p in paths:
        try:
            with Image.open(p) as im:
                im.load()
                if im.width < 1 or im.height < 1:
                    raise ValueError("zero-size image")
            good.append(p)
        except Exception as exc:  # PIL raises many types for broken files
            bad.append((p, f"{type(exc).__name__}: {exc}"))
    for p, reason in bad:
        warnings.warn(f"skipping unreadable image {p}: {reason}", stacklevel=2)
    return good, bad


def split_train_val(paths: Sequence[Path], val_count: int) -> Tuple[List[Path], List[Path]]:
    """A fixed split that does not depend on the listing order: the ``val_count`` photos whose
    name hashes lowest go to validation."""
    if val_count >= len(paths):
        raise PConvError(f"val_count={val_count} leaves no training photos out of {len(paths)}")
    key = lambda p: hashlib.sha1(p.name.encode()).hexdigest()  # noqa: E731
    ranked = sorted(paths, key=key)
    val = set(ranked[:val_count])
    return [p for p in paths if p not in val], [p for p in paths if p in val]


def _load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def random_crop(im: Image.Image, size: int, rng: np.random.Generator, max_zoom_out: float = 3.0) -> np.ndarray:
    """Resize so the short side is uniform in [size, min(short, max_zoom_out*size)], crop size², maybe flip.

    Only the crop is resampled (Pillow's ``box``): the same pixels as resizing the whole photo and
    then cropping, up to rounding (at most 2 levels, in a few % of the values), for much less work
    (benchmarks/bench_train.py times the pipeline: BENCHMARKS.md, "Data pipeline").
    """
    short = min(im.size)
    hi = max(size, min(short, int(max_zoom_out * size)))
    target = int(rng.integers(size, hi + 1))
    scale = target / short
    w, h = max(size, round(im.width * scale)), max(size, round(im.height * scale))
    x = int(rng.integers(0, w - size + 1))
    y = int(rng.integers(0, h - size + 1))
    sx, sy = w / im.width, h / im.height
    box = (x / sx, y / sy, (x + size) / sx, (y + size) / sy)
    arr = np.array(im.resize((size, size), Image.BILINEAR, box=box, reducing_gap=2.0))
    if rng.random() < 0.5:
        arr = arr[:, ::-1]
    return np.ascontiguousarray(arr)


def center_crop(im: Image.Image, size: int) -> np.ndarray:
    """Resize the short side to ``size`` and take the centre square (validation)."""
    scale = size / min(im.size)
    w, h = max(size, round(im.width * scale)), max(size, round(im.height * scale))
    im = im.resize((w, h), Image.BILINEAR, reducing_gap=2.0)
    x, y = (w - size) // 2, (h - size) // 2
    return np.array(im.crop((x, y, x + size, y + size)))


#: Generated mask sources: brush strokes, noise level sets (ragged blobs, thin broken lines), or
#: an even mix of the two.
GENERATED_MASKS = ("strokes", "noise", "mixed")


class MaskSampler:
    """Draws hole masks (bool, True = hole): generated ones (see GENERATED_MASKS), or augmented mask files."""

    def __init__(self, source: str, size: int, hole_ratio: Tuple[float, float]) -> None:
        self.source, self.size, self.hole_ratio = source, size, tuple(hole_ratio)
        self.files: List[Path] = []
        if source not in GENERATED_MASKS:
            folder = Path(source)
            if not folder.is_dir():
                raise PConvError(f"mask source must be one of {', '.join(GENERATED_MASKS)} or a folder of mask "
                                 f"images; {folder} is neither")
            self.files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"))
            if not self.files:
                raise PConvError(f"no mask images found in {folder}")

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        if not self.files:
            from pconv.masks.noise import noise_mask
            from pconv.masks.strokes import stroke_mask

            use_noise = self.source == "noise" or (self.source == "mixed" and rng.random() < 0.5)
            draw = noise_mask if use_noise else stroke_mask
            return draw(self.size, self.size, rng, self.hole_ratio)
        from pconv.masks.augment import augment_mask
        from pconv.masks.io import read_mask_file

        for _ in range(20):
            hole = read_mask_file(self.files[int(rng.integers(len(self.files)))])
            hole = augment_mask(hole, (self.size, self.size), rng)
            if self.hole_ratio[0] <= hole.mean() <= self.hole_ratio[1]:
                return hole
        return hole


def _to_tensors(rgb: np.ndarray, hole: np.ndarray) -> Tuple[torch.Tensor, torch.Tensor]:
    image = torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0)
    mask = torch.from_numpy(~hole).float().unsqueeze(0)  # 1 = valid
    return image, mask


class TrainDataset(torch.utils.data.Dataset):
    """Index ``(epoch, i)`` -> (image 3×S×S in [0,1], mask 1×S×S, 1 = valid).

    ``cache_photos``: keep every photo decoded in memory after its first read (3 bytes a pixel),
    so that an epoch after the first skips the JPEG decode, the largest stage of a sample at 256²
    (benchmarks/bench_data.py). The samples are the same as without the cache. Call
    :meth:`preload` before the DataLoader starts its workers: forked workers then share the
    decoded photos instead of each decoding and holding its own copy.
    """

    def __init__(self, paths: Sequence[Path], size: int, masks: MaskSampler, seed: int,
                 max_zoom_out: float = 3.0, cache_photos: bool = False) -> None:
        self.paths, self.size, self.masks, self.seed = list(paths), size, masks, seed
        self.max_zoom_out = max_zoom_out
        self.cache: Optional[Dict[Path, Image.Image]] = {} if cache_photos else None

    def preload(self) -> int:
        """Decode every photo into the cache now (no-op without ``cache_photos``); returns the bytes held."""
        if self.cache is None:
            return 0
        for path in self.paths:
            try:
                self._photo(path)
            except Exception as exc:  # broken after the scan: __getitem__ skips it as without a cache
                warnings.warn(f"skipping unreadable image {path}: {exc}")
        return sum(im.width * im.height * 3 for im in self.cache.values())

    def _photo(self, path: Path) -> Image.Image:
        if self.cache is None:
            return _load_rgb(path)
        im = self.cache.get(path)
        if im is None:
            im = self.cache[path] = _load_rgb(path)
        return im

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
        epoch, i = key
        rng = np.random.default_rng([self.seed, epoch, i])
        for attempt in range(len(self.paths)):
            path = self.paths[(i + attempt) % len(self.paths)]
            try:
                im = self._photo(path)
                break
            except Exception as exc:  # a file broken after the scan: use the next photo
                warnings.warn(f"skipping unreadable image {path}: {exc}")
        else:
            raise PConvError("no training image could be read")
        return _to_tensors(random_crop(im, self.size, rng, self.max_zoom_out), self.masks(rng))


class ValDataset(torch.utils.data.Dataset):
    """Fixed validation cases: centre crops, one mask per photo spread over the hole-ratio range."""

    def __init__(self, paths: Sequence[Path], size: int, masks: MaskSampler, seed: int) -> None:
        self.images = [center_crop(_load_rgb(p), size) for p in paths]
        self.holes = [masks(np.random.default_rng([seed, 10_000_019, i])) for i in range(len(paths))]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        return _to_tensors(self.images[i], self.holes[i])


class StepBatchSampler(torch.utils.data.Sampler):
    """Yields this rank's batch of ``(epoch, index)`` keys for every step from ``start_step`` on.

    Step s covers the global batch ``perm_e[j*B : (j+1)*B]`` with ``e, j = divmod(s, n // B)`` and
    ``perm_e`` a permutation seeded by ``(seed, e)``; rank r of W takes the r-th slice of B/W.
    So the batches depend only on the step: exact resume, and the same samples for any W.
    """

    def __init__(self, n: int, global_batch: int, seed: int, start_step: int, total_steps: int,
                 rank: int = 0, world: int = 1) -> None:
        if global_batch % world:
            raise PConvError(f"batch_size {global_batch} must be divisible by the number of processes {world}")
        if n < global_batch:
            raise PConvError(f"{n} training photos are fewer than one batch of {global_batch}")
        self.n, self.B, self.seed = n, global_batch, seed
        self.start, self.total, self.rank, self.world = start_step, total_steps, rank, world
        self.per_epoch = n // global_batch

    def __len__(self) -> int:
        return max(0, self.total - self.start)

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        per_rank = self.B // self.world
        perm, perm_epoch = None, -1
        for step in range(self.start, self.total):
            epoch, j = divmod(step, self.per_epoch)
            if epoch != perm_epoch:
                perm, perm_epoch = np.random.default_rng([self.seed, epoch]).permutation(self.n), epoch
            batch = perm[j * self.B:(j + 1) * self.B][self.rank * per_rank:(self.rank + 1) * per_rank]
            yield [(epoch, int(i)) for i in batch]

"""Mask test sets as in the paper: hole-ratio buckets, with and without holes at the border.

Liu et al. (2018) evaluate on six buckets of hole-to-image area ratio, (0.01,0.1], (0.1,0.2],
..., (0.5,0.6], each split into masks whose holes keep a margin from the image border and masks
whose holes touch it. :func:`build_testset` makes such a set from random strokes or from a folder
of masks (optionally enlarged by the paper's augmentation), N masks per bucket and border group,
deterministically for a seed. The set is a folder ``masks/*.png`` (white = hole) plus
``index.csv`` and ``index.json`` (file, ratio, bucket, touches_border); it is built in a temp
folder and renamed into place, so a crash leaves nothing half-written.

:func:`read_testset` reads our index, NVIDIA's layout (its ``buckets.csv`` subset, or the full
12,000-file release by file number) or any folder of mask images (measured on read).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from pconv.errors import PConvError
from pconv.masks.augment import AugmentConfig, augment_mask
from pconv.masks.io import MASK_SUFFIXES, encode_mask_png, read_mask_file
from pconv.masks.strokes import stroke_mask

__all__ = [
    "BUCKET_EDGES",
    "BUCKETS",
    "BUCKET_LABELS",
    "bucket_of",
    "touches_border",
    "MaskEntry",
    "build_testset",
    "read_testset",
    "DEFAULT_MARGIN",
]

PathLike = Union[str, os.PathLike]
BUCKET_EDGES: Tuple[float, ...] = (0.01, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
BUCKETS: Tuple[Tuple[float, float], ...] = tuple(zip(BUCKET_EDGES[:-1], BUCKET_EDGES[1:]))
BUCKET_LABELS: Tuple[str, ...] = tuple(f"{lo:g}-{hi:g}" for lo, hi in BUCKETS)  # NVIDIA's labels
DEFAULT_MARGIN = 8  # px; the border band NVIDIA's buckets.csv measures "touches" in
INDEX_FORMAT = "pconv-mask-testset"


def bucket_of(ratio: float) -> Optional[int]:
    """Index 0..5 of the bucket (lo, hi] holding ``ratio``, or None outside (0.01, 0.6]."""
    for k, (lo, hi) in enumerate(BUCKETS):
        if lo < ratio <= hi:
            return k
    return None


def touches_border(hole: np.ndarray, margin: int = DEFAULT_MARGIN) -> bool:
    """True if any hole pixel lies within ``margin`` px of the image border (margin >= 1)."""
    m = max(1, int(margin))
    return bool(hole[:m].any() or hole[-m:].any() or hole[:, :m].any() or hole[:, -m:].any())


@dataclass(frozen=True)
class MaskEntry:
    """One mask of a test set. ``bucket`` is 0..5 (see BUCKETS) or None; ``touches_border`` None if unknown."""

    path: Path
    ratio: float
    bucket: Optional[int]
    touches_border: Optional[bool]
    invert: bool = False  # True if the file uses black = hole

    @property
    def bucket_label(self) -> Optional[str]:
        """NVIDIA-style label of the bucket, e.g. ``"0.1-0.2"``."""
        return None if self.bucket is None else BUCKET_LABELS[self.bucket]

    def load(self, size: Optional[Tuple[int, int]] = None, resize: bool = False) -> np.ndarray:
        """The mask as a bool hole array (True = hole); ``size`` is (height, width)."""
        return read_mask_file(self.path, invert=self.invert, size=size, resize=resize)


# ------------------------------------------------------------------------------------------ build
Progress = Optional[Callable[[int], None]]


def _group_rng(seed: int, bucket: int, border: bool) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(bucket), int(border)])


def _stroke_for(
    rng: np.random.Generator, size: Tuple[int, int], bucket: int, border: bool, margin: int, max_tries: int = 500
) -> np.ndarray:
    """A stroke mask in ``bucket`` that touches (or keeps ``margin`` px from) the border."""
    h, w = size
    lo, hi = BUCKETS[bucket]
    total = h * w
    lo_count, hi_count = math.floor(lo * total) + 1, math.floor(hi * total)
    for _ in range(max_tries):
        if border:
            hole = stroke_mask(h, w, rng, (lo_count / total, hi_count / total))
            if not touches_border(hole, margin):
                continue
        else:
            ih, iw = h - 2 * margin, w - 2 * margin
            inner = ih * iw
            if ih < 1 or iw < 1 or hi_count > inner:
                raise PConvError(
                    f"a {margin}-px margin leaves too little room for hole ratio {BUCKET_LABELS[bucket]} "
                    f"in a {w}x{h} mask; use a smaller --margin"
                )
            core = stroke_mask(ih, iw, rng, (lo_count / inner, min(1.0, hi_count / inner)))
            hole = np.zeros((h, w), bool)
            hole[margin:margin + ih, margin:margin + iw] = core
        if bucket_of(float(hole.sum()) / total) == bucket:
            return hole
    raise PConvError(
        f"could not draw a stroke mask in bucket {BUCKET_LABELS[bucket]} "
        f"{'touching' if border else 'away from'} the border in {max_tries} tries; change --margin or --size"
    )


def _mask_files(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in MASK_SUFFIXES)


def _is_within(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def build_testset(
    out_dir: PathLike,
    per_bucket: int = 1000,
    size: Tuple[int, int] = (512, 512),
    seed: int = 0,
    source: Optional[PathLike] = None,
    border: str = "both",
    margin: int = DEFAULT_MARGIN,
    buckets: Sequence[int] = tuple(range(len(BUCKETS))),
    augment: bool = False,
    augment_config: AugmentConfig = AugmentConfig(),
    invert: bool = False,
    threshold: float = 0.5,
    resize: bool = False,
    overwrite: bool = False,
    max_attempts: Optional[int] = None,
    progress: Progress = None,
) -> Tuple[List[MaskEntry], Dict[str, int]]:
    """Write a bucketed mask test set to ``out_dir``; returns ``(entries, shortfall)``.

    ``source`` None draws random strokes (always fills every group); a folder of mask images
    (white = hole unless ``invert``) is bucketed as is, or, with ``augment``, sampled and augmented
    until every group is full or ``max_attempts`` augmentations are spent. ``border`` is "both",
    "with" (holes touch the ``margin``-px border band) or "without" (they keep out of it).
    ``shortfall`` maps "bucket_label/border|inner" to missing masks for groups that could not be
    filled from a folder. ``size`` is (height, width). Deterministic for ``seed``.
    """
    out_dir = Path(out_dir)
    h, w = int(size[0]), int(size[1])
    if h < 8 or w < 8:
        raise PConvError(f"test-set mask size must be at least 8x8, got {w}x{h}")
    if per_bucket < 1:
        raise PConvError(f"per_bucket must be >= 1, got {per_bucket}")
    if border not in ("both", "with", "without"):
        raise PConvError(f"border must be 'both', 'with' or 'without', got {border!r}")
    if margin < 1 or 2 * margin >= min(h, w):
        raise PConvError(f"margin must be >= 1 px and leave room inside a {w}x{h} mask, got {margin}")
    buckets = sorted(set(int(b) for b in buckets))
    if not buckets or any(b < 0 or b >= len(BUCKETS) for b in buckets):
        raise PConvError(f"buckets must be indices 0..{len(BUCKETS) - 1}, got {list(buckets)}")
    flags = {"both": (False, True), "with": (True,), "without": (False,)}[border]
    groups = [(b, f) for b in buckets for f in flags]

    src_files: List[Path] = []
    if source is not None:
        source = Path(source)
        if not source.is_dir():
            raise PConvError(f"mask source {source} is not a folder of mask images")
        src_files = _mask_files(source)
        if not src_files:
            raise PConvError(f"mask source {source} holds no mask images ({', '.join(MASK_SUFFIXES)})")
        if _is_within(source, out_dir) or _is_within(out_dir, source):
            raise PConvError(f"output folder {out_dir} and mask source {source} overlap; choose a separate folder")
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not overwrite)):
        raise PConvError(f"{out_dir} already exists and is not an empty folder; choose a new one or pass --overwrite")
    if not out_dir.parent.is_dir():
        raise PConvError(f"cannot create {out_dir}: folder {out_dir.parent} does not exist")

    chosen: Dict[Tuple[int, bool], List[np.ndarray]] = {g: [] for g in groups}
    if source is None:
        for b, f in groups:
            rng = _group_rng(seed, b, f)
            for _ in range(per_bucket):
                chosen[(b, f)].append(_stroke_for(rng, (h, w), b, f, margin))
                if progress:
                    progress(1)
    elif not augment:
        pool: Dict[Tuple[int, bool], List[Path]] = {g: [] for g in groups}
        for p in src_files:
            hole = read_mask_file(p, invert=invert, threshold=threshold, size=(h, w), resize=resize)
            g = (bucket_of(float(hole.mean())), touches_border(hole, margin))
            if g in pool:
                pool[g].append(p)
        for g in groups:
            rng = _group_rng(seed, *g)
            order = rng.permutation(len(pool[g]))[:per_bucket]
            for i in sorted(order):
                chosen[g].append(read_mask_file(pool[g][i], invert=invert, threshold=threshold, size=(h, w),
                                                resize=resize))
                if progress:
                    progress(1)
    else:
        rng = np.random.default_rng([int(seed), 0xA06])
        needed = per_bucket * len(groups)
        budget = max_attempts if max_attempts is not None else 200 * needed
        cache: Dict[int, np.ndarray] = {}
        for attempt in range(budget):
            open_inner = any(len(v) < per_bucket for (b, f), v in chosen.items() if not f)
            open_border = any(len(v) < per_bucket for (b, f), v in chosen.items() if f)
            if not (open_inner or open_border):
                break
            i = int(rng.integers(len(src_files)))
            if i not in cache:
                if len(cache) > 256:
                    cache.clear()
                cache[i] = read_mask_file(src_files[i], invert=invert, threshold=threshold)
            if open_inner and (attempt % 2 == 1 or not open_border):
                # augment into the inner area and pad: holes keep the margin by construction
                hole = np.zeros((h, w), bool)
                hole[margin:h - margin, margin:w - margin] = augment_mask(
                    cache[i], (h - 2 * margin, w - 2 * margin), rng, augment_config)
            else:
                hole = augment_mask(cache[i], (h, w), rng, augment_config)
            g = (bucket_of(float(hole.mean())), touches_border(hole, margin))
            if g in chosen and len(chosen[g]) < per_bucket:
                chosen[g].append(hole)
                if progress:
                    progress(1)

    shortfall = {
        f"{BUCKET_LABELS[b]}/{'border' if f else 'inner'}": per_bucket - len(chosen[(b, f)])
        for b, f in groups
        if len(chosen[(b, f)]) < per_bucket
    }
    meta = {
        "format": INDEX_FORMAT,
        "version": 1,
        "polarity": "white = hole",
        "size": [h, w],
        "seed": int(seed),
        "margin": int(margin),
        "per_bucket": int(per_bucket),
        "border": border,
        "source": "strokes" if source is None else str(source),
        "augment": bool(augment and source is not None),
        "buckets": list(BUCKET_LABELS),
        "shortfall": shortfall,
    }
    entries = _write_set(out_dir, chosen, groups, margin, meta, overwrite)
    return entries, shortfall


def _write_set(
    out_dir: Path,
    chosen: Dict[Tuple[int, bool], List[np.ndarray]],
    groups: List[Tuple[int, bool]],
    margin: int,
    meta: dict,
    overwrite: bool,
) -> List[MaskEntry]:
    """Write masks + index into a temp folder beside ``out_dir`` and rename it into place."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        (tmp / "masks").mkdir()
        rows = []
        for b, f in groups:
            for i, hole in enumerate(chosen[(b, f)]):
                rel = f"masks/{b}_{'border' if f else 'inner'}_{i:05d}.png"
                (tmp / rel).write_bytes(encode_mask_png(hole))
                rows.append({
                    "file": rel,
                    "ratio": round(float(hole.mean()), 6),
                    "bucket": b,
                    "bucket_label": BUCKET_LABELS[b],
                    "touches_border": touches_border(hole, margin),
                })
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["file", "ratio", "bucket", "bucket_label", "touches_border"],
                                lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "touches_border": int(r["touches_border"])})
        (tmp / "index.csv").write_text(buf.getvalue())
        (tmp / "index.json").write_text(json.dumps({**meta, "masks": rows}, indent=1))
        old = None
        if out_dir.exists():
            if any(out_dir.iterdir()):
                old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
                os.replace(out_dir, old)
            else:
                out_dir.rmdir()
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [MaskEntry(out_dir / r["file"], r["ratio"], r["bucket"], r["touches_border"]) for r in rows]


# ------------------------------------------------------------------------------------------ read
_NVIDIA_NAME = re.compile(r"^(\d{5})\.png$")
_NVIDIA_PER_BUCKET = 2000  # full release: 6 x 2,000 files, the first half of each without border holes


def _parse_bool(value: str, where: str) -> Optional[bool]:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "y", "border"):
        return True
    if v in ("0", "false", "no", "n", "inner"):
        return False
    if v in ("", "none", "null", "?"):
        return None
    raise PConvError(f"{where}: cannot read {value!r} as touches_border (use 0/1 or yes/no)")


def _resolve(base: Path, name: str) -> Path:
    for cand in (base / name, base / "masks" / name):
        if cand.is_file():
            return cand
    raise PConvError(f"test-set index in {base} names {name}, which does not exist; the set is incomplete")


def _read_csv(path: Path, invert: bool) -> List[MaskEntry]:
    base = path.parent
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PConvError(f"cannot read test-set index {path}: {exc}") from None
    if not rows:
        raise PConvError(f"test-set index {path} lists no masks")
    cols = set(rows[0])
    entries = []
    try:
        if {"file", "bucket_index", "hole_ratio_measured"} <= cols:  # NVIDIA subset layout
            for r in rows:
                tb = _parse_bool(r.get("block_holes_at_border", r.get("touches_8px_border", "")), str(path))
                entries.append(MaskEntry(_resolve(base, r["file"]), float(r["hole_ratio_measured"]),
                                         int(r["bucket_index"]), tb, invert))
        elif {"file", "ratio", "bucket"} <= cols:  # ours
            for r in rows:
                b = r["bucket"].strip()
                bucket = int(b) if b.isdigit() else (BUCKET_LABELS.index(b) if b in BUCKET_LABELS else None)
                entries.append(MaskEntry(_resolve(base, r["file"]), float(r["ratio"]), bucket,
                                         _parse_bool(r.get("touches_border", ""), str(path)), invert))
        else:
            raise PConvError(
                f"test-set index {path} has columns {sorted(cols)}; expected file,ratio,bucket,touches_border "
                "(pconv) or NVIDIA's file,bucket_index,...,hole_ratio_measured"
            )
    except (ValueError, KeyError) as exc:
        if isinstance(exc, PConvError):
            raise
        raise PConvError(f"test-set index {path} has a malformed row: {exc}") from None
    return entries


def _read_json(path: Path, invert: bool) -> List[MaskEntry]:
    try:
        data = json.loads(path.read_text())
        rows = data["masks"]
        return [
            MaskEntry(_resolve(path.parent, r["file"]), float(r["ratio"]),
                      None if r.get("bucket") is None else int(r["bucket"]),
                      None if r.get("touches_border") is None else bool(r["touches_border"]), invert)
            for r in rows
        ]
    except PConvError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PConvError(f"cannot read test-set index {path}: {exc!r}") from None


def read_testset(
    path: PathLike, invert: bool = False, margin: int = DEFAULT_MARGIN, threshold: float = 0.5
) -> List[MaskEntry]:
    """Entries of a mask test set: our index, NVIDIA's layout, or a plain folder of masks.

    ``path`` is a folder or an index file (index.json / index.csv / buckets.csv). For the full
    NVIDIA release (files 00000.png..11999.png) bucket and border come from the file number
    (2,000 per bucket, first 1,000 without border holes). For NVIDIA's ``buckets.csv`` the
    ``touches_border`` flag is the file's block in the original set (its "with border" half),
    ``ratio`` the measured ratio listed there. For a plain folder every mask is read and measured
    (``invert`` for black = hole files; ``margin`` px for touches_border).
    """
    path = Path(path).resolve()  # entries carry absolute paths, whatever the working folder
    if not path.exists():
        raise PConvError(f"test set {path} does not exist")
    if path.is_file():
        if path.suffix.lower() == ".json":
            return _read_json(path, invert)
        if path.suffix.lower() == ".csv":
            return _read_csv(path, invert)
        raise PConvError(f"{path} is not a test-set index (.json or .csv) nor a folder")
    for name, reader in (("index.json", _read_json), ("index.csv", _read_csv), ("buckets.csv", _read_csv)):
        if (path / name).is_file():
            return reader(path / name, invert)
    folder = path / "masks" if (path / "masks").is_dir() and not _mask_files(path) else path
    files = _mask_files(folder)
    if not files:
        raise PConvError(f"{path} holds no mask images and no index (index.json, index.csv, buckets.csv)")
    numbers = [_NVIDIA_NAME.match(p.name) for p in files]
    full = 6 * _NVIDIA_PER_BUCKET
    nvidia_full = len(files) == full and all(numbers) and int(numbers[-1].group(1)) == full - 1
    entries = []
    for p, num in zip(files, numbers):
        hole = read_mask_file(p, invert=invert, threshold=threshold)
        ratio = float(hole.mean())
        if nvidia_full:
            n = int(num.group(1))
            entries.append(MaskEntry(p, ratio, n // _NVIDIA_PER_BUCKET,
                                     (n % _NVIDIA_PER_BUCKET) >= _NVIDIA_PER_BUCKET // 2, invert))
        else:
            entries.append(MaskEntry(p, ratio, bucket_of(ratio), touches_border(hole, margin), invert))
    return entries

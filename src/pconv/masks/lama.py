"""LaMa's evaluation masks: the "thin", "medium" and "thick" random mask protocols.

Suvorov et al., *Resolution-robust Large Mask Inpainting with Fourier Convolutions* (WACV 2022),
evaluate on three sets of random masks drawn by their data-generation configurations
(``configs/data_gen/random_{thin,medium,thick}_{256,512}.yaml`` of the LaMa repository). Each mask is
either a set of poly-line strokes or a set of axis-aligned boxes:

* **strokes**: ``times`` ∈ [min_times, max_times] strokes; each starts at a uniformly random pixel
  and has 1-5 straight segments; a segment has angle ``0.01 + k`` radians, k ∈ {0, …, max_angle-1}
  (mirrored to ``2π - angle`` for every other stroke), length ``min_len + U{0, max_len-1}`` and
  width ``min_width + U{0, max_width-1}`` px, its end clipped to the image;
* **boxes**: ``times`` ∈ [min_times, max_times] boxes, sides in [min_size, max_size) (at most the
  side less two margins), placed uniformly at least ``margin`` px from the border;
* the kind is strokes with weight 1 and boxes with weight ``box_weight`` (the configurations'
  ``irregular_proba`` and ``box_proba``, normalised); five candidates are drawn, those covering more
  than ``max_area`` = 50 % of the image are dropped, and one of the rest is kept at random.

Published parameters (pixels at the published size):

    set     size  strokes  max_width  max_len  box weight  box margin  box sides  boxes
    thin     256  4-50            10       40           –           –          –      –
    thin     512  4-70            20      100           –           –          –      –
    medium   256  4-5             50      100         0.3           0     10-50    1-5
    medium   512  4-10           100      200         0.3           0    30-150    1-5
    thick    256  1-5            100      200         0.3          10    30-150    1-3
    thick    512  1-5            250      450         0.3          10    30-300    1-4

``max_angle`` is 4 everywhere; the minimum stroke width is 5 px and the minimum segment length 10 px.
Differences from LaMa's script, on purpose: masks are drawn directly at the square evaluation size
(LaMa draws them on the photo resized to a short side of 256 or 512 and takes a square crop that
holds the whole mask), and sizes other than 256 and 512 use the nearer published table with every
pixel quantity scaled by size / published size. Random numbers come from numpy's Generator seeded
per set and per mask index, so a set is the same for a seed whatever ``count``, and its first masks
do not change when it grows. The masks are not LaMa's files: the protocol is followed, the draws
differ (other random number generator).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from pconv.errors import PConvError
from pconv.masks.io import encode_mask_png
from pconv.masks.testset import touches_border

__all__ = ["LAMA_SETS", "LamaStrokes", "LamaBoxes", "LamaProtocol", "LAMA_PROTOCOLS", "lama_protocol",
           "lama_mask", "build_lama_sets", "read_lama_sets", "LamaEntry", "MANIFEST"]

PathLike = Union[str, os.PathLike]
LAMA_SETS: Tuple[str, ...] = ("thin", "medium", "thick")
MANIFEST = "lama.json"  #: the collection's description, in its top folder
FORMAT = "pconv-lama-masks"


@dataclass(frozen=True)
class LamaStrokes:
    """The poly-line stroke generator's parameters (pixels)."""

    min_times: int
    max_times: int
    max_width: int
    max_len: int
    max_angle: int = 4
    min_width: int = 5
    min_len: int = 10


@dataclass(frozen=True)
class LamaBoxes:
    """The box generator's parameters (pixels)."""

    margin: int
    min_size: int
    max_size: int
    min_times: int
    max_times: int


@dataclass(frozen=True)
class LamaProtocol:
    """One mask set at one size: strokes, boxes (or none) and the selection rule."""

    name: str
    size: int
    strokes: LamaStrokes
    boxes: Optional[LamaBoxes] = None
    box_weight: float = 0.0  #: weight of boxes against strokes' 1
    variants: int = 5  #: candidates drawn per mask
    max_area: float = 0.5  #: candidates covering more of the image are dropped

    def scaled(self, size: int) -> "LamaProtocol":
        """This protocol with every pixel quantity scaled to a ``size``×``size`` image."""
        f = size / self.size

        def px(v: int) -> int:
            return max(1, int(round(v * f)))

        strokes = replace(self.strokes, max_width=px(self.strokes.max_width), max_len=px(self.strokes.max_len),
                          min_width=px(self.strokes.min_width), min_len=px(self.strokes.min_len))
        boxes = None if self.boxes is None else replace(
            self.boxes, margin=int(round(self.boxes.margin * f)), min_size=px(self.boxes.min_size),
            max_size=px(self.boxes.max_size))
        return replace(self, size=size, strokes=strokes, boxes=boxes)


#: The published protocols, keyed by (set, size).
LAMA_PROTOCOLS: Dict[Tuple[str, int], LamaProtocol] = {
    ("thin", 256): LamaProtocol("thin", 256, LamaStrokes(4, 50, 10, 40)),
    ("thin", 512): LamaProtocol("thin", 512, LamaStrokes(4, 70, 20, 100)),
    ("medium", 256): LamaProtocol("medium", 256, LamaStrokes(4, 5, 50, 100), LamaBoxes(0, 10, 50, 1, 5), 0.3),
    ("medium", 512): LamaProtocol("medium", 512, LamaStrokes(4, 10, 100, 200), LamaBoxes(0, 30, 150, 1, 5), 0.3),
    ("thick", 256): LamaProtocol("thick", 256, LamaStrokes(1, 5, 100, 200), LamaBoxes(10, 30, 150, 1, 3), 0.3),
    ("thick", 512): LamaProtocol("thick", 512, LamaStrokes(1, 5, 250, 450), LamaBoxes(10, 30, 300, 1, 4), 0.3),
}


def lama_protocol(name: str, size: int) -> LamaProtocol:
    """The protocol of set ``name`` for ``size``×``size`` masks (published, or scaled from the nearer one)."""
    if name not in LAMA_SETS:
        raise PConvError(f"unknown LaMa mask set {name!r}; choose from {', '.join(LAMA_SETS)}")
    if size < 32:
        raise PConvError(f"LaMa masks need a size of at least 32 px, got {size}")
    if (name, size) in LAMA_PROTOCOLS:
        return LAMA_PROTOCOLS[(name, size)]
    base = 256 if abs(math.log(size / 256)) <= abs(math.log(size / 512)) else 512
    return LAMA_PROTOCOLS[(name, base)].scaled(size)


def _strokes(p: LamaStrokes, size: int, rng: np.random.Generator) -> np.ndarray:
    canvas = np.zeros((size, size), np.uint8)
    for i in range(int(rng.integers(p.min_times, p.max_times + 1))):
        x, y = int(rng.integers(size)), int(rng.integers(size))
        for _ in range(1 + int(rng.integers(5))):
            angle = 0.01 + int(rng.integers(p.max_angle))
            if i % 2 == 0:
                angle = 2 * math.pi - angle
            length = p.min_len + int(rng.integers(p.max_len))
            width = p.min_width + int(rng.integers(p.max_width))
            nx = int(np.clip(int(x + length * math.sin(angle)), 0, size))
            ny = int(np.clip(int(y + length * math.cos(angle)), 0, size))
            cv2.line(canvas, (x, y), (nx, ny), 1, width)
            x, y = nx, ny
    return canvas.astype(bool)


def _boxes(p: LamaBoxes, size: int, rng: np.random.Generator) -> np.ndarray:
    hole = np.zeros((size, size), bool)
    biggest = min(p.max_size, size - 2 * p.margin)
    if biggest <= p.min_size:
        raise PConvError(f"boxes of {p.min_size}-{p.max_size} px with a {p.margin}-px margin do not fit a "
                         f"{size}-px mask; use a larger size")
    for _ in range(int(rng.integers(p.min_times, p.max_times + 1))):
        bw, bh = int(rng.integers(p.min_size, biggest)), int(rng.integers(p.min_size, biggest))
        x0 = int(rng.integers(p.margin, size - p.margin - bw + 1))
        y0 = int(rng.integers(p.margin, size - p.margin - bh + 1))
        hole[y0:y0 + bh, x0:x0 + bw] = True
    return hole


def lama_mask(protocol: LamaProtocol, rng: np.random.Generator, max_tries: int = 10) -> np.ndarray:
    """One mask of ``protocol``: a (size, size) bool hole array (True = hole)."""
    weights = np.array([1.0] + ([protocol.box_weight] if protocol.boxes is not None else []))
    weights /= weights.sum()
    for _ in range(max_tries):
        kept = []
        for _ in range(protocol.variants):
            kind = int(rng.choice(len(weights), p=weights))
            hole = _strokes(protocol.strokes, protocol.size, rng) if kind == 0 \
                else _boxes(protocol.boxes, protocol.size, rng)  # type: ignore[arg-type]
            if 0 < hole.mean() <= protocol.max_area:
                kept.append(hole)
        if kept:
            return kept[int(rng.integers(len(kept)))]
    raise PConvError(f"no {protocol.name} mask under {protocol.max_area:.0%} of the image in {max_tries} tries")


# ------------------------------------------------------------------------------------------ sets


@dataclass(frozen=True)
class LamaEntry:
    """One mask of a LaMa collection, in the shape ``pconv evaluate`` reads test-set entries in:
    ``bucket`` is the set's name."""

    path: Path
    ratio: float
    bucket: str
    touches_border: Optional[bool]
    invert: bool = False


def _rng(seed: int, name: str, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), LAMA_SETS.index(name), int(index)])


def build_lama_sets(
    out_dir: PathLike,
    count: int,
    size: int = 256,
    seed: int = 0,
    sets: Sequence[str] = LAMA_SETS,
    overwrite: bool = False,
    progress: Optional[Callable[[int], None]] = None,
) -> List[LamaEntry]:
    """Write ``count`` masks of each set: ``OUT/<set>/NNNNN.png`` (white = hole) with ``index.csv`` /
    ``index.json`` per set, and ``OUT/lama.json`` (protocol, parameters, size, count, seed). The
    collection is built in a temporary folder and renamed into place when complete."""
    out_dir = Path(out_dir)
    if count < 1:
        raise PConvError(f"count must be at least 1, got {count}")
    sets = list(dict.fromkeys(sets))
    protocols = {name: lama_protocol(name, int(size)) for name in sets}
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise PConvError(f"{out_dir} exists and is not empty; choose a new folder or pass --overwrite")
    if not out_dir.parent.is_dir():
        raise PConvError(f"cannot create {out_dir}: folder {out_dir.parent} does not exist")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    entries: List[LamaEntry] = []
    try:
        for name in sets:
            (tmp / name).mkdir()
            rows = []
            for i in range(count):
                hole = lama_mask(protocols[name], _rng(seed, name, i))
                file = f"{i:05d}.png"
                (tmp / name / file).write_bytes(encode_mask_png(hole))
                rows.append({"file": file, "ratio": round(float(hole.mean()), 6), "bucket": name,
                             "touches_border": bool(touches_border(hole))})
                entries.append(LamaEntry(out_dir / name / file, rows[-1]["ratio"], name, rows[-1]["touches_border"]))
                if progress is not None:
                    progress(1)
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows({**r, "touches_border": int(r["touches_border"])} for r in rows)
            (tmp / name / "index.csv").write_text(buf.getvalue())
            (tmp / name / "index.json").write_text(json.dumps({"format": FORMAT, "set": name, "masks": rows},
                                                              indent=1))
        manifest = {"format": FORMAT, "sets": sets, "size": int(size), "count": int(count), "seed": int(seed),
                    "polarity": "white = hole",
                    "protocols": {n: asdict(p) for n, p in protocols.items()}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
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
    return entries


def read_lama_sets(path: PathLike) -> Optional[Tuple[Dict[str, object], List[LamaEntry]]]:
    """``(manifest, entries)`` of a collection written by :func:`build_lama_sets`, or None when
    ``path`` is not one (no ``lama.json``)."""
    path = Path(path)
    manifest_path = path / MANIFEST if path.is_dir() else None
    if manifest_path is None or not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != FORMAT:
            raise PConvError(f"{manifest_path} is not a pconv LaMa mask collection (format {manifest.get('format')!r})")
        entries = []
        for name in manifest["sets"]:
            index = json.loads((path / name / "index.json").read_text())
            for r in index["masks"]:
                file = path.resolve() / name / r["file"]
                if not file.is_file():
                    raise PConvError(f"{file} is listed in {path / name / 'index.json'} but missing; the set is "
                                     "incomplete (rebuild it with pconv masks lama)")
                entries.append(LamaEntry(file, float(r["ratio"]), name, bool(r["touches_border"])))
    except PConvError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PConvError(f"cannot read the LaMa mask collection {path}: {exc!r}") from None
    return manifest, entries

"""Evaluation: the paper's Table 1 per hole-ratio bucket, side by side with the classical baselines.

One run pairs ground-truth photos with masks of a test set (NVIDIA's layout or ``pconv masks
testset``), cuts holes, fills them with every method, and scores the composited output against
the photo: ℓ1 (%), PSNR and SSIM over the whole image, PSNR and ℓ1 over the hole only, and the
seconds each method spent per image. Reports go into one folder (all writes atomic):

* ``results.md``: a Markdown table per metric, method × bucket (+ all), with the paper's Table 1
  anchors as a reference row (different data: a reference, not a comparison);
* ``rows.csv`` / ``rows.json``: one row per image and method; ``summary.json``: the table's numbers;
* ``plot_<metric>.png``: each metric against hole ratio;
* ``contact_sheet.png`` (and its tiles under ``examples/``): input with holes, each method,
  ground truth, for one case per bucket;
* for LaMa's mask sets (``pconv masks lama``), which take the buckets' place, or on request: the
  tables per 10 % hole-area bin (:mod:`pconv.area_bins`) and ``summary_bins.json``.

Pairing is deterministic for a seed: every bucket gets the same photos (one seeded permutation
of the photos, cycled), masks are drawn from each bucket by a seeded permutation, and cases are
interleaved across buckets so ``limit`` keeps the buckets balanced. Every method sees the same
cases. Large runs use worker processes (``workers``); under ``torchrun`` (``WORLD_SIZE``/``RANK``)
each rank takes every WORLD_SIZE-th case, writes its rows to ``parts/``, and rank 0 merges after a
gloo barrier (or, without a process group, after the other ranks' files appear).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from pconv.baselines import BASELINES
from pconv.baselines import fill as baseline_fill
from pconv.errors import PConvError
from pconv.sharding import barrier, dist_env, part_path, rank_device, run_key, shard

__all__ = [
    "evaluate",
    "EvaluationResult",
    "Case",
    "make_cases",
    "list_photos",
    "prepare_case",
    "METHODS",
    "METRICS",
    "SIZE_POLICIES",
    "PAPER_TABLE1",
]

PathLike = Union[str, os.PathLike]

#: The network's methods (pconv = photographic fill, pconv-smooth = the network's fill alone), each
#: also with flip averaging (``-flip``: Inpainter(flip_average=True)).
PCONV_METHODS: Tuple[str, ...] = ("pconv", "pconv-flip", "pconv-smooth", "pconv-smooth-flip")
#: Every method ``evaluate`` knows: the PConv model and the classical baselines.
METHODS: Tuple[str, ...] = PCONV_METHODS + tuple(BASELINES)
#: Metric key -> (title, unit, higher is better (None: closer to 1 is better), scale for display, decimals).
METRICS: Dict[str, Tuple[str, str, Optional[bool], float, int]] = {
    "psnr": ("PSNR, whole image", "dB", True, 1.0, 2),
    "ssim": ("SSIM, whole image", "", True, 1.0, 3),
    "l1": ("ℓ1, whole image", "%", False, 100.0, 2),
    "hole_psnr": ("PSNR, hole only", "dB", True, 1.0, 2),
    "hole_l1": ("ℓ1, hole only", "%", False, 100.0, 2),
    "detail": ("detail ratio in the hole (median; 1 = as detailed as the photo)", "", None, 1.0, 2),
    "style": ("style distance, hole's box (VGG16 Gram ℓ1)", "×10⁻³", False, 1000.0, 3),
    "seconds": ("seconds per image", "s", False, 1.0, 3),
}
#: Metrics summarised by the median (a ratio: a few near-flat ground truths would dominate a mean).
MEDIAN_METRICS = ("detail",)
SIZE_POLICIES = ("128", "256", "512", "native")  #: "128": quick CPU-scale comparisons
#: The paper's Table 1 (Places2, PConv): hole-ratio bucket -> metric -> value.
PAPER_TABLE1: Dict[Tuple[float, float], Dict[str, float]] = {
    (0.1, 0.2): {"psnr": 28.32, "ssim": 0.870},
    (0.2, 0.3): {"psnr": 25.25, "ssim": 0.779},
    (0.3, 0.4): {"psnr": 22.89, "ssim": 0.689},
}
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
SHEET_TILE = 192
ALL = "all"


@dataclass(frozen=True)
class Case:
    """One photo with one test mask."""

    index: int
    photo: str
    mask: str
    bucket: str
    mask_ratio: float
    touches_border: Optional[bool]
    invert: bool = False  #: the mask file uses black = hole


@dataclass
class EvaluationResult:
    """What one run produced: per-image rows, the summary table, and the report files."""

    rows: List[Dict[str, Any]]
    summary: Dict[str, Dict[str, Dict[str, float]]]  #: method -> bucket (or "all") -> metric -> mean
    methods: List[str]
    buckets: List[str]
    out_dir: Path
    markdown: str = ""
    files: Dict[str, Path] = field(default_factory=dict)
    rank: int = 0
    world_size: int = 1


# ----------------------------------------------------------------------------------------- inputs


def list_photos(photos: Union[PathLike, Sequence[PathLike]]) -> List[Path]:
    """The photo files named by ``photos``: files, or folders (not searched recursively), sorted."""
    items = [photos] if isinstance(photos, (str, os.PathLike)) else list(photos)
    if not items:
        raise PConvError("no photos given: pass a folder of ground-truth photos")
    found: List[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in PHOTO_SUFFIXES)
            if not files:
                raise PConvError(
                    f"no photos in {p} (looked for {', '.join(PHOTO_SUFFIXES)}; sub-folders are not searched)"
                )
            found.extend(files)
        elif p.is_file():
            found.append(p)
        else:
            raise PConvError(f"photo folder or file {p} does not exist")
    return found


def _label(bucket: Any) -> str:
    """Display label of a bucket: NVIDIA's ``"0.1-0.2"`` for an index of ``BUCKETS``."""
    from pconv.masks.testset import BUCKET_LABELS

    if isinstance(bucket, (int, np.integer)) and 0 <= int(bucket) < len(BUCKET_LABELS):
        return BUCKET_LABELS[int(bucket)]
    if isinstance(bucket, (tuple, list)) and len(bucket) == 2:
        return f"{bucket[0]:g}-{bucket[1]:g}"
    return str(bucket)


def _read_entries(masks: PathLike) -> List[Any]:
    from pconv.masks.testset import read_testset

    entries = list(read_testset(masks))
    if not entries:
        raise PConvError(f"the mask test set {masks} holds no masks")
    bucketed = [e for e in entries if e.bucket is not None]
    if not bucketed:
        raise PConvError(f"no mask of {masks} has a hole ratio in the buckets (0.01, 0.6]")
    return bucketed


def make_cases(photos: Sequence[Path], entries: Sequence[Any], per_bucket: Optional[int], seed: int,
               root: Optional[Path] = None) -> Tuple[List[Case], List[str]]:
    """Pair photos and masks deterministically; returns the cases and the bucket labels in order.

    ``per_bucket`` cases per bucket (default: one per photo). Every bucket gets the same photo
    sequence; masks are a seeded permutation of the bucket's masks, cycled if too few.
    """
    if not photos:
        raise PConvError("no photos to evaluate")
    if per_bucket is not None and per_bucket < 1:
        raise PConvError(f"--per-bucket must be at least 1, got {per_bucket}")
    groups: Dict[str, List[Any]] = {}
    for e in sorted(entries, key=lambda e: (e.bucket, str(e.path))):
        groups.setdefault(_label(e.bucket), []).append(e)
    order = list(groups)
    rng = np.random.default_rng(seed)
    photo_order = rng.permutation(len(photos))
    n = len(photos) if per_bucket is None else int(per_bucket)
    mask_orders = {}
    for b in order:
        groups[b].sort(key=lambda e: str(e.path))
        mask_orders[b] = rng.permutation(len(groups[b]))
    cases: List[Case] = []
    for i in range(n):
        photo = photos[int(photo_order[i % len(photos)])]
        for b in order:
            e = groups[b][int(mask_orders[b][i % len(groups[b])])]
            mask_path = Path(e.path)
            if root is not None and not mask_path.is_absolute():
                mask_path = root / mask_path
            tb = None if e.touches_border is None else bool(e.touches_border)
            cases.append(Case(len(cases), str(photo), str(mask_path), b, float(e.ratio), tb,
                              bool(getattr(e, "invert", False))))
    return cases, order


def _centre_square(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return image[top:top + s, left:left + s]


def prepare_case(case: Case, size_policy: str) -> Tuple[np.ndarray, np.ndarray, bool]:
    """Ground truth (uint8 RGB), hole (bool) and whether the photo was upscaled, per the size policy.

    ``"128"``/``"256"``/``"512"``: centre square crop, resized (Lanczos) to that side; the mask is resized
    nearest-neighbour. ``"native"``: the photo as it is, the mask resized nearest to it.
    """
    from PIL import Image

    from pconv.imageio import read_image
    from pconv.masks.io import read_mask_file, resize_hole

    image = read_image(case.photo).rgb
    upscaled = False
    if size_policy != "native":
        side = int(size_policy)
        image = _centre_square(image)
        upscaled = image.shape[0] < side
        if image.shape[0] != side:
            image = np.asarray(Image.fromarray(image).resize((side, side), Image.LANCZOS))
    hole = read_mask_file(case.mask, invert=case.invert)
    hole = resize_hole(hole, image.shape[0], image.shape[1])
    return np.ascontiguousarray(image), hole, upscaled


# ---------------------------------------------------------------------------------------- workers

_STATE: Dict[str, Any] = {}


def _init_worker(methods: Sequence[str], weights: Optional[str], threads: int, seed: int,
                 device: str = "cpu", style: bool = True) -> None:
    """Set up one process: thread counts, the PConv model loaded once, the style metric's VGG16."""
    import torch

    torch.set_num_threads(max(1, threads))
    try:
        import cv2

        cv2.setNumThreads(max(1, threads))
    except ImportError:
        pass
    _STATE.clear()
    _STATE.update(methods=list(methods), seed=seed)
    if style:
        from pconv.style_distance import StyleDistance

        _STATE["style"] = StyleDistance()
    wanted = [m for m in PCONV_METHODS if m in methods]
    if wanted:
        from pconv.inference import Inpainter
        from pconv.weights import load_model

        model = load_model(weights)  # one copy of the weights for every variant
        for m in wanted:
            inpainter = Inpainter(model, method=m.removesuffix("-flip"), device=device,
                                  flip_average=m.endswith("-flip"))
            warm = np.zeros((64, 64, 3), np.uint8)
            warm_hole = np.zeros((64, 64), np.uint8)
            warm_hole[16:32, 16:32] = 255
            inpainter(warm, warm_hole)  # first call pays one-off costs; keep them out of the timings
            _STATE[m] = inpainter


def _run_method(method: str, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    if method in PCONV_METHODS:
        out = _STATE[method](image, hole.astype(np.uint8) * 255)
        out = np.asarray(out, dtype=np.uint8)
        if out.shape != image.shape:
            raise PConvError(f"the PConv inpainter returned shape {out.shape} for an image of {image.shape}")
        return np.where(hole[..., None], out, image)
    options = {"seed": _STATE["seed"]} if method == "patchmatch" else {}
    return baseline_fill(method, image, hole, **options)


def _holes_white(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    shown = image.copy()
    shown[hole] = 255
    return shown


def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def _process_case(job: Tuple[Case, str, Optional[str]]) -> List[Dict[str, Any]]:
    """Fill one case with every method; returns its rows (and writes sheet tiles if asked)."""
    from pconv.metrics import detail_ratio, image_metrics
    from pconv.weights import atomic_write_bytes

    case, size_policy, tile_dir = job
    image, hole, upscaled = prepare_case(case, size_policy)
    tiles = {}
    rows = []
    for method in _STATE["methods"]:
        start = time.perf_counter()
        out = _run_method(method, image, hole)
        seconds = time.perf_counter() - start
        m = image_metrics(out, image, hole)
        m["detail"] = detail_ratio(out, image, hole)
        if "style" in _STATE:
            m["style"] = _STATE["style"](out, image, hole)
        rows.append({
            "case": case.index, "method": method, "bucket": case.bucket,
            "photo": case.photo, "mask": case.mask, "mask_ratio": round(case.mask_ratio, 6),
            "hole_ratio": round(float(hole.mean()), 6), "touches_border": case.touches_border,
            "height": int(image.shape[0]), "width": int(image.shape[1]), "upscaled": upscaled,
            **{k: float(v) for k, v in m.items()}, "seconds": seconds,
        })
        if tile_dir is not None:
            tiles[method] = out
    if tile_dir is not None:
        tiles["input"] = _holes_white(image, hole)
        tiles["ground_truth"] = image
        for name, tile in tiles.items():
            atomic_write_bytes(Path(tile_dir) / f"case{case.index:05d}_{name}.png", _png_bytes(tile))
    return rows


# ----------------------------------------------------------------------------------- distribution


# ``pconv.sharding`` splits the cases (round robin: ``cases[rank::world]``), names the run, and lets
# rank 0 wait for the other ranks' ``parts/rows.rankR.json``.


# ------------------------------------------------------------------------------------------ report


def _median(values: Sequence[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(np.median(vals)) if vals else math.nan


def _mean(values: Sequence[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return math.nan
    if any(math.isinf(v) for v in vals):
        return math.inf
    return float(np.mean(vals))


def summarise(rows: Sequence[Dict[str, Any]], methods: Sequence[str], buckets: Sequence[str]) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Mean of each metric per method and bucket (and over all buckets), with the count ``n``."""
    out: Dict[str, Dict[str, Dict[str, float]]] = {}
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        out[method] = {}
        for b in list(buckets) + [ALL]:
            sel = mine if b == ALL else [r for r in mine if r["bucket"] == b]
            stats: Dict[str, float] = {"n": float(len(sel)), "hole_ratio": _mean([r["hole_ratio"] for r in sel])}
            for key in METRICS:
                values = [float(r.get(key, math.nan)) for r in sel]
                stats[key] = _median(values) if key in MEDIAN_METRICS else _mean(values)
            out[method][b] = stats
    return out


def _fmt(value: float, key: str) -> str:
    _, _, _, scale, decimals = METRICS[key]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if math.isinf(value):
        return "inf"
    return f"{value * scale:.{decimals}f}"


def _anchor_labels(buckets: Sequence[str]) -> Dict[str, Dict[str, float]]:
    """Bucket label -> paper Table 1 values, for the buckets of this run that match the paper's."""
    try:
        from pconv.masks.testset import bucket_of
    except ImportError:
        return {}
    out = {}
    for (lo, hi), values in PAPER_TABLE1.items():
        index = bucket_of((lo + hi) / 2)
        label = None if index is None else _label(index)
        if label in buckets:
            out[label] = values
    return out


def render_markdown(summary: Dict[str, Dict[str, Dict[str, float]]], methods: Sequence[str],
                    buckets: Sequence[str], header: Sequence[str]) -> str:
    """The results table: one Markdown table per metric, method × bucket, plus the paper's anchors."""
    anchors = _anchor_labels(buckets)
    cols = list(buckets) + [ALL]
    lines = ["# pconv evaluate", ""] + [f"- {h}" for h in header] + [""]
    n_row = "| cases | " + " | ".join(str(int(summary[methods[0]][b]["n"])) for b in cols) + " |"
    ratio_row = "| mean hole ratio | " + " | ".join(
        f"{summary[methods[0]][b]['hole_ratio']:.3f}" for b in cols) + " |"
    for key, (title, unit, higher, _, _) in METRICS.items():
        better = "closer to 1" if higher is None else "higher" if higher else "lower"
        lines.append(f"## {title}{f' ({unit})' if unit else ''}, {better} is better")
        lines.append("")
        lines.append("| method | " + " | ".join(cols) + " |")
        lines.append("|---|" + "---:|" * len(cols))
        for method in methods:
            lines.append(f"| {method} | " + " | ".join(_fmt(summary[method][b][key], key) for b in cols) + " |")
        if key in ("psnr", "ssim") and anchors:
            lines.append("| paper Table 1 (PConv, Places2; reference only) | " + " | ".join(
                _fmt(anchors[b][key], key) if b in anchors else "–" for b in cols) + " |")
        if key == next(iter(METRICS)):
            lines.append(n_row)
            lines.append(ratio_row)
        lines.append("")
    return "\n".join(lines)


def _plot(summary: Dict[str, Dict[str, Dict[str, float]]], rows: Sequence[Dict[str, Any]],
          methods: Sequence[str], buckets: Sequence[str], key: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    title, unit, higher, scale, _ = METRICS[key]
    fig = Figure(figsize=(6.4, 4.2), dpi=100)  # no pyplot: the caller's backend and figures stay untouched
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for method in methods:
        pts = [(r["hole_ratio"], float(r[key]) * scale) for r in rows
               if r["method"] == method and math.isfinite(float(r.get(key, math.nan)))]
        if pts:
            xs, ys = zip(*pts)
            sc = ax.scatter(xs, ys, s=6, alpha=0.25)
            colour = tuple(sc.get_facecolor()[0][:3])  # the line in the points' colour, opaque
        else:
            colour = None
        line = [(summary[method][b]["hole_ratio"], summary[method][b][key] * scale) for b in buckets
                if math.isfinite(summary[method][b][key])]
        if line:
            xs, ys = zip(*line)
            ax.plot(xs, ys, marker="o", label=method, color=colour)
    if key in ("psnr", "ssim"):
        anchors = [((lo + hi) / 2, v[key]) for (lo, hi), v in PAPER_TABLE1.items()]
        xs, ys = zip(*anchors)
        ax.scatter(xs, ys, marker="x", color="black", s=40, zorder=5, label="paper Table 1 (Places2)")
    ax.set_xlabel("hole ratio")
    ax.set_ylabel(f"{title}{f' ({unit})' if unit else ''}")
    better = "closer to 1" if higher is None else "higher" if higher else "lower"
    ax.set_title(f"{title} vs hole ratio ({better} is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _contact_sheet(tile_dir: Path, cases: Sequence[Case], methods: Sequence[str]) -> Optional[bytes]:
    from PIL import Image, ImageDraw

    columns = ["input"] + list(methods) + ["ground_truth"]
    present = [c for c in cases if all((tile_dir / f"case{c.index:05d}_{n}.png").is_file() for n in columns)]
    if not present:
        return None
    head, caption = 18, 14
    width = SHEET_TILE * len(columns)
    height = head + len(present) * (caption + SHEET_TILE)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for j, name in enumerate(columns):
        draw.text((j * SHEET_TILE + 4, 3), name.replace("_", " "), fill="black")
    for i, case in enumerate(present):
        y = head + i * (caption + SHEET_TILE)
        draw.text((4, y + 1), f"case {case.index}: {Path(case.photo).name}, bucket {case.bucket}, "
                  f"mask {Path(case.mask).name}", fill="black")
        for j, name in enumerate(columns):
            with Image.open(tile_dir / f"case{case.index:05d}_{name}.png") as tile:
                tile = tile.convert("RGB")
                tile.thumbnail((SHEET_TILE, SHEET_TILE), Image.LANCZOS)
                sheet.paste(tile, (j * SHEET_TILE, y + caption))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def _write_csv(rows: Sequence[Dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue().encode()


def _json_bytes(obj: Any) -> bytes:
    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return "inf" if x > 0 else ("-inf" if x < 0 else None)
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    return (json.dumps(clean(obj), indent=1) + "\n").encode()


# -------------------------------------------------------------------------------------------- main


def _check_methods(methods: Sequence[str]) -> List[str]:
    methods = [m.strip() for m in methods if m.strip()]
    if not methods:
        raise PConvError(f"no methods given; available: {', '.join(METHODS)}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise PConvError(f"unknown method(s) {', '.join(unknown)}; available: {', '.join(METHODS)}")
    if len(set(methods)) != len(methods):
        raise PConvError(f"a method is named twice in {', '.join(methods)}")
    probe = np.zeros((16, 16, 3), np.uint8)
    probe_hole = np.zeros((16, 16), bool)
    probe_hole[6:10, 6:10] = True
    for m in methods:  # a missing optional dependency fails now, with its install hint
        if m not in PCONV_METHODS:
            baseline_fill(m, probe, probe_hole)
    return methods


def evaluate(
    photos_dir: Union[PathLike, Sequence[PathLike]],
    masks: PathLike,
    methods: Sequence[str] = METHODS,
    size_policy: str = "256",
    out_dir: PathLike = "eval-out",
    seed: int = 0,
    weights: Optional[PathLike] = None,
    workers: int = 1,
    limit: Optional[int] = None,
    per_bucket: Optional[int] = None,
    sheet_cases: int = 6,
    progress: bool = True,
    device: str = "cpu",
    style: bool = True,
    area_bins: Optional[bool] = None,
) -> EvaluationResult:
    """Run every method on the same photo × mask cases and write the reports into ``out_dir``.

    ``photos_dir``: a folder (or folders/files) of ground-truth photos. ``masks``: a mask test set
    (NVIDIA layout with ``buckets.csv``, or ``pconv masks testset``'s). ``size_policy``: ``"256"``,
    ``"512"`` (centre crop + resize) or ``"native"``. ``per_bucket``: cases per bucket (default:
    one per photo); ``limit``: at most this many cases in all (balanced across buckets).
    ``weights``: the PConv weights for method ``pconv`` (default: the shipped model), run on
    ``device`` ("cpu", "cuda", "auto", ...); the baselines always run on the CPU. ``style``: also
    score the style distance (:mod:`pconv.style_distance`; needs the loss's VGG16 weights).
    ``masks`` may also be a collection of LaMa's mask sets (``pconv masks lama``): the sets then
    take the place of the buckets. ``area_bins``: also report per 10 % hole-area bin
    (:mod:`pconv.area_bins`; None = for LaMa collections only).
    Returns the rows and summary; under torchrun only rank 0 merges and writes the reports.
    """
    from tqdm import tqdm

    from pconv.weights import atomic_write_bytes

    size_policy = str(size_policy)
    if size_policy not in SIZE_POLICIES:
        raise PConvError(f"unknown size policy {size_policy!r}; choose one of {', '.join(SIZE_POLICIES)}")
    if workers < 1:
        raise PConvError(f"workers must be at least 1, got {workers}")
    if limit is not None and limit < 1:
        raise PConvError(f"limit must be at least 1, got {limit}")
    methods = _check_methods(list(methods))
    if weights is not None and not Path(weights).is_file():
        raise PConvError(f"weights file {weights} does not exist")
    masks = Path(masks)
    if not masks.exists():
        raise PConvError(f"mask test set {masks} does not exist")
    photos = list_photos(photos_dir)
    from pconv.masks.lama import read_lama_sets

    lama = read_lama_sets(masks)
    entries = lama[1] if lama is not None else _read_entries(masks)
    root = masks if masks.is_dir() else masks.parent
    cases, buckets = make_cases(photos, entries, per_bucket, seed, root=root)
    if lama is not None:  # the protocol's order (thin, medium, thick), not the alphabet's
        buckets = [b for b in lama[0]["sets"] if b in buckets]
    if limit is not None:
        cases = cases[:limit]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = out / "parts"
    tile_dir = out / "examples"
    parts.mkdir(exist_ok=True)
    tile_dir.mkdir(exist_ok=True)

    env = dist_env()
    rank, world = env.rank, env.world
    mine = [cases[i] for i in shard(cases, rank, world)]
    sheet_idx = set()
    for k, b in enumerate(buckets):  # one case per bucket on the contact sheet, a different photo each
        mine_b = [c.index for c in cases if c.bucket == b]
        if mine_b and len(sheet_idx) < sheet_cases:
            sheet_idx.add(mine_b[k % len(mine_b)])
    jobs = [(c, size_policy, str(tile_dir) if c.index in sheet_idx else None) for c in mine]
    cpus = os.cpu_count() or 1
    threads = max(1, cpus // env.local_world // workers)
    device = rank_device(device, env)
    weights_arg = None if weights is None else str(weights)
    rows: List[Dict[str, Any]] = []
    bar = tqdm(total=len(jobs), desc=f"evaluate{f' rank {rank}' if world > 1 else ''}", unit="case",
               disable=not progress)
    if workers == 1:
        _init_worker(methods, weights_arg, threads, seed, device, style)
        for job in jobs:
            rows.extend(_process_case(job))
            bar.update(1)
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(methods, weights_arg, threads, seed, device, style)) as pool:
            for case_rows in pool.imap_unordered(_process_case, jobs, chunksize=1):
                rows.extend(case_rows)
                bar.update(1)
    bar.close()
    order = {m: i for i, m in enumerate(methods)}
    rows.sort(key=lambda r: (r["case"], order[r["method"]]))
    key = run_key([asdict(c) for c in cases], methods, size_policy, seed, world, weights_arg)
    atomic_write_bytes(part_path(parts, "rows", rank), _json_bytes({"key": key, "rows": rows}))

    barrier(world, parts, rank, key, name="rows")
    if rank != 0:
        return EvaluationResult(rows, {}, methods, buckets, out, rank=rank, world_size=world)
    if world > 1:
        rows = []
        for r in range(world):
            rows.extend(_load_rows(part_path(parts, "rows", r)))
        rows.sort(key=lambda r: (r["case"], order[r["method"]]))

    summary = summarise(rows, methods, buckets)
    n_up = len({r["case"] for r in rows if r["upscaled"]})
    header = [
        f"photos: {len(photos)}; masks: {masks} ({len(entries)} masks, {len(buckets)} buckets)",
        f"size policy: {size_policy}; seed: {seed}; cases: {len(cases)} "
        f"({per_bucket if per_bucket is not None else len(photos)} per bucket"
        f"{f', limited to {limit}' if limit is not None else ''}); methods: {', '.join(methods)}",
        "metrics on the composited output; ℓ1 = mean absolute error on a [0,1] scale, in %; "
        "SSIM = scikit-image, 7x7 uniform window, data_range 1",
        f"workers: {workers} x {threads} thread(s); processes (torchrun world size): {world}",
    ]
    if set(PCONV_METHODS) & set(methods):
        header.append(f"pconv weights: {weights if weights is not None else 'the shipped default model'}; "
                      f"device: {device}")
    if n_up:
        header.append(f"{n_up} case(s) upscaled a photo smaller than the target size (easier than real detail)")
    header.append(_run_line(rows, photos, cases, seed, lama[0] if lama is not None else None))
    markdown = render_markdown(summary, methods, buckets, header)
    bins = None
    if (lama is not None) if area_bins is None else area_bins:  # by default for LaMa's sets only
        from pconv.area_bins import BIN_METRICS, render_bins_markdown, summarise_bins

        bins = summarise_bins(rows, methods, buckets, list(METRICS), MEDIAN_METRICS)
        titles = {k: (METRICS[k][0], METRICS[k][1], METRICS[k][3], METRICS[k][4]) for k in BIN_METRICS}
        markdown += "\n" + render_bins_markdown(bins, methods, buckets, titles)
    files = {
        "results_md": out / "results.md",
        "rows_csv": out / "rows.csv",
        "rows_json": out / "rows.json",
        "summary_json": out / "summary.json",
    }
    atomic_write_bytes(files["results_md"], markdown.encode())
    atomic_write_bytes(files["rows_csv"], _write_csv(rows))
    atomic_write_bytes(files["rows_json"], _json_bytes(rows))
    atomic_write_bytes(files["summary_json"], _json_bytes({"methods": methods, "buckets": buckets, "summary": summary,
                                                           "paper_table1": {_label(k): v for k, v in PAPER_TABLE1.items()}}))
    if bins is not None:
        files["summary_bins_json"] = out / "summary_bins.json"
        atomic_write_bytes(files["summary_bins_json"], _json_bytes({"methods": methods, "sets": buckets, "bins": bins}))
    for key in METRICS:
        path = out / f"plot_{key}.png"
        atomic_write_bytes(path, _plot(summary, rows, methods, buckets, key))
        files[f"plot_{key}"] = path
    sheet = _contact_sheet(tile_dir, [c for c in cases if c.index in sheet_idx], methods)
    if sheet is not None:
        files["contact_sheet"] = out / "contact_sheet.png"
        atomic_write_bytes(files["contact_sheet"], sheet)
    return EvaluationResult(rows, summary, methods, buckets, out, markdown, files, rank, world)


def _run_line(rows: Sequence[Dict[str, Any]], photos: Sequence[Path], cases: Sequence[Case], seed: int,
              lama: Optional[Dict[str, Any]]) -> str:
    """The report's line naming how many images, at which resolution, from which seed (and masks)."""
    sizes = sorted({(int(r["width"]), int(r["height"])) for r in rows})
    resolution = f"{sizes[0][0]}x{sizes[0][1]}" if len(sizes) == 1 else \
        f"{len(sizes)} sizes, {sizes[0][0]}x{sizes[0][1]} to {sizes[-1][0]}x{sizes[-1][1]}"
    line = f"images: {len(cases)} ({len(photos)} photos); resolution: {resolution}; seed: {seed}"
    if lama is not None:
        line += (f"; masks: LaMa sets {', '.join(lama['sets'])} ({lama['size']}x{lama['size']}, {lama['count']} "
                 f"per set, mask seed {lama['seed']})")
    return line


def _load_rows(path: Path) -> List[Dict[str, Any]]:
    rows = json.loads(path.read_text())["rows"]
    for r in rows:
        for k, v in r.items():
            if v == "inf":
                r[k] = math.inf
            elif v is None and k in METRICS:
                r[k] = math.nan
    return rows


def case_dict(case: Case) -> Dict[str, Any]:
    """A case as a plain dict (for logs and JSON)."""
    return asdict(case)

"""`pconv masks`: make hole masks (strokes, noise level sets, video flow consistency), build and inspect test sets
(the paper's buckets, LaMa's thin / medium / thick sets)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Tuple

from pconv.errors import PConvError

HELP = "make hole masks (random strokes, noise level sets, the paper's video masks) and bucketed mask test sets"

POLARITY = (
    "Polarity: mask files on disk are white = hole, black = keep (NVIDIA's test masks, IOPaint); "
    "--invert-mask flips this to black = hole for the files read or written. Inside pconv the "
    "network's mask M is 1 = valid, 0 = hole, as in the paper."
)
BUCKET_TEXT = "hole-ratio buckets: 0=(0.01,0.1] 1=(0.1,0.2] 2=(0.2,0.3] 3=(0.3,0.4] 4=(0.4,0.5] 5=(0.5,0.6]"
_FMT = argparse.ArgumentDefaultsHelpFormatter


def _size(text: str) -> Tuple[int, int]:
    """'512' or 'WIDTHxHEIGHT' -> (height, width)."""
    try:
        if "x" in text.lower():
            w, h = (int(v) for v in text.lower().split("x"))
        else:
            w = h = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be N or WIDTHxHEIGHT, e.g. 512 or 640x480, got {text!r}")
    if w < 8 or h < 8:
        raise argparse.ArgumentTypeError(f"size must be at least 8x8, got {text!r}")
    return h, w


def _pair(text: str) -> Tuple[float, float]:
    try:
        a, b = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers LOW,HIGH, got {text!r}")
    return a, b


def _buckets(text: str) -> Tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected bucket indices like 0,1,5, got {text!r}")


def _common(p: argparse.ArgumentParser, write: bool = True) -> None:
    p.add_argument("--invert-mask", action="store_true",
                   help="mask files use black = hole instead of the default white = hole")
    if write:
        p.add_argument("--overwrite", action="store_true",
                       help="allow writing into an existing, non-empty output folder (files of the same name "
                            "are replaced; inputs are never overwritten)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = f"{HELP}. {POLARITY}"
    sub = parser.add_subparsers(dest="masks_command", metavar="KIND", required=True)

    for kind, short, what in (
        ("strokes", "random brush strokes and blobs", "random free-form stroke masks"),
        ("noise", "ragged blobs and thin broken lines",
         "irregular masks from noise level sets (ragged blobs, thin broken curving lines)"),
    ):
        p = sub.add_parser(kind, formatter_class=_FMT, help=short,
                           description=f"Write COUNT {what} (00000.png, ...) whose hole ratio lies in "
                                       f"[--min-ratio, --max-ratio]. Same --seed, same masks. {POLARITY}")
        p.add_argument("out_dir", type=Path, help="output folder (created if missing)")
        p.add_argument("--count", type=int, default=100, help="number of masks")
        p.add_argument("--size", type=_size, default="512", help="mask size, N or WIDTHxHEIGHT")
        p.add_argument("--min-ratio", type=float, default=0.01, help="smallest hole-to-image area ratio")
        p.add_argument("--max-ratio", type=float, default=0.6, help="largest hole-to-image area ratio")
        p.add_argument("--seed", type=int, default=0, help="random seed")
        _common(p)

    p = sub.add_parser("video", formatter_class=_FMT, help="the paper's masks: flow occlusions of a video",
                       description="Hole masks from a video as in the paper: forward and backward dense optical "
                                   "flow between consecutive frames; pixels whose round trip fails, "
                                   "|f(x)+b(x+f(x))|^2 > alpha(|f|^2+|b|^2)+beta (Sundaram et al. 2010), are holes "
                                   "(occlusions and dis-occlusions), cleaned of specks. Writes "
                                   f"<name>_<pair>.png per kept frame pair. {POLARITY}")
    p.add_argument("source", type=Path, help="video file (any format OpenCV decodes) or folder of frame images")
    p.add_argument("out_dir", type=Path, help="output folder (created if missing)")
    p.add_argument("--size", type=_size, default=None,
                   help="resize frames (area interpolation) to N or WIDTHxHEIGHT before the flow; None = "
                        "native size")
    p.add_argument("--step", type=int, default=1, help="use every STEP-th frame (larger motion per pair)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many (sampled) frames; None = all")
    p.add_argument("--method", choices=("dis", "farneback"), default="dis", help="OpenCV dense flow method")
    p.add_argument("--alpha", type=float, default=0.01, help="relative round-trip tolerance")
    p.add_argument("--beta", type=float, default=0.5, help="absolute round-trip tolerance, px^2")
    p.add_argument("--direction", choices=("forward", "backward", "both"), default="both",
                   help="occlusions (forward), dis-occlusions (backward) or their union")
    p.add_argument("--motion-boundaries", action="store_true",
                   help="also mark motion boundaries (large flow gradient)")
    p.add_argument("--open-px", type=int, default=3, help="diameter of the speck-removing opening, 0 = off")
    p.add_argument("--min-area", type=float, default=0.0005,
                   help="drop hole components smaller than this fraction of the frame, 0 = off")
    p.add_argument("--min-ratio", type=float, default=0.005,
                   help="skip frame pairs whose mask has a smaller hole ratio (e.g. no motion)")
    _common(p)

    p = sub.add_parser("testset", formatter_class=_FMT, help="bucketed test set, as in the paper",
                       description="Build a mask test set as in the paper: PER_BUCKET masks in each "
                                   f"{BUCKET_TEXT}, with holes touching the border and/or keeping --margin px "
                                   "away from it. Masks come from random strokes, or from a folder of masks "
                                   "(e.g. the output of `pconv masks video`), bucketed as they are or, with "
                                   "--augment, enlarged by the paper's augmentation (binarise, dilation, rotation, "
                                   "translation, crop, nearest resize). Writes OUT_DIR/masks/*.png (white = hole), "
                                   "index.csv and index.json (file, ratio, bucket, touches_border); the folder "
                                   f"appears only when complete. Deterministic for --seed. {POLARITY}")
    p.add_argument("out_dir", type=Path, help="output folder (must not exist or be empty, unless --overwrite)")
    p.add_argument("--source", default="strokes",
                   help="'strokes' or a folder of mask images to draw from")
    p.add_argument("--per-bucket", type=int, default=1000, help="masks per bucket and border group (paper: 1000)")
    p.add_argument("--size", type=_size, default="512", help="mask size, N or WIDTHxHEIGHT")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--border", choices=("both", "with", "without"), default="both",
                   help="groups to build: holes touching the border, holes away from it, or both")
    p.add_argument("--margin", type=int, default=8,
                   help="border band in px: 'without' masks have no hole pixel in it, 'with' masks have one")
    p.add_argument("--buckets", type=_buckets, default="0,1,2,3,4,5", help=f"bucket indices; {BUCKET_TEXT}")
    p.add_argument("--augment", action="store_true",
                   help="folder source: augment random source masks until every group is full")
    p.add_argument("--threshold", type=float, default=None,
                   help="grey level in [0,1] above which a source mask pixel is white; None = 0.6 with --augment "
                        "(the paper's value), else 0.5")
    p.add_argument("--dilation", type=_pair, default="9,49",
                   help="--augment: dilation kernel diameter range LOW,HIGH in px at 512 px (scales with size)")
    p.add_argument("--max-rotation", type=float, default=180.0, help="--augment: largest rotation, degrees")
    p.add_argument("--max-translation", type=float, default=0.25,
                   help="--augment: largest shift as a fraction of the side")
    p.add_argument("--crop", type=_pair, default="0.6,1",
                   help="--augment: random crop side as a fraction LOW,HIGH of the mask side")
    p.add_argument("--max-attempts", type=int, default=None,
                   help="--augment: give up after this many augmentations (None = 200 per mask wanted)")
    p.add_argument("--resize-mask", action="store_true",
                   help="folder source without --augment: resize masks of another size (nearest neighbour only)")
    _common(p)

    p = sub.add_parser("lama", formatter_class=_FMT, help="LaMa's thin / medium / thick evaluation mask sets",
                       description="Write COUNT masks of each of LaMa's random mask protocols (Suvorov et al. 2022: "
                                   "thin, medium, thick; strokes or boxes, candidates over 50 %% of the image "
                                   "dropped), with the published parameters for 256 and 512 px and scaled ones for "
                                   "other sizes (pconv.masks.lama lists them): OUT_DIR/<set>/NNNNN.png (white = "
                                   "hole) with index.csv/index.json, and OUT_DIR/lama.json. `pconv evaluate "
                                   "--masks OUT_DIR` reports per set and per 10 %% hole-area bin. Same --seed, same "
                                   f"masks. {POLARITY}")
    p.add_argument("out_dir", type=Path, help="output folder (must not exist or be empty, unless --overwrite)")
    p.add_argument("--sets", default="thin,medium,thick", help="comma-separated sets to write")
    p.add_argument("--count", type=int, default=1000, help="masks per set")
    p.add_argument("--size", type=int, default=256, help="side of the square masks, px (published: 256, 512)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--overwrite", action="store_true", help="replace an existing, non-empty output folder")

    p = sub.add_parser("info", formatter_class=_FMT,
                       help="summarise a mask test set (ours, NVIDIA's, LaMa sets, a folder)",
                       description="Read a mask test set: a pconv index (index.json/index.csv), NVIDIA's "
                                   "irregular-mask layout (buckets.csv, or the 12,000-file release), or any folder "
                                   "of masks (measured on read), and print masks per bucket and border group; for "
                                   "`pconv masks lama` output, masks per set and 10 %% hole-area bin. "
                                   f"{POLARITY}")
    p.add_argument("path", type=Path, help="test-set folder or index file")
    p.add_argument("--margin", type=int, default=8, help="plain folders: border band in px for touches_border")
    _common(p, write=False)


def _prepare_out(out_dir: Path, overwrite: bool, source: Optional[Path] = None) -> bool:
    """Check/create the output folder; True if this call created it."""
    if source is not None:
        s, o = source.resolve(), out_dir.resolve()
        if s == o or o in s.parents or (source.is_dir() and s in o.parents):
            raise PConvError(f"output folder {out_dir} overlaps the input {source}; choose a separate folder")
    if out_dir.exists():
        if not out_dir.is_dir():
            raise PConvError(f"{out_dir} exists and is not a folder")
        if any(out_dir.iterdir()) and not overwrite:
            raise PConvError(f"{out_dir} is not empty; choose a new folder or pass --overwrite")
        return False
    if not out_dir.parent.is_dir():
        raise PConvError(f"cannot create {out_dir}: folder {out_dir.parent} does not exist")
    out_dir.mkdir()
    return True


def _drop_if_empty(out_dir: Path, created: bool) -> None:
    """After a failure, remove an output folder this run created and left empty."""
    if created and out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()


def _bar(total: Optional[int], desc: str, unit: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=None, dynamic_ncols=True)


def _run_generated(args: argparse.Namespace) -> int:
    """``pconv masks strokes`` and ``pconv masks noise``."""
    import numpy as np

    from pconv.masks import noise_mask, stroke_mask, write_mask_file

    draw = {"strokes": stroke_mask, "noise": noise_mask}[args.masks_command]

    if args.count < 1:
        raise PConvError(f"--count must be >= 1, got {args.count}")
    h, w = args.size
    created = _prepare_out(args.out_dir, args.overwrite)
    rng = np.random.default_rng(args.seed)
    try:
        with _bar(args.count, args.masks_command, "mask") as bar:
            for i in range(args.count):
                hole = draw(h, w, rng, (args.min_ratio, args.max_ratio))
                write_mask_file(args.out_dir / f"{i:05d}.png", hole, invert=args.invert_mask)
                bar.update(1)
    except BaseException:
        _drop_if_empty(args.out_dir, created)
        raise
    print(f"wrote {args.count} {args.masks_command} masks ({w}x{h}) to {args.out_dir}")
    return 0


def _run_video(args: argparse.Namespace) -> int:
    from pconv.masks import FlowMaskConfig, video_masks, write_mask_file

    cfg = FlowMaskConfig(method=args.method, alpha=args.alpha, beta=args.beta, direction=args.direction,
                         motion_boundaries=args.motion_boundaries, open_px=args.open_px, min_area=args.min_area)
    cfg.check()
    if not args.source.exists():
        raise PConvError(f"video source {args.source} does not exist")
    created = _prepare_out(args.out_dir, args.overwrite, args.source)
    stem = args.source.stem if args.source.is_file() else args.source.name
    kept = seen = 0
    try:
        with _bar(None, "video", "pair") as bar:
            for pair, hole in video_masks(args.source, cfg, args.size, args.step, args.max_frames):
                seen += 1
                if hole.mean() >= args.min_ratio:
                    write_mask_file(args.out_dir / f"{stem}_{pair:05d}.png", hole, invert=args.invert_mask)
                    kept += 1
                bar.update(1)
                bar.set_postfix(kept=kept)
    except BaseException:
        _drop_if_empty(args.out_dir, created)
        raise
    print(f"wrote {kept} masks from {seen} frame pairs of {args.source} to {args.out_dir}"
          + (f" ({seen - kept} below --min-ratio {args.min_ratio} skipped)" if seen > kept else ""))
    return 0


def _run_testset(args: argparse.Namespace) -> int:
    from pconv.masks import AugmentConfig, build_testset

    source = None if args.source == "strokes" else Path(args.source)
    threshold = args.threshold if args.threshold is not None else (0.6 if args.augment else 0.5)
    if args.augment and source is None:
        raise PConvError("--augment needs --source FOLDER (a folder of masks to augment)")
    aug = AugmentConfig(threshold=threshold, dilation=(int(args.dilation[0]), int(args.dilation[1])),
                        max_rotation=args.max_rotation, max_translation=args.max_translation, crop=args.crop)
    aug.check()
    groups = len(set(args.buckets)) * (2 if args.border == "both" else 1)
    with _bar(groups * args.per_bucket, "testset", "mask") as bar:
        entries, shortfall = build_testset(
            args.out_dir, per_bucket=args.per_bucket, size=args.size, seed=args.seed, source=source,
            border=args.border, margin=args.margin, buckets=args.buckets, augment=args.augment,
            augment_config=aug, invert=args.invert_mask, threshold=threshold, resize=args.resize_mask,
            overwrite=args.overwrite, max_attempts=args.max_attempts, progress=bar.update)
    print(f"wrote {len(entries)} masks to {args.out_dir} (index.csv, index.json)")
    if shortfall:
        missing = ", ".join(f"{k}: {v}" for k, v in shortfall.items())
        if args.augment:  # (generated strokes always fill every group)
            fix = ("raise --max-attempts, or use more (or other) source masks: augmentation reaches hole ratios "
                   "near those of its sources")
        else:
            fix = "use more source masks, or --augment to make more from them"
        print(f"warning: some groups are short of {args.per_bucket} masks ({missing}); {fix}")
    return 0


def _run_lama(args: argparse.Namespace) -> int:
    from pconv.masks.lama import build_lama_sets

    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    if not sets:
        raise PConvError("--sets is empty; name one or more of thin, medium, thick")
    with _bar(len(set(sets)) * max(args.count, 0), "lama", "mask") as bar:
        entries = build_lama_sets(args.out_dir, args.count, args.size, args.seed, sets, args.overwrite, bar.update)
    print(f"wrote {len(entries)} masks ({', '.join(dict.fromkeys(sets))}; {args.size}x{args.size}, seed "
          f"{args.seed}) to {args.out_dir}")
    return 0


def _run_info(args: argparse.Namespace) -> int:
    from collections import Counter

    from pconv.masks import BUCKET_LABELS, read_testset
    from pconv.masks.lama import read_lama_sets

    lama = read_lama_sets(args.path)
    if lama is not None:
        from pconv.area_bins import AREA_BIN_LABELS, area_bin

        manifest, entries = lama
        print(f"{args.path}: {len(entries)} LaMa masks ({manifest['size']}x{manifest['size']}, seed "
              f"{manifest['seed']}), per 10 % hole-area bin")
        print(f"{'set':>8} " + " ".join(f"{b:>7}" for b in AREA_BIN_LABELS))
        for name in manifest["sets"]:
            bins = Counter(area_bin(e.ratio) for e in entries if e.bucket == name)
            print(f"{name:>8} " + " ".join(f"{bins[b]:>7}" for b in AREA_BIN_LABELS))
        return 0
    entries = read_testset(args.path, invert=args.invert_mask, margin=args.margin)
    counts = Counter((e.bucket, e.touches_border) for e in entries)
    print(f"{args.path}: {len(entries)} masks")
    print(f"{'bucket':>10} {'inner':>7} {'border':>7} {'unknown':>8}")
    for b in sorted(set(k[0] for k in counts), key=lambda v: (v is None, v if v is not None else 0)):
        label = BUCKET_LABELS[b] if b is not None else "outside"
        print(f"{label:>10} {counts[(b, False)]:>7} {counts[(b, True)]:>7} {counts[(b, None)]:>8}")
    return 0


def run(args: argparse.Namespace) -> int:
    commands = {"strokes": _run_generated, "noise": _run_generated, "video": _run_video, "testset": _run_testset,
                "lama": _run_lama, "info": _run_info}
    return commands[args.masks_command](args)

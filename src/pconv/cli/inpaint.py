"""`pconv inpaint`: fill the holes of one photo, or of a folder of photos.

One photo:   pconv inpaint IMAGE MASK -o OUT
A folder:    pconv inpaint --input DIR --mask DIR|FILE --output DIR

In folder mode each image takes the mask of the same file stem from the mask folder
(``photo.jpg`` <- ``photo.png`` or ``photo_mask.png``), or the one mask file given for all. Outputs
keep the input's file name (``--ext`` changes the format). An existing output is skipped unless
``--overwrite``; an input is never overwritten. The summary lists done / skipped / failed with
reasons, and the exit status is 1 when anything failed.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import List, Optional, Tuple

from pconv.errors import PConvError

HELP = "fill the holes of a photo (or a folder of photos) given a mask (white = hole)"

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", nargs="?", help="the photo (single-image mode)")
    p.add_argument("mask_file", nargs="?", metavar="MASK", help="its mask, white = hole (single-image mode)")
    p.add_argument("-o", "--output", help="output file (single mode; the extension picks the format) or folder (folder mode)")
    p.add_argument("--input", help="folder mode: folder of photos")
    p.add_argument("--mask", dest="mask_option", metavar="DIR|FILE",
                   help="folder mode: folder of masks matched by file stem (photo.png or photo_mask.png), or one mask for all")
    p.add_argument("--ext", help="folder mode: write outputs with this extension (e.g. png) instead of the input's")
    p.add_argument("--method", default="pconv",
                   help="pconv (default: the network's fill with fine detail copied from the photo), pconv-smooth "
                        "(the network's fill alone: highest PSNR, foggy on large holes), or a classical baseline: "
                        "telea, ns, biharmonic, patchmatch")
    p.add_argument("--weights", help="weights file (.safetensors); default: the model shipped with pconv")
    p.add_argument("--strategy", default="auto", choices=["auto", "original", "crop", "resize"],
                   help="large-photo strategy: auto = original up to 2x the model's training size, crop above")
    p.add_argument("--invert-mask", action="store_true", help="masks are black = hole instead of white = hole")
    p.add_argument("--resize-mask", action="store_true", help="resize a mask of another size to the photo (nearest)")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="grey level in [0, 1) above which a mask pixel is white (cleans anti-aliased/JPEG masks)")
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality (1-100)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (inputs are never overwritten)")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="refuse images with more pixels than this (decompression-bomb guard; default: Pillow's ~89M)")
    p.add_argument("--flip-average", action="store_true",
                   help="also fill the mirrored photo and average (2x the time, +0.04 dB PSNR: MODEL_CARD.md)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network (compiles on the first photo of each size; for GPUs and many photos)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto = bf16 on CPUs with native bf16 and on GPUs, else fp32")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _inpaint_one(inpainter, image_path: Path, mask_path: Path, out_path: Path, args: argparse.Namespace) -> List[str]:
    """Read, fill, write one photo; returns notes worth telling. Raises PConvError on failure."""
    from pconv.imageio import read_image, write_image
    from pconv.masks.io import read_mask_file

    for src in (image_path, mask_path):
        if _same_file(out_path, src):
            raise PConvError(f"the output {out_path} is an input file ({src}); pconv never overwrites an input")
    if out_path.exists() and not args.overwrite:
        raise FileExistsError(str(out_path))
    loaded = read_image(image_path, max_pixels=args.max_pixels)
    hole = read_mask_file(mask_path, invert=args.invert_mask, threshold=args.threshold,
                          size=(loaded.height, loaded.width), resize=args.resize_mask)
    result = inpainter.inpaint(loaded.rgb, hole, strategy=args.strategy)
    write_image(out_path, dataclasses.replace(loaded, rgb=result.image), quality=args.quality,
                overwrite=args.overwrite)
    notes = list(loaded.notes) + list(result.notes)
    if not result.empty_mask:
        notes.append(f"{result.hole_fraction:.1%} hole, strategy {result.strategy}, {result.windows} window(s)")
    return notes


def _folder_jobs(args: argparse.Namespace) -> Tuple[List[Tuple[Path, Optional[Path], Path, str]], Path]:
    """(image, mask or None, output, reason-if-no-mask) for every photo of the input folder."""
    in_dir = Path(args.input)
    if not in_dir.is_dir():
        raise PConvError(f"input folder {in_dir} does not exist (or is not a folder)")
    if not args.mask_option:
        raise PConvError("folder mode needs --mask DIR (masks matched by file stem) or --mask FILE (one mask for all)")
    if not args.output:
        raise PConvError("folder mode needs --output DIR")
    mask_src = Path(args.mask_option)
    if not mask_src.exists():
        raise PConvError(f"mask {mask_src} does not exist")
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise PConvError(f"--output {out_dir} is a file; in folder mode it must be a folder")
    if _same_file(out_dir, in_dir):
        raise PConvError(f"the output folder {out_dir} is the input folder: outputs would overwrite inputs; "
                         "choose another --output folder")
    ext = None
    if args.ext:
        from pconv.imageio import format_for_path

        ext = "." + args.ext.lower().lstrip(".")
        format_for_path(Path("x" + ext))  # unknown extension -> clear error now, not per file
    mask_dir = mask_src if mask_src.is_dir() else None
    same_dir = mask_dir is not None and _same_file(mask_dir, in_dir)
    masks_by_stem = {}
    if mask_dir is not None:
        from pconv.masks.io import MASK_SUFFIXES

        for f in sorted(mask_dir.iterdir()):
            if f.is_file() and f.suffix.lower() in MASK_SUFFIXES:
                masks_by_stem.setdefault(f.stem, f)
    jobs = []
    for f in sorted(in_dir.iterdir()):
        if not f.is_file() or f.suffix.lower() not in _IMAGE_SUFFIXES or f.name.startswith("."):
            continue
        if same_dir and f.stem.endswith("_mask"):
            continue  # a mask living beside its photo
        if mask_dir is None and _same_file(f, mask_src):
            continue  # the one mask for all lives in the input folder
        out = out_dir / (f.stem + ext if ext else f.name)
        if mask_dir is None:
            jobs.append((f, mask_src, out, ""))
            continue
        mask = masks_by_stem.get(f.stem + "_mask") or (None if same_dir else masks_by_stem.get(f.stem))
        reason = "" if mask else f"no mask named {f.stem}.* or {f.stem}_mask.* in {mask_dir}"
        jobs.append((f, mask, out, reason))
    if not jobs:
        raise PConvError(f"no images ({', '.join(_IMAGE_SUFFIXES)}) in {in_dir}")
    return jobs, out_dir


def run(args: argparse.Namespace) -> int:
    from pconv.inference import Inpainter

    folder_mode = args.input is not None
    if folder_mode and (args.image or args.mask_file):
        raise PConvError("give either IMAGE MASK -o OUT, or --input DIR --mask DIR|FILE --output DIR, not both")
    if not folder_mode:
        if not args.image or not args.mask_file or not args.output:
            raise PConvError("usage: pconv inpaint IMAGE MASK -o OUT  (or --input DIR --mask DIR|FILE --output DIR)")
        if args.mask_option:
            raise PConvError("--mask is for folder mode; in single mode give the mask as the second argument")
        from pconv.imageio import format_for_path

        out = Path(args.output)
        format_for_path(out)
        image, mask = Path(args.image), Path(args.mask_file)
        if not image.exists():
            raise PConvError(f"image {image} does not exist")
        if not mask.exists():
            raise PConvError(f"mask file {mask} does not exist")
        for src in (image, mask):
            if _same_file(out, src):
                raise PConvError(f"the output {out} is an input file ({src}); pconv never overwrites an input")
        if out.exists() and not args.overwrite:
            raise PConvError(f"{out} already exists; pass --overwrite to replace it")
        if not out.parent.is_dir():
            raise PConvError(f"cannot write {out}: folder {out.parent} does not exist")
        inpainter = Inpainter(args.weights, method=args.method, device=args.device, precision=args.precision,
                          flip_average=args.flip_average, compile=args.compile)
        notes = _inpaint_one(inpainter, image, mask, out, args)
        for note in notes:
            print(f"{image.name}: {note}")
        print(f"wrote {out}")
        return 0

    jobs, out_dir = _folder_jobs(args)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PConvError(f"cannot create the output folder {out_dir}: {exc.strerror or exc}") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise PConvError(f"the output folder {out_dir} is not writable")
    inpainter = Inpainter(args.weights, method=args.method, device=args.device, precision=args.precision,
                          flip_average=args.flip_average, compile=args.compile)
    from tqdm import tqdm

    done: List[str] = []
    skipped: List[Tuple[str, str]] = []
    failed: List[Tuple[str, str]] = []
    for image, mask, out, reason in tqdm(jobs, desc="inpaint", unit="img", file=sys.stderr, disable=None):
        if mask is None:
            failed.append((image.name, reason))
            continue
        try:
            notes = _inpaint_one(inpainter, image, mask, out, args)
            done.append(image.name + (f" ({'; '.join(notes)})" if notes else ""))
        except FileExistsError:
            skipped.append((image.name, f"{out} exists (--overwrite replaces it)"))
        except PConvError as exc:
            failed.append((image.name, str(exc)))
        except (OSError, RuntimeError, MemoryError) as exc:  # one bad photo must not stop the batch
            failed.append((image.name, f"{type(exc).__name__}: {exc}"))
    print(f"done: {len(done)}, skipped: {len(skipped)}, failed: {len(failed)}  (outputs in {out_dir})")
    for name in done:
        print(f"  done     {name}")
    for name, why in skipped:
        print(f"  skipped  {name}: {why}")
    for name, why in failed:
        print(f"  failed   {name}: {why}")
    return 1 if failed else 0

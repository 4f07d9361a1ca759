"""`pconv inpaint`: fill the holes of one photo, or of a folder of photos.

One photo:   pconv inpaint IMAGE MASK -o OUT
A folder:    pconv inpaint --input DIR --mask DIR|FILE --output DIR

In folder mode each image takes the mask of the same file stem from the mask folder
(``photo.jpg`` <- ``photo.png`` or ``photo_mask.png``), or the one mask file given for all. Outputs
keep the input's file name (``--ext`` changes the format). An existing output is skipped unless
``--overwrite``; an input is never overwritten. The summary lists done / skipped / failed with
reasons, and the exit status is 1 when anything failed. Photos are read ahead and written behind
the network by background threads (pconv.folder).

Under torchrun (``torchrun --nproc_per_node N -m pconv inpaint --input ...``, also across machines
that share the folders) each process takes its share of the photos (pconv.sharding), writes its
outputs and a part file in ``OUTPUT/.pconv-parts/``; rank 0 prints one summary of every process and
exits 1 when any photo failed anywhere. The outputs are the same bytes as a one-process run's, and
a run stopped half-way and started again fills only the photos whose outputs are missing.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple

from pconv.errors import PConvError
from pconv.folder import FolderJob, FolderOptions, same_file as _same_file

HELP = "fill the holes of a photo (or a folder of photos) given a mask (white = hole)"

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
#: Marks a note of a result that is printed as a warning (to stderr) as well as in the summary.
_WARNING = "warning: "


class _MaskWords:
    """An inpainter whose results carry a warning note for a suspicious mask (no hole, or most of
    the photo: pconv.masks.rules), naming this command's options; the library's MaskWarning is
    silenced in its place."""

    def __init__(self, inpainter: Any, invert: bool) -> None:
        self.inner, self.invert = inpainter, invert

    def inpaint(self, image: Any, mask: Any, **kw: Any) -> Any:
        return self._word(self.inner.inpaint(image, mask, **kw))

    def inpaint_many(self, images: Any, masks: Any, **kw: Any) -> List[Any]:
        return [self._word(r) for r in self.inner.inpaint_many(images, masks, **kw)]

    def _word(self, result: Any) -> Any:
        from pconv.masks.rules import mask_problem

        problem = mask_problem(result.hole, self.invert, "--invert-mask", "--threshold")
        if problem is not None:
            kept = [n for n in result.notes if not n.startswith("mask has no hole")]
            unchanged = " (the photo is written unchanged)" if result.empty_mask else ""
            result.notes = kept + [_WARNING + problem + unchanged]
        return result


def _print_warnings(name: str, detail: str, write: Callable[[str], None]) -> None:
    for note in detail.split("; "):
        if note.startswith(_WARNING):
            write(f"pconv inpaint: warning: {name}: {note[len(_WARNING):]}")


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
    p.add_argument("--invert-mask", action="store_true",
                   help="masks are black = hole instead of white = hole (a hole over 60%% of a photo gets a hint)")
    p.add_argument("--resize-mask", action="store_true", help="resize a mask of another size to the photo (nearest)")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="level in [0, 1) above which a mask pixel is hole: its brightest channel, or its opacity "
                   "where the mask has a transparent background (README, Masks; keeps anti-aliasing and JPEG noise out)")
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
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="folder mode: photos filled together, their equal-size windows as one network batch "
                   "(default: 8 on a GPU, 1 on a CPU, where batching does not pay)")
    p.add_argument("--prefetch", type=int, default=2, metavar="N",
                   help="folder mode: batches read ahead of the network and waiting to be written, by background "
                   "threads (0: one photo after the other, no threads)")
    p.add_argument("--io-threads", type=int, default=None, metavar="N",
                   help="folder mode: threads that read and decode, and as many that encode and write "
                   "(default: 1 on a CPU, up to 4 per GPU)")
    p.add_argument("--shard-by", default="order", choices=["order", "pixels"],
                   help="under torchrun: split the photos across processes round robin (order), or balanced by "
                   "pixel count read from each photo's header (pixels; every process reads every header)")


def _options(args: argparse.Namespace) -> FolderOptions:
    """The reading and writing options of both modes."""
    return FolderOptions(strategy=args.strategy, invert_mask=args.invert_mask, resize_mask=args.resize_mask,
                         threshold=args.threshold, quality=args.quality, overwrite=args.overwrite,
                         max_pixels=args.max_pixels)


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
    import warnings

    from pconv.inference import Inpainter
    from pconv.masks.rules import MaskWarning

    warnings.filterwarnings("ignore", category=MaskWarning)  # said per photo instead (_MaskWords)

    folder_mode = args.input is not None
    if folder_mode and (args.image or args.mask_file):
        raise PConvError("give either IMAGE MASK -o OUT, or --input DIR --mask DIR|FILE --output DIR, not both")
    if not folder_mode:
        from pconv.sharding import dist_env

        if dist_env().distributed:
            raise PConvError("torchrun splits a folder across processes: use --input DIR --mask DIR|FILE "
                             "--output DIR (one photo needs one process)")
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
        from pconv.folder import inpaint_folder

        # one photo through the folder pipeline, in line: the same reading, checks and atomic write
        (outcome,) = inpaint_folder(_MaskWords(inpainter, args.invert_mask), [(0, FolderJob(image, mask, out))],
                                    _options(args), batch_size=1, prefetch=0, io_threads=1)
        if outcome.status != "done":
            raise PConvError(outcome.detail)
        _print_warnings(image.name, outcome.detail, lambda line: print(line, file=sys.stderr))
        for note in filter(None, outcome.detail.split("; ")):
            if not note.startswith(_WARNING):
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
    return _run_folder(args, jobs, out_dir)


def _pixel_counts(jobs: List[Tuple[Path, Optional[Path], Path, str]]) -> List[float]:
    """Each photo's pixel count from its header (1 when unreadable: it fails fast), for balancing ranks."""
    from PIL import Image

    counts = []
    for image, _mask, _out, _reason in jobs:
        try:
            with Image.open(image) as im:
                counts.append(float(im.width * im.height))
        except (OSError, ValueError, Image.DecompressionBombError):
            counts.append(1.0)
    return counts


def _run_folder(args: argparse.Namespace, jobs: List[Tuple[Path, Optional[Path], Path, str]], out_dir: Path) -> int:
    """Fill this process's share of the folder (all of it without torchrun); rank 0 prints the summary."""
    from tqdm import tqdm

    from pconv.folder import Outcome, inpaint_folder, summary_lines
    from pconv.inference import Inpainter
    from pconv.sharding import (barrier, dist_env, part_path, rank_device, read_parts, remove_parts, run_key, shard,
                                write_part)

    for option, value, least in (("--batch-size", args.batch_size, 1), ("--prefetch", args.prefetch, 0),
                                 ("--io-threads", args.io_threads, 1)):
        if value is not None and value < least:
            raise PConvError(f"{option} must be {'at least 1' if least else '0 or more'}, got {value}")
    env = dist_env()
    mine = list(range(len(jobs)))
    if env.distributed:
        weights = _pixel_counts(jobs) if args.shard_by == "pixels" else None
        mine = shard(jobs, env.rank, env.world, weights)
    device = rank_device(args.device, env)
    inpainter = Inpainter(args.weights, method=args.method, device=device, precision=args.precision,
                          flip_average=args.flip_average, batch_size=max(4, args.batch_size or 1),
                          compile=args.compile)
    checked = _MaskWords(inpainter, args.invert_mask)
    on_gpu = inpainter.device.type != "cpu"
    batch = args.batch_size or (8 if on_gpu else 1)
    io_threads = args.io_threads or (max(1, min(4, (os.cpu_count() or 1) // env.local_world)) if on_gpu else 1)
    options = _options(args)
    parts = out_dir / ".pconv-parts"
    key = run_key("inpaint", [[str(i), str(o)] for i, _m, o, _r in jobs], env.world)
    if env.distributed:
        parts.mkdir(exist_ok=True)
        part_path(parts, "summary", env.rank).unlink(missing_ok=True)  # a killed run's part must not count
    bar = tqdm(total=len(mine), desc=f"inpaint{f' rank {env.rank}' if env.distributed else ''}", unit="img",
               file=sys.stderr, disable=None)
    try:
        outcomes = inpaint_folder(
            checked, [(i, FolderJob(*jobs[i])) for i in mine], options, batch_size=batch,
            prefetch=args.prefetch, io_threads=io_threads, on_outcome=lambda o: (
                _print_warnings(o.name, o.detail if o.status == "done" else "",
                                lambda line: tqdm.write(line, file=sys.stderr)), bar.update(1)))
    except BaseException as exc:
        if env.distributed:  # tell rank 0 instead of leaving it waiting for this rank's part
            write_part(parts, "summary", env.rank, key, {"error": f"{type(exc).__name__}: {exc}", "outcomes": []})
        raise
    finally:
        bar.close()
    if not env.distributed:
        print("\n".join(summary_lines(outcomes, out_dir)))
        return 1 if any(o.status == "failed" for o in outcomes) else 0

    write_part(parts, "summary", env.rank, key, {"error": "", "outcomes": [dataclasses.asdict(o) for o in outcomes]})
    barrier(env.world, parts, env.rank, key, name="summary")
    if env.rank != 0:
        counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed")}
        print(f"rank {env.rank}: done {counts['done']}, skipped {counts['skipped']}, failed {counts['failed']} "
              "(rank 0 prints the summary of all ranks)", file=sys.stderr)
        return 0  # rank 0 reports this rank's failures; exiting 1 here would make torchrun stop rank 0
    merged, stopped = [], []
    for r, part in enumerate(read_parts(parts, "summary", env.world, key)):
        if part["error"]:
            stopped.append(f"rank {r} stopped: {part['error']}")
        merged.extend(Outcome(**o) for o in part["outcomes"])
    remove_parts(parts, "summary", env.world)
    merged.sort(key=lambda o: o.index)
    lines = summary_lines(merged, out_dir)
    lines[0] += f"; {env.world} processes"
    print("\n".join(lines + [f"  {s}" for s in stopped]))
    return 1 if stopped or any(o.status == "failed" for o in merged) else 0

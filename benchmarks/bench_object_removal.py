"""Object removal at photo resolution: one object-shaped hole of 5-40 % in a real photo of 1600+ px.

Photos: the held-out validation photos of the training folder (``pconv train``'s fixed split,
never trained on) whose *original* is at least 1600 px on the long side, re-read at native
resolution from the pinned packages of ``scripts/fetch_training_photos.py`` (cache folder).
Masks: MI-GAN's ``places2_512_object`` object silhouettes (white = hole) stretched to the photo
and dilated by a brush margin of 1 % of the long side; per photo ``--masks`` of them, drawn with
``--seed`` among those giving a 5-40 % hole.

Scored in the hole: PSNR, detail ratio (median), style distance (on copies downscaled to 512 px
on the long side), seconds per photo and peak memory (each method runs in its own child process,
so its peak RSS is its own).

Run (figures in BENCHMARKS.md, "Object removal at photo resolution"):
    .venv/bin/python benchmarks/bench_object_removal.py --cache data/photo-cache --photos data/train-photos
    .venv/bin/python benchmarks/bench_object_removal.py ... --strategies   # every strategy on 2000 px, 1000x668 hole
    .venv/bin/python benchmarks/bench_object_removal.py ... --specks   # 5 % of scattered specks instead
    .venv/bin/python benchmarks/bench_object_removal.py ... --specks --strategies   # every strategy on them
    .venv/bin/python benchmarks/bench_object_removal.py ... --sheet docs/contact_sheet_photo_resolution.jpg
    .venv/bin/python benchmarks/bench_object_removal.py ... --agreements 0,12,24,48   # experiment 31
"""
from __future__ import annotations

import argparse
import io
import json
import math
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MASKS = ROOT.parent / "shared" / "eval-data" / "migan-examples" / "places2_512_object" / "masks"
MIN_LONG_SIDE = 1600
METHODS = "pconv,pconv-smooth,patchmatch,ns"
STYLE_SIDE = 512


# ------------------------------------------------------------------------------------------- cases
def held_out_originals(photos: Path, cache: Path, out: Path, val_count: int = 16) -> List[Path]:
    """Native-resolution copies (PNG, in ``out``) of the held-out photos whose original is >= 1600 px."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import fetch_training_photos as fetch  # noqa: E402  (a script, not a package)

    from pconv.data import list_images, split_train_val

    _, val = split_train_val(list_images(photos), val_count)
    wanted = {p.name for p in val}
    out.mkdir(parents=True, exist_ok=True)
    done = sorted(out.glob("*.png"))
    if done:
        return done
    for src in fetch.SOURCES:
        artefact = cache / src.kind / src.filename
        if not artefact.is_file():
            continue
        for photo, raw in fetch.collect(src, artefact):
            name = f"{src.tag}__{photo.name}.jpg"
            if name not in wanted:
                continue
            im = Image.open(io.BytesIO(raw))
            if max(im.size) < MIN_LONG_SIDE:
                continue
            im = im.convert("RGB")
            im.save(out / f"{Path(name).stem}.png")
    return sorted(out.glob("*.png"))


def object_hole(mask_file: Path, h: int, w: int) -> np.ndarray:
    """An object silhouette stretched to (h, w) and dilated by 1 % of the long side."""
    import cv2

    m = np.asarray(Image.open(mask_file).convert("L").resize((w, h), Image.Resampling.NEAREST)) > 127
    r = max(1, round(0.01 * max(h, w)))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(m.astype(np.uint8), k) > 0


def make_cases(photos: Sequence[Path], masks: Path, per_photo: int, seed: int) -> List[Tuple[Path, Path]]:
    """(photo, mask file) pairs: per photo ``per_photo`` masks giving a 5-40 % hole, drawn by ``seed``."""
    files = sorted(masks.glob("*.png"))
    rng = np.random.default_rng(seed)
    cases = []
    for photo in photos:
        w, h = Image.open(photo).size
        order = rng.permutation(len(files))
        chosen = []
        for k in order:
            frac = float(object_hole(files[k], h, w).mean())
            if 0.05 <= frac <= 0.40:
                chosen.append(files[k])
            if len(chosen) == per_photo:
                break
        cases += [(photo, m) for m in chosen]
    return cases


def strategy_cases(photos: Sequence[Path]) -> List[Tuple[np.ndarray, np.ndarray, str]]:
    """Each photo at 2000 px on the long side with one centred 1000x668 hole (the scene's middle)."""
    out = []
    for photo in photos:
        im = Image.open(photo).convert("RGB")
        s = 2000 / max(im.size)
        im = im.resize((round(im.width * s), round(im.height * s)), Image.Resampling.LANCZOS)
        rgb = np.asarray(im)
        h, w = rgb.shape[:2]
        hole = np.zeros((h, w), bool)
        hh, hw = min(668, h - 40), min(1000, w - 40)
        hole[(h - hh) // 2:(h - hh) // 2 + hh, (w - hw) // 2:(w - hw) // 2 + hw] = True
        out.append((rgb, hole, photo.stem))
    return out


def speck_cases(photos: Sequence[Path], case_dir: Path) -> List[Tuple[str, str]]:
    """Each photo at native resolution with 5 % of round specks (radius 8-40 px, seeded by its
    index): dust, blemishes, sensor spots; the mask of benchmarks/bench_large_photo.py."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_large_photo import scattered  # noqa: E402  (a script, not a package)

    cases = []
    for k, photo in enumerate(photos):
        w, h = Image.open(photo).size
        hole_file = case_dir / f"{photo.stem}__specks.png"
        if not hole_file.is_file():
            Image.fromarray(scattered(h, w, 0.05, seed=k)).save(hole_file)
        cases.append((str(photo), str(hole_file)))
    return cases


# ----------------------------------------------------------------------------------------- running
def _run_method(job: Tuple[str, List[Tuple[str, str]], str, str, Dict[str, str]]) -> Dict[str, object]:
    """Child process: fill every case with one method, write PNGs, return seconds and peak RSS.

    ``variant`` names the outputs: a strategy, or (with ``options["agreement"]``) an agreement
    scale of PatchMatch's band, run with the default strategy."""
    method, cases, out_dir, variant, options = job
    import torch

    torch.set_num_threads(int(options.get("threads", "2")))
    from dataclasses import replace

    from pconv.baselines import fill
    from pconv.inference import NETWORK_METHODS, Inpainter
    from pconv.patch_texture import PatchTextureConfig

    inpainter = Inpainter(method=method) if method in NETWORK_METHODS else None
    strategy = variant
    if "agreement" in options and inpainter is not None:
        inpainter.patch_texture = replace(inpainter.patch_texture or PatchTextureConfig(),
                                          agreement=float(options["agreement"]))
        strategy = "auto"
    seconds = []
    for image_file, hole_file in cases:
        rgb = np.asarray(Image.open(image_file).convert("RGB"))
        hole = np.asarray(Image.open(hole_file)) > 0
        start = time.perf_counter()
        if inpainter is not None:
            out = inpainter.inpaint(rgb, hole, strategy=strategy).image
        else:
            out = fill(method, rgb, hole)
        seconds.append(time.perf_counter() - start)
        Image.fromarray(out).save(Path(out_dir) / f"{Path(hole_file).stem}__{method}__{variant}.png")
    return {"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_all(methods: Sequence[str], strategies: Sequence[str], cases: List[Tuple[str, str]], out_dir: Path,
            threads: int, agreements: Sequence[str] = ()) -> Dict[Tuple[str, str], Dict[str, object]]:
    """Every (method, strategy) in its own fresh child process, one after the other; with
    ``agreements``, instead every agreement scale of pconv's PatchMatch band."""
    jobs = [(m, s, {"threads": str(threads)}) for m in methods for s in strategies]
    if agreements:
        jobs = [("pconv", f"agreement {a}", {"threads": str(threads), "agreement": a}) for a in agreements]
    res = {}
    for method, variant, options in jobs:
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            res[(method, variant)] = pool.submit(_run_method, (method, cases, str(out_dir), variant, options)).result()
        print(f"  {method} ({variant}): {np.mean(res[(method, variant)]['seconds']):.2f} s/photo",
              file=sys.stderr, flush=True)
    return res


def _downscale(rgb: np.ndarray, hole: np.ndarray, side: int) -> Tuple[np.ndarray, np.ndarray]:
    h, w = hole.shape
    s = side / max(h, w)
    if s >= 1:
        return rgb, hole
    size = (max(1, round(w * s)), max(1, round(h * s)))
    small = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))
    small_hole = np.asarray(Image.fromarray(hole.astype(np.float32), "F").resize(size, Image.Resampling.BOX)) > 0
    return small, small_hole


def score(cases: List[Tuple[str, str]], keys: Sequence[Tuple[str, str]], out_dir: Path) -> Dict[Tuple[str, str], List[Dict[str, float]]]:
    from pconv.metrics import detail_ratio, hole_psnr
    from pconv.style_distance import StyleDistance

    style = StyleDistance()
    scores: Dict[Tuple[str, str], List[Dict[str, float]]] = {k: [] for k in keys}
    for image_file, hole_file in cases:
        truth = np.asarray(Image.open(image_file).convert("RGB"))
        hole = np.asarray(Image.open(hole_file)) > 0
        small_truth, small_hole = _downscale(truth, hole, STYLE_SIDE)
        for method, strategy in keys:
            out = np.asarray(Image.open(out_dir / f"{Path(hole_file).stem}__{method}__{strategy}.png"))
            assert (out[~hole] == truth[~hole]).all(), f"{method} changed known pixels"
            small_out, _ = _downscale(out, hole, STYLE_SIDE)
            scores[(method, strategy)].append({
                "hole_ratio": float(hole.mean()),
                "psnr": hole_psnr(out, truth, hole),
                "detail": detail_ratio(out, truth, hole),
                "style": style(small_out, small_truth, small_hole),
            })
    return scores


def table(scores: Dict[Tuple[str, str], List[Dict[str, float]]], runs: Dict[Tuple[str, str], Dict[str, object]],
          label: str) -> str:
    lines = [f"| {label} | n | hole PSNR | detail ratio (median) | style ×10⁻³ | s/photo | peak RSS MB |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for key, rows in scores.items():
        name = key[0] if label == "method" else key[1]  # a strategy or a variant
        run = runs[key]
        lines.append(f"| {name} | {len(rows)} | {np.mean([r['psnr'] for r in rows]):.2f} "
                     f"| {np.nanmedian([r['detail'] for r in rows]):.2f} | {np.mean([r['style'] for r in rows]) * 1e3:.3f} "
                     f"| {np.mean(run['seconds']):.2f} | {run['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- contact sheet
def contact_sheet(cases: List[Tuple[str, str]], methods: Sequence[str], out_dir: Path, path: Path,
                  crop: int = 320) -> None:
    """Per case one row: input with the hole, each method, the truth; each a 1:1 crop at the hole's centre."""
    from PIL import ImageDraw

    cols = ["input"] + list(methods) + ["truth"]
    tile = crop
    sheet = Image.new("RGB", (tile * len(cols), (tile + 18) * len(cases) + 18), "white")
    draw = ImageDraw.Draw(sheet)
    for c, name in enumerate(cols):
        draw.text((c * tile + 4, 2), name, fill="black")
    for r, (image_file, hole_file) in enumerate(cases):
        truth = np.asarray(Image.open(image_file).convert("RGB"))
        hole = np.asarray(Image.open(hole_file)) > 0
        ys, xs = np.nonzero(hole)
        cy, cx = int(np.median(ys)), int(np.median(xs))
        h, w = hole.shape
        y0 = min(max(0, cy - crop // 2), h - crop)
        x0 = min(max(0, cx - crop // 2), w - crop)
        shown = truth.copy()
        shown[hole] = (shown[hole] * 0.4 + np.array([255, 0, 255]) * 0.6).astype(np.uint8)
        images = [shown] + [np.asarray(Image.open(out_dir / f"{Path(hole_file).stem}__{m}__auto.png")) for m in methods] + [truth]
        top = 18 + r * (tile + 18)
        draw.text((4, top - 1), f"{Path(image_file).stem} {w}x{h}, hole {hole.mean():.0%}, 1:1 crop", fill="black")
        for c, im in enumerate(images):
            sheet.paste(Image.fromarray(im[y0:y0 + crop, x0:x0 + crop]), (c * tile, top + 12))
    sheet.save(path, quality=82)


def sheet_cases(cases: List[Tuple[str, str]], n: int) -> List[Tuple[str, str]]:
    """``n`` cases taking each photo's masks in turn, so every photo is shown before any repeats."""
    by_photo: Dict[str, List[Tuple[str, str]]] = {}
    for case in cases:
        by_photo.setdefault(case[0], []).append(case)
    out: List[Tuple[str, str]] = []
    for k in range(max((len(v) for v in by_photo.values()), default=0)):
        out += [v[k] for v in by_photo.values() if k < len(v)]
    return out[:n]


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", type=Path, default=ROOT / "data" / "train-photos",
                   help="the training folder (its held-out split picks the photos)")
    p.add_argument("--cache", type=Path, default=ROOT / "data" / "photo-cache",
                   help="fetch_training_photos.py's cache of pinned packages (native-resolution originals)")
    p.add_argument("--masks", type=Path, default=DEFAULT_MASKS, help="object silhouettes, white = hole")
    p.add_argument("--per-photo", type=int, default=3, help="masks per photo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default=METHODS)
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "object-removal", help="outputs and cases")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--strategies", action="store_true",
                   help="instead: every strategy of the network methods on 2000 px photos with a 1000x668 hole "
                        "(with --specks: on the speck cases)")
    p.add_argument("--specks", action="store_true",
                   help="instead: each photo with 5 %% of scattered specks of radius 8-40 px")
    p.add_argument("--agreements", default="",
                   help="instead: pconv with PatchMatch's band at each of these agreement scales, e.g. 0,12,24,48")
    p.add_argument("--sheet", type=Path, default=None, help="also write a contact sheet of 1:1 crops here")
    p.add_argument("--sheet-cases", type=int, default=8, help="cases on the sheet (round robin over the photos)")
    p.add_argument("--limit", type=int, default=0, help="only the first N cases (quick look)")
    args = p.parse_args(argv)

    photos = held_out_originals(args.photos, args.cache, args.work / "photos")
    if not photos:
        print(f"no held-out photos >= {MIN_LONG_SIDE} px found: run scripts/fetch_training_photos.py "
              f"--out {args.photos} --cache {args.cache} first", file=sys.stderr)
        return 2
    kind = ("speck-" if args.specks else "") + ("strategy-" if args.strategies else "")
    case_dir, out_dir = args.work / f"{kind}cases", args.work / f"{kind}out"
    case_dir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    methods = [m for m in args.methods.split(",") if m]
    cases: List[Tuple[str, str]] = []
    strategies = ["auto"]
    if args.strategies:
        strategies = ["auto", "original", "crop", "resize"]
        methods = [m for m in methods if m.startswith("pconv")]
    if args.specks:
        cases = speck_cases(photos, case_dir)
    elif args.strategies:
        for rgb, hole, stem in strategy_cases(photos):
            Image.fromarray(rgb).save(case_dir / f"{stem}.png")
            Image.fromarray(hole.astype(np.uint8) * 255).save(case_dir / f"{stem}_hole.png")
            cases.append((str(case_dir / f"{stem}.png"), str(case_dir / f"{stem}_hole.png")))
    else:
        for photo, mask_file in make_cases(photos, args.masks, args.per_photo, args.seed):
            w, h = Image.open(photo).size
            hole_file = case_dir / f"{photo.stem}__m{mask_file.stem}.png"
            if not hole_file.is_file():
                Image.fromarray(object_hole(mask_file, h, w).astype(np.uint8) * 255).save(hole_file)
            cases.append((str(photo), str(hole_file)))
    if args.limit:
        cases = cases[: args.limit]
    print(f"{len(cases)} cases from {len(photos)} photos; methods {', '.join(methods)}", file=sys.stderr)
    agreements = [a for a in args.agreements.split(",") if a]
    runs = run_all(methods, strategies, cases, out_dir, args.threads, agreements)
    scores = score(cases, list(runs), out_dir)
    if agreements:
        print("\npconv:\n" + table(scores, runs, "variant"))
    elif args.strategies:
        for m in methods:
            print(f"\n{m}:\n" + table({k: v for k, v in scores.items() if k[0] == m}, runs, "strategy"))
    else:
        print(table(scores, runs, "method"))
    kind += "agreement-" if agreements else ""
    (args.work / f"{kind or 'object-'}scores.json").write_text(json.dumps(
        {f"{k[0]}|{k[1]}": {"rows": v, **runs[k]} for k, v in scores.items()}, indent=1))
    if args.sheet is not None and not args.strategies and not args.specks and not agreements:
        contact_sheet(sheet_cases(cases, args.sheet_cases), methods, out_dir, args.sheet)
        print(f"contact sheet: {args.sheet}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

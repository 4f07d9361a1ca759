"""Render the side-by-side contact sheet of docs/: every method on the same photo and hole.

    .venv/bin/python scripts/contact_sheet.py --out docs/contact_sheet_methods.jpg

Columns: input (holes white), pconv (photographic fill, the default), pconv-smooth, PatchMatch,
Navier–Stokes, MI-GAN's published output (MI-GAN's own cases only) and the ground truth. Rows:
``--migan`` cases of MI-GAN's places2_512_freeform set at 512² (shown downscaled), then one case
per NVIDIA hole-ratio bucket at 256² (photos and masks paired as ``pconv evaluate`` pairs them).
Needs ../shared/eval-data (research-only material: it is read, never copied).
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "eval-data"
COLUMNS = ("input", "pconv", "pconv-smooth", "patchmatch", "ns", "MI-GAN", "ground truth")
PHOTOS_256 = ["migan-examples/places2_256_freeform/images", "migan-examples/places2_512_freeform/images",
              "mat-test-sets/CelebA-HQ/images", "mat-test-sets/Places/images"]


def _row(image: np.ndarray, hole: np.ndarray, migan: Optional[np.ndarray], runners: Dict[str, object],
         tile: int) -> List[Image.Image]:
    shown = image.copy()
    shown[hole] = 255
    cells: Dict[str, Optional[np.ndarray]] = {"input": shown, "ground truth": image, "MI-GAN": migan}
    for name, run in runners.items():
        cells[name] = np.asarray(run(image, hole))  # type: ignore[operator]
    out = []
    for name in COLUMNS:
        a = cells.get(name)
        im = Image.new("RGB", (tile, tile), (235, 235, 235)) if a is None else \
            Image.fromarray(a).resize((tile, tile), Image.Resampling.LANCZOS)
        out.append(im)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "contact_sheet_methods.jpg")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--migan", type=int, default=4, help="rows from MI-GAN's 512² cases")
    p.add_argument("--tile", type=int, default=224)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not (args.data / "nvidia-irregular-masks").is_dir():
        print(f"evaluation data not found at {args.data} (pass --data)", file=sys.stderr)
        return 2

    from pconv.baselines import fill
    from pconv.evaluate import _read_entries, list_photos, make_cases, prepare_case
    from pconv.imageio import read_image
    from pconv.inference import Inpainter
    from pconv.masks.io import read_mask_file
    from pconv.weights import atomic_write_bytes, load_model

    model = load_model(None)
    runners = {"pconv": Inpainter(model), "pconv-smooth": Inpainter(model, method="pconv-smooth"),
               "patchmatch": lambda im, h: fill("patchmatch", im, h, seed=args.seed),
               "ns": lambda im, h: fill("ns", im, h)}
    rows: List[List[Image.Image]] = []
    labels: List[str] = []
    folder = args.data / "migan-examples" / "places2_512_freeform"
    photos = sorted((folder / "images").iterdir())
    step = max(1, len(photos) // max(1, args.migan))
    for photo in photos[::step][: args.migan]:
        image = read_image(photo).rgb
        hole = read_mask_file(folder / "masks" / f"{photo.stem}.png", invert=True)  # black = hole there
        migan = read_image(folder / "results_migan" / f"{photo.stem}.png").rgb
        rows.append(_row(image, hole, migan, runners, args.tile))
        labels.append(f"MI-GAN 512x512, hole {hole.mean():.0%}")
    cases, buckets = make_cases(list_photos([args.data / d for d in PHOTOS_256]),
                                _read_entries(args.data / "nvidia-irregular-masks"), None, args.seed)
    for k, bucket in enumerate(buckets):
        case = [c for c in cases if c.bucket == bucket][3 * k + 1]
        image, hole, _ = prepare_case(case, "256")
        rows.append(_row(image, hole, None, runners, args.tile))
        labels.append(f"NVIDIA {bucket}, 256x256")

    head, side = 22, 150
    sheet = Image.new("RGB", (side + args.tile * len(COLUMNS), head + args.tile * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, name in enumerate(COLUMNS):
        draw.text((side + j * args.tile + 6, 5), name, fill="black")
    for i, (row, label) in enumerate(zip(rows, labels)):
        draw.text((6, head + i * args.tile + args.tile // 2 - 6), label, fill="black")
        for j, im in enumerate(row):
            sheet.paste(im, (side + j * args.tile, head + i * args.tile))
    buf = io.BytesIO()
    sheet.save(buf, format="JPEG", quality=88)
    atomic_write_bytes(args.out, buf.getvalue())
    print(f"wrote {args.out} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

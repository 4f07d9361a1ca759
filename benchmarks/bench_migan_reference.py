"""Peer yardstick: MI-GAN's published outputs on its own 36 Places cases, next to ours.

MI-GAN (Picsart AI Research, ICCV 2023) ships, for its places2_256_freeform (16) and
places2_512_freeform (20) examples, the photo, the mask (black = hole, CoModGAN-style large
holes: ratio 0.36-0.91) and its composited output. This scores MI-GAN's outputs against the
photos and runs our methods on exactly the same photo/mask pairs at native size, with the same
metrics as ``pconv evaluate`` (whole-image ℓ1 %, PSNR, SSIM; hole-only PSNR, ℓ1 %; detail ratio,
median; style distance).

Run (figures in BENCHMARKS.md, "Evaluation", and MODEL_CARD.md):
    .venv/bin/python benchmarks/bench_migan_reference.py
    .venv/bin/python benchmarks/bench_migan_reference.py --methods pconv,telea,patchmatch --weights FILE
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "eval-data"
SETS = ("places2_256_freeform", "places2_512_freeform")
KEYS = ("psnr", "ssim", "l1", "hole_psnr", "hole_l1", "style")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--methods", default="pconv,pconv-smooth,telea,ns,biharmonic,patchmatch",
                   help="our methods to run beside MI-GAN's outputs (pconv needs weights or the default model)")
    p.add_argument("--weights", default=None)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    from pconv.baselines import fill
    from pconv.imageio import read_image
    from pconv.masks.io import read_mask_file
    from pconv.inference import NETWORK_METHODS, Inpainter
    from pconv.metrics import detail_ratio, image_metrics
    from pconv.style_distance import StyleDistance

    methods = [m for m in args.methods.split(",") if m]
    networks = {}
    if set(methods) & set(NETWORK_METHODS):
        from pconv.weights import load_model

        model = load_model(args.weights)
        networks = {m: Inpainter(model, method=m, device=args.device) for m in methods if m in NETWORK_METHODS}
    style = StyleDistance()

    def measures(out: np.ndarray, image: np.ndarray, hole: np.ndarray) -> dict[str, float]:
        return {**image_metrics(out, image, hole), "detail": detail_ratio(out, image, hole),
                "style": style(out, image, hole)}

    root = args.data / "migan-examples"
    if not root.is_dir():
        print(f"{root} not found (pass --data)", file=sys.stderr)
        return 2
    print("| set | method | n | mean hole ratio | PSNR | SSIM | ℓ1 % | hole PSNR | hole ℓ1 % "
          "| detail ratio (median) | style distance ×10⁻³ | s/img |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in SETS:
        folder = root / name
        results: dict[str, list[dict[str, float]]] = {m: [] for m in ["MI-GAN (published outputs)"] + methods}
        ratios = []
        for photo in sorted((folder / "images").iterdir()):
            stem = photo.stem
            image = read_image(photo).rgb
            hole = read_mask_file(folder / "masks" / f"{stem}.png", invert=True)  # MI-GAN freeform: black = hole
            ratios.append(float(hole.mean()))
            migan = read_image(folder / "results_migan" / f"{stem}.png").rgb
            results["MI-GAN (published outputs)"].append({**measures(migan, image, hole), "seconds": float("nan")})
            for m in methods:
                start = time.perf_counter()
                if m in networks:
                    out = np.asarray(networks[m](image, hole.astype(np.uint8) * 255), dtype=np.uint8)
                    out = np.where(hole[..., None], out, image)
                else:
                    out = fill(m, image, hole)
                seconds = time.perf_counter() - start
                results[m].append({**measures(out, image, hole), "seconds": seconds})
        for m, rows in results.items():
            mean = {k: float(np.mean([r[k] for r in rows])) for k in KEYS + ("seconds",)}
            sec = "–" if np.isnan(mean["seconds"]) else f"{mean['seconds']:.3f}"
            detail = float(np.nanmedian([r["detail"] for r in rows]))
            print(f"| {name} | {m} | {len(rows)} | {np.mean(ratios):.3f} | {mean['psnr']:.2f} | {mean['ssim']:.3f} "
                  f"| {mean['l1'] * 100:.2f} | {mean['hole_psnr']:.2f} | {mean['hole_l1'] * 100:.2f} "
                  f"| {detail:.2f} | {mean['style'] * 1e3:.3f} | {sec} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

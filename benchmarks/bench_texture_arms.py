"""Benchmark: the arms that chose ``TextureConfig``'s defaults (docs/experiments.md, experiments 22, 24–28 and 30).

Each arm is a ``TextureConfig``; every arm runs on the same cases, over the network's fill computed
once per case (``Inpainter(method="pconv-smooth")``), with the detail transfer on top, as
``Inpainter(method="pconv")`` does: on NVIDIA's irregular test masks at 256² (the photos and pairing
of ``benchmarks/bench_evaluate.py --sizes 256``: every photo once per bucket, seed 0) and on
MI-GAN's own Places cases at native size. Per arm: mean PSNR, median detail ratio and mean style
distance (×10⁻³) per bucket and per MI-GAN set, as ``pconv evaluate`` scores them.

The arms that came before a later setting run with that setting off (``mid_gain=0``,
``max_repeat=0``, ``energy_weight=0``, ``energy_mean="rms"``), as they ran then. Two of experiment 22's arms are not
settings and are not here: re-ranking the edge blocks by squared error, and adding the detail to
the network's low-pass. A full run (240 + 36 cases, every arm) takes hours on two cores;
``--per-bucket`` and ``--migan`` take fewer cases.

    .venv/bin/python benchmarks/bench_texture_arms.py                       # every case
    .venv/bin/python benchmarks/bench_texture_arms.py --per-bucket 2 --migan 2 --experiments 27,28
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "eval-data"
PHOTOS_256 = ["migan-examples/places2_256_freeform/images", "migan-examples/places2_512_freeform/images",
              "mat-test-sets/CelebA-HQ/images", "mat-test-sets/Places/images"]
MIGAN_SETS = ("places2_256_freeform", "places2_512_freeform")

#: Off: the settings that later experiments added, for the arms that came before them.
BEFORE_MID = dict(mid_gain=0.0, max_repeat=0.0, energy_weight=0.0)
BEFORE_LIMIT = dict(max_repeat=0.0, energy_weight=0.0)
BEFORE_STRENGTH = dict(energy_weight=0.0)
BEFORE_GEOMETRIC = dict(energy_mean="rms")
#: experiment -> [(arm, TextureConfig settings)]
EXPERIMENTS: Dict[str, List[Tuple[str, Dict[str, float]]]] = {
    "22": [("independent draws (no edge re-ranking, no coherence)", {**BEFORE_MID, "propagation": 0, "edge_known": 1.0}),
           ("+ edge blocks re-ranked by cosine", {**BEFORE_MID, "propagation": 0}),
           ("+ coherence; sigma 1.5, gain 1.0", {**BEFORE_MID, "sigma": 1.5, "gain": 1.0}),
           ("sigma 2.5, gain 0.85 (chosen)", dict(BEFORE_MID)),
           ("sigma 2.5, gain 1.0", {**BEFORE_MID, "gain": 1.0}),
           ("sigma 3.5, gain 0.75", {**BEFORE_MID, "sigma": 3.5, "gain": 0.75})],
    "24": [("detail everywhere", {**BEFORE_MID, "min_width": 0}),
           ("parts >= 5 px wide only (chosen)", dict(BEFORE_MID))],
    "25": [(f"band sigma 2.5-6 everywhere x {g}", {**BEFORE_MID, "mid_sigma": 6.0, "mid_gain": g, "mid_start": 0.0,
                                                     "mid_ramp": 1e-6})
           for g in (0.0, 0.4, 0.7)],
    "26": [("without the mid band", {**BEFORE_LIMIT, "mid_gain": 0.0}),
           ("band to sigma 8 x 1.0, from 4 px over 12 (chosen)", dict(BEFORE_LIMIT)),
           ("band to sigma 6 x 1.0", {**BEFORE_LIMIT, "mid_sigma": 6.0}),
           ("band to sigma 12 x 1.0", {**BEFORE_LIMIT, "mid_sigma": 12.0}),
           ("band to sigma 8 x 0.5", {**BEFORE_LIMIT, "mid_gain": 0.5}),
           ("band from 2 px over 6", {**BEFORE_LIMIT, "mid_start": 2.0, "mid_ramp": 6.0}),
           ("band from 8 px over 16", {**BEFORE_LIMIT, "mid_start": 8.0, "mid_ramp": 16.0})],
    "27": [("no repeat limit", {**BEFORE_STRENGTH, "max_repeat": 0.0}),
           ("limit 1 x the fair share", {**BEFORE_STRENGTH, "max_repeat": 1.0}),
           ("limit 2 x", {**BEFORE_STRENGTH, "max_repeat": 2.0}),
           ("limit 4 x (chosen)", dict(BEFORE_STRENGTH)),
           ("limit 4 x, context 5 blocks", {**BEFORE_STRENGTH, "context": 5}),
           ("limit 4 x, context 7 blocks", {**BEFORE_STRENGTH, "context": 7})],
    "28": [("colours only", {"energy_weight": 0.0}),
           ("strength x 3, sigma 16", {**BEFORE_GEOMETRIC, "energy_weight": 3.0, "energy_sigma": 16.0}),
           ("strength x 3, sigma 32", {**BEFORE_GEOMETRIC, "energy_weight": 3.0, "energy_sigma": 32.0}),
           ("strength x 6, sigma 16", {**BEFORE_GEOMETRIC, "energy_weight": 6.0, "energy_sigma": 16.0}),
           ("strength x 6, sigma 32 (chosen)", dict(BEFORE_GEOMETRIC))],
    "30": [("strength as RMS", dict(BEFORE_GEOMETRIC)),
           ("strength as geometric mean (the default)", {})],
}


def nvidia_cases(data: Path, per_bucket: int | None) -> List[Tuple[str, np.ndarray, np.ndarray]]:
    """(bucket, photo, hole) at 256², paired as ``pconv evaluate`` pairs them (seed 0)."""
    from pconv.evaluate import _read_entries, list_photos, make_cases, prepare_case

    masks = data / "nvidia-irregular-masks"
    photos = list_photos([data / p for p in PHOTOS_256 if (data / p).is_dir()])
    cases, _ = make_cases(photos, _read_entries(masks), per_bucket, seed=0, root=masks)
    return [(c.bucket, *prepare_case(c, "256")[:2]) for c in cases]


def migan_cases(data: Path, count: int | None) -> List[Tuple[str, np.ndarray, np.ndarray]]:
    """(set, photo, hole) of MI-GAN's examples at native size (their masks: black = hole)."""
    from pconv.imageio import read_image
    from pconv.masks.io import read_mask_file

    out = []
    for name in MIGAN_SETS:
        folder = data / "migan-examples" / name
        for photo in sorted((folder / "images").iterdir())[:count]:
            hole = read_mask_file(folder / "masks" / f"{photo.stem}.png", invert=True)
            out.append((f"MI-GAN {name.split('_')[1]}", read_image(photo).rgb, hole))
    return out


def _fmt(values: Sequence[Tuple[float, float, float]]) -> str:
    psnr = float(np.mean([v[0] for v in values]))
    details = [v[1] for v in values if not math.isnan(v[1])]
    detail = float(np.median(details)) if details else math.nan
    style = float(np.mean([v[2] for v in values])) * 1000
    return f"{psnr:.2f} / {detail:.2f} / {style:.3f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the eval-data folder")
    p.add_argument("--per-bucket", type=int, default=None, help="NVIDIA cases per bucket (default: every photo)")
    p.add_argument("--migan", type=int, default=None, help="MI-GAN cases per set (default: all; 0: none)")
    p.add_argument("--experiments", default=",".join(EXPERIMENTS), help="which experiments' arms")
    p.add_argument("--weights", default=None, help="the network (default: the shipped model)")
    args = p.parse_args(argv)
    wanted = [e.strip() for e in args.experiments.split(",") if e.strip()]
    unknown = [e for e in wanted if e not in EXPERIMENTS]
    if unknown:
        p.error(f"unknown experiment(s) {', '.join(unknown)}; known: {', '.join(EXPERIMENTS)}")
    if not (args.data / "nvidia-irregular-masks").is_dir():
        print(f"{args.data / 'nvidia-irregular-masks'} not found (pass --data)", file=sys.stderr)
        return 2

    from pconv.inference import Inpainter
    from pconv.metrics import detail_ratio, psnr
    from pconv.style_distance import StyleDistance
    from pconv.texture import TextureConfig, transfer_detail
    from pconv.weights import load_model

    start = time.perf_counter()
    cases = nvidia_cases(args.data, args.per_bucket)
    if args.migan != 0:
        cases += migan_cases(args.data, args.migan)
    network = Inpainter(load_model(args.weights), method="pconv-smooth", device="cpu")
    fills = [np.where(hole[..., None], np.asarray(network(image, hole.astype(np.uint8) * 255)), image)
             for _, image, hole in cases]
    groups = list(dict.fromkeys(g for g, _, _ in cases))
    style = StyleDistance()
    print(f"{len(cases)} cases ({', '.join(f'{g}: {sum(c[0] == g for c in cases)}' for g in groups)}); "
          f"network fills in {time.perf_counter() - start:.0f} s; per arm PSNR dB / median detail ratio / "
          "style ×10⁻³")
    for exp in wanted:
        print(f"\n### Experiment {exp}\n")
        print("| arm | " + " | ".join(groups) + " |")
        print("|---|" + "---:|" * len(groups))
        for arm, settings in EXPERIMENTS[exp]:
            cfg = TextureConfig(**settings)
            scores: Dict[str, List[Tuple[float, float, float]]] = {g: [] for g in groups}
            for (group, image, hole), fill in zip(cases, fills):
                out = transfer_detail(fill, hole, cfg)
                scores[group].append((psnr(out, image), detail_ratio(out, image, hole), style(out, image, hole)))
            print(f"| {arm} | " + " | ".join(_fmt(scores[g]) for g in groups) + " |", flush=True)
    print(f"\n{time.perf_counter() - start:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())

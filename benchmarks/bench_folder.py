"""Folder inpainting throughput: the read-ahead/write-behind pipeline and torchrun sharding, end to end.

Run: .venv/bin/python benchmarks/bench_folder.py --photos data/train-photos [--count 300 --sizes 256,512]

Makes ``--count`` photos per size from random square crops of the given photos (resized with
Lanczos, saved as JPEG quality 92) with one mask each (brush strokes and noise masks, 5-40 % hole),
in a temporary folder that is deleted afterwards. Then it times whole ``pconv inpaint --input ...
--output ...`` commands (JPEG in, JPEG out, the default method and weights), side by side and
interleaved, ``--repeats`` times each:

* ``1 proc x N thr, in line``: one process, one photo after the other (``--prefetch 0``), as
  before the pipeline;
* ``1 proc x N thr, pipelined``: one process with the default read-ahead/write-behind threads;
* ``torchrun N x 1 thr``: ``torchrun --nproc_per_node N``, one thread each, the photos split;
* (``--configs``) ``inline1`` / ``pipelined1``: one process with one thread, in line and pipelined.

N = the number of CPU cores (``--procs`` overrides). A run on a one-photo folder gives each
configuration's start-up time (interpreter, torch, model, and for torchrun the rendezvous), which
is reported apart: images/s = (count - 1) / (wall - start-up wall), beside the end-to-end
count / wall. Every configuration must write
the same files, byte for byte (SHA-256 of each output, checked), or the script fails.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_folder(src_photos: Path, out: Path, count: int, size: int, seed: int) -> None:
    """``count`` JPEG photos (crops of ``src_photos``) and their PNG masks under out/photos, out/masks."""
    from PIL import Image

    from pconv.masks import noise_mask, stroke_mask

    files = sorted(p for p in src_photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise SystemExit(f"no photos in {src_photos}")
    rng = np.random.default_rng(seed)
    (out / "photos").mkdir(parents=True)
    (out / "masks").mkdir()
    for i in range(count):
        with Image.open(files[i % len(files)]) as im:
            im = im.convert("RGB")
            side = int(rng.integers(min(im.size) // 2, min(im.size) + 1))
            x = int(rng.integers(0, im.width - side + 1))
            y = int(rng.integers(0, im.height - side + 1))
            crop = im.crop((x, y, x + side, y + side)).resize((size, size), Image.LANCZOS)
        crop.save(out / "photos" / f"{i:04d}.jpg", quality=92)
        make = stroke_mask if i % 2 else noise_mask
        hole = make(size, size, rng, (0.05, 0.4))
        Image.fromarray(hole.astype(np.uint8) * 255).save(out / "masks" / f"{i:04d}.png")


def one_photo_folder(folder: Path, out: Path) -> None:
    (out / "photos").mkdir(parents=True)
    (out / "masks").mkdir()
    shutil.copy(folder / "photos" / "0000.jpg", out / "photos")
    shutil.copy(folder / "masks" / "0000.png", out / "masks")


def command(config: str, procs: int, folder: Path, out: Path) -> "tuple[List[str], Dict[str, str]]":
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("MASTER_ADDR", None)
    inpaint = ["inpaint", "--input", str(folder / "photos"), "--mask", str(folder / "masks"), "--output", str(out),
               "--device", "cpu"]
    if config == "torchrun":
        env["OMP_NUM_THREADS"] = "1"
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs),
                "-m", "pconv", *inpaint], env
    env["OMP_NUM_THREADS"] = "1" if config.endswith("1") else str(procs)
    extra = ["--prefetch", "0"] if config.startswith("inline") else []
    return [sys.executable, "-m", "pconv", *inpaint, *extra], env


def timed(config: str, procs: int, folder: Path, out: Path) -> float:
    argv, env = command(config, procs, folder, out)
    start = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return wall


def hashes(out: Path) -> Dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir()) if p.is_file()}


def main(argv: "list[str] | None" = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", type=Path, required=True, help="folder of photos to crop the test photos from")
    p.add_argument("--count", type=int, default=300, help="photos per size")
    p.add_argument("--sizes", default="256,512")
    p.add_argument("--count-512", type=int, default=None, help="photos at 512² (default: --count)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--procs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--configs", default="inline,pipelined,torchrun",
                   help="comma-separated: inline, pipelined, torchrun, inline1, pipelined1 (the first is the base)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)

    import torch

    labels = {"inline": f"1 proc x {args.procs} thr, in line (--prefetch 0)",
              "pipelined": f"1 proc x {args.procs} thr, pipelined (default)",
              "torchrun": f"torchrun {args.procs} x 1 thr",
              "inline1": "1 proc x 1 thr, in line (--prefetch 0)",
              "pipelined1": "1 proc x 1 thr, pipelined (default)"}
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if not configs or any(c not in labels for c in configs):
        raise SystemExit(f"--configs: choose from {', '.join(labels)}")
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"machine: {cpu}, {os.cpu_count()} cores; torch {torch.__version__}; python {platform.python_version()}")
    report = {"machine": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="pconv-bench-folder-") as tmp:
        for size in [int(s) for s in args.sizes.split(",")]:
            count = args.count_512 if size == 512 and args.count_512 else args.count
            folder = Path(tmp) / f"data{size}"
            make_folder(args.photos, folder, count, size, args.seed)
            single = Path(tmp) / f"one{size}"
            one_photo_folder(folder, single)
            walls: Dict[str, List[float]] = {c: [] for c in configs}
            starts: Dict[str, List[float]] = {c: [] for c in configs}
            reference = None
            for rep in range(args.repeats):
                for c in configs:  # interleaved, so a change in machine load hits every configuration alike
                    out = Path(tmp) / f"out{size}-{c}-{rep}"
                    starts[c].append(timed(c, args.procs, single, Path(tmp) / f"start{size}-{c}-{rep}"))
                    walls[c].append(timed(c, args.procs, folder, out))
                    h = hashes(out)
                    if len(h) != count:
                        raise SystemExit(f"{c}: {len(h)} outputs for {count} photos")
                    if reference is None:
                        reference = h
                    elif h != reference:
                        bad = sum(h.get(k) != v for k, v in reference.items())
                        raise SystemExit(f"{c} wrote different bytes than {configs[0]} for {bad} photo(s)")
                    shutil.rmtree(out)
            print(f"\n{size}² x {count} photos (JPEG q92 in and out), median of {args.repeats}; "
                  f"all {len(configs)} configurations wrote identical files (SHA-256)")
            rows = {}
            for c in configs:
                wall, start = statistics.median(walls[c]), statistics.median(starts[c])
                rate = (count - 1) / (wall - start) if wall > start else float("nan")
                rows[c] = {"wall_s": wall, "startup_s": start, "images_per_s": rate,
                           "end_to_end_images_per_s": count / wall, "walls": walls[c], "startups": starts[c]}
            base = rows[configs[0]]["images_per_s"]
            for c in configs:
                r = rows[c]
                print(f"  {labels[c]:<42} wall {r['wall_s']:7.2f} s ({r['end_to_end_images_per_s']:5.2f} img/s)  "
                      f"start-up {r['startup_s']:5.2f} s  without start-up {r['images_per_s']:6.2f} img/s  "
                      f"({r['images_per_s'] / base:4.2f}x {configs[0]})")
            report["sizes"][str(size)] = {"count": count, **rows}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

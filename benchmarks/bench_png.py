"""PNG output speed: zlib settings on a 12-megapixel photo, and `pconv inpaint` writing PNG vs JPEG.

Run: .venv/bin/python benchmarks/bench_png.py [--photo PHOTO] [--repeats N]

The photo (default: the bundled example, src/pconv/assets/example.jpg) is upscaled to 4000×3000
(Lanczos): a 12-megapixel picture. Three measurements, each side by side in one run, interleaved:

1. Pillow's PNG encoder at several zlib settings (level, strategy): milliseconds (min over
   repeats) and bytes, against pconv's setting (pconv.imageio.PNG_OPTIONS) and JPEG quality 95.
2. The command line end to end, as a user runs it: ``python -m pconv inpaint photo.jpg mask.png
   -o out.png`` against ``-o out.jpg`` (fresh processes, start-up and model load included; ~5 %
   holes in 6 blobs); median wall time of each and their ratio.
3. The HTTP server's encoder (pconv.server's PNG response against JPEG) on the same picture.
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SETTINGS: Dict[str, dict] = {
    "level 6 (zlib default)": {"compress_level": 6},
    "level 1": {"compress_level": 1},
    "level 1, Z_RLE": {"compress_level": 1, "compress_type": zlib.Z_RLE},
    "level 1, Z_HUFFMAN_ONLY": {"compress_level": 1, "compress_type": zlib.Z_HUFFMAN_ONLY},
    "level 0 (stored)": {"compress_level": 0},
}


def twelve_megapixels(photo: Path) -> np.ndarray:
    return np.asarray(Image.open(photo).convert("RGB").resize((4000, 3000), Image.LANCZOS))


def blobs(h: int, w: int) -> np.ndarray:
    """~5 % holes: 6 elliptic blobs (as benchmarks/bench_inference.py)."""
    import cv2

    hole = np.zeros((h, w), np.uint8)
    r = int(np.sqrt(0.05 * h * w / 6 / np.pi))
    for i in range(6):
        cy, cx = int((i // 3 + 0.5) / 2 * h), int((i % 3 + 0.5) / 3 * w)
        cv2.ellipse(hole, (cx, cy), (int(r * 1.3), int(r / 1.3)), 30 * i, 0, 360, 255, -1)
    return hole


def interleaved(fns: Dict[str, Callable[[], object]], repeats: int) -> Dict[str, List[float]]:
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return times


def encoded(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photo", type=Path, default=ROOT / "src/pconv/assets/example.jpg")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    import PIL

    from pconv.imageio import PNG_OPTIONS
    from pconv.server import _encode

    rgb = twelve_megapixels(args.photo)
    im = Image.fromarray(rgb)
    print(f"Pillow {PIL.__version__}, zlib {zlib.ZLIB_VERSION}, {os.cpu_count()} CPUs; {args.photo.name} "
          f"upscaled to 4000x3000; pconv's PNG options: {PNG_OPTIONS}")

    # 1. encoder settings
    fns = {name: (lambda kw=kw: encoded(im, "PNG", **kw)) for name, kw in SETTINGS.items()}
    fns["JPEG quality 95"] = lambda: encoded(im, "JPEG", quality=95, subsampling=0)
    sizes = {name: len(fn()) for name, fn in fns.items()}
    times = interleaved(fns, args.repeats)
    base = sizes["level 6 (zlib default)"]
    for name in fns:
        print(f"encode {name:<24} {min(times[name]) * 1000:7.0f} ms  {sizes[name] / 1e6:6.1f} MB  "
              f"({sizes[name] / base - 1:+.0%} bytes vs level 6)")

    # 2. the command line, end to end
    with tempfile.TemporaryDirectory() as tmp:
        src, mask = Path(tmp) / "photo.jpg", Path(tmp) / "mask.png"
        im.save(src, quality=95)
        Image.fromarray(blobs(*rgb.shape[:2])).save(mask)
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}

        def cli(ext: str) -> Callable[[], None]:
            cmd = [sys.executable, "-m", "pconv", "inpaint", str(src), str(mask), "-o", str(Path(tmp) / f"out.{ext}"),
                   "--overwrite"]
            return lambda: subprocess.run(cmd, check=True, env=env, capture_output=True)

        runs = interleaved({"png": cli("png"), "jpg": cli("jpg")}, args.repeats)
        png, jpg = statistics.median(runs["png"]), statistics.median(runs["jpg"])
        out_png, out_jpg = (Path(tmp) / "out.png").stat().st_size, (Path(tmp) / "out.jpg").stat().st_size
        print(f"pconv inpaint 4000x3000, median of {args.repeats}: -o out.jpg {jpg:.2f} s ({out_jpg / 1e6:.1f} MB), "
              f"-o out.png {png:.2f} s ({out_png / 1e6:.1f} MB); png/jpg = {png / jpg:.2f}")

    # 3. the server's encoder
    srv = interleaved({"png": lambda: _encode(rgb, None, "png"), "jpg": lambda: _encode(rgb, "JPEG", "input")},
                      args.repeats)
    print(f"server response 4000x3000: PNG {min(srv['png']) * 1000:.0f} ms, JPEG {min(srv['jpg']) * 1000:.0f} ms")


if __name__ == "__main__":
    main()

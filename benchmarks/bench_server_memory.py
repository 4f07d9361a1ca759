"""Server memory soak: does `pconv serve` give memory back after large photos?

Run: .venv/bin/python benchmarks/bench_server_memory.py [--jobs 16 --method pconv-smooth]

Starts `pconv serve` on a free loopback port (one job at a time, ``--method``, default
pconv-smooth), sends one small job (512x512) and reads the server's idle RSS, then ``--jobs``
photos of 2-9 Mpx of varied sizes and aspect ratios (seeded; a synthetic photo as JPEG with a few
brush-stroke holes, 2-6 % of it) one after the other, and reads the RSS after the last one. The
target: RSS after the jobs within 1.5x of the idle RSS. It runs the server twice, side by side on
the same photos:

* ``as shipped``: what `pconv serve` does (the freed heap returned after each job);
* ``keeping freed memory``: the one-job commands' policy, pconv.device.keep_freed_memory(), and
  no return after jobs (how `pconv serve` ran before).

Each server is a child process; the script reports its own command, the machine, and per server
idle RSS, RSS after the jobs, the peak (VmHWM) and the seconds per job. Exits 1 when the shipped
server misses the target.
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

TARGET = 1.5

#: Runs `pconv serve` as the CLI does; "keep" first restores the old policy.
SERVER = """
import sys
mode, port, method = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "keep":
    import pconv.device, pconv.server
    pconv.device.keep_freed_memory()
    pconv.server._return_freed_memory = lambda: None
from pconv.cli import main
sys.exit(main(["serve", "--port", port, "--method", method, "--max-upload-mb", "64",
               "--max-pixels", str(10_000_000), "--job-timeout", "600", "--log-level", "warning"]))
"""


def rss_mib(pid: int) -> Tuple[float, float]:
    """(VmRSS, VmHWM) of a process, MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def photo(h: int, w: int, rng: np.random.Generator) -> bytes:
    from PIL import Image

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a, b = rng.uniform(0.002, 0.01, 2)
    base = np.stack([np.sin(xx * a + yy * b), np.cos(yy * a - xx * b), np.sin((xx + yy) * (a + b) / 2)], -1)
    arr = np.clip((base * 0.4 + 0.5) * 255 + rng.normal(0, 6, (h, w, 1)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def mask(h: int, w: int, rng: np.random.Generator) -> bytes:
    import cv2
    from PIL import Image

    m = np.zeros((h, w), np.uint8)
    target = rng.uniform(0.02, 0.06) * h * w
    while np.count_nonzero(m) < target:
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        for _ in range(int(rng.integers(3, 8))):
            nx = int(np.clip(x + rng.integers(-w // 8, w // 8), 0, w - 1))
            ny = int(np.clip(y + rng.integers(-h // 8, h // 8), 0, h - 1))
            cv2.line(m, (x, y), (nx, ny), 255, int(rng.integers(max(8, w // 200), max(9, w // 60))))
            x, y = nx, ny
    buf = io.BytesIO()
    Image.fromarray(m).save(buf, format="PNG")
    return buf.getvalue()


def sizes(count: int, seed: int) -> List[Tuple[int, int]]:
    """``count`` (h, w) of 2-9 Mpx, aspect ratios 1:1 to 16:9 either way, spread over the range."""
    rng = np.random.default_rng(seed)
    mpx = rng.permutation(np.linspace(2.0, 9.0, count))
    out = []
    for m in mpx:
        aspect = float(rng.uniform(1.0, 16 / 9)) ** (1 if rng.random() < 0.5 else -1)
        w = int(round((m * 1e6 * aspect) ** 0.5))
        out.append((int(m * 1e6 / w), w))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def soak(mode: str, method: str, jobs: List[Tuple[bytes, bytes]], small: Tuple[bytes, bytes]) -> Dict[str, float]:
    import httpx

    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(os.cpu_count() or 1))}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, mode, str(port), method], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(base + "/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the {mode} server did not start: {proc.stderr.read() if proc.stderr else ''}")
            time.sleep(0.2)

        def post(image: bytes, m: bytes) -> None:
            r = httpx.post(base + "/api/v1/inpaint", timeout=900,
                           files={"image": ("p.jpg", image, "image/jpeg"), "mask": ("m.png", m, "image/png")})
            if r.status_code != 200:
                raise SystemExit(f"{mode}: HTTP {r.status_code}: {r.text}")

        post(*small)
        time.sleep(0.5)
        idle, _ = rss_mib(proc.pid)
        t0 = time.perf_counter()
        for image, m in jobs:
            post(image, m)
        seconds = (time.perf_counter() - t0) / len(jobs)
        time.sleep(0.5)
        after, peak = rss_mib(proc.pid)
        return {"idle": idle, "after": after, "peak": peak, "s_per_job": seconds}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16, help="large photos sent after the first small one")
    parser.add_argument("--method", default="pconv-smooth", help="the server's method (pconv is slower)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not Path("/proc/self/status").exists():
        raise SystemExit("needs Linux /proc to read a process's RSS")

    rng = np.random.default_rng(args.seed)
    shapes = sizes(args.jobs, args.seed)
    jobs = [(photo(h, w, rng), mask(h, w, rng)) for h, w in shapes]
    small = (photo(512, 512, rng), mask(512, 512, rng))
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; Python "
          f"{platform.python_version()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(f"method {args.method}; {args.jobs} photos: " + ", ".join(f"{w}x{h}" for h, w in shapes))
    results = {}
    for mode, label in (("ship", "as shipped"), ("keep", "keeping freed memory")):
        results[mode] = r = soak(mode, args.method, jobs, small)
        print(f"{label:>22}: idle {r['idle']:6.0f} MiB -> after {args.jobs} jobs {r['after']:6.0f} MiB "
              f"({r['after'] / r['idle']:.2f}x; peak {r['peak']:.0f} MiB); {r['s_per_job']:.1f} s a job", flush=True)
    ratio = results["ship"]["after"] / results["ship"]["idle"]
    print(f"target: after / idle <= {TARGET}: {'met' if ratio <= TARGET else 'MISSED'} ({ratio:.2f}x)")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())

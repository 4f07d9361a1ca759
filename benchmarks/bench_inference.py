"""Inference latency and peak memory of pconv.Inpainter vs OpenCV Telea, on the same cases in one run.

Run: .venv/bin/python benchmarks/bench_inference.py
Cases: 256², 512², 1024² and a 4000×3000 photo, each with ~5% holes (6 elliptic blobs), the
default configuration (strategy auto: original up to 2× the training size, crop above; precision
auto). Each case runs in a fresh child process so its peak RSS (ru_maxrss, torch import included)
is its own. Latency = median of several calls on in-memory arrays, after one warm-up call; the
4000×3000 row "end to end" adds JPEG decode + encode through pconv.imageio. Also measured, at
256² and 512²: fp32 vs bf16, onnxruntime (fp32, bare network; and the time of its ONNX export), and
OpenMP's wait policy (pconv's default, libgomp's long spin, PASSIVE, one thread) on a quiet machine
and beside a process that keeps one core busy: it decides everything when another process shares
the cores.
Uses the shipped default weights when present, else the "cpu" configuration with random weights
(timing does not depend on the weights; the output says which).
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CASES = {"256": (256, 256), "512": (512, 512), "1024": (1024, 1024), "4000x3000": (3000, 4000)}


def make_case(h: int, w: int, seed: int = 0):
    """A smooth synthetic photo and a ~5% hole mask of 6 elliptic blobs."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 64), max(2, w // 64), 3), dtype=np.uint8)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img.astype(np.int16) + rng.integers(-8, 9, img.shape), 0, 255).astype(np.uint8)
    hole = np.zeros((h, w), np.uint8)
    k = 6
    r = int(np.sqrt(0.05 * h * w / k / np.pi))
    for i in range(k):
        cy = int((i // 3 + 0.5) / 2 * h)
        cx = int((i % 3 + 0.5) / 3 * w)
        cv2.ellipse(hole, (cx, cy), (int(r * 1.3), int(r / 1.3)), 30 * i, 0, 360, 255, -1)
    return img, hole > 0


def load_model():
    import torch

    from pconv.model import build_model
    from pconv.weights import default_weights_path, load_model as load

    try:
        return load(default_weights_path()), "default weights"
    except Exception:
        torch.manual_seed(0)
        return build_model("cpu").eval(), "cpu config, RANDOM weights (default weights file not found)"


def timed(fn, n: int) -> float:
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def child(case: str, what: str) -> dict:
    """One measurement in this (fresh) process; returns a JSON-able dict.

    pconv is imported first, as its CLI does, so that its OpenMP default applies (it must be set
    before torch loads); the wait-policy rows override it through the environment."""
    import pconv  # noqa: F401

    h, w = CASES[case]
    img, hole = make_case(h, w)
    n = 3 if case == "4000x3000" else 5
    out: dict = {"case": case, "what": what}
    if what == "telea":
        from pconv.baselines import fill

        out["s"] = timed(lambda: fill("telea", img, hole), n)
    elif what == "ort":
        import onnxruntime as ort
        import torch

        from pconv.export import export_model

        model, _ = load_model()
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            export_model(model, Path(tmp) / "m.onnx", "onnx", size=h)
            out["export_s"] = time.perf_counter() - t0
            sess = ort.InferenceSession(str(Path(tmp) / "m.onnx"), providers=["CPUExecutionProvider"])
            x = (torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255).numpy()
            m = (~hole)[None, None].astype(np.float32)
            out["s"] = timed(lambda: sess.run(None, {"image": x, "mask": m}), n)
    else:
        from pconv.inference import Inpainter

        model, source = load_model()
        precision = {"pconv-fp32": "fp32", "pconv-bf16": "bf16"}.get(what, "auto")
        inp = Inpainter(model, precision=precision)
        out["weights"] = source
        out["precision"] = inp.precision
        out["torch_threads"] = __import__("torch").get_num_threads()
        res = inp.inpaint(img, hole)
        out["strategy"], out["windows"] = res.strategy, res.windows
        out["hole"] = round(float(hole.mean()), 4)
        if what == "pconv-e2e":
            from pconv.imageio import read_image, write_image

            with tempfile.TemporaryDirectory() as tmp:
                src, dst = Path(tmp) / "in.jpg", Path(tmp) / "out.jpg"
                write_image(src, img)

                def e2e() -> None:
                    loaded = read_image(src)
                    r = inp.inpaint(loaded.rgb, hole)
                    write_image(dst, r.image, overwrite=True)

                out["s"] = timed(e2e, n)
        else:
            out["s"] = timed(lambda: inp.inpaint(img, hole), n)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_child(case: str, what: str, **env: str) -> dict:
    full = {**os.environ, **env}
    full = {k: v for k, v in full.items() if v != ""}  # "" = unset
    proc = subprocess.run([sys.executable, __file__, "--child", case, what], capture_output=True, text=True, env=full)
    if proc.returncode:
        raise SystemExit(f"child {case} {what} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
          f"cpu capability {torch.backends.cpu.get_cpu_capability()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, load average {os.getloadavg()[0]:.2f}")
    rows = []
    for case in CASES:
        p = run_child(case, "pconv")
        t = run_child(case, "telea")
        rows.append((case, p, t))
        print(f"{case:>10}: pconv {p['s'] * 1000:8.1f} ms  (strategy {p['strategy']}, {p['windows']} window(s), "
              f"{p['precision']}, hole {p['hole']:.1%}, peak RSS {p['peak_rss_mb']:.0f} MB)   "
              f"telea {t['s'] * 1000:8.1f} ms (peak RSS {t['peak_rss_mb']:.0f} MB)   "
              f"pconv/telea = {p['s'] / t['s']:.2f}", flush=True)
    print(f"weights: {rows[0][1]['weights']}")
    e = run_child("4000x3000", "pconv-e2e")
    print(f" 4000x3000 end to end (JPEG read + inpaint + JPEG write): {e['s'] * 1000:.0f} ms, "
          f"peak RSS {e['peak_rss_mb']:.0f} MB")
    for case in ("256", "512"):
        f32 = run_child(case, "pconv-fp32")
        b16 = run_child(case, "pconv-bf16")
        try:
            ort = run_child(case, "ort")
            ort_txt = f"onnxruntime fp32 {ort['s'] * 1000:.1f} ms (ONNX export {ort['export_s']:.0f} s)"
        except SystemExit as exc:
            ort_txt = f"onnxruntime: not measured ({str(exc).splitlines()[0]})"
        print(f"{case:>10}: Inpainter fp32 {f32['s'] * 1000:.1f} ms, bf16 {b16['s'] * 1000:.1f} ms "
              f"(bf16/fp32 = {b16['s'] / f32['s']:.2f}); {ort_txt}", flush=True)


    # OpenMP's wait policy decides everything when another process holds a core: torch's threads
    # spin-wait for each other at every op. Rows: pconv's default (a short spin, then sleep),
    # libgomp's own default (a long spin), PASSIVE (sleep at once) and one thread; on a quiet
    # machine and beside a process that keeps one core busy.
    unset = {"OMP_WAIT_POLICY": "", "GOMP_SPINCOUNT": "", "OMP_NUM_THREADS": ""}  # whatever the caller's shell set
    policies = {"pconv default": unset, "spin (libgomp default)": {**unset, "GOMP_SPINCOUNT": "300000"},
                "PASSIVE": {**unset, "OMP_WAIT_POLICY": "PASSIVE"}, "1 thread": {**unset, "OMP_NUM_THREADS": "1"}}
    for busy in (False, True):
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            for case in ("256", "512"):
                cells = [f"{name} {run_child(case, 'pconv', **env)['s'] * 1000:.1f} ms" for name, env in policies.items()]
                print(f"{case:>10}, {'one core busy' if busy else 'quiet':13s}: " + ", ".join(cells), flush=True)
        finally:
            if hog is not None:
                hog.kill()
    print(f"load average at the end {os.getloadavg()[0]:.2f} (a background training run counts here)")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], sys.argv[3])))
    else:
        main()

"""One-shot accelerator check: does pconv work and run fast on this GPU? (≤ 8 minutes on one GPU)

Writes ``accelerator-check.json`` (every figure) and ``accelerator-check.md`` (a readable summary)
into ``--out``, one section each:

  environment  torch, CUDA, the device's name, memory and dense bf16 peak (table below; unknown: null)
  tests        ``pytest -m cuda``: CUDA results equal the CPU's within the tolerances stated in
               tests/test_cuda.py (layer, U-Net, loss, smooth fill, inference)
  layers       bench_layers' PartialConv2d rows on the device: fp32 and bf16, NCHW and channels_last
  inference    pconv.Inpainter latency at 512², 2048² and 4000×3000 (holes ~10 %)
  training     images/s of a training step (U-Net + the paper's loss + Adam; batches made on the
               device, so the data pipeline is not in it) for `paper` at 512² batch 6 and the
               shipped configuration at 256² batch 6, with FLOPs counted by benchmarks/flops.py
               and the share of the device's bf16 peak
  ddp          `torchrun --nproc_per_node 1 -m pconv train` on the device (nccl): start-up time
               and a few steps on generated photos

Exit status 0 when every section ran and every test passed (and, in the full form, at least one
CUDA test ran: all skipped or none collected is "not verified", a failure), 1 otherwise; 2 when
the full check finds no CUDA GPU (it says so and measures nothing). ``--quick`` runs the same sections on the CPU
in well under a minute (tiny sizes, few steps, gloo instead of nccl), so that the script cannot
rot: tests/test_accelerator_check.py runs it.

    python benchmarks/accelerator_check.py [--out DIR]          # on a machine with a CUDA GPU
    python benchmarks/accelerator_check.py --quick --out DIR    # the CPU form
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO / "src")]  # bench_layers and flops; this checkout's pconv

#: Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from the vendors' data sheets, matched
#: against torch.cuda.get_device_name() in this order (the first match wins).
BF16_PEAK_TFLOPS = [
    (r"H100.*PCIe", 756.0),
    (r"H100.*NVL|H200.*NVL", 835.0),
    (r"GH200|H200|H100", 989.4),  # SXM
    (r"B200", 2250.0),
    (r"A100", 312.0),
    (r"L40S", 362.05),
    (r"\bL40\b", 181.05),
    (r"\bL4\b", 121.0),
    (r"RTX 4090", 165.2),  # fp32 accumulation, as PyTorch's bf16 matmuls use
    (r"\bA10\b", 125.0),
]


def bf16_peak_tflops(name: str) -> Optional[float]:
    """The dense bf16 peak of a device by name, or None when the table does not know it."""
    for pattern, peak in BF16_PEAK_TFLOPS:
        if re.search(pattern, name):
            return peak
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], reps: int, device: torch.device) -> Dict[str, float]:
    """First call (warm-up: compilation, cuDNN autotuning, allocation) and the median of ``reps``."""
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    first = time.perf_counter() - t0
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return {"first_s": first, "median_s": statistics.median(times), "min_s": min(times), "reps": reps}


def _env() -> Dict[str, str]:
    """The environment of the subprocesses: this checkout's pconv first on the path."""
    path = [str(REPO / "src")] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


# ------------------------------------------------------------------------------------------ sections
def environment(device: torch.device) -> Dict[str, Any]:
    env: Dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(),
                           "cpu_count": os.cpu_count(), "device": str(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(name=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version(), capability=list(torch.cuda.get_device_capability(device)),
                   memory_gib=round(props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count,
                   bf16_supported=torch.cuda.is_bf16_supported(), nccl_available=torch.distributed.is_nccl_available(),
                   tf32_conv=torch.backends.cudnn.allow_tf32, tf32_matmul=torch.backends.cuda.matmul.allow_tf32)
        env["bf16_peak_tflops"] = bf16_peak_tflops(env["name"])
    else:
        env.update(name=platform.processor() or platform.machine(), bf16_peak_tflops=None,
                   threads=torch.get_num_threads())
    return env


def run_tests(out_dir: Path, timeout: int, required: bool = True) -> Dict[str, Any]:
    """``pytest -m cuda`` in a subprocess; outcome counts and every test's result from its JUnit XML.

    ``verified``: at least one CUDA test ran and none failed. When none ran (all skipped, or none
    collected) the CUDA results are *not verified*, which fails the check where ``required`` (the
    full form on a GPU) and is only reported in the CPU form."""
    xml = out_dir / "cuda-tests.xml"
    # Only the files that use the marker: a test module elsewhere that cannot be imported on this
    # machine (an optional dependency missing) must not stop the CUDA tests.
    files = sorted(str(p) for p in (REPO / "tests").glob("test_*.py") if "mark.cuda" in p.read_text())
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rs", "-p", "no:cacheprovider",
           f"--junitxml={xml}", *files]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=_env())
    result: Dict[str, Any] = {"command": " ".join(cmd[1:]), "returncode": proc.returncode,
                              "seconds": time.perf_counter() - t0, "tail": proc.stdout[-3000:] + proc.stderr[-2000:]}
    cases = []
    if xml.is_file():
        for case in ET.parse(xml).getroot().iter("testcase"):
            outcome, message = "passed", ""
            for tag in ("failure", "error", "skipped"):
                node = case.find(tag)
                if node is not None:
                    outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                    message = (node.get("message") or "")[:500]
                    break
            cases.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                          "seconds": float(case.get("time") or 0), "message": message})
    counts = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "error", "skipped")}
    no_failure = proc.returncode in (0, 5) and counts["failed"] == 0 and counts["error"] == 0
    verified = no_failure and counts["passed"] > 0
    # 5 = nothing collected/run: on a CPU every CUDA test is skipped, which the CPU form only reports
    result.update(counts=counts, cases=cases, verified=verified, ok=verified or (no_failure and not required))
    return result


def layers(device: torch.device, quick: bool) -> Dict[str, Any]:
    from bench_layers import bench_layers

    shape = dict(batch=2, channels=16, size=32, min_reps=1, min_seconds=0.0) if quick else \
        dict(batch=6, channels=128, size=128, min_reps=10, min_seconds=0.5)
    rows = bench_layers(device=str(device), **shape)
    out = []
    for r in rows:
        for mode in ("fwd", "fwd_bwd"):
            t = r[mode]
            out.append({"dtype": r["dtype"], "format": r["format"], "pass": mode,
                        **{f"{k}_ms": v[1] * 1e3 for k, v in t.items()},
                        "ours_over_plain": t["ours"][1] / t["plain"][1],
                        "reference_over_ours": t["reference"][1] / t["ours"][1]})
    return {"shape": {k: shape[k] for k in ("batch", "channels", "size")}, "rows": out}


def _holes(h: int, w: int, seed: int, share: float = 0.1) -> np.ndarray:
    from pconv.masks import stroke_mask

    return stroke_mask(h, w, np.random.default_rng(seed), (share * 0.8, share * 1.2))


def inference(device: torch.device, quick: bool) -> Dict[str, Any]:
    from pconv.inference import Inpainter

    sizes = [(64, 64), (128, 128), (96, 128)] if quick else [(512, 512), (2048, 2048), (3000, 4000)]
    reps = 1 if quick else 5
    inpainter = Inpainter(method="pconv", device=str(device))
    rows = []
    for h, w in sizes:
        rng = np.random.default_rng(h + w)
        photo = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        hole = _holes(h, w, seed=h * w)
        result: Dict[str, Any] = {}

        def call() -> None:
            result["r"] = inpainter.inpaint(photo, hole)

        t = _timed(call, reps, device)
        r = result["r"]
        rows.append({"height": h, "width": w, "hole_fraction": float(hole.mean()), "strategy": r.strategy,
                     "windows": r.windows, "first_ms": t["first_s"] * 1e3, "median_ms": t["median_s"] * 1e3,
                     "min_ms": t["min_s"] * 1e3, "reps": reps})
    return {"precision": inpainter.precision, "model": inpainter.config.to_dict() if inpainter.config else None,
            "rows": rows}


def training(device: torch.device, quick: bool, peak_tflops: Optional[float]) -> Dict[str, Any]:
    from flops import training_flops

    from pconv.device import resolve_precision
    from pconv.losses import InpaintingLoss, LossWeights
    from pconv.model import build_model
    from pconv.train import train_step
    from pconv.vgg import VGG16Features

    # (name, configuration, size, batch, timed steps, VGG terms of the loss)
    cases = [("tiny", QUICK_MODEL, 64, 2, 1, True), ("cpu-fill-bh", "cpu-fill-bh", 128, 2, 1, False)] if quick else \
        [("paper", "paper", 512, 6, 10, True), ("cpu-fill-bh", "cpu-fill-bh", 256, 6, 10, True)]
    precision = resolve_precision("auto", device)
    rows = []
    for name, config, size, batch, steps, with_vgg in cases:
        torch.manual_seed(0)
        model = build_model(config).to(device).train().to(memory_format=torch.channels_last)
        # The paper's loss on a VGG16 of random weights: the same operations, no weights file needed.
        weights = LossWeights() if with_vgg else LossWeights(perceptual=0, style=0)
        loss_fn = InpaintingLoss(weights, vgg=VGG16Features() if with_vgg else None,
                                 precision="bf16" if precision == "bf16" else "fp32").to(device)
        flops = training_flops(model, size, loss_fn, count_size=model.config.multiple, device=str(device))
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        g = torch.Generator().manual_seed(0)
        image = torch.rand(batch, 3, size, size, generator=g).to(device)
        mask = torch.from_numpy(np.stack([~_holes(size, size, i, 0.3) for i in range(batch)])[:, None]).float().to(device)

        def step() -> None:
            train_step(model, loss_fn, opt, scaler, image, mask, precision, True)

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t = _timed(step, steps, device)
        images_per_s = batch / t["median_s"]
        achieved = flops["total"] * images_per_s / 1e12
        rows.append({"config": name, "size": size, "batch": batch, "precision": precision, "steps": steps,
                     "loss": "paper" if with_vgg else "paper without the VGG terms",
                     "step_ms": t["median_s"] * 1e3, "first_step_ms": t["first_s"] * 1e3,
                     "images_per_s": images_per_s, "gflop_per_image": {k: v / 1e9 for k, v in flops.items()},
                     "achieved_tflops": achieved,
                     "share_of_bf16_peak": achieved / peak_tflops if peak_tflops else None,
                     "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None})
        del model, loss_fn, opt
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"rows": rows, "note": "Compute only: batches are made on the device (the data pipeline is "
                                  "benchmarks/bench_data.py's); VGG16 of random weights (same operations)."}


#: The --quick form's training network: three levels, small enough for a CPU in a second.
QUICK_MODEL = {"channels": [8, 16, 32], "kernels": [7, 5, 3], "image_size": 64}


def _photos(folder: Path, n: int, size: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        base = np.stack([np.sin(6 * xx + i), np.cos(5 * yy - i), xx * yy], -1) * 0.5 + 0.5
        arr = np.clip(base * 255 + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"photo_{i:02d}.png")


def ddp(device: torch.device, quick: bool, work: Path, timeout: int) -> Dict[str, Any]:
    """One-process torchrun of `pconv train` on the device: nccl on CUDA, gloo on the CPU."""
    steps = 3 if quick else 20
    model = {"channels": [8, 16], "kernels": [5, 3], "image_size": 32} if quick else "cpu"
    size = 32 if quick else 256
    _photos(work / "photos", 12, size + size // 2)
    config = {"data": str(work / "photos"), "out": str(work / "run"), "model": model, "image_size": size,
              "batch_size": 4, "val_count": 2, "steps": steps, "workers": 0 if quick else 2, "log_every": 1,
              "val_every": 10**6, "ckpt_every": 10**6, "tensorboard": False, "w_perceptual": 0.0, "w_style": 0.0,
              "device": "cuda" if device.type == "cuda" else "cpu"}
    (work / "ddp.json").write_text(json.dumps(config))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
           "-m", "pconv", "train", "--config", str(work / "ddp.json"), "--no-progress"]
    env = {**_env(), "OMP_NUM_THREADS": "1", "NCCL_DEBUG": "INFO"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: List[str] = []
    ready: List[float] = []

    def read() -> None:  # the "pconv train: ... process(es)" line: set-up done, the steps begin
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if not ready and line.startswith("pconv train:") and "process(es)" in line:
                ready.append(time.perf_counter() - t0)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        lines.append(f"accelerator_check: killed after {timeout} s\n")
    reader.join(timeout=10)
    total = time.perf_counter() - t0
    ready_s = ready[0] if ready else None
    log = work / "run" / "log.jsonl"
    records = [json.loads(ln) for ln in log.read_text().splitlines()] if log.is_file() else []
    losses = [r["loss"] for r in records if "loss" in r]
    text = "".join(lines)
    backend = "nccl" if device.type == "cuda" else "gloo"
    return {"backend": backend, "returncode": proc.returncode, "startup_s": ready_s, "total_s": total,
            "steps_s": total - ready_s if ready_s is not None else None, "steps": len(losses), "losses": losses,
            "backend_reported": f"({backend})" in text, "nccl_lines": text.count("NCCL INFO"),
            "exported": (work / "run" / "last.safetensors").is_file(), "tail": text[-3000:],
            "ok": proc.returncode == 0 and len(losses) == steps and bool(np.all(np.isfinite(losses)))
            and f"({backend})" in text}


# -------------------------------------------------------------------------------------------- report
def _percent(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.1%}"


def _round(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.1f}"


def _status(report: Dict[str, Any]) -> str:
    if not report["ok"]:
        return "PROBLEMS FOUND"
    if not report["sections"].get("tests", {}).get("verified"):
        return "OK, CUDA results not verified (no CUDA test ran)"
    return "OK"


def summary(report: Dict[str, Any]) -> str:
    env = report["environment"]
    lines = [f"# pconv accelerator check{' (--quick, CPU form)' if report['quick'] else ''}", "",
             f"{env.get('name')} · torch {env['torch']} · CUDA {env.get('cuda', '-')} · "
             f"bf16 peak {env.get('bf16_peak_tflops') or 'unknown'} TFLOP/s · {report['date']} · "
             f"{report['seconds']:.0f} s · **{_status(report)}**", ""]
    for name, section in report["sections"].items():
        if "error" in section:
            lines += [f"## {name}: FAILED", "", "```", section["error"][-2000:], "```", ""]
    tests = report["sections"].get("tests", {})
    if "counts" in tests:
        lines += ["## CUDA tests (`pytest -m cuda`)", "",
                  "  ".join(f"{k}: {v}" for k, v in tests["counts"].items()), ""]
        if not tests.get("verified"):
            lines += [f"CUDA results **not verified**: no CUDA test ran ({tests['counts']['skipped']} skipped, "
                      f"{len(tests['cases'])} collected).", ""]
        lines += [f"- {c['outcome']}: {c['test']} {c['message'][:200]}" for c in tests["cases"]
                  if c["outcome"] != "passed"][:40] + [""]
    lay = report["sections"].get("layers", {})
    if "rows" in lay:
        lines += [f"## PartialConv2d (batch {lay['shape']['batch']}, {lay['shape']['channels']} channels, "
                  f"{lay['shape']['size']}²), median ms", "",
                  "| dtype | layout | pass | plain | ours | reference | ours/plain |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['dtype']} | {r['format']} | {r['pass']} | {r['plain_ms']:.3f} | {r['ours_ms']:.3f} | "
                  f"{r['reference_ms']:.3f} | {r['ours_over_plain']:.2f} |" for r in lay["rows"]] + [""]
    inf = report["sections"].get("inference", {})
    if "rows" in inf:
        lines += [f"## Inference ({inf['precision']}), ms", "", "| size | holes | strategy | windows | first | median |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['width']}×{r['height']} | {r['hole_fraction']:.0%} | {r['strategy']} | {r['windows']} | "
                  f"{r['first_ms']:.0f} | {r['median_ms']:.0f} |" for r in inf["rows"]] + [""]
    tr = report["sections"].get("training", {})
    if "rows" in tr:
        lines += ["## Training step (U-Net + loss + Adam)", "",
                  "| config | size | batch | precision | step ms | images/s | GFLOP/image | TFLOP/s | share of bf16 peak |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['config']} | {r['size']}² | {r['batch']} | {r['precision']} | {r['step_ms']:.0f} | "
                  f"{r['images_per_s']:.1f} | {r['gflop_per_image']['total']:.0f} | {r['achieved_tflops']:.2f} | "
                  f"{_percent(r['share_of_bf16_peak'])} |" for r in tr["rows"]] + ["", tr["note"], ""]
    d = report["sections"].get("ddp", {})
    if "backend" in d:
        lines += [f"## torchrun, 1 process ({d['backend']})", "",
                  f"exit {d['returncode']}, start-up {_round(d['startup_s'])} s, "
                  f"{d['steps']} steps in {_round(d['steps_s'])} s, "
                  f"NCCL log lines {d['nccl_lines']}, weights exported: {d['exported']}", ""]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="accelerator-check", help="folder for the JSON report and the summary")
    ap.add_argument("--quick", action="store_true", help="the small CPU form (tiny sizes, few steps, gloo)")
    ap.add_argument("--device", default="cuda:0", help="the GPU to check (full form)")
    args = ap.parse_args(argv)
    if args.quick:
        device = torch.device("cpu")
        # One thread: the quick form checks that everything runs, and on a busy machine (CI) a
        # parallel region waits for every thread's core, which made it ten times slower.
        torch.set_num_threads(1)
    else:
        if not torch.cuda.is_available():
            print("accelerator_check: no CUDA GPU is visible to torch "
                  f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}); the full check "
                  "measures nothing without one. Run it on a GPU machine, or --quick for the CPU form.",
                  file=sys.stderr)
            return 2
        device = torch.device(args.device)
        torch.cuda.set_device(device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    report: Dict[str, Any] = {"quick": args.quick, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                              "environment": environment(device), "sections": {}}
    peak = report["environment"].get("bf16_peak_tflops")
    with tempfile.TemporaryDirectory() as tmp:
        sections: Dict[str, Callable[[], Dict[str, Any]]] = {
            "tests": lambda: run_tests(out, timeout=120 if args.quick else 240, required=not args.quick),
            "layers": lambda: layers(device, args.quick),
            "inference": lambda: inference(device, args.quick),
            "training": lambda: training(device, args.quick, peak),
            "ddp": lambda: ddp(device, args.quick, Path(tmp), timeout=120 if args.quick else 180),
        }
        for name, run in sections.items():
            s0 = time.perf_counter()
            print(f"accelerator_check: {name} ...", file=sys.stderr, flush=True)
            try:
                result = run()
            except Exception:
                result = {"error": traceback.format_exc(), "ok": False}
            result["section_s"] = time.perf_counter() - s0
            report["sections"][name] = result
    report["seconds"] = time.perf_counter() - t0
    report["ok"] = all(s.get("ok", True) and "error" not in s for s in report["sections"].values())
    (out / "accelerator-check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    text = summary(report)
    (out / "accelerator-check.md").write_text(text)
    print(text)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

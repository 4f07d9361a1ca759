"""torch.compile against eager: a training step and inference, compile time stated apart.

Rows, eager and compiled side by side (repetitions interleaved, min and median reported):

  train   --config (default: the shipped cpu-fill-bh) at 256², batch 6, bf16 autocast + channels_last
          where the hardware has bf16, the hole-MSE + TV loss of its last fine-tuning; one step =
          forward, loss, backward, Adam (what `pconv train --compile true` compiles: the U-Net)
  infer   pconv.Inpainter(compile=...) with --config on one photo with a 20 % hole at 256² and 512² (what
          `pconv inpaint --compile` does)

"compile" is the first call's time (tracing and code generation) less a steady call's; it is paid
again for every new input size.

    python benchmarks/bench_compile.py [--device cpu] [--config cpu] [--reps 5] [--skip-train] [--skip-infer]
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _interleaved(fns: Dict[str, Callable[[], None]], reps: int, device: torch.device) -> Dict[str, Tuple[float, float]]:
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return {k: (min(v), statistics.median(v)) for k, v in times.items()}


def _first_call(fn: Callable[[], None], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def bench_train(device: torch.device, size: int, batch: int, reps: int, config: str = "cpu-fill-bh") -> dict:
    from pconv.device import resolve_precision
    from pconv.losses import InpaintingLoss, LossWeights
    from pconv.model import build_model
    from pconv.train import _forward

    precision = resolve_precision("auto", device)
    g = torch.Generator().manual_seed(0)
    image = torch.rand(batch, 3, size, size, generator=g).to(device)
    mask = (torch.nn.functional.interpolate(torch.rand(batch, 1, size // 16, size // 16, generator=g), size=size)
            > 0.2).float().to(device)
    weights = LossWeights(valid=0, hole=0, perceptual=0, style=0, tv=1, hole_mse=60)
    steps: Dict[str, Callable[[], None]] = {}
    for name in ("eager", "compiled"):
        torch.manual_seed(0)
        model = build_model(config).to(device).train().to(memory_format=torch.channels_last)
        net = torch.compile(model) if name == "compiled" else model
        loss_fn = InpaintingLoss(weights, precision="fp32").to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step(net=net, loss_fn=loss_fn, opt=opt) -> None:
            out = _forward(net, image, mask, precision, True)
            total, _ = loss_fn(out, image, mask)
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
        steps[name] = step
    first = {k: _first_call(fn, device) for k, fn in steps.items()}
    t = _interleaved(steps, reps, device)
    return {"what": f"train {config} {size}² batch {batch} {precision}", "first_s": first, "times_s": t}


def bench_infer(device: torch.device, sizes: List[int], reps: int, config: str = "cpu-fill-bh") -> List[dict]:
    from pconv.inference import Inpainter
    from pconv.model import build_model

    rows = []
    torch.manual_seed(0)
    model = build_model(config)  # random weights: the same work as trained ones
    eager = Inpainter(model, method="pconv", device=str(device))
    compiled = Inpainter(build_model(config), method="pconv", device=str(device), compile=True)
    compiled.model.load_state_dict(eager.model.state_dict())
    for size in sizes:
        rng = np.random.default_rng(size)
        photo = (rng.random((size, size, 3)) * 255).astype(np.uint8)
        hole = np.zeros((size, size), bool)
        hole[size // 4: size // 4 + int(size * 0.45), size // 4: size // 4 + int(size * 0.45)] = True
        calls = {"eager": lambda p=eager: p.inpaint(photo, hole, strategy="original"),
                 "compiled": lambda p=compiled: p.inpaint(photo, hole, strategy="original")}
        first = {k: _first_call(fn, device) for k, fn in calls.items()}
        t = _interleaved(calls, reps, device)
        same = np.abs(calls["eager"]().image.astype(int) - calls["compiled"]().image.astype(int)).max()
        rows.append({"what": f"infer {config} {size}² batch 1 {eager.precision}", "first_s": first, "times_s": t,
                     "max_abs_diff_uint8": int(same)})
    return rows


def _print(row: dict) -> None:
    t, first = row["times_s"], row["first_s"]
    compile_s = first["compiled"] - t["compiled"][1]
    print(f"{row['what']:40s} min/median ms: eager {t['eager'][0]*1e3:7.1f}/{t['eager'][1]*1e3:7.1f}  "
          f"compiled {t['compiled'][0]*1e3:7.1f}/{t['compiled'][1]*1e3:7.1f}  "
          f"speed-up {t['eager'][0]/t['compiled'][0]:.2f}x ({t['eager'][1]/t['compiled'][1]:.2f}x)  "
          f"compile {compile_s:.1f} s" + (f"  max |diff| {row['max_abs_diff_uint8']}" if "max_abs_diff_uint8" in row else ""),
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--config", default="cpu-fill-bh",
                    help="model configuration (the shipped cpu-fill-bh unrolls its smooth fill's ~700 "
                         "relaxation steps into the graph: the slowest to compile)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="inference sizes")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-infer", action="store_true")
    args = ap.parse_args()
    from pconv.device import keep_freed_memory

    keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads")
    if not args.skip_train:
        _print(bench_train(device, 256, 6, args.reps, args.config))
    if not args.skip_infer:
        for row in bench_infer(device, args.sizes, args.reps, args.config):
            _print(row)


if __name__ == "__main__":
    main()

"""Partial padding's cost: a converted ResNet-50 against the zero-padded one, side by side.

One step = forward + cross-entropy + backward at 224², the same weights and batch for every row;
repetitions interleaved (zeros, partial, partial without its cache, ...), min and median reported,
of wall-clock time and of the process's CPU time (with one thread, CPU time hardly moves when other
processes share the cores; wall-clock time does).
"partial, no cache" clears the ratio maps before every step, which is what recomputing the mask
ratio at every call would cost. Target: partial ≤ 1.10× zeros.

    python benchmarks/bench_padding.py [--batch 2] [--reps 5] [--threads 1] [--channels-last] [--bf16]
"""
from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F

from pconv.classifiers import pd_resnet50
from pconv.padding import PartialPaddingConv2d, partial_padding


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    zeros = pd_resnet50(padding="zeros").train()
    partial = partial_padding(zeros)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    zeros.to(memory_format=fmt)
    partial.to(memory_format=fmt)
    x = torch.randn(args.batch, 3, args.size, args.size).contiguous(memory_format=fmt)
    y = torch.randint(0, 1000, (args.batch,))
    convs = [m for m in partial.modules() if isinstance(m, PartialPaddingConv2d)]

    def step(model: torch.nn.Module, clear: bool = False) -> Callable[[], None]:
        def run() -> None:
            if clear:
                for m in convs:
                    m._ratio_cache.clear()
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if args.bf16 else nullcontext()
            with ctx:
                loss = F.cross_entropy(model(x).float(), y)
            model.zero_grad(set_to_none=True)
            loss.backward()
        return run

    rows = {"zeros": step(zeros), "partial": step(partial), "partial, no cache": step(partial, clear=True)}
    for fn in rows.values():  # warm-up: allocator, caches
        fn()
    wall: Dict[str, List[float]] = {k: [] for k in rows}
    cpu: Dict[str, List[float]] = {k: [] for k in rows}
    for _ in range(args.reps):
        for name, fn in rows.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    print(f"ResNet-50 forward+backward, batch {args.batch}, {args.size}², {args.threads} thread(s), "
          f"{'channels_last' if args.channels_last else 'NCHW'}, {'bf16 autocast' if args.bf16 else 'fp32'}, "
          f"{len(convs)} padded convolutions converted; min / median of {args.reps} interleaved steps")
    for label, times in (("wall", wall), ("cpu", cpu)):
        base_min, base_med = min(times["zeros"]), statistics.median(times["zeros"])
        for name, v in times.items():
            print(f"  {label:4s} {name:18s} {min(v) * 1000:8.1f} / {statistics.median(v) * 1000:8.1f} ms   "
                  f"×zeros {min(v) / base_min:.3f} / {statistics.median(v) / base_med:.3f}")


if __name__ == "__main__":
    main()

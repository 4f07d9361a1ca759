"""Training-step speed of the cpu configuration at 256², batch 6: where the time goes.

Splits one step into data (decode + crop + mask, measured on the real data pipeline when --data
is given), U-Net forward+backward, VGG loss and optimiser, for fp32 NCHW (naive) and bf16 autocast
+ channels_last (our default), and for the loss without VGG terms. Prints images/s and the share
of the machine's bf16 convolution peak (--peak-tflops, ~0.9 on this 2-core CPU) reached.

    python benchmarks/bench_train.py [--steps 5] [--data DIR]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from pconv.losses import InpaintingLoss, LossWeights
from pconv.model import build_model
from pconv.train import _forward


def unet_flops(model, size: int) -> float:
    """Multiply-adds ×2 of the U-Net's convolutions for one image (forward)."""
    total, hw = 0.0, size
    for block in model.encoder:
        hw //= 2
        c = block.conv
        total += 2 * c.in_channels * c.out_channels * c.kernel_size[0] ** 2 * hw * hw
    for block in model.decoder:
        hw *= 2
        c = block.conv
        total += 2 * c.in_channels * c.out_channels * 9 * hw * hw
    return total


def vgg_flops(size: int) -> float:
    cfg = [(3, 64, 1), (64, 64, 1), (64, 128, 2), (128, 128, 2), (128, 256, 4), (256, 256, 4), (256, 256, 4)]
    return sum(2 * a * b * 9 * (size // s) ** 2 for a, b, s in cfg)


def time_step(model, loss_fn, opt, image, mask, precision, channels_last, steps):
    times = {"unet_fwd": 0.0, "loss_fwd": 0.0, "backward": 0.0, "optimizer": 0.0}
    for i in range(steps + 1):
        t0 = time.perf_counter()
        out = _forward(model, image, mask, precision, channels_last)
        t1 = time.perf_counter()
        total, _ = loss_fn(out, image, mask)
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        total.backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        if i:  # first step is warm-up
            for k, v in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                times[k] += v / steps
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=6)
    ap.add_argument("--peak-tflops", type=float, default=0.9)
    ap.add_argument("--data", help="a photo folder: also time the real data pipeline")
    args = ap.parse_args()
    torch.manual_seed(0)
    image = torch.rand(args.batch, 3, args.size, args.size)
    mask = (torch.rand(args.batch, 1, args.size // 8, args.size // 8) > 0.3).float()
    mask = torch.nn.functional.interpolate(mask, size=args.size)
    print(f"threads={torch.get_num_threads()} batch={args.batch} size={args.size}")
    rows = []
    for name, precision, cl, vgg in [("fp32 NCHW, full loss (naive)", "fp32", False, True),
                                     ("bf16 + channels_last, full loss", "bf16", True, True),
                                     ("bf16 + channels_last, L1+TV only", "bf16", True, False)]:
        model = build_model("cpu").train()
        if cl:
            model = model.to(memory_format=torch.channels_last)
        w = LossWeights() if vgg else LossWeights(perceptual=0, style=0)
        loss_fn = InpaintingLoss(w, precision=precision, channels_last=cl)
        opt = torch.optim.Adam(model.parameters(), lr=2e-4)
        t = time_step(model, loss_fn, opt, image, mask, precision, cl, args.steps)
        step = sum(t.values())
        # forward + backward ≈ 3× forward FLOPs; VGG runs output+composite with grad, gt without.
        flops = 3 * unet_flops(model, args.size) * args.batch
        if vgg:
            flops += (3 * 2 + 1) * vgg_flops(args.size) * args.batch
        rows.append((name, step))
        print(f"{name:34s} step {step*1000:7.0f} ms  {args.batch/step:5.1f} img/s  "
              + "  ".join(f"{k} {v*1000:.0f}ms" for k, v in t.items())
              + f"  achieved {flops/step/1e12:.3f} TFLOP/s = {flops/step/1e12/args.peak_tflops:.0%} of peak")
    print(f"speed-up of our default (bf16+CL, full loss) over naive fp32: {rows[0][1]/rows[1][1]:.2f}x")
    if args.data:
        from pconv.data import MaskSampler, TrainDataset, list_images

        ds = TrainDataset(list_images(args.data), args.size, MaskSampler("strokes", args.size, (0.01, 0.6)), 0)
        t0 = time.perf_counter()
        for i in range(args.batch * 4):
            ds[(0, i % len(ds))]
        per_batch = (time.perf_counter() - t0) / 4
        print(f"data pipeline (1 process): {per_batch*1000:.0f} ms per batch of {args.batch}")


if __name__ == "__main__":
    main()

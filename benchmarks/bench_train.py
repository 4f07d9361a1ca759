"""Training-step speed of the cpu configuration at 256², batch 6: where the time goes.

Splits one step into U-Net forward, loss forward, backward and optimiser, and times the real data
pipeline (decode + crop + mask) when --data is given. Rows, in one run:

  naive          fp32 NCHW, the paper's loss written the textbook way (VGG in torchvision's
                 conv→ReLU→pool order, autograd L1s on sliced features, NCHW Gram matrices) and
                 glibc's default allocator policy: the straightforward implementation
  ours fp32      pconv's loss in fp32 NCHW (same allocator policy), to separate code from precision
  ours bf16+CL   pconv's default precision and layout, still with glibc's default allocator policy
  then, after pconv.device.keep_freed_memory() (what `pconv train` does):
  ours fp32      again, fp32 NCHW
  ours bf16+CL   bf16 autocast + channels_last: pconv's default on this CPU
  L1+TV only     the cheap loss (pixel terms and TV, no VGG)
  shipped        the cpu-fill-bh configuration (pull-push fill with biharmonic steps) with the
                 hole-MSE + TV loss (docs/experiments.md, experiment 16)

Prints images/s and the share of the machine's bf16 convolution peak (--peak-tflops, ~0.9 on
this 2-core CPU) that the convolutions reach.

    python benchmarks/bench_train.py [--steps 5] [--data DIR]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import Tensor, nn

from pconv.device import keep_freed_memory
from pconv.losses import InpaintingLoss, LossWeights, tv_loss
from pconv.vgg import POOL_INDICES, load_vgg16_features
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


class TextbookLoss(nn.Module):
    """The paper's total loss written the obvious way: the naive baseline."""

    def __init__(self) -> None:
        super().__init__()
        self.vgg = load_vgg16_features().freeze()

    def features(self, x: Tensor):
        x = (x - self.vgg.mean) / self.vgg.std
        out = []
        for i, layer in enumerate(self.vgg.features[: POOL_INDICES[-1] + 1]):
            x = layer(x)
            if i in POOL_INDICES:
                out.append(x)
        return out

    @staticmethod
    def gram(f: Tensor) -> Tensor:
        b, c, h, w = f.shape
        f = f.reshape(b, c, h * w)
        return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)

    def forward(self, out: Tensor, gt: Tensor, mask: Tensor):
        comp = mask * gt + (1 - mask) * out
        valid = (mask * (out - gt)).abs().mean()
        hole = ((1 - mask) * (out - gt)).abs().mean()
        b = out.shape[0]
        feats = self.features(torch.cat([out, comp]))
        fo, fc = [f[:b] for f in feats], [f[b:] for f in feats]
        with torch.no_grad():
            fg = self.features(gt)
        perc = sum((o - g).abs().mean() + (c - g).abs().mean() for o, c, g in zip(fo, fc, fg))
        style = sum((self.gram(o) - self.gram(g)).abs().mean() + (self.gram(c) - self.gram(g)).abs().mean()
                    for o, c, g in zip(fo, fc, fg))
        total = valid + 6 * hole + 0.05 * perc + 120 * style + 0.1 * tv_loss(comp, mask)
        return total, {}


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
    rows = {}
    cases = [("naive: fp32 NCHW, textbook loss", "fp32", False, "textbook"),
             ("ours: fp32 NCHW, full loss", "fp32", False, "full"),
             ("ours: bf16 + channels_last, full loss, default memory", "bf16", True, "full"),
             ("keep_freed_memory()", None, None, None),
             ("ours: fp32 NCHW, full loss, kept memory", "fp32", False, "full"),
             ("ours: bf16 + channels_last, full loss", "bf16", True, "full"),
             ("ours: bf16 + channels_last, L1+TV only", "bf16", True, "l1tv"),
             ("shipped cpu-fill-bh: bf16 + CL, hole MSE + TV", "bf16", True, "mse")]
    for name, precision, cl, loss in cases:
        if precision is None:
            print(f"-- {name}: {keep_freed_memory()}")
            continue
        torch.manual_seed(0)
        model = build_model("cpu-fill-bh" if loss == "mse" else "cpu").train()
        if cl:
            model = model.to(memory_format=torch.channels_last)
        if loss == "textbook":
            loss_fn = TextbookLoss()
        else:
            w = {"full": LossWeights(), "l1tv": LossWeights(perceptual=0, style=0),
                 "mse": LossWeights(valid=0, hole=0, perceptual=0, style=0, tv=1, hole_mse=60)}[loss]
            loss_fn = InpaintingLoss(w, precision=precision, channels_last=cl)
        opt = torch.optim.Adam(model.parameters(), lr=2e-4)
        t = time_step(model, loss_fn, opt, image, mask, precision, cl, args.steps)
        step = sum(t.values())
        # U-Net: forward + input gradient + weight gradient ≈ 3× forward. VGG is frozen (no weight
        # gradients): output and composite cost forward + input gradient ≈ 2× forward, gt forward only.
        flops = 3 * unet_flops(model, args.size) * args.batch
        if loss == "full":
            flops += (2 * 2 + 1) * vgg_flops(args.size) * args.batch
        rows[name] = step
        print(f"{name:54s} step {step*1000:7.0f} ms  {args.batch/step:5.1f} img/s  "
              + "  ".join(f"{k} {v*1000:.0f}ms" for k, v in t.items())
              + f"  {flops/step/1e12:.3f} TFLOP/s = {flops/step/1e12/args.peak_tflops:.0%} of peak", flush=True)
    naive = rows[cases[0][0]]
    for name, *_ in cases[1:]:
        if name in rows:
            print(f"speed-up over naive: {naive / rows[name]:5.2f}x  {name}")
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

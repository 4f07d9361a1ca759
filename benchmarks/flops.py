"""FLOPs of one training image, counted from the modules' actual operations.

``training_flops`` runs one forward and backward pass of the U-Net (and of the loss when given)
under ``torch.utils.flop_counter.FlopCounterMode``, which counts every convolution, matrix
product and their gradients as dispatched (see COUNTED) (2 FLOPs per multiply-add; elementwise work is not
counted): nothing is restated by hand, so a change to the architecture changes the figure.

    python benchmarks/flops.py [--model paper] [--size 512] [--loss paper|none]

Convolution FLOPs grow with the pixel count, so ``--count-size`` (default: 64) counts on a small
image and scales by (size / count_size)²: exact for sizes that are multiples of 2**depth.
"""
from __future__ import annotations

import argparse
from typing import Dict, Optional

import torch
from torch.utils.flop_counter import FlopCounterMode

from pconv.model import PConvUNet, build_model

#: The dense operations counted. Sparse products (the smooth fill's CPU path, aten.addmm on a CSR
#: matrix) are left out: the counter would price them as dense matrices, and a GPU runs the fill
#: as a stencil of elementwise operations, which are not counted either.
COUNTED = ("convolution", "convolution_backward", "mm", "bmm")


def _flops(counter: FlopCounterMode) -> int:
    return sum(v for op, v in counter.get_flop_counts().get("Global", {}).items()
               if str(op).split(".")[1] in COUNTED)


def training_flops(model: PConvUNet, size: int, loss_fn: Optional[torch.nn.Module] = None,
                   count_size: Optional[int] = None, device: str = "cpu") -> Dict[str, float]:
    """FLOPs per image at ``size``²: ``unet_forward``, ``unet_train`` (forward + backward of the
    U-Net, weights and input gradients as training computes them) and, with ``loss_fn``,
    ``loss_train`` (the loss's forward and backward down to the U-Net's output) and ``total``."""
    count_size = count_size or size
    if count_size % model.config.multiple or size % model.config.multiple:
        raise ValueError(f"sizes must be multiples of {model.config.multiple}")
    scale = (size / count_size) ** 2 / 2  # a batch of 2 (BatchNorm needs more than one value), per image
    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, count_size, count_size, generator=g).to(device)
    mask = (torch.rand(2, 1, count_size, count_size, generator=g) > 0.3).float().to(device)
    was_training = model.training
    model.train()
    with FlopCounterMode(display=False) as fwd:
        out = model(image, mask)
    with FlopCounterMode(display=False) as bwd:
        out.float().mean().backward()
    result = {"unet_forward": _flops(fwd) * scale,
              "unet_train": (_flops(fwd) + _flops(bwd)) * scale}
    model.zero_grad(set_to_none=True)
    if loss_fn is not None:
        out = model(image, mask)
        leaf = out.detach().requires_grad_(True)
        with FlopCounterMode(display=False) as lc:
            total, _ = loss_fn(leaf, image, mask)
            total.backward()
        result["loss_train"] = _flops(lc) * scale
        result["total"] = result["unet_train"] + result["loss_train"]
    else:
        result["total"] = result["unet_train"]
    model.train(was_training)
    return result


def paper_loss(channels_last: bool = False) -> torch.nn.Module:
    """The paper's loss (all terms, VGG16 perceptual and style) on a VGG16 of random weights:
    the same operations as with the pretrained one, without needing its weights file."""
    from pconv.losses import InpaintingLoss, LossWeights
    from pconv.vgg import VGG16Features

    return InpaintingLoss(LossWeights(), vgg=VGG16Features(), precision="fp32", channels_last=channels_last)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="paper")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--count-size", type=int, default=None, help="count at this size and scale (default: min(size, 256))")
    ap.add_argument("--loss", choices=["paper", "none"], default="paper")
    args = ap.parse_args()
    model = build_model(args.model)
    count = args.count_size or min(args.size, 256)
    f = training_flops(model, args.size, paper_loss() if args.loss == "paper" else None, count_size=count)
    print(f"{args.model} at {args.size}² (counted at {count}², scaled), GFLOP per image: "
          + "  ".join(f"{k} {v / 1e9:.1f}" for k, v in f.items())
          + f"  (train/forward = {f['unet_train'] / f['unet_forward']:.2f})")


if __name__ == "__main__":
    main()

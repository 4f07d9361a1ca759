"""Benchmark: PartialConv2d against a plain conv and the reference-style formulation; U-Net forward.

Layer case: multi-channel mask, 3×3, 128→128 channels, 128×128, batch 6, in one run:
  plain      nn.Conv2d on input ⊙ mask (the floor a partial conv cannot beat)
  ours       pconv.PartialConv2d (box sum of the channel-summed mask; check_mask=False as in the U-Net)
  reference  NVIDIA-style: the mask convolved with an all-ones out×in×k×k kernel on every call
  fused      (--fused) ours with pconv.fused's opt-in CPU kernels
for fp32 and bf16 autocast, NCHW and channels_last; forward alone (inference, no_grad) and
forward+backward (input and weights require grad). Repetitions are interleaved round-robin across
the three so that drift of the machine hits them alike; min and median are reported, ratios of the
mins first (the min is the least disturbed by other processes on a shared machine).

Then the PConv U-Net forward time (batch 1, no_grad) at 256² and 512² for each shipped configuration,
fp32 NCHW against bf16 autocast + channels_last.

Run: .venv/bin/python benchmarks/bench_layers.py [--fused] [--threads N]   (--quick for a smoke run)
On a GPU: benchmarks/bench_layers.py --device cuda (the layer rows only; benchmarks/accelerator_check.py runs it).
"""
from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time
from typing import Callable, Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pconv.layers import PartialConv2d
from pconv.model import CONFIGS, PConvUNet


class ReferencePartialConv2d(nn.Conv2d):
    """The reference implementation's arithmetic (NVIDIA partialconv, multi_channel=True), stateless.

    sum(M) is a full out×in×k×k convolution of the mask with an all-ones kernel on every call.
    """

    def forward(self, x: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor]:  # type: ignore[override]
        with torch.no_grad():
            ones = torch.ones(self.out_channels, self.in_channels, *self.kernel_size, device=x.device, dtype=mask.dtype)
            update = F.conv2d(mask, ones, None, self.stride, self.padding, self.dilation)
            ratio = (self.in_channels * self.kernel_size[0] * self.kernel_size[1]) / (update + 1e-8)
            update = update.clamp(0, 1)
            ratio = ratio * update
        raw = super().forward(x * mask)
        b = self.bias.view(1, -1, 1, 1)
        out = ((raw - b) * ratio + b) * update
        return out, update


def _times(
    fns: Dict[str, Callable[[], None]], min_reps: int, min_seconds: float, warmup: int,
    device: torch.device = torch.device("cpu"),
) -> Dict[str, Tuple[float, float]]:
    """(min, median) seconds per function, repetitions interleaved round-robin. On a GPU each
    timing waits for the device's queue before and after (kernels run asynchronously)."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: Dict[str, List[float]] = {k: [] for k in fns}
    start = time.perf_counter()
    reps = 0
    while reps < min_reps or time.perf_counter() - start < min_seconds:
        for name, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
        reps += 1
    return {k: (min(v), statistics.median(v)) for k, v in times.items()}


def bench_layers(batch: int, channels: int, size: int, min_reps: int, min_seconds: float,
                 with_fused: bool = False, device: str = "cpu") -> List[dict]:
    """The layer rows on ``device`` ("cpu" or a CUDA device; the fused kernels are CPU-only).
    Returns one dict per dtype and layout with (min, median) seconds per implementation."""
    dev = torch.device(device)
    if with_fused and dev.type != "cpu":
        raise ValueError("the fused kernels run on the CPU only")
    torch.manual_seed(0)
    x0 = torch.randn(batch, channels, size, size)
    mask0 = (torch.rand(batch, channels, size, size) > 0.25).float()
    mask0[:, :, size // 4: size // 2, size // 4: size // 2] = 0  # a large hole as well as scattered ones
    x0, mask0 = x0.to(dev), mask0.to(dev)

    plain = nn.Conv2d(channels, channels, 3, padding=1).to(dev)
    ours = PartialConv2d(channels, channels, 3, padding=1, check_mask=False).to(dev)
    ref = ReferencePartialConv2d(channels, channels, 3, padding=1).to(dev)
    ours.load_state_dict(plain.state_dict())
    ref.load_state_dict(plain.state_dict())

    # Sanity: ours and the reference formulation agree (the fused kernels' own check is in tests/).
    with torch.no_grad():
        a, ma = ours(x0, mask0)
        b, mb = ref(x0, mask0)
    err = (a - b).abs().max().item()
    assert err < 1e-3 * b.abs().max().item(), err
    assert torch.equal(ma.expand_as(mb), mb)

    impls = {
        "plain": lambda x, m: plain(x * m),
        "ours": lambda x, m: ours(x, m)[0],
        "reference": lambda x, m: ref(x, m)[0],
    }
    if with_fused:
        from pconv.fused import use_fused_cpu_kernels

        use_fused_cpu_kernels(True)  # compile or load them now, not inside a timing
        use_fused_cpu_kernels(False)
        impls["fused"] = impls["ours"]  # run with the kernels switched on (kernels_on below)

    @contextlib.contextmanager
    def kernels_on(name: str):
        """The fused kernels on for the whole of "fused"'s forward (and backward) pass, off otherwise."""
        if name != "fused":
            yield
            return
        use_fused_cpu_kernels(True)
        try:
            yield
        finally:
            use_fused_cpu_kernels(False)
    rows = []
    for dtype_name in ("fp32", "bf16"):
        for fmt_name, fmt in (("NCHW", torch.contiguous_format), ("channels_last", torch.channels_last)):
            for mod in (plain, ours, ref):
                mod.to(memory_format=fmt)
            x = x0.contiguous(memory_format=fmt)
            mask = mask0.contiguous(memory_format=fmt)
            bf16 = dtype_name == "bf16"

            def amp() -> contextlib.AbstractContextManager:
                return torch.autocast(dev.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

            grad_out = torch.randn(batch, channels, size, size, device=dev).contiguous(memory_format=fmt)

            def fwd(name: str, f: Callable) -> Callable[[], None]:
                def run() -> None:
                    with kernels_on(name), torch.no_grad(), amp():
                        f(x, mask)
                return run

            def fwd_bwd(name: str, f: Callable) -> Callable[[], None]:
                xg = x.clone().requires_grad_(True)

                def run() -> None:
                    for p in (plain, ours, ref):
                        p.zero_grad(set_to_none=True)
                    with kernels_on(name):
                        with amp():
                            out = f(xg, mask)
                        out.backward(grad_out.to(out.dtype))
                    xg.grad = None
                return run

            t_f = _times({k: fwd(k, f) for k, f in impls.items()}, min_reps, min_seconds, warmup=2, device=dev)
            t_fb = _times({k: fwd_bwd(k, f) for k, f in impls.items()}, min_reps, min_seconds, warmup=2, device=dev)
            rows.append({"dtype": dtype_name, "format": fmt_name, "fwd": t_f, "fwd_bwd": t_fb})
            for label, t in (("fwd (no_grad)", t_f), ("fwd+bwd", t_fb)):
                print(
                    f"{dtype_name:4s} {fmt_name:13s} {label:13s} | min/median ms: "
                    + "  ".join(f"{k} {t[k][0]*1e3:7.1f}/{t[k][1]*1e3:7.1f}" for k in impls)
                    + f" | ours/plain {t['ours'][0]/t['plain'][0]:.3f} ({t['ours'][1]/t['plain'][1]:.3f})"
                    + (f"  fused/plain {t['fused'][0]/t['plain'][0]:.3f} ({t['fused'][1]/t['plain'][1]:.3f})"
                       if with_fused else "")
                    + f"  ref/ours {t['reference'][0]/t['ours'][0]:.2f} ({t['reference'][1]/t['ours'][1]:.2f})",
                    flush=True,
                )
    return rows


def ablation(batch: int, channels: int, size: int, min_reps: int, min_seconds: float) -> None:
    """Where PartialConv2d's extra time goes, bf16 + channels_last forward+backward, side by side:
    plain conv, + the mask update (computed, unused), + the rescale without bias, the passes Eq. 1
    needs and nothing else (the floor with separate PyTorch ops), the whole layer."""
    from pconv.layers import _rows, mask_update

    torch.manual_seed(0)
    fmt = torch.channels_last
    x0 = torch.randn(batch, channels, size, size).contiguous(memory_format=fmt)
    mask = (torch.rand(batch, channels, size, size) > 0.25).float()
    mask[:, :, size // 4: size // 2, size // 4: size // 2] = 0
    mask = mask.contiguous(memory_format=fmt)
    plain = nn.Conv2d(channels, channels, 3, padding=1).to(memory_format=fmt)
    ours = PartialConv2d(channels, channels, 3, padding=1, check_mask=False).to(memory_format=fmt)
    ours.load_state_dict(plain.state_dict())
    grad_out = torch.randn(batch, channels, size, size).contiguous(memory_format=fmt).bfloat16()
    k = (3, 3)

    def with_update(x: Tensor) -> Tensor:
        mask_update(mask, channels, k, (1, 1), (1, 1), (1, 1))
        return plain(x * mask)

    def rescaled_no_bias(x: Tensor) -> Tensor:
        scale, _ = mask_update(mask, channels, k, (1, 1), (1, 1), (1, 1))
        return F.conv2d(x * mask, plain.weight, None, 1, 1).mul_(scale.to(torch.bfloat16))

    scale_bf16 = mask_update(mask, channels, k, (1, 1), (1, 1), (1, 1))[0].to(torch.bfloat16)

    class OnePass(torch.autograd.Function):
        """One multiply by the scale, in forward only or in backward only: the cost of one pass."""

        @staticmethod
        def forward(ctx, t: Tensor, in_forward: bool) -> Tensor:  # type: ignore[override]
            ctx.in_forward = in_forward
            return t * scale_bf16 if in_forward else t.view_as(t)

        @staticmethod
        def backward(ctx, grad: Tensor):  # type: ignore[override]
            return (grad if ctx.in_forward else grad * scale_bf16), None

    def conv_no_bias(x: Tensor) -> Tensor:
        return F.conv2d(x * mask, plain.weight, None, 1, 1)

    new_mask_row = mask_update(mask, channels, k, (1, 1), (1, 1), (1, 1))[1].to(torch.bfloat16).reshape(1, -1)

    class RequiredPasses(torch.autograd.Function):
        """Eq. 1's passes beyond a plain conv when the scale differs at every pixel (as here), each
        one PyTorch op: rescale + bias in place (forward); gradient × scale and the masked bias
        gradient (backward). Nothing else: the eager-PyTorch floor of a partial convolution."""

        @staticmethod
        def forward(ctx, raw: Tensor, bias: Tensor) -> Tensor:  # type: ignore[override]
            ctx.mark_dirty(raw)
            return torch.addcmul(bias.view(1, -1, 1, 1), raw, scale_bf16, out=raw)

        @staticmethod
        def backward(ctx, grad: Tensor):  # type: ignore[override]
            return grad * scale_bf16, (new_mask_row @ _rows(grad)).view(-1)

    def required_passes(x: Tensor) -> Tensor:
        mask.sum(dim=1, keepdim=True, dtype=torch.float32)  # the valid-channel count (window sums: small)
        return RequiredPasses.apply(conv_no_bias(x), plain.bias.to(torch.bfloat16))

    variants = {"plain conv": lambda x: plain(x * mask), "conv without bias": conv_no_bias,
                "+ one pass in forward": lambda x: OnePass.apply(conv_no_bias(x), True),
                "+ one pass in backward": lambda x: OnePass.apply(conv_no_bias(x), False),
                "+ mask update": with_update, "+ rescale (no bias)": rescaled_no_bias,
                "required passes only": required_passes, "PartialConv2d": lambda x: ours(x, mask)[0]}

    def step(f: Callable) -> Callable[[], None]:
        def run() -> None:
            xg = x0.clone().requires_grad_(True)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = f(xg)
            out.backward(grad_out)
        return run

    t = _times({k: step(f) for k, f in variants.items()}, min_reps, min_seconds, warmup=2)
    base = t["plain conv"]
    print("ablation, bf16 channels_last fwd+bwd, median ms (×plain by min/median): "
          + "  ".join(f"{k} {v[1]*1e3:.1f} ({v[0]/base[0]:.3f}/{v[1]/base[1]:.3f})" for k, v in t.items()),
          flush=True)


def bench_unet(sizes: List[int], min_reps: int, min_seconds: float) -> None:
    for name in ("cpu", "cpu-head", "cpu-fill", "cpu-fill-bh", "paper"):
        torch.manual_seed(0)
        model = PConvUNet(CONFIGS[name]).eval()
        model_cl = PConvUNet(CONFIGS[name]).eval().to(memory_format=torch.channels_last)
        model_cl.load_state_dict(model.state_dict())
        for size in sizes:
            image = torch.rand(1, 3, size, size)
            mask = (torch.rand(1, 1, size, size) > 0.2).float()

            def fp32() -> None:
                with torch.no_grad():
                    model(image, mask)

            img_cl = image.contiguous(memory_format=torch.channels_last)
            mask_cl = mask.contiguous(memory_format=torch.channels_last)

            def bf16_cl() -> None:
                with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                    model_cl(img_cl, mask_cl)

            t = _times({"fp32": fp32, "bf16_cl": bf16_cl}, min_reps, min_seconds, warmup=1)
            print(
                f"U-Net {name:8s} {size:4d}² batch 1 fwd, min/median ms: fp32 NCHW {t['fp32'][0]*1e3:7.1f}/"
                f"{t['fp32'][1]*1e3:7.1f}   bf16+channels_last {t['bf16_cl'][0]*1e3:7.1f}/{t['bf16_cl'][1]*1e3:7.1f}"
                f"   speed-up {t['fp32'][0]/t['bf16_cl'][0]:.2f}×",
                flush=True,
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one repetition: a smoke run, not figures")
    ap.add_argument("--skip-unet", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda for the layer rows on a GPU (the U-Net rows are CPU-only)")
    ap.add_argument("--fused", action="store_true",
                    help="also time PartialConv2d with pconv.fused's opt-in CPU kernels (compiled on first use)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads (0: torch's default). On a shared 2-core machine, 1 thread avoids "
                    "OpenMP barrier waits on a core another process holds, which inflate every op")
    ap.add_argument("--default-malloc", action="store_true",
                    help="leave glibc's allocator policy alone (default: pconv.device.keep_freed_memory(), "
                    "as `pconv train` and the CLI run)")
    args = ap.parse_args()
    if not args.default_malloc:
        from pconv.device import keep_freed_memory

        print(f"keep_freed_memory(): {keep_freed_memory()}")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, {platform.processor() or platform.machine()}")
    if args.quick:
        bench_layers(batch=2, channels=16, size=32, min_reps=1, min_seconds=0.0, with_fused=args.fused,
                     device=args.device)
        if args.device == "cpu":  # the ablation and the U-Net rows are CPU measurements
            ablation(batch=2, channels=16, size=32, min_reps=1, min_seconds=0.0)
            if not args.skip_unet:
                bench_unet([256], min_reps=1, min_seconds=0.0)
        return
    print("PartialConv2d: multi-channel mask, 3×3, 128→128 channels, 128×128, batch 6 (median ms)")
    bench_layers(batch=6, channels=128, size=128, min_reps=7, min_seconds=3.0, with_fused=args.fused,
                 device=args.device)
    if args.device == "cpu":
        ablation(batch=6, channels=128, size=128, min_reps=7, min_seconds=3.0)
        if not args.skip_unet:
            bench_unet([256, 512], min_reps=3, min_seconds=2.0)


if __name__ == "__main__":
    main()

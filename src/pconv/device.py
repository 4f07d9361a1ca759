"""Device and precision choice, decided once for training and inference."""
from __future__ import annotations

import functools

import torch

from pconv.errors import PConvError

__all__ = ["resolve_device", "cpu_supports_bf16", "resolve_precision", "autocast_dtype", "keep_freed_memory"]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> cuda, then mps, then cpu; an explicit device that is absent is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PConvError(f"device {name!r} asked for, but this torch build sees no CUDA GPU; use --device cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise PConvError("device 'mps' asked for, but Apple's Metal backend is not available; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise PConvError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 dot products (AVX-512 BF16 or AMX), where bf16 autocast pays."""
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset:
    """CPU feature flags from /proc/cpuinfo (Linux); empty elsewhere, which means "no bf16"."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> bf16 on CPUs with native bf16 and on CUDA with bf16 support, else fp32."""
    if precision not in ("auto", "bf16", "fp16", "fp32"):
        raise PConvError(f"precision must be auto, bf16, fp16 or fp32, got {precision!r}")
    if precision != "auto":
        if precision == "fp16" and device.type == "cpu":
            raise PConvError("fp16 autocast is for GPUs; on a CPU use bf16 or fp32")
        return precision
    if device.type == "cpu":
        return "bf16" if cpu_supports_bf16() else "fp32"
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def autocast_dtype(precision: str):
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


@functools.lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of handing it back to the OS after each op.

    A training step allocates and frees hundreds of multi-megabyte tensors; by default glibc
    serves them with fresh mmaps or trims its heap, so every new tensor page-faults its memory
    in again. Keeping it (mmap threshold at glibc's 32 MiB maximum, no trimming) made the cpu
    model's bf16 full-loss training step 4-24 % shorter (benchmarks/bench_train.py, BENCHMARKS.md). The cost: the
    process keeps its peak heap until it exits. The CLI turns this on; library users may call it.
    Returns False where it does not apply (not glibc), True once set.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
    ok &= mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    ok &= mallopt(_M_TOP_PAD, 256 * 1024 * 1024)
    return bool(ok)

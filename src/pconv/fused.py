"""Opt-in fused CPU kernels for the partial convolution's memory-bound passes.

With separate PyTorch operations, a partial convolution reads or writes full-size tensors a few times
more than a plain convolution: the valid-channel count of a per-channel mask is a second read of the
mask; under bf16 autocast the masked input is written in float32, then read again to cast it; in the
backward pass the gradient is read once to scale it and once more for the bias gradient. On a CPU,
where the bf16 convolution itself is fast, those passes cost 12–19 % of a layer step (BENCHMARKS.md,
bench_layers). Three small C++ kernels (``csrc/fused_cpu.cpp``) do each group in one pass:

- masking + valid-channel count + cast to the convolution's dtype (forward),
- the masked input's gradient: cast to float32 and masking (backward),
- gradient × scale + the masked bias gradient (backward).

They apply to float32 inputs with float32 per-channel masks, channels_last or contiguous NCHW, as an
optimisation only: the results equal the PyTorch path's (the bias gradient to float rounding: it sums
in another order).

Opt-in, because they are compiled on first use with the machine's C++ compiler and ninja
(``torch.utils.cpp_extension``; tens of seconds once, then loaded from torch's extension cache), for
x86-64 CPUs with AVX-512 BF16 (e.g. AMD Zen 4 and later, Intel Sapphire Rapids and later). The
default is pure PyTorch everywhere.
"""
from __future__ import annotations

import hashlib
import platform
import shutil
from pathlib import Path
from types import ModuleType
from typing import List, Optional

from pconv.errors import PConvError

__all__ = ["use_fused_cpu_kernels", "fused_cpu_kernels_unavailable"]

_SOURCE = Path(__file__).with_name("csrc") / "fused_cpu.cpp"
_CPU_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx512_bf16")

_module: Optional[ModuleType] = None  # the compiled kernels, once loaded
_enabled = False


def _cpu_flags() -> List[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        return next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("flags")), [])
    except OSError:
        return []


def fused_cpu_kernels_unavailable() -> Optional[str]:
    """Why the fused kernels cannot run here (CPU, compiler or ninja missing), or None when they can."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"they need Linux on x86-64, this is {platform.system()} on {platform.machine()}"
    flags = _cpu_flags()
    missing = [f for f in _CPU_FLAGS if f not in flags]
    if missing:
        return f"this CPU lacks {', '.join(missing)} (they need AVX-512 with BF16)"
    if not (shutil.which("c++") or shutil.which("g++")):
        return "no C++ compiler found (install g++)"
    from torch.utils.cpp_extension import is_ninja_available

    if not is_ninja_available():
        return "ninja is not installed (pip install ninja)"
    return None


def _load() -> ModuleType:
    global _module
    if _module is None:
        reason = fused_cpu_kernels_unavailable()
        if reason:
            raise PConvError(f"pconv's fused CPU kernels cannot run here: {reason}; "
                             "the default PyTorch kernels work everywhere")
        from torch.utils.cpp_extension import load

        flags = ["-O3", "-march=native", "-fopenmp"]  # OpenMP: at::parallel_for is inlined here
        # -march=native code runs only on CPUs like this one: one build per CPU feature set, so a home
        # directory shared by different machines never loads another CPU's build.
        cpu = hashlib.sha1(" ".join(sorted(_cpu_flags())).encode()).hexdigest()[:10]
        try:
            _module = load(f"pconv_fused_cpu_{cpu}", [str(_SOURCE)], extra_cflags=flags, extra_ldflags=["-fopenmp"])
        except (RuntimeError, OSError, ImportError) as err:
            last_line = (str(err).strip().splitlines() or [type(err).__name__])[-1]
            raise PConvError(f"could not compile pconv's fused CPU kernels ({last_line}); "
                             "the default PyTorch kernels work everywhere") from None
    return _module


def use_fused_cpu_kernels(enabled: bool = True) -> bool:
    """Turn the fused CPU kernels on (compiling them the first time) or off; returns the previous setting.

    Raises PConvError, naming the reason, where they cannot run; the layer then stays on PyTorch's kernels.
    """
    global _enabled
    previous = _enabled
    if enabled:
        _load()
    _enabled = enabled
    return previous


def active() -> Optional[ModuleType]:
    """The loaded kernels when they are switched on, else None (for pconv.layers)."""
    return _module if _enabled else None

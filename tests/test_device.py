"""Device helpers: glibc's freed-memory policy (observable through mallinfo2)."""
from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = r"""
import ctypes, sys
import torch
from pconv.device import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "keep":
    assert keep_freed_memory() is True
if sys.argv[1] == "twice":  # the cached call, then the setting itself applied again: no change
    assert keep_freed_memory() is True and keep_freed_memory() is True
    assert keep_freed_memory.cache_info().hits == 1
    assert keep_freed_memory.__wrapped__() is True
before = libc.mallinfo2().hblkhd
t = torch.empty(16 * 1024 * 1024, dtype=torch.uint8)
print(libc.mallinfo2().hblkhd - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_keep_freed_memory_serves_large_tensors_from_the_heap():
    def mmapped_bytes(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
        return int(out.stdout.strip().splitlines()[-1])

    assert mmapped_bytes("default") >= 16 * 1024 * 1024  # glibc's default: a fresh mmap (page faults on use)
    assert mmapped_bytes("keep") == 0  # kept policy: from the heap, reused after free


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_keep_freed_memory_is_idempotent():
    """Calling it again (cached, or applying the setting anew) succeeds and keeps the policy."""
    out = subprocess.run([sys.executable, "-c", PROBE, "twice"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip().splitlines()[-1]) == 0  # large tensors still come from the heap

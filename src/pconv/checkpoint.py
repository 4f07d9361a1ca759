"""Training checkpoints that describe themselves and are written atomically.

A checkpoint holds ``model``, ``optimizer``, ``step``, ``rng`` (torch CPU RNG state), ``config``
(the TrainConfig as a dict) and ``best_psnr``. Files are ``ckpt-<step>.pt`` plus ``best.pt``;
only plain containers and tensors go in, so ``torch.load(weights_only=True)`` reads them back.
"""
from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from pconv.errors import PConvError
from pconv.weights import atomic_write_bytes

__all__ = ["save_checkpoint", "load_checkpoint", "list_checkpoints", "latest_checkpoint", "prune_checkpoints"]

_CKPT = re.compile(r"ckpt-(\d+)\.pt$")


def save_checkpoint(state: Dict[str, Any], path: Path) -> Path:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_checkpoint(path: Path) -> Dict[str, Any]:
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PConvError(f"cannot read checkpoint {path} ({exc}); delete it to resume from an older one") from None


def list_checkpoints(run_dir: Path) -> List[Path]:
    """Step checkpoints of a run folder, oldest first."""
    found = [(int(m.group(1)), p) for p in Path(run_dir).glob("ckpt-*.pt") if (m := _CKPT.search(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Optional[Path]:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def prune_checkpoints(run_dir: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` step checkpoints (``best.pt`` is never touched)."""
    for p in list_checkpoints(run_dir)[:-keep_last or None]:
        p.unlink(missing_ok=True)

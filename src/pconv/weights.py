"""Model weights on disk: safetensors files that describe themselves.

A weights file holds the model's state_dict and, in the safetensors metadata, the architecture
(``pconv.config``, JSON of :class:`PConvUNetConfig` fields) plus free-form facts (``pconv.*``), so
a file alone rebuilds its model. Writes are atomic (temp file + rename). Legacy PyTorch files
load only through ``torch.load(..., weights_only=True)``; nothing is ever unpickled.
"""
from __future__ import annotations

import json
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch

from pconv.errors import PConvError
from pconv.model import CONFIGS, PConvUNet, PConvUNetConfig

__all__ = ["save_weights", "load_weights", "load_model", "default_weights_path", "atomic_write_bytes"]

PathLike = Union[str, os.PathLike]


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_weights(
    model: PConvUNet,
    path: PathLike,
    metadata: Optional[Mapping[str, str]] = None,
    dtype: Optional[torch.dtype] = None,
) -> Path:
    """Save ``model`` (state_dict + config) as safetensors; ``dtype=torch.float16`` halves the file.

    BN running statistics and counters are kept in their own dtype apart from floats, which
    follow ``dtype``.
    """
    from safetensors.torch import save

    path = Path(path)
    if not path.parent.is_dir():
        raise PConvError(f"cannot write {path}: folder {path.parent} does not exist")
    tensors: Dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        tensors[key] = value.contiguous()
    meta = {"format": "pt", "pconv.config": json.dumps(model.config.to_dict())}
    meta.update({f"pconv.{k}" if not k.startswith("pconv.") else k: str(v) for k, v in (metadata or {}).items()})
    atomic_write_bytes(path, save(tensors, metadata=meta))
    return path


def load_weights(path: PathLike) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """Read a weights file: ``(state_dict, metadata)``. Safetensors, or a legacy .pt/.pth state_dict."""
    path = Path(path)
    if not path.is_file():
        raise PConvError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
                state = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:  # safetensors raises its own error types
            raise PConvError(
                f"weights file {path} is not a readable safetensors file: {_safetensors_reason(path, exc)}. "
                f"Give a .safetensors file that pconv wrote ({_EXPORTED}), or leave --weights out for the shipped model"
            ) from None
        return state, meta
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PConvError(
            f"weights file {path} could not be loaded with torch.load(weights_only=True): {_torch_reason(path, exc)}. "
            "pconv never unpickles arbitrary objects: give a .safetensors file "
            f"({_EXPORTED}), or convert this one with safetensors.torch.save_file where you trust it"
        ) from None
    meta: Dict[str, str] = {}
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):  # a pconv training checkpoint
        model_config = obj.get("config", {}).get("model") if isinstance(obj.get("config"), dict) else None
        if isinstance(model_config, dict):
            meta["pconv.config"] = json.dumps(model_config)
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PConvError(f"{path} does not hold a state_dict of tensors")
    return dict(obj), meta


_EXPORTED = "pconv train writes RUN/last.safetensors and RUN/best.safetensors"


def _first_bytes(path: Path, n: int = 8) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def _safetensors_reason(path: Path, exc: Exception) -> str:
    """Why a .safetensors file did not open, in words (safetensors says e.g. 'header too large')."""
    head = _first_bytes(path)
    size = path.stat().st_size
    if size < 8:
        return f"it has {size} byte(s), too few for a safetensors header"
    if head[:2] == b"PK" or head[:1] == b"\x80":
        return "it is a PyTorch (torch.save) file named .safetensors; rename it to .pt to load it as one"
    why = str(exc).replace("Error while deserializing header: ", "").strip() or type(exc).__name__
    return f"its header is damaged or it is another kind of file ({why})"


def _torch_reason(path: Path, exc: Exception) -> str:
    """Why torch.load refused a file, in one line (torch's own message is a paragraph)."""
    head = _first_bytes(path)
    if head[:2] != b"PK" and head[:1] != b"\x80":
        return "it is not a PyTorch file (neither torch.save's zip archive nor a pickle)"
    text = str(exc)
    detail = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0] if "WeightsUnpickler error:" in text \
        else text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"it holds something besides tensors, or is damaged ({detail.split('. ')[0][:160]})"


def _config_from_meta(meta: Mapping[str, str], state: Mapping[str, torch.Tensor]) -> PConvUNetConfig:
    if "pconv.config" in meta:
        try:
            data = json.loads(meta["pconv.config"])
        except json.JSONDecodeError as exc:
            raise PConvError(f"the weights' pconv.config metadata is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise PConvError("the weights' pconv.config metadata must be a JSON object of configuration fields")
        try:
            return PConvUNetConfig.from_dict(data)
        except (TypeError, ValueError) as exc:  # PConvError passes through unchanged (it is a ValueError)
            if isinstance(exc, PConvError):
                raise
            raise PConvError(f"the weights' pconv.config metadata is not a valid configuration ({exc})") from None
    for config in CONFIGS.values():  # a bare state_dict: find the named configuration it fits
        if set(PConvUNet(config).state_dict()) == set(state) and all(
            PConvUNet(config).state_dict()[k].shape == v.shape for k, v in state.items()
        ):
            return config
    raise PConvError("the weights carry no pconv.config metadata and match no named configuration")


def load_model(path: Optional[PathLike] = None, device: Union[str, torch.device] = "cpu",
               overrides: Optional[Mapping[str, object]] = None) -> PConvUNet:
    """Build the model a weights file describes, in eval mode, as float32. ``None``: the shipped default.

    ``overrides``: configuration fields to change from the stored ones, for the parameter-free options
    (e.g. ``{"thin_hole_fill": 5}``); a field that changes the tensors makes the file not fit."""
    path = default_weights_path() if path is None else Path(path)
    state, meta = load_weights(path)
    config = _config_from_meta(meta, state)
    if overrides:
        config = PConvUNetConfig.from_dict({**config.to_dict(), **overrides})
    model = PConvUNet(config)
    state = {k: v.to(model.state_dict()[k].dtype) if k in model.state_dict() else v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise PConvError(f"{path} does not fit its declared configuration: {exc}") from None
    model.weights_metadata = dict(meta)  # type: ignore[attr-defined]
    return model.to(device).eval()


def load_matching(model: PConvUNet, path: PathLike) -> Tuple[List[str], List[str]]:
    """Copy into ``model`` every tensor of the weights file whose name and shape fit; the rest of
    ``model`` keeps its initialisation. For growing an architecture from trained weights (e.g. adding
    the hole-aware head to a trained ``cpu`` model). Returns ``(copied, not_copied)`` names of ``model``."""
    state, _ = load_weights(path)
    own = model.state_dict()
    fits = {k: v.to(own[k].dtype) for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not fits:
        raise PConvError(f"no tensor of {path} fits this model's architecture: nothing to start from")
    model.load_state_dict(fits, strict=False)
    return sorted(fits), sorted(set(own) - set(fits))


def default_weights_path() -> Path:
    """The default model shipped inside the package (``pconv/assets/default.safetensors``)."""
    path = Path(str(resources.files("pconv") / "assets" / "default.safetensors"))
    if not path.is_file():
        raise PConvError(
            f"the default model {path} is missing from this installation; pass a weights file "
            "(--weights PATH) or reinstall pconv"
        )
    return path

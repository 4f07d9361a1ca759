"""Export a PConv U-Net to ONNX or TorchScript, verified against PyTorch.

The exported graph is the bare network: inputs ``image`` (B, 3, H, W) float in [0, 1] and ``mask``
(B, 1, H, W) float, **1 = valid, 0 = hole**; output ``output`` (B, 3, H, W), the raw network output.
H and W must be multiples of 2**depth (the model's ``multiple``): pad with the padding marked as
hole, crop back, and composite (known pixels from the input), as :class:`pconv.Inpainter` does.
``dynamic=True`` lets batch, H and W vary; otherwise the graph is fixed to ``size``×``size``.

Every export is checked: the exported model and PyTorch run on the same random inputs (with
holes), at the export size and, when dynamic, at a second size and batch, and the largest
absolute difference is reported. ONNX needs the optional packages ``onnx`` and ``onnxruntime``.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from pconv.errors import PConvError
from pconv.model import PConvUNet

__all__ = ["export_model", "ExportReport", "FORMATS"]

FORMATS = ("onnx", "torchscript")
PathLike = Union[str, os.PathLike]


@dataclass
class ExportReport:
    """What was written and how closely it reproduces PyTorch."""

    path: Path
    format: str
    size: int
    dynamic: bool
    max_abs_diff: float  #: largest |exported - PyTorch| over the checks, output in [0, 1] units
    checked_shapes: List[Tuple[int, int, int, int]]


class _Bare(nn.Module):
    """The network without its Python-side input checks (data-dependent branches do not trace)."""

    def __init__(self, model: PConvUNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        return self.model(image, mask)


@contextlib.contextmanager
def _traceable(model: PConvUNet) -> Iterator[None]:
    """Make ``model`` traceable for the duration: no input checks, plain (non-custom-autograd) ops."""
    from pconv import layers

    model.check_input = lambda image, mask: None  # type: ignore[method-assign]
    patched = getattr(layers, "_ScaleAddMaskedBias", None)
    if patched is not None:  # a custom autograd Function (fast training path) cannot be traced

        class _Plain:
            @staticmethod
            def apply(raw: Tensor, scale: Tensor, new_mask: Tensor, bias: Tensor) -> Tensor:
                return torch.addcmul(bias.view(1, -1, 1, 1) * new_mask, raw, scale)

        layers._ScaleAddMaskedBias = _Plain  # type: ignore[attr-defined,assignment]
    try:
        yield
    finally:
        del model.check_input
        if patched is not None:
            layers._ScaleAddMaskedBias = patched  # type: ignore[attr-defined]


def _example(batch: int, h: int, w: int, seed: int) -> Tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, h, w, generator=g)
    mask = torch.ones(batch, 1, h, w)
    for b in range(batch):  # a few rectangular holes per image
        for _ in range(3):
            hh, ww = max(1, h // 4), max(1, w // 4)
            y = int(torch.randint(0, h - hh + 1, (1,), generator=g))
            x = int(torch.randint(0, w - ww + 1, (1,), generator=g))
            mask[b, :, y:y + hh, x:x + ww] = 0
    return image, mask


def export_model(
    model: PConvUNet,
    path: PathLike,
    format: str = "onnx",
    size: Optional[int] = None,
    dynamic: bool = False,
    opset: int = 17,
    overwrite: bool = False,
) -> ExportReport:
    """Export ``model`` to ``path`` (written atomically) and verify it; see the module docstring."""
    from pconv.weights import atomic_write_bytes

    if format not in FORMATS:
        raise PConvError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    path = Path(path)
    if path.exists() and not overwrite:
        raise PConvError(f"{path} already exists; pass --overwrite to replace it")
    if not path.parent.is_dir():
        raise PConvError(f"cannot write {path}: folder {path.parent} does not exist")
    multiple = model.config.multiple
    size = int(size or model.config.image_size)
    if size < multiple or size % multiple:
        raise PConvError(f"--size must be a positive multiple of {multiple} (2**depth) for this model, got {size}")
    if format == "onnx":
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError:
            raise PConvError("ONNX export needs the optional packages onnx and onnxruntime: "
                             "pip install 'pconv[export]' (or pip install onnx onnxruntime)") from None
    model = model.cpu().float().eval()
    example = _example(1, size, size, seed=0)
    checks = [(1, size, size)]
    if dynamic:
        checks.append((2, size + multiple, max(multiple, size - multiple)))  # other batch, H and W

    with tempfile.TemporaryDirectory() as tmp:
        tmp_file = Path(tmp) / f"model.{format}"
        with _traceable(model), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer/deprecation chatter; the numerical check below decides
            bare = _Bare(model).eval()
            if format == "torchscript":
                traced = torch.jit.trace(bare, example, check_trace=False)
                traced.save(str(tmp_file))
            else:
                axes = {0: "batch", 2: "height", 3: "width"} if dynamic else None
                torch.onnx.export(
                    bare, example, str(tmp_file), input_names=["image", "mask"], output_names=["output"],
                    opset_version=opset, dynamo=False, do_constant_folding=True,
                    dynamic_axes={"image": axes, "mask": axes, "output": axes} if axes else None,
                )
        run = _loader(format, tmp_file)
        worst = 0.0
        shapes = []
        for i, (b, h, w) in enumerate(checks):
            image, mask = _example(b, h, w, seed=i + 1)
            with torch.no_grad():
                ref = model(image, mask)
            out = run(image, mask)
            if out.shape != ref.shape:
                raise PConvError(f"exported model returned shape {tuple(out.shape)}, expected {tuple(ref.shape)}")
            worst = max(worst, float((out - ref).abs().max()))
            shapes.append((b, 3, h, w))
        atomic_write_bytes(path, tmp_file.read_bytes())
    return ExportReport(path, format, size, dynamic, worst, shapes)


def _loader(format: str, path: Path):
    """A callable (image, mask) -> output tensor running the exported file."""
    if format == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(str(path), map_location="cpu")

        def run_ts(image: Tensor, mask: Tensor) -> Tensor:
            with torch.no_grad():
                return module(image, mask)

        return run_ts
    import onnxruntime as ort

    ort_session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run_onnx(image: Tensor, mask: Tensor) -> Tensor:
        out = ort_session.run(["output"], {"image": image.numpy(), "mask": mask.numpy()})[0]
        return torch.from_numpy(out)

    return run_onnx

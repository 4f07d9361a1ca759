"""pconv.export / `pconv export`: exported graphs reproduce PyTorch, at fixed and dynamic sizes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pconv.cli import main
from pconv.errors import PConvError
from pconv.export import export_model
from pconv.model import PConvUNet, PConvUNetConfig
from pconv.weights import save_weights

TINY = PConvUNetConfig(channels=(8, 16, 16), kernels=(7, 5, 3), image_size=32)


@pytest.fixture(scope="module")
def model() -> PConvUNet:
    torch.manual_seed(0)
    return PConvUNet(TINY).eval()


def _inputs(b: int, h: int, w: int):
    g = torch.Generator().manual_seed(5)
    image = torch.rand(b, 3, h, w, generator=g)
    mask = (torch.rand(b, 1, h, w, generator=g) > 0.3).float()
    return image, mask


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_dynamic_round_trip(model: PConvUNet, tmp_path: Path) -> None:
    report = export_model(model, tmp_path / "m.pt", format="torchscript", dynamic=True)
    assert report.max_abs_diff < 1e-5 and len(report.checked_shapes) == 2
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    image, mask = _inputs(3, 40, 24)
    with torch.no_grad():
        assert torch.allclose(loaded(image, mask), model(image, mask), atol=1e-5)


@pytest.mark.parametrize("dynamic", [False, True])
def test_onnx_matches_pytorch(model: PConvUNet, tmp_path: Path, dynamic: bool) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    report = export_model(model, tmp_path / "m.onnx", format="onnx", dynamic=dynamic)
    assert report.max_abs_diff < 1e-5
    ort_session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    shape = (2, 48, 16) if dynamic else (1, 32, 32)
    image, mask = _inputs(*shape)
    out = ort_session.run(["output"], {"image": image.numpy(), "mask": mask.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(out, model(image, mask).numpy(), atol=1e-5)


def test_export_leaves_model_usable(model: PConvUNet, tmp_path: Path) -> None:
    export_model(model, tmp_path / "m.pt", format="torchscript")
    with pytest.raises(PConvError, match="multiples of 8"):  # input checks are back
        model(torch.rand(1, 3, 12, 12), torch.ones(1, 1, 12, 12))


def test_export_errors(model: PConvUNet, tmp_path: Path) -> None:
    with pytest.raises(PConvError, match="multiple of 8"):
        export_model(model, tmp_path / "m.pt", format="torchscript", size=20)
    with pytest.raises(PConvError, match="unknown export format 'tflite'"):
        export_model(model, tmp_path / "m.x", format="tflite")
    (tmp_path / "m.pt").write_bytes(b"x")
    with pytest.raises(PConvError, match="already exists"):
        export_model(model, tmp_path / "m.pt", format="torchscript")
    with pytest.raises(PConvError, match="does not exist"):
        export_model(model, tmp_path / "no" / "m.pt", format="torchscript")


def test_cli_prints_max_abs_diff(model: PConvUNet, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    w = save_weights(model, tmp_path / "w.safetensors")
    out = tmp_path / "m.pt"
    assert main(["export", "--format", "torchscript", "--weights", str(w), "-o", str(out), "--size", "16"]) == 0
    text = capsys.readouterr().out
    assert "max abs diff vs PyTorch: 0" in text and out.is_file()
    assert main(["export", "--format", "torchscript", "--weights", str(w), "-o", str(out), "--size", "12", "--overwrite"]) == 2
    assert "multiple of 8" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_round_trip_with_head_and_biharmonic_fill(tmp_path: Path, fmt: str) -> None:
    """The shipped kind of network (head + residual over the pull-push fill with biharmonic steps)
    exports too: the fill's dense path is what the graph holds, and it matches eager mode."""
    from dataclasses import replace

    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnx")
    torch.manual_seed(1)
    config = replace(TINY, head_channels=4, fill_residual=True, fill_biharmonic=True, thin_hole_fill=3)
    net = PConvUNet(config).eval()
    with torch.no_grad():  # a non-zero residual branch, so the network's part is checked as well
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    report = export_model(net, tmp_path / "m.bin", format=fmt, dynamic=True)
    assert report.max_abs_diff < 1e-4 and len(report.checked_shapes) == 2
    if fmt == "torchscript":
        image, _ = _inputs(1, 40, 24)
        mask = torch.ones(1, 1, 40, 24)
        mask[..., 10:14, 5:9] = 0  # a small hole: eager mode takes the free-pixel path, the graph the dense one
        with torch.no_grad():
            torch.testing.assert_close(torch.jit.load(str(tmp_path / "m.bin"))(image, mask), net(image, mask),
                                       atol=1e-4, rtol=0)

"""--compile reaches torch.compile, and the compiled module is what runs (training, Inpainter, CLI).

A real compilation takes minutes on a CPU (BENCHMARKS.md), so torch.compile is replaced by a
recorder that returns a wrapper counting its calls: the tests check the wiring (what is compiled,
that the wrapper runs every step or window, that results are unchanged), not the compiler.
"""
from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
from PIL import Image

from pconv.cli import main
from pconv.config import TrainConfig
from pconv.errors import PConvError
from pconv.inference import Inpainter
from pconv.model import PConvUNet, PConvUNetConfig
from pconv.weights import save_weights

TINY = PConvUNetConfig(channels=(8, 16), kernels=(5, 3), image_size=32)


class Recorder:
    """Stands in for torch.compile: remembers what it was given; the wrapper counts its calls."""

    def __init__(self) -> None:
        self.compiled: List[torch.nn.Module] = []
        self.calls = 0

    def __call__(self, module: torch.nn.Module, **options):
        self.compiled.append(module)

        def wrapper(*args, **kwargs):
            self.calls += 1
            return module(*args, **kwargs)
        return wrapper


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(torch, "compile", rec)
    return rec


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_weights(PConvUNet(TINY), tmp_path_factory.mktemp("w") / "tiny.safetensors")


def _photo(h: int = 40, w: int = 56):
    rgb = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    hole = np.zeros((h, w), bool)
    hole[10:20, 8:30] = True
    return rgb, hole


def test_training_compiles_the_unet(tmp_path: Path, recorder: Recorder) -> None:
    from pconv.train import train

    folder = tmp_path / "photos"
    folder.mkdir()
    g = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(g.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    base = dict(data=str(folder), model=TINY.to_dict(), image_size=32, batch_size=2, val_count=2, steps=3,
                workers=0, threads=1, w_perceptual=0.0, w_style=0.0, val_every=100, ckpt_every=100,
                tensorboard=False, precision="fp32", seed=1)
    train(TrainConfig(**base, out=str(tmp_path / "plain")), progress=False)
    assert recorder.compiled == []  # off by default
    train(TrainConfig(**base, out=str(tmp_path / "compiled"), compile=True), progress=False)
    assert len(recorder.compiled) == 1 and isinstance(recorder.compiled[0], PConvUNet)
    assert recorder.calls == 3  # every training step went through the compiled module
    from pconv.weights import load_weights

    a, b = load_weights(tmp_path / "plain" / "last.safetensors")[0], load_weights(tmp_path / "compiled" / "last.safetensors")[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # same run, same weights
    assert TrainConfig(compile=True).replace(steps=5).compile  # a config field, saved with the run


def test_inpainter_compile(weights: Path, recorder: Recorder) -> None:
    rgb, hole = _photo()
    plain = Inpainter(weights, precision="fp32").inpaint(rgb, hole)
    assert recorder.compiled == []
    inp = Inpainter(weights, precision="fp32", compile=True, flip_average=False)
    assert recorder.compiled == [inp.model]
    out = inp.inpaint(rgb, hole)
    assert recorder.calls == out.windows >= 1
    np.testing.assert_array_equal(out.image, plain.image)
    with pytest.raises(PConvError, match="compile applies to the pconv network"):
        Inpainter(method="telea", compile=True)


def test_cli_inpaint_compile_flag(tmp_path: Path, weights: Path, recorder: Recorder) -> None:
    rgb, hole = _photo()
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    argv = ["inpaint", str(tmp_path / "photo.png"), str(tmp_path / "mask.png"), "--weights", str(weights),
            "--device", "cpu"]
    assert main(argv + ["-o", str(tmp_path / "a.png")]) == 0
    assert recorder.compiled == []
    assert main(argv + ["-o", str(tmp_path / "b.png"), "--compile"]) == 0
    assert len(recorder.compiled) == 1 and recorder.calls >= 1
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png")))


def test_train_cli_has_the_flags(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--compile" in out and "--cache-photos" in out


def test_the_compiled_code_paths_compute_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside torch.compile the layers and the fill take plain-op paths (no data-dependent
    branches): forward and gradients equal the eager paths'. (Checked in eager mode, with
    torch.compiler.is_compiling() answering True.)"""
    config = PConvUNetConfig(channels=(8, 16), kernels=(5, 3), image_size=32, head_channels=4,
                             fill_residual=True, fill_biharmonic=True, thin_hole_fill=3)
    torch.manual_seed(0)
    model = PConvUNet(config).train()
    torch.nn.init.normal_(model.head.conv.weight, std=0.1)  # fill_residual starts it at zero
    g = torch.Generator().manual_seed(1)
    image = torch.rand(2, 3, 32, 32, generator=g)
    mask = (torch.rand(2, 1, 32, 32, generator=g) > 0.3).float()
    mask[:, :, 8:20, 10:24] = 0

    def run():
        model.zero_grad(set_to_none=True)
        out = model(image, mask)
        out.square().mean().backward()
        return out.detach(), [p.grad.clone() for p in model.parameters()]

    eager_out, eager_grads = run()
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    out, grads = run()
    torch.testing.assert_close(out, eager_out, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, eager_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)

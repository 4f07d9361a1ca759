"""pconv classify: the idx reader, the training loop's exact resume, its files and its commands."""
from __future__ import annotations

import gzip
import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pconv.classify import ClassifyConfig, learning_rate, train_classifier
from pconv.classify_data import pad_to, shift
from pconv.cli import main
from pconv.errors import PConvError
from pconv.idx import load_fashion_mnist, read_idx, write_idx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY = ["--arch", "pd_vgg_small", "--width", "4", "--batch-size", "4", "--no-progress", "--threads", "1"]


# ---------------------------------------------------------------- idx

def test_read_idx_of_hand_written_bytes(tmp_path):
    # The format, written here byte by byte: 0 0 0x08 (uint8) 3 (dims), sizes big-endian, data.
    data = bytes(range(24))
    (tmp_path / "a-idx3-ubyte").write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">III", 2, 3, 4) + data)
    arr = read_idx(tmp_path / "a-idx3-ubyte")
    assert arr.dtype == np.uint8 and arr.shape == (2, 3, 4) and arr[1, 2, 3] == 23 and arr[0, 1, 0] == 4
    ints = struct.pack(">iii", -1, 7, 2**20)
    (tmp_path / "b.gz").write_bytes(gzip.compress(bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 3) + ints))
    assert read_idx(tmp_path / "b.gz").tolist() == [-1, 7, 2**20]


def test_write_idx_round_trip_and_errors(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    for name in ("x-idx3-ubyte", "x-idx3-ubyte.gz"):
        write_idx(tmp_path / name, images)
        assert np.array_equal(read_idx(tmp_path / name), images)
    raw = (tmp_path / "x-idx3-ubyte").read_bytes()
    (tmp_path / "short").write_bytes(raw[:-5])
    with pytest.raises(PConvError, match="truncated"):
        read_idx(tmp_path / "short")
    (tmp_path / "png").write_bytes(b"\x89PNG\r\n\x1a\n" + raw)
    with pytest.raises(PConvError, match="not an idx file"):
        read_idx(tmp_path / "png")
    with pytest.raises(PConvError, match="cannot read"):
        read_idx(tmp_path / "missing")


def fake_fashion_mnist(folder: Path, train: int = 64, test: int = 32) -> Path:
    """Fashion-MNIST's four files with learnable synthetic images: class k is a bar at row 2k+4."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for prefix, n in (("train", train), ("t10k", test)):
        labels = np.arange(n, dtype=np.uint8) % 10
        images = rng.integers(0, 40, (n, 28, 28), dtype=np.uint8)
        for i, k in enumerate(labels):
            images[i, 2 * k + 4: 2 * k + 7, 4:24] = 250
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


def test_load_fashion_mnist_and_the_install_hint(tmp_path):
    folder = fake_fashion_mnist(tmp_path / "fm")
    images, labels = load_fashion_mnist("train", folder)
    assert images.shape == (64, 28, 28) and labels.dtype == np.int64 and labels[13] == 3
    with pytest.raises(PConvError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("test", tmp_path / "nowhere")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(PConvError, match="t10k-labels-idx1-ubyte"):
        load_fashion_mnist("test", folder)


# ---------------------------------------------------------------- training

@pytest.fixture(scope="module")
def folder_data(tmp_path_factory) -> Path:
    """Three classes of 16×16 photos (stripes in three orientations), train/ and val/ splits."""
    root = tmp_path_factory.mktemp("classes")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:16]
    for split, n in (("train", 6), ("val", 3)):
        for k, pattern in enumerate((xx, yy, xx + yy)):
            (root / split / f"c{k}").mkdir(parents=True)
            for i in range(n):
                base = 127 + 100 * np.sin(pattern * 0.9 + i)
                img = np.clip(base[..., None] + rng.normal(0, 10, (16, 16, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(root / split / f"c{k}" / f"{i}.png")
    return root


def weights_of(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "last.safetensors"))


def test_train_writes_log_checkpoint_weights_and_report(folder_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["classify", "train", "--data", str(folder_data), "--image-size", "16", "--epochs", "2",
                 "--out", str(out), *TINY]) == 0
    printed = json.loads(capsys.readouterr().out)
    report = json.loads((out / "report.json").read_text())
    assert printed == report and report["finished"] and report["step"] == 8 and report["train_images"] == 18
    assert 0 <= report["final"]["top1"] <= 100 and report["final"]["images"] == 9
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log if "val_top1" in r] == [0, 1]
    assert sorted(p.name for p in out.glob("ckpt-*")) == ["ckpt-0000004.safetensors", "ckpt-0000008.safetensors"]
    assert json.loads((out / "config.json").read_text())["padding"] == "partial"
    # Evaluate: the report, written and printed; padded and shifted inputs.
    assert main(["classify", "evaluate", "--weights", str(out / "last.safetensors"), "--data", str(folder_data),
                 "--pad-to", "20", "--shift", "2", "--report", str(tmp_path / "eval.json")]) == 0
    ev = json.loads((tmp_path / "eval.json").read_text())
    assert ev["input_size"] == 20 and ev["shift"] == 2 and ev["images"] == 9
    # A second run into the same folder is refused with a message, not a traceback.
    assert main(["classify", "train", "--data", str(folder_data), "--image-size", "16", "--out", str(out), *TINY]) == 2
    assert "--resume" in capsys.readouterr().err


def test_resume_equals_the_uninterrupted_run(folder_data, tmp_path):
    base = dict(data=str(folder_data), image_size=16, arch="pd_resnet_small", depth=8, width=4, batch_size=4,
                lr_step=1, threads=1, keep_last=100)
    full = tmp_path / "full"
    train_classifier(ClassifyConfig(out=str(full), epochs=3, ckpt_every=1, **base), progress=False)
    # Interrupted mid-epoch: only the checkpoint at step 6 (epoch 1, step 2 of 4) survives.
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copy(full / "ckpt-0000006.safetensors", cut)
    report = train_classifier(ClassifyConfig(out=str(cut), epochs=3, **base), resume=True, progress=False)
    assert report["step"] == 12
    # Extended: one epoch first, then --resume with more epochs (the schedule depends on the epoch only).
    short = tmp_path / "short"
    train_classifier(ClassifyConfig(out=str(short), epochs=1, **base), progress=False)
    train_classifier(ClassifyConfig(out=str(short), epochs=3, **base), resume=True, progress=False)
    reference = weights_of(full)
    for run in (cut, short):
        got = weights_of(run)
        assert list(got) == list(reference)
        for key in reference:
            assert torch.equal(got[key], reference[key]), (run.name, key)
    assert json.loads((cut / "report.json").read_text())["final"] == json.loads((full / "report.json").read_text())["final"]


def test_learning_rate_steps_down():
    config = ClassifyConfig(lr=0.1, lr_step=2)
    assert [round(learning_rate(e, config), 6) for e in range(5)] == [0.1, 0.1, 0.01, 0.01, 0.001]


def test_bad_settings_are_messages(folder_data, tmp_path, capsys):
    with pytest.raises(PConvError, match="unknown padding"):
        ClassifyConfig(padding="circular")
    assert main(["classify", "train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r"), *TINY]) == 2
    assert "neither a folder" in capsys.readouterr().err
    assert main(["classify", "train", "--data", str(folder_data), "--arch", "pd_resnet50", "--width", "8",
                 "--out", str(tmp_path / "r2")]) == 2
    assert "--width applies" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["classify", "train", "--padding", "circular"])


def test_pad_and_shift():
    x = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4) + 1
    padded = pad_to(x, 8)
    assert padded.shape == (1, 1, 8, 8) and torch.equal(padded[..., 2:6, 2:6], x) and padded.sum() == x.sum()
    moved = shift(x, 1)
    assert torch.equal(moved[..., 1:, 1:], x[..., :3, :3]) and moved[..., 0, :].sum() == 0
    assert torch.equal(shift(shift(x, 1), -1)[..., :3, :3], x[..., :3, :3])


# ---------------------------------------------------------------- the README's commands

SHRINK = {
    "padding_claim.py": ["--seeds", "1", "--subset", "32", "--test-subset", "20", "--epochs", "1", "--width", "4",
                         "--batch-size", "16", "--paddings", "partial,zeros"],
    "train": ["--subset", "32", "--epochs", "1", "--batch-size", "16", "--width", "4", "--no-progress"],
}


def readme_section_commands() -> list:
    text = (ROOT / "README.md").read_text()
    section = text.split("### Partial padding on Fashion-MNIST", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for block in re.findall(r"```sh\n(.*?)```", section, re.S)
            for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_fashion_mnist_commands_run(tmp_path, monkeypatch):
    """Each command of the README's Fashion-MNIST section, on synthetic idx files, shrunk to seconds
    (in this process, torchrun's in two more)."""
    import runpy

    data = fake_fashion_mnist(tmp_path / "fm")
    monkeypatch.setenv("PCONV_FASHION_MNIST", str(data))
    monkeypatch.chdir(tmp_path)
    lines = readme_section_commands()
    assert len(lines) == 4 and any(line.startswith("torchrun") for line in lines)
    threads = torch.get_num_threads()
    for line in lines:
        argv = shlex.split(line.replace("/usr/share/datasets/fashion-mnist", str(data)))
        argv += next((v for k, v in SHRINK.items() if any(a.endswith(k) for a in argv)), [])
        if argv[0] == "torchrun":
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            result = subprocess.run([str(BIN / "torchrun"), *argv[1:]], env=env, capture_output=True, text=True,
                                    timeout=300)
            assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
        elif argv[0] == ".venv/bin/python":
            monkeypatch.setattr(sys, "argv", [str(ROOT / argv[1]), *argv[2:]])
            with pytest.raises(SystemExit) as done:
                runpy.run_path(str(ROOT / argv[1]), run_name="__main__")
            assert done.value.code == 0, line
        else:
            assert argv[0] == "pconv" and main(argv[1:]) == 0, line
    torch.set_num_threads(threads)
    table = (tmp_path / "runs" / "padding-claim" / "table.md").read_text()
    assert table.count("| pd_") == 4
    assert json.loads((tmp_path / "runs" / "fmnist-ddp" / "report.json").read_text())["processes"] == 2
    assert (tmp_path / "runs" / "fmnist-partial" / "last.safetensors").is_file()

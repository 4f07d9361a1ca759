"""The README stays true: every command in its bash blocks runs here, in a folder of small inputs.

Long-running commands get options appended that shrink them (argparse keeps the last value), so
what runs is the README's command line itself, only smaller: a few steps, a tiny network.
Multi-machine commands (``HOST:PORT`` rendezvous) run twice at once on this machine, as two nodes.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ASSETS = ROOT / "src" / "pconv" / "assets"
TINY = '{"channels": [8, 8], "kernels": [5, 3], "image_size": 32}'
SHRINK = {  # subcommand -> options appended to make the README's command quick
    "train": ["--steps", "2", "--image-size", "32", "--model", TINY, "--batch-size", "2", "--val-count", "2",
              "--w-perceptual", "0", "--w-style", "0", "--workers", "0", "--tensorboard", "false", "--no-progress"],
    "evaluate": ["--no-progress", "--methods", "pconv,telea,ns,biharmonic"],
}


def readme_commands(section: str | None = None) -> list[str]:
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = re.split(r"\s{2,}#", line)[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("readme")
    shutil.copy(ASSETS / "example.jpg", d / "photo.jpg")
    shutil.copy(ASSETS / "example_mask.png", d / "mask.png")
    rng = np.random.default_rng(0)
    for folder in ("photos", "masks", "gt-photos"):
        (d / folder).mkdir()
    yy, xx = np.mgrid[0:64, 0:64] / 64
    for i in range(6):
        base = np.stack([np.sin(5 * xx + i), np.cos(4 * yy - i), xx * yy], -1) * 0.5 + 0.5
        arr = np.clip(base * 255 + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(d / "photos" / f"p{i}.png")
        hole = np.zeros((64, 64), np.uint8)
        hole[10 + i:30 + i, 20:40] = 255
        Image.fromarray(hole).save(d / "masks" / f"p{i}.png")
        if i < 2:
            Image.fromarray(np.array(Image.fromarray(arr).resize((256, 256)))).save(d / "gt-photos" / f"g{i}.png")
    _write_video(d / "clip.avi")
    return d


def _write_video(path: Path) -> None:
    import cv2

    rng = np.random.default_rng(1)
    background = rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)
    square = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (128, 128))
    for t in range(6):
        frame = background.copy()
        frame[40:72, 20 + 6 * t:52 + 6 * t] = square
        writer.write(frame)
    writer.release()


def _run(line: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    argv = shlex.split(line)
    sub = next((a for a in argv if a in SHRINK), "")
    argv = argv + SHRINK.get(sub, [])
    exe = BIN / argv[0]
    argv[0] = str(exe) if exe.exists() else argv[0]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_readme_commands_run(workdir):
    commands = readme_commands()
    assert any(c.startswith("pconv train") for c in commands) and any(c.startswith("torchrun") for c in commands)
    ran = 0
    for line in commands:
        if line.startswith("make ") or line.startswith("pconv serve") or "HOST:" in line:
            continue  # make test is CI itself; make demo, serve and multi-machine lines have their own tests below
        result = _run(line, workdir)
        assert result.returncode == 0, f"README command failed: {line}\n{result.stdout}\n{result.stderr}"
        ran += 1
    assert ran >= 10
    # What the commands promised exists.
    assert (workdir / "filled.png").is_file() and (workdir / "telea.png").is_file()
    assert len(list((workdir / "filled").iterdir())) == 6
    assert _same_files(workdir / "filled", workdir / "filled-sharded")  # torchrun: the one-process bytes
    assert (workdir / "pconv.onnx").is_file()
    assert len(list((workdir / "stroke-masks").glob("*.png"))) == 20
    assert len(list((workdir / "noise-masks").glob("*.png"))) == 20
    assert (workdir / "eval-report" / "results.md").is_file()
    for run in ("mine", "ft", "ddp"):
        assert (workdir / "runs" / run / "last.safetensors").is_file(), run
    known = np.array(Image.open(workdir / "mask.png").convert("L")) < 128
    assert np.array_equal(np.array(Image.open(workdir / "filled.png"))[known],
                          np.array(Image.open(workdir / "photo.jpg").convert("RGB"))[known])


def _same_files(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.iterdir())
    return names == sorted(p.name for p in b.iterdir()) and all((a / n).read_bytes() == (b / n).read_bytes()
                                                                  for n in names)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_readme_multi_machine_commands(workdir):
    """Each ``HOST:PORT`` line runs as two nodes on this machine (one process each: two cores here)."""
    lines = [c for c in readme_commands() if "HOST:" in c]
    assert any(" pconv inpaint " in c for c in lines) and any(" pconv train " in c for c in lines)
    reference = _run("pconv inpaint --input photos --mask masks --output filled-one", workdir)
    assert reference.returncode == 0, reference.stderr
    for line in lines:
        line = re.sub(r"HOST:\d+", f"127.0.0.1:{_free_port()}", line).replace("--nproc_per_node auto",
                                                                             "--nproc_per_node 1")
        argv = shlex.split(line)
        argv = argv + SHRINK.get(next((a for a in argv if a in SHRINK), ""), [])
        argv[0] = str(BIN / argv[0])
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        nodes = [subprocess.Popen(argv, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True) for _ in range(2)]
        outs = [node.communicate(timeout=600)[0] for node in nodes]
        assert all(node.returncode == 0 for node in nodes), f"README command failed: {line}\n" + "\n".join(outs)
        if " inpaint " in line:
            assert sum(o.count("done: 6, skipped: 0, failed: 0") for o in outs) == 1  # one summary, of both nodes
    assert _same_files(workdir / "filled-one", workdir / "filled-nodes")
    assert (workdir / "runs" / "nodes" / "last.safetensors").is_file()


def test_readme_fetch_script_help():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch_training_photos.py"), "--help"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "--out" in result.stdout


def test_readme_serve_command(tmp_path):
    line = next(c for c in readme_commands() if c.startswith("pconv serve"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(BIN / "pconv"), *shlex.split(line)[1:], "--port", str(port)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, "pconv serve did not come up"
                time.sleep(0.3)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert b"<canvas" in r.read()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_make_demo_main_command():
    """The README's main command inpaints the bundled photo with the shipped model, offline."""
    assert "make demo" in (ROOT / "README.md").read_text()
    out = ROOT / "out" / "example_filled.png"
    result = subprocess.run(["make", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    filled = np.array(Image.open(out))
    photo = np.array(Image.open(ASSETS / "example.jpg").convert("RGB"))
    hole = np.array(Image.open(ASSETS / "example_mask.png").convert("L")) > 127
    assert filled.shape == photo.shape
    assert np.array_equal(filled[~hole], photo[~hole])
    assert not np.array_equal(filled[hole], photo[hole])


def test_flip_average_claims_agree(capsys):
    """README, MODEL_CARD.md and `pconv inpaint --help` quote the same measured flip-averaging figures."""
    from pconv.cli import main

    with pytest.raises(SystemExit):
        main(["inpaint", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    claim = re.search(r"\((\d(?:\.\d)?)x the time, (\+\d\.\d\d) dB PSNR", help_text)
    assert claim, help_text
    times, gain = claim.groups()
    readme = " ".join((ROOT / "README.md").read_text().split())
    card = " ".join((ROOT / "MODEL_CARD.md").read_text().split())
    assert f"{times}× the time for {gain} dB PSNR" in readme
    card_claim = re.search(r"Flip averaging .*?\*\*(\+\d\.\d\d) dB\*\* PSNR overall .*?\*\*(\d\.\d)×\*\* the time", card)
    assert card_claim and card_claim.group(1) == gain and float(card_claim.group(2)) == float(times), card_claim

"""benchmarks/conv_baseline_claim.py end to end, shrunk: tiny network, a few steps, generated data."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from pconv.masks.testset import build_testset
from pconv.weights import load_model

ROOT = Path(__file__).resolve().parents[1]
TINY = '{"channels": [8, 8], "kernels": [5, 3], "image_size": 32}'


def test_claim_script_trains_evaluates_and_draws(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:96] / 96
    for i in range(8):
        base = np.stack([np.sin(5 * xx + i), np.cos(4 * yy - i), xx * yy], -1) * 0.5 + 0.5
        arr = np.clip(base * 255 + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(photos / f"p{i}.png")
    build_testset(tmp_path / "masks", per_bucket=1, size=(128, 128), seed=0)  # with and without border holes
    out, sheet = tmp_path / "run", tmp_path / "sheet.jpg"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "conv_baseline_claim.py"), "--data", str(photos),
           "--eval-photos", str(photos), "--eval-masks", str(tmp_path / "masks"), "--model", TINY,
           "--arms", "pconv,conv,pconv-zeros", "--steps", "2", "--rounds", "2", "--val-count", "1", "--per-bucket", "2",
           "--out", str(out), "--sheet", str(sheet)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    for arm in ("pconv", "conv", "pconv-zeros"):
        model = load_model(out / f"train-{arm}" / "last.safetensors")
        assert model.config.variant == arm and model.config.channels == (8, 8)
        assert (out / f"eval-{arm}" / "rows.json").is_file()
    claim = json.loads((out / "claim.json").read_text())
    assert {int(s["steps"]) for s in claim["train"].values()} == {2}  # equal budgets, resumed across rounds
    rows = json.loads((out / "eval-pconv" / "rows.json").read_text())
    inner = [r["psnr"] for r in rows if r["bucket"] == "0.2-0.3" and not r["touches_border"]]
    assert claim["psnr"]["pconv"]["0.2-0.3/inner"] == np.mean(inner)  # the table is the rows' mean
    text = (out / "claim.md").read_text()
    assert "| pconv-zeros |" in text and "0.01-0.1/border" in text and "| cases |" in text
    with Image.open(sheet) as im:
        assert im.format == "JPEG" and im.width == 160 * 5  # input, three arms, ground truth

"""benchmarks/accelerator_check.py: its CPU form runs every section and writes a sound report."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "accelerator_check.py"


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


def _module():
    spec = importlib.util.spec_from_file_location("accelerator_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_cpu_form_writes_a_complete_report(tmp_path, monkeypatch):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "accelerator-check.json").read_text())
    assert report["quick"] is True and report["ok"] is True
    assert report["environment"]["device"] == "cpu" and report["environment"]["bf16_peak_tflops"] is None
    s = report["sections"]
    assert set(s) == {"tests", "layers", "inference", "training", "ddp"}
    assert not any("error" in section for section in s.values())

    # The CUDA tests were collected and, on a CPU, every one skipped saying why.
    tests = s["tests"]
    assert tests["cases"] and tests["counts"]["passed"] == tests["counts"]["failed"] == tests["counts"]["error"] == 0
    if not torch.cuda.is_available():
        assert all(c["outcome"] == "skipped" and "no CUDA GPU" in c["message"] for c in tests["cases"])
    assert {c["test"].split("::")[0] for c in tests["cases"]} == {"tests.test_cuda"}

    # bench_layers: fp32 and bf16, NCHW and channels_last, forward and forward+backward.
    rows = s["layers"]["rows"]
    assert {(r["dtype"], r["format"], r["pass"]) for r in rows} == {
        (d, f, p) for d in ("fp32", "bf16") for f in ("NCHW", "channels_last") for p in ("fwd", "fwd_bwd")}
    assert all(r[k] > 0 for r in rows for k in ("plain_ms", "ours_ms", "reference_ms"))

    inference = s["inference"]["rows"]
    assert [(r["height"], r["width"]) for r in inference] == [(64, 64), (128, 128), (96, 128)]
    assert all(r["windows"] >= 1 and r["median_ms"] > 0 and 0.05 < r["hole_fraction"] < 0.2 for r in inference)

    training = {r["config"]: r for r in s["training"]["rows"]}
    assert set(training) == {"tiny", "cpu-fill-bh"}
    for r in training.values():
        flops = r["gflop_per_image"]
        assert r["images_per_s"] > 0 and r["share_of_bf16_peak"] is None
        # forward + input and weight gradients: about three forwards (the first layer has no input gradient)
        assert 2.8 < flops["unet_train"] / flops["unet_forward"] < 3.0
        assert flops["total"] == pytest.approx(flops["unet_train"] + flops["loss_train"])
        assert abs(r["achieved_tflops"] - flops["total"] * r["images_per_s"] / 1e3) < 1e-6 * r["achieved_tflops"] + 1e-9
    # The counted FLOPs equal the architecture's multiply-adds worked out by hand (bench_train.unet_flops).
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from bench_train import unet_flops

    from pconv.model import build_model

    tiny = _module().QUICK_MODEL
    expected = unet_flops(build_model(tiny), 64) / 1e9
    assert training["tiny"]["gflop_per_image"]["unet_forward"] == pytest.approx(expected, rel=1e-6)

    ddp = s["ddp"]
    assert ddp["backend"] == "gloo" and ddp["backend_reported"] and ddp["returncode"] == 0
    assert ddp["steps"] == 3 and ddp["exported"] and ddp["startup_s"] > 0 and ddp["steps_s"] > 0

    text = (tmp_path / "accelerator-check.md").read_text()
    assert "CUDA tests" in text and "Training step" in text and "gloo" in text and "OK" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU: the full check would run")
def test_full_form_without_a_gpu_says_so_and_fails(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "no CUDA GPU" in proc.stderr and "--quick" in proc.stderr
    assert not (tmp_path / "accelerator-check.json").exists()


def test_bf16_peak_table():
    peak = _module().bf16_peak_tflops
    assert peak("NVIDIA H100 80GB HBM3") == 989.4
    assert peak("NVIDIA H100 PCIe") == 756.0
    assert peak("NVIDIA H200") == 989.4
    assert peak("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak("NVIDIA L4") == 121.0
    assert peak("NVIDIA L40S") == 362.05
    assert peak("NVIDIA A10") == 125.0
    assert peak("NVIDIA GeForce RTX 4090") == 165.2
    assert peak("Tesla T4") is None  # no bf16 tensor cores: unknown, not a guess

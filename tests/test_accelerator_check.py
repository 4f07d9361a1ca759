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
    if not torch.cuda.is_available():  # every CUDA test skipped: reported, not passed off as checked
        assert tests["verified"] is False and "not verified" in text


class _Clock:
    """A stand-in for the script's ``time``: ``perf_counter`` reads a clock the test advances."""

    def __init__(self) -> None:
        self.now = 100.0

    def perf_counter(self) -> float:
        return self.now


def test_training_figures_follow_the_batch_and_the_time_a_step_takes(monkeypatch):
    """images/s = images per step / seconds per step, counted here: a stand-in step records its
    batch and takes 0.5 s on a stand-in clock (3 s the first, warm-up, time)."""
    import pconv.train

    module = _module()
    clock = _Clock()
    monkeypatch.setattr(module, "time", clock)
    batches = {}  # model -> the batch of every step it took, in order of the configurations

    def step(model, loss_fn, opt, scaler, image, mask, precision, *rest):
        mine = batches.setdefault(id(model), [])
        mine.append(image.shape[0])
        clock.now += 3.0 if len(mine) == 1 else 0.5

    monkeypatch.setattr(pconv.train, "train_step", step)
    rows = module.training(torch.device("cpu"), True, peak_tflops=100.0)["rows"]
    assert len(rows) == len(batches) == 2
    for row, steps in zip(rows, batches.values()):
        images_per_step = steps[0]
        assert len(steps) == 1 + row["steps"] and set(steps) == {images_per_step}  # warm-up + timed steps
        assert row["images_per_s"] == pytest.approx(images_per_step / 0.5)
        assert row["step_ms"] == pytest.approx(500.0) and row["first_step_ms"] == pytest.approx(3000.0)
        gflop = row["gflop_per_image"]["total"]
        assert row["achieved_tflops"] == pytest.approx(gflop * 1e9 * images_per_step / 0.5 / 1e12)
        assert row["share_of_bf16_peak"] == pytest.approx(row["achieved_tflops"] / 100.0)


def test_inference_figures_are_the_time_of_one_call(monkeypatch):
    import pconv.inference

    module = _module()
    clock = _Clock()
    monkeypatch.setattr(module, "time", clock)
    calls = []

    class Inpainter:
        precision, config = "fp32", None

        def __init__(self, **kwargs):
            pass

        def inpaint(self, photo, hole):
            calls.append(photo.shape)
            clock.now += 0.04 if sum(s == photo.shape for s in calls) == 1 else 0.01 * photo.shape[0] / 64
            return type("R", (), {"strategy": "whole", "windows": 1})()

    monkeypatch.setattr(pconv.inference, "Inpainter", Inpainter)
    rows = module.inference(torch.device("cpu"), True)["rows"]
    assert [(r["height"], r["width"]) for r in rows] == [(64, 64), (128, 128), (96, 128)]
    for r in rows:
        assert r["first_ms"] == pytest.approx(40.0)
        assert r["median_ms"] == pytest.approx(10.0 * r["height"] / 64)
    assert len(calls) == 3 * (1 + rows[0]["reps"])


def _fake_pytest(monkeypatch, module, outcomes, returncode):
    """``subprocess.run`` of ``pytest -m cuda`` replaced: a JUnit XML with these outcomes (none: no file)."""
    def run(cmd, **kwargs):
        xml = Path(next(a for a in cmd if a.startswith("--junitxml=")).split("=", 1)[1])
        if outcomes is not None:
            body = "".join(f'<testcase classname="tests.test_cuda" name="t{i}" time="0.1">'
                           + ({"passed": "", "skipped": '<skipped message="no CUDA GPU"/>',
                               "failed": '<failure message="differs"/>'}[o]) + "</testcase>"
                           for i, o in enumerate(outcomes))
            xml.write_text(f'<testsuites><testsuite name="pytest">{body}</testsuite></testsuites>')
        return subprocess.CompletedProcess(cmd, returncode, stdout="", stderr="")

    monkeypatch.setattr(module.subprocess, "run", run)


@pytest.mark.parametrize("outcomes, returncode, verified, ok_full, ok_quick", [
    (["skipped", "skipped"], 0, False, False, True),  # every CUDA test skipped
    (None, 5, False, False, True),  # none collected
    (["passed", "skipped"], 0, True, True, True),
    (["passed", "failed"], 1, False, False, False),
])
def test_the_report_says_not_verified_when_no_cuda_test_ran(tmp_path, monkeypatch, outcomes, returncode, verified,
                                                            ok_full, ok_quick):
    module = _module()
    _fake_pytest(monkeypatch, module, outcomes, returncode)
    full = module.run_tests(tmp_path, timeout=10, required=True)
    if outcomes and (tmp_path / "cuda-tests.xml").exists():
        (tmp_path / "cuda-tests.xml").unlink()
    quick = module.run_tests(tmp_path, timeout=10, required=False)
    assert full["verified"] is verified and full["ok"] is ok_full and quick["ok"] is ok_quick
    report = {"quick": False, "date": "today", "seconds": 1.0, "ok": full["ok"], "sections": {"tests": full},
              "environment": {"name": "GPU", "torch": torch.__version__}}
    text = module.summary(report)
    assert ("not verified" in text) is (not verified)
    assert ("**OK**" in text) is (verified and ok_full)


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

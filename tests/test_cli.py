"""`pconv --version` and `pconv --help`, through the installed console script and in-process."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import pconv
from pconv.cli import main

SCRIPT = Path(sys.executable).parent / "pconv"  # the console script of the environment running the tests


def _run_script(*args: str) -> subprocess.CompletedProcess:
    if not SCRIPT.is_file():
        pytest.skip(f"console script {SCRIPT} is not installed (pip install -e .)")
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_version_script():
    res = _run_script("--version")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"pconv {pconv.__version__}"


def test_help_script():
    res = _run_script("--help")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: pconv")
    assert "Partial Convolutions" in res.stdout
    assert "white = hole" in res.stdout  # the mask polarity rule is stated up front
    assert res.stderr == ""


def test_no_arguments_prints_help():
    res = _run_script()
    assert res.returncode == 0
    assert "usage: pconv" in res.stdout


def test_version_in_process(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"pconv {pconv.__version__}"


def test_help_in_process(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: pconv") and "--version" in out


def test_unknown_command_is_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_python_dash_m():
    res = subprocess.run([sys.executable, "-m", "pconv", "--version"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == f"pconv {pconv.__version__}"


@pytest.mark.parametrize("env, expected", [({}, "3000"), ({"GOMP_SPINCOUNT": "77"}, "77"),
                                           ({"OMP_WAIT_POLICY": "PASSIVE"}, None)])
def test_openmp_wait_default_set_before_torch_and_user_values_win(env, expected):
    """Importing pconv sets a short OpenMP spin (before torch loads: libgomp reads it once), unless
    the user chose a spin count or a wait policy."""
    base = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    code = "import os, pconv, sys; sys.stdout.write(repr(os.environ.get('GOMP_SPINCOUNT')))"
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True,
                         check=True).stdout
    assert out == repr(expected)


def _subparser(name: str):
    import argparse

    from pconv.cli import build_parser

    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]


def test_device_defaults_to_auto_everywhere():
    for command in ("inpaint", "serve", "evaluate", "train"):
        action = next(a for a in _subparser(command)._actions if "--device" in a.option_strings)
        default = action.default
        if command == "train":  # the option is None so that a --config file can set it; the config's default
            from pconv.config import TrainConfig

            default = TrainConfig().device
        assert default == "auto", command


def test_evaluate_compares_both_network_methods_by_default():
    methods = next(a for a in _subparser("evaluate")._actions if "--methods" in a.option_strings).default
    assert methods.split(",")[:2] == ["pconv", "pconv-smooth"]


def test_serve_help_speaks_plainly(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "None =" not in out and "the model shipped with pconv" in out
    assert all(a.help for a in _subparser("serve")._actions if a.option_strings)


@pytest.mark.parametrize("augment, fix", [(True, "raise --max-attempts"), (False, "or --augment to make more")])
def test_testset_shortfall_warning_fits_the_options_given(tmp_path, capsys, augment, fix):
    import numpy as np
    from PIL import Image

    src = tmp_path / "src"
    src.mkdir()
    hole = np.zeros((64, 64), np.uint8)
    hole[20:30, 20:30] = 255  # one small mask: most buckets stay short
    Image.fromarray(hole).save(src / "m.png")
    argv = ["masks", "testset", str(tmp_path / "out"), "--source", str(src), "--per-bucket", "2", "--size", "64"] + \
        (["--augment", "--max-attempts", "20"] if augment else [])
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "warning: some groups are short of 2 masks" in out and fix in out
    assert ("--augment" in out.split("masks (")[1]) == (not augment)  # never "use --augment" when it was given


def test_export_messages_agree_on_sizes(tmp_path, capsys):
    import torch

    from pconv.model import PConvUNet, PConvUNetConfig
    from pconv.weights import save_weights

    torch.manual_seed(0)
    weights = save_weights(PConvUNet(PConvUNetConfig(channels=(8, 8), kernels=(5, 3), image_size=32)),
                           tmp_path / "w.safetensors")
    run = ["export", "--format", "torchscript", "--weights", str(weights), "--overwrite", "-o", str(tmp_path / "m.pt")]
    assert main(run + ["--size", "16"]) == 0
    fixed = capsys.readouterr().out
    assert "fixed size" in fixed and "(1,3,16,16)" in fixed and "exactly 1 photo of 16x16" in fixed
    assert "H, W multiples" not in fixed and "(B,3,H,W)" not in fixed  # nothing says other sizes work
    assert main(run + ["--size", "16", "--dynamic"]) == 0
    dynamic = capsys.readouterr().out
    assert "dynamic size" in dynamic and "(B,3,H,W)" in dynamic and "multiples of 4" in dynamic

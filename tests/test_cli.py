"""`pconv --version` and `pconv --help`, through the installed console script and in-process."""
from __future__ import annotations

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

"""The commands printed in BENCHMARKS.md, MODEL_CARD.md, docs/experiments.md (and README's prose) run as printed.

Every command is extracted from its document: the indented command lines (continuations joined)
and the inline ones in backticks. Each must name a script that exists and whose command line its
own argument parser accepts: the script runs up to its ``parse_args`` call, which is then made to
stop the run (so a misspelt option, a missing positional or a bad value fails here). Method names
given to ``--methods`` must be methods that ``pconv evaluate`` knows, and weight files must exist.
The cheap commands also run, with small arguments appended (argparse keeps the last value).
README's bash blocks run in tests/test_readme.py.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("BENCHMARKS.md", "MODEL_CARD.md", "docs/experiments.md", "README.md")
_START = r"(?:\.venv/bin/python |python |OMP_NUM_THREADS=\d+ )*"
_SCRIPT = r"(?:(?:benchmarks|scripts)/)?\w+\.py"
INDENTED = re.compile(rf"^ {{4}}({_START}(?:{_SCRIPT}|pconv |torchrun )[^\n]*)$")
INLINE = re.compile(rf"`({_START}(?:{_SCRIPT}(?: [^`]*)?|pconv (?:inpaint|evaluate|train|masks|export|serve)\b[^`]*))`")
#: Commands that run here, with what makes them small (appended: argparse keeps the last value).
CHEAP: Dict[str, List[str]] = {
    "benchmarks/flops.py": [],
}


def _normalise(line: str) -> str:
    line = re.split(r"\s{2,}#", line)[0].strip()  # a trailing comment (the run's date)
    return re.sub(r"^(?:\.venv/bin/python |python |OMP_NUM_THREADS=\d+ )+", "", line)


def doc_commands(name: str, with_mentions: bool = False) -> List[str]:
    """The commands of one document, without the interpreter prefix, as printed (``with_mentions``:
    also the scripts named alone in the text, the synopses and the elided lines)."""
    lines = (ROOT / name).read_text().splitlines()
    out, mentioned, in_fence, i = [], [], False, 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            in_fence = not in_fence  # fenced blocks: output (or README's bash, run elsewhere)
        m = None if in_fence else INDENTED.match(line)
        if m:
            cmd = m.group(1)
            while cmd.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                cmd = cmd.rstrip()[:-1].rstrip() + " " + lines[i].strip()
            out.append(_normalise(cmd))
        elif not in_fence:  # inline: a script named alone is a mention (its file must exist)
            for c in map(_normalise, INLINE.findall(line)):
                if " " in c:
                    out.append(c)
                else:
                    mentioned.append(c)
        i += 1
    if with_mentions:
        return out + mentioned
    return [c for c in out if not _mention(c)]


#: Prose that names a command's options without values: a mention, not a command line.
MENTIONS = {"pconv inpaint --input --mask --output"}
#: Placeholders of the documents (whole arguments) and what stands in for them here.
PLACEHOLDERS = {"DIR": "out-dir", "FILE": "weights.safetensors", "N": "256", "K": "5"}


def _mention(cmd: str) -> bool:
    """A subcommand named alone, a synopsis (``a|b``, ``[--opt]``) or an elided line (``…``)."""
    argv = cmd.split()
    return cmd in MENTIONS or (argv[0] == "pconv" and len(argv) <= 2) or any(ch in cmd for ch in "|[…") or "..." in cmd


def _resolve(cmd: str) -> Tuple[str, List[str]]:
    """(script path relative to the repository or "pconv", arguments) of a command."""
    argv = [PLACEHOLDERS.get(a, a) for a in shlex.split(cmd)]
    if argv[0] == "pconv":
        return "pconv", argv[1:]
    if argv[0] == "torchrun":
        i = next(k for k, a in enumerate(argv) if a == "pconv" or a.endswith(".py"))
        return "pconv" if argv[i] == "pconv" else argv[i], argv[i + 1:]
    script = argv[0]
    if "/" not in script:  # a script named without its folder
        script = next(f"{d}/{script}" for d in ("benchmarks", "scripts") if (ROOT / d / script).is_file()) \
            if any((ROOT / d / script).is_file() for d in ("benchmarks", "scripts")) else f"benchmarks/{script}"
    return script, argv[1:]


def all_commands() -> List[Tuple[str, str]]:
    return [(doc, c) for doc in DOCS for c in doc_commands(doc)]


_PARSE_ONLY = r"""
import argparse, io, json, runpy, sys, contextlib
class Parsed(BaseException):
    pass
real = argparse.ArgumentParser.parse_args
def parse_args(self, args=None, namespace=None):
    real(self, args, namespace)
    raise Parsed()
argparse.ArgumentParser.parse_args = parse_args
results = []
for script, argv in json.loads(sys.stdin.read()):
    err = io.StringIO()
    code = "not parsed"
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            if script == "pconv":
                from pconv.cli import main
                main(argv)
            else:
                sys.argv = [script, *argv]
                runpy.run_path(script, run_name="__main__")
    except Parsed:
        code = "parsed"
    except SystemExit as exc:
        code = f"exit {exc.code}"
    except Exception as exc:
        code = f"{type(exc).__name__}: {exc}"
    results.append([code, err.getvalue()[-600:]])
print(json.dumps(results))
"""


def test_documents_hold_the_commands_they_promise():
    commands = {doc: doc_commands(doc) for doc in DOCS}
    assert len(commands["BENCHMARKS.md"]) >= 15 and len(commands["MODEL_CARD.md"]) >= 5
    assert any(c.startswith("benchmarks/bench_texture_arms.py") for c in commands["docs/experiments.md"])
    assert "benchmarks/bench_thin_holes.py --weights src/pconv/assets/default.safetensors" in commands["MODEL_CARD.md"]


def _has_parser(script: str) -> bool:
    return script == "pconv" or "parse_args" in (ROOT / script).read_text()


def test_every_documented_script_exists():
    for doc in DOCS:
        for cmd in doc_commands(doc, with_mentions=True):
            script = _resolve(cmd.split(" … ")[0])[0]
            assert script == "pconv" or (ROOT / script).is_file(), f"{doc}: `{cmd}` names no script in the repository"


def test_every_documented_command_parses_as_printed():
    cases, jobs = [], []
    for doc, cmd in all_commands():
        script, argv = _resolve(cmd)
        assert script == "pconv" or (ROOT / script).is_file(), f"{doc}: `{cmd}` names no script in the repository"
        if _has_parser(script):
            cases.append((doc, cmd))
            jobs.append((script, argv))
        else:  # a benchmark without options: it must be printed without any
            assert not argv, f"{doc}: `{cmd}`: {script} takes no arguments"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-c", _PARSE_ONLY], input=json.dumps(jobs), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    bad = [f"{doc}: `{cmd}`: {code}\n{err}" for (doc, cmd), (code, err) in zip(cases, results)
           if code not in ("parsed", "exit 0")]  # exit 0: a --help line
    assert not bad, "\n".join(bad)


def test_documented_methods_and_weights_exist():
    from pconv.evaluate import METHODS

    for doc, cmd in all_commands():
        _, argv = _resolve(cmd)
        for flag, value in zip(argv, argv[1:]):
            if flag == "--methods":
                unknown = [m for m in value.split(",") if m not in METHODS]
                assert not unknown, f"{doc}: `{cmd}` names unknown method(s) {unknown}; known: {METHODS}"
            if flag in ("--weights", "--init-weights") and value.endswith(".safetensors") and "/" in value:
                assert (ROOT / value).is_file(), f"{doc}: `{cmd}`: no weights file {value}"


@pytest.mark.parametrize("script", sorted(CHEAP))
def test_cheap_documented_commands_run(script, tmp_path):
    printed = [c for _, c in all_commands() if _resolve(c)[0] == script]
    assert printed, f"no document prints a command of {script}"
    for cmd in printed:
        _, argv = _resolve(cmd)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
        proc = subprocess.run([sys.executable, str(ROOT / script), *argv, *CHEAP[script]], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"`{cmd}` failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        assert proc.stdout.strip(), f"`{cmd}` printed nothing"

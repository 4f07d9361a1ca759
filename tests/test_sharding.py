"""Sharded folder inpainting: the split, the read-ahead pipeline, and torchrun runs against one process."""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch
from PIL import Image

from pconv.cli import main
from pconv.errors import PConvError
from pconv.folder import FolderJob, FolderOptions, inpaint_folder
from pconv.inference import Inpainter
from pconv.model import PConvUNet, PConvUNetConfig
from pconv.sharding import DistEnv, assign, dist_env, rank_device, shard
from pconv.weights import save_weights

ROOT = Path(__file__).resolve().parents[1]
TINY = PConvUNetConfig(channels=(8, 16, 16), kernels=(7, 5, 3), image_size=64)
N_PHOTOS = 7


# --------------------------------------------------------------------------------------------- split


@pytest.mark.parametrize("world", [1, 2, 3, 5])
@pytest.mark.parametrize("weighted", [False, True])
def test_split_is_disjoint_covering_deterministic_and_balanced(world: int, weighted: bool) -> None:
    rng = np.random.default_rng(world)
    count = 23
    weights = list(rng.integers(1, 1000, count).astype(float)) if weighted else None
    shards = [shard(range(count), r, world, weights) for r in range(world)]
    flat = sorted(i for s in shards for i in s)
    assert flat == list(range(count))  # covering and disjoint
    assert all(s == sorted(s) for s in shards)  # each rank keeps the folder's order
    assert shards == [shard(range(count), r, world, weights) for r in range(world)]  # same on every rank
    if weights is None:
        assert shards == [list(range(r, count, world)) for r in range(world)]  # evaluate's cases[rank::world]
    else:
        loads = [sum(weights[i] for i in s) for s in shards]
        assert max(loads) - min(loads) <= max(weights)


def test_split_balances_pixels_better_than_order() -> None:
    weights = [4000.0, 1.0, 4000.0, 1.0, 1.0, 1.0]  # round robin gives rank 0 both big photos
    by_order = [sum(weights[i] for i in shard(weights, r, 2)) for r in range(2)]
    by_pixels = [sum(weights[i] for i in shard(weights, r, 2, weights)) for r in range(2)]
    assert by_order == [8001.0, 3.0] and by_pixels == [4002.0, 4002.0]


def test_split_and_environment_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PConvError, match="world size"):
        assign(3, 0)
    with pytest.raises(PConvError, match="2 weights for 3 jobs"):
        assign(3, 2, [1.0, 2.0])
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(PConvError, match="RANK=2 WORLD_SIZE=2"):
        dist_env()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(PConvError, match="bad torchrun environment"):
        dist_env()
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert dist_env() == DistEnv(1, 2, 1, 2)
    assert rank_device("cpu", dist_env()) == "cpu"


# ------------------------------------------------------------------------------------------ material


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_weights(PConvUNet(TINY), tmp_path_factory.mktemp("w") / "tiny.safetensors")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Photos of a few sizes (two share a padded size, for batching) with their masks."""
    d = tmp_path_factory.mktemp("folder")
    (d / "photos").mkdir()
    (d / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(N_PHOTOS):
        h, w = (40, 52) if i % 3 else (70 + i, 90)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(d / "photos" / f"p{i}.png")
        hole = np.zeros((h, w), np.uint8)
        hole[5 + i:20 + i, 10:30] = 255
        Image.fromarray(hole).save(d / "masks" / f"p{i}.png")
    return d


def _hashes(out: Path) -> Dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def reference(folder: Path, weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, str]:
    """The outputs of one process filling one photo after the other."""
    out = tmp_path_factory.mktemp("ref") / "out"
    code = main(["inpaint", "--input", str(folder / "photos"), "--mask", str(folder / "masks"), "--output", str(out),
                 "--weights", str(weights), "--device", "cpu", "--prefetch", "0"])
    assert code == 0
    hashes = _hashes(out)
    assert len(hashes) == N_PHOTOS
    return hashes


# ---------------------------------------------------------------------------------- one process


@pytest.mark.parametrize("batch_size, prefetch, io_threads", [(1, 2, 1), (1, 1, 3), (3, 2, 2), (4, 0, 1)])
def test_pipeline_writes_the_same_bytes(folder: Path, weights: Path, reference: Dict[str, str], tmp_path: Path,
                                        batch_size: int, prefetch: int, io_threads: int) -> None:
    out = tmp_path / "out"
    code = main(["inpaint", "--input", str(folder / "photos"), "--mask", str(folder / "masks"), "--output", str(out),
                 "--weights", str(weights), "--device", "cpu", "--batch-size", str(batch_size),
                 "--prefetch", str(prefetch), "--io-threads", str(io_threads)])
    assert code == 0
    assert _hashes(out) == reference


def test_batched_group_with_a_bad_photo_fails_it_alone(folder: Path, weights: Path, tmp_path: Path) -> None:
    masks = tmp_path / "masks"
    masks.mkdir()
    for p in (folder / "masks").iterdir():
        (masks / p.name).write_bytes(p.read_bytes())
    with Image.open(masks / "p1.png") as m:
        Image.new("L", m.size, 255).save(masks / "p1.png")  # all hole: nothing to fill from
    jobs = [(i, FolderJob(folder / "photos" / f"p{i}.png", masks / f"p{i}.png", tmp_path / f"o{i}.png"))
            for i in range(4)]
    seen: List[str] = []
    outcomes = inpaint_folder(Inpainter(weights, device="cpu"), jobs, FolderOptions(), batch_size=4,
                              on_outcome=lambda o: seen.append(o.name))
    assert [(o.index, o.status) for o in outcomes] == [(0, "done"), (1, "failed"), (2, "done"), (3, "done")]
    assert "covers the whole image" in outcomes[1].detail and sorted(seen) == [f"p{i}.png" for i in range(4)]
    assert sorted(p.name for p in tmp_path.glob("o*.png")) == ["o0.png", "o2.png", "o3.png"]


def test_pipeline_option_errors(folder: Path, weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for option, value, message in [("--batch-size", "0", "--batch-size must be at least 1"),
                                   ("--prefetch", "-1", "--prefetch must be 0 or more"),
                                   ("--io-threads", "0", "--io-threads must be at least 1")]:
        code = main(["inpaint", "--input", str(folder / "photos"), "--mask", str(folder / "masks"),
                     "--output", str(tmp_path / "o"), "--weights", str(weights), "--device", "cpu", option, value])
        assert code == 2 and message in capsys.readouterr().err
    assert not list((tmp_path / "o").iterdir())


# ------------------------------------------------------------------------------------------- ranks


def test_ranks_sharing_only_a_file_system_merge_through_part_files(
        folder: Path, weights: Path, reference: Dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    """Two processes without a process group (no MASTER_ADDR), balanced by pixels: rank 1 first, then rank 0."""
    out = tmp_path / "out"
    argv = ["inpaint", "--input", str(folder / "photos"), "--mask", str(folder / "masks"), "--output", str(out),
            "--weights", str(weights), "--device", "cpu", "--shard-by", "pixels"]
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "1")
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "rank 1: done" in captured.err  # only rank 0 prints the summary
    one = set(_hashes(out))
    assert 0 < len(one) < N_PHOTOS
    monkeypatch.setenv("RANK", "0")
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"done: {N_PHOTOS}, skipped: 0, failed: 0") and "2 processes" in text
    assert [re.search(r"done +(\S+)", line).group(1) for line in text.splitlines()[1:]] == sorted(reference)
    assert _hashes(out) == reference  # the ranks' outputs together, byte for byte
    assert sorted(os.listdir(out)) == sorted(reference)  # and nothing else: rank 0 removed the part files


def _torchrun(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    env.pop("MASTER_ADDR", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "pconv", "inpaint", *argv]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_torchrun_two_processes_match_one_and_a_restart_fills_only_what_is_missing(
        folder: Path, weights: Path, reference: Dict[str, str], tmp_path: Path) -> None:
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    for name in ("photos", "masks"):
        (tmp_path / name).mkdir()
        for p in (folder / name).iterdir():
            (tmp_path / name / p.name).write_bytes(p.read_bytes())
    (photos / "p7.png").write_bytes(b"not an image")  # index 7: rank 1 of 2 takes it (round robin)
    Image.new("L", (8, 8)).save(masks / "p7.png")
    out = tmp_path / "out"
    args = ["--input", str(photos), "--mask", str(masks), "--output", str(out),
            "--weights", str(weights), "--device", "cpu"]

    first = _torchrun(*args, cwd=tmp_path)
    assert first.returncode != 0, first.stdout + first.stderr  # a photo failed on rank 1
    assert first.stdout.count("done: ") == 1, first.stdout  # one merged summary, from rank 0
    assert f"done: {N_PHOTOS}, skipped: 0, failed: 1" in first.stdout and "2 processes" in first.stdout
    assert re.search(r"failed +p7\.png: .*not an image", first.stdout), first.stdout
    assert "rank 1: done 3, skipped 0, failed 1" in first.stderr
    assert _hashes(out) == reference and sorted(os.listdir(out)) == sorted(reference)  # the same bytes as one process

    # A run stopped half-way: some outputs are there (one of them not ours, to be left alone), the rest missing.
    for name in ("p1.png", "p2.png", "p4.png"):
        (out / name).unlink()
    (out / "p0.png").write_bytes(b"left by someone")
    (photos / "p7.png").unlink()
    second = _torchrun(*args, cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"done: 3, skipped: {N_PHOTOS - 3}, failed: 0" in second.stdout
    assert sorted(re.findall(r"done +(p\d\.png)", second.stdout)) == ["p1.png", "p2.png", "p4.png"]
    assert (out / "p0.png").read_bytes() == b"left by someone"
    assert {k: v for k, v in _hashes(out).items() if k != "p0.png"} == \
        {k: v for k, v in reference.items() if k != "p0.png"}


def test_single_photo_mode_under_torchrun_is_refused(folder: Path, weights: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    out = tmp_path / "out.png"
    code = main(["inpaint", str(folder / "photos" / "p0.png"), str(folder / "masks" / "p0.png"), "-o", str(out),
                 "--weights", str(weights), "--device", "cpu"])
    assert code == 2 and "use --input DIR" in capsys.readouterr().err and not out.exists()


def test_a_rank_that_stops_is_reported_by_rank_zero(folder: Path, weights: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    """Without a process group rank 0 would wait for a crashed rank's part; the rank leaves one saying why."""
    import pconv.folder

    out = tmp_path / "out"
    argv = ["inpaint", "--input", str(folder / "photos"), "--mask", str(folder / "masks"), "--output", str(out),
            "--weights", str(weights), "--device", "cpu"]
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")

    def crash(*_args, **_kwargs):
        raise RuntimeError("out of disk")

    with monkeypatch.context() as m:
        m.setattr(pconv.folder, "inpaint_folder", crash)
        with pytest.raises(RuntimeError, match="out of disk"):
            main(argv)
    monkeypatch.setenv("RANK", "0")
    assert main(argv) == 1
    text = capsys.readouterr().out
    assert text.startswith(f"done: {len(range(0, N_PHOTOS, 2))}, skipped: 0, failed: 0")
    assert "rank 1 stopped: RuntimeError: out of disk" in text


# ------------------------------------------------------------------------------------------- barrier


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def one_rank_group_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment torchrun gives a process group of one (so a real gloo group forms at once)."""
    for k, v in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0", "WORLD_SIZE": "1",
                 "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(k, v)


def test_barrier_meets_in_a_group_it_makes_and_destroys_it(tmp_path: Path, one_rank_group_env) -> None:
    import torch.distributed as dist
    from pconv.sharding import barrier

    assert not dist.is_initialized()
    barrier(2, tmp_path, 0, "key", timeout_s=60)  # no part files: the group, not the files, is the meeting
    assert not dist.is_initialized()
    dist.init_process_group("gloo")  # a group the caller made stays the caller's
    try:
        barrier(2, tmp_path, 0, "key", timeout_s=60)
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()


def test_a_failing_group_is_an_error_naming_the_rank_and_the_cause(tmp_path: Path, one_rank_group_env,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import torch.distributed as dist
    from pconv.sharding import barrier

    def lost(*args, **kwargs):
        raise RuntimeError("Connection closed by peer [127.0.0.1]:29500")

    monkeypatch.setattr(dist, "barrier", lost)
    start = time.monotonic()
    with pytest.raises(PConvError, match=r"rank 1: .*process group failed.*Connection closed by peer") as err:
        barrier(2, tmp_path, 1, "key", timeout_s=3600, poll_s=0.01)
    assert time.monotonic() - start < 30  # no polling for the hour the timeout allows
    assert "MASTER_ADDR" in str(err.value)
    assert not dist.is_initialized()  # the group it made is gone

    def unreachable(*args, **kwargs):
        raise ValueError("Error initializing torch.distributed using env:// rendezvous: MASTER_PORT bad")

    monkeypatch.setattr(dist, "init_process_group", unreachable)
    with pytest.raises(PConvError, match=r"rank 0: .*ValueError: Error initializing"):
        barrier(2, tmp_path, 0, "key", timeout_s=20, poll_s=0.01)  # rank 0 would poll the files 20 s for none
    assert not dist.is_initialized()

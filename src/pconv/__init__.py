"""pconv: image inpainting with Partial Convolutions (Liu et al., ECCV 2018).

Conventions, once: images are RGB; inside the code a mask is 1 = valid, 0 = hole (the paper's
polarity); mask *files* on disk are white = hole unless told otherwise.
"""
__version__ = "0.1.0"

import os as _os

# OpenMP threads that spin while waiting make torch 7-18x slower whenever another process shares
# the cores (measured on a 2-core machine, BENCHMARKS.md); passive waiting costs little when idle.
# Only a default: a value the user set wins. It must be set before torch is imported.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pconv.errors import PConvError
from pconv.layers import PartialConv2d, partial_conv2d, partial_conv2d_cat
from pconv.fill import pull_push_fill
from pconv.model import CONFIGS, PConvUNet, PConvUNetConfig, build_model
from pconv.losses import InpaintingLoss, LossWeights
from pconv.vgg import VGG16Features, load_vgg16_features
from pconv.masks import hole_to_valid, noise_mask, read_mask_file, read_testset, stroke_mask, write_mask_file
from pconv.inference import Inpainter
from pconv.baselines import BASELINES, fill as fill_baseline  # `evaluate` stays a module: pconv.evaluate.evaluate

__all__ = [
    "__version__",
    "PConvError",
    "PartialConv2d",
    "partial_conv2d",
    "partial_conv2d_cat",
    "pull_push_fill",
    "PConvUNet",
    "PConvUNetConfig",
    "CONFIGS",
    "build_model",
    "InpaintingLoss", "LossWeights", "VGG16Features", "load_vgg16_features",
    "stroke_mask", "noise_mask", "read_mask_file", "write_mask_file", "hole_to_valid", "read_testset",
    "Inpainter",
    "BASELINES", "fill_baseline",
]

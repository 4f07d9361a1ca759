"""pconv: image inpainting with Partial Convolutions (Liu et al., ECCV 2018).

Conventions, once: images are RGB; inside the code a mask is 1 = valid, 0 = hole (the paper's
polarity); mask *files* on disk are white = hole unless told otherwise.
"""
__version__ = "0.1.0"

import os as _os

# How torch's OpenMP threads wait for each other decides inference speed. libgomp's default, a long
# spin, made an inpainting 1.5-12x slower than sleeping (OMP_WAIT_POLICY=PASSIVE) beside a process
# holding one of two cores; sleeping made it 1.6-2.9x slower than spinning on a quiet machine, where
# each of its thousands of small operations wakes the threads. A short spin is 5-26 % behind the long
# one when quiet and 1.3-2.4x PASSIVE under load (benchmarks/bench_inference.py, several runs;
# BENCHMARKS.md, "Inference"). Only a default: values the user set win. It must be set before torch is imported.
if "OMP_WAIT_POLICY" not in _os.environ:
    _os.environ.setdefault("GOMP_SPINCOUNT", "3000")

from pconv.errors import PConvError
from pconv.layers import PartialConv2d, partial_conv2d, partial_conv2d_cat
from pconv.layers3d import PartialConv3d, partial_conv3d
from pconv.padding import partial_padding
from pconv.fused import fused_cpu_kernels_unavailable, use_fused_cpu_kernels
from pconv.fill import pull_push_fill
from pconv.model import CONFIGS, VARIANTS, PConvUNet, PConvUNetConfig, build_model
from pconv.losses import InpaintingLoss, LossWeights
from pconv.vgg import VGG16Features, load_vgg16_features
from pconv.masks import hole_to_valid, noise_mask, read_mask_file, read_testset, stroke_mask, write_mask_file
from pconv.masks.rules import MaskWarning
from pconv.masks.lama import build_lama_sets, lama_mask, lama_protocol
from pconv.texture import TextureConfig, transfer_detail
from pconv.patch_texture import PatchTextureConfig  # the module pconv.patch_texture holds patch_texture()
from pconv.style_distance import StyleDistance
from pconv.inference import Inpainter
from pconv.baselines import BASELINES, fill as fill_baseline  # `evaluate` stays a module: pconv.evaluate.evaluate

__all__ = [
    "__version__",
    "PConvError",
    "PartialConv2d",
    "partial_conv2d",
    "partial_conv2d_cat",
    "PartialConv3d", "partial_conv3d", "partial_padding",
    "use_fused_cpu_kernels", "fused_cpu_kernels_unavailable",
    "pull_push_fill",
    "PConvUNet",
    "PConvUNetConfig",
    "CONFIGS",
    "VARIANTS",
    "build_model",
    "InpaintingLoss", "LossWeights", "VGG16Features", "load_vgg16_features",
    "stroke_mask", "noise_mask", "read_mask_file", "write_mask_file", "hole_to_valid", "read_testset", "MaskWarning",
    "build_lama_sets", "lama_mask", "lama_protocol",
    "Inpainter",
    "TextureConfig", "transfer_detail", "PatchTextureConfig", "StyleDistance",
    "BASELINES", "fill_baseline",
]

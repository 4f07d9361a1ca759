"""pconv: image inpainting with Partial Convolutions (Liu et al., ECCV 2018).

Conventions, once: images are RGB; inside the code a mask is 1 = valid, 0 = hole (the paper's
polarity); mask *files* on disk are white = hole unless told otherwise.
"""
__version__ = "0.1.0"

from pconv.errors import PConvError
from pconv.layers import PartialConv2d, partial_conv2d
from pconv.model import CONFIGS, PConvUNet, PConvUNetConfig, build_model

__all__ = [
    "__version__",
    "PConvError",
    "PartialConv2d",
    "partial_conv2d",
    "PConvUNet",
    "PConvUNetConfig",
    "CONFIGS",
    "build_model",
]

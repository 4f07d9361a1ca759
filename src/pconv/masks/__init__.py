"""Hole masks: random strokes, noise level sets, the paper's video flow-consistency masks, augmentation, test sets.

Polarity, once: numpy hole arrays are bool with True = hole; tensors fed to the network are the
paper's M, 1 = valid, 0 = hole (:func:`hole_to_valid`); mask files on disk are white = hole
unless inverted (``invert=True`` / ``--invert-mask``).
"""
from pconv.masks.augment import AugmentConfig, augment_mask, binarise
from pconv.masks.io import hole_to_valid, read_mask_file, resize_hole, valid_to_hole, write_mask_file
from pconv.masks.noise import noise_mask
from pconv.masks.strokes import hole_ratio, stroke_mask
from pconv.masks.testset import (
    BUCKET_EDGES,
    BUCKET_LABELS,
    BUCKETS,
    MaskEntry,
    bucket_of,
    build_testset,
    read_testset,
    touches_border,
)
from pconv.masks.video import FlowMaskConfig, flow_hole_mask, iter_frames, video_masks

__all__ = [
    "stroke_mask",
    "noise_mask",
    "hole_ratio",
    "read_mask_file",
    "write_mask_file",
    "hole_to_valid",
    "valid_to_hole",
    "resize_hole",
    "AugmentConfig",
    "augment_mask",
    "binarise",
    "BUCKETS",
    "BUCKET_EDGES",
    "BUCKET_LABELS",
    "bucket_of",
    "touches_border",
    "MaskEntry",
    "build_testset",
    "read_testset",
    "FlowMaskConfig",
    "flow_hole_mask",
    "iter_frames",
    "video_masks",
]

"""Score weights files on `pconv train`'s validation cases (held-out training photos, fixed masks).

Runs that change the mask distribution (``hole_ratio``, ``mask_source``) validate on their own
masks, so their logged figures cannot be compared; this script scores every file on the same
cases: the default TrainConfig's split, masks and seed, unless overridden.

    .venv/bin/python scripts/validate_weights.py --data /work/data/train-photos A.safetensors B.safetensors

``--buckets N``: also score each of the evaluation's six hole-ratio buckets on the same held-out
photos with N masks per photo per bucket (the mixed mask source at that bucket's ratio): how a
change moves small holes against large ones, without looking at the evaluation set.
"""
from __future__ import annotations

import argparse

import torch

from pconv.data import MaskSampler, ValDataset, list_images, scan_images, split_train_val
from pconv.device import resolve_precision
from pconv.masks import BUCKETS
from pconv.train import TrainConfig, validate
from pconv.weights import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", nargs="+", help="safetensors files written by pconv train / pconv export")
    parser.add_argument("--data", required=True, help="the training photo folder the runs used")
    parser.add_argument("--mask-source", default=TrainConfig.mask_source)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--thin-hole-fill", type=int, default=None, metavar="K",
                        help="score with the configuration's thin_hole_fill set to K (0: off)")
    parser.add_argument("--buckets", type=int, default=0, metavar="N",
                        help="also score per hole-ratio bucket, N masks per photo and bucket (0: off)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = TrainConfig(data=args.data, mask_source=args.mask_source)
    paths, _ = scan_images(list_images(config.data, config.file_list))
    _, val_paths = split_train_val(paths, config.val_count)
    val = ValDataset(val_paths, config.image_size, MaskSampler(config.mask_source, config.image_size,
                                                               config.hole_ratio), config.seed)
    print(f"{len(val)} validation photos, masks {config.mask_source} {config.hole_ratio}, seed {config.seed}")
    cpu = torch.device("cpu")
    precision = resolve_precision(config.precision, cpu)
    per_bucket = [[ValDataset(val_paths, config.image_size, MaskSampler(args.mask_source, config.image_size, b),
                              config.seed + 1000 * (k + 1) + r) for r in range(args.buckets)]
                  for k, b in enumerate(BUCKETS)] if args.buckets else []
    for path in args.weights:
        overrides = None if args.thin_hole_fill is None else {"thin_hole_fill": args.thin_hole_fill}
        model = load_model(path, overrides=overrides).to(memory_format=torch.channels_last)
        metrics, _ = validate(model, val, cpu, precision, config.channels_last)
        line = f"{path}: val_psnr {metrics['val_psnr']:.3f}  val_ssim {metrics['val_ssim']:.5f}"
        if per_bucket:
            scores = [sum(validate(model, d, cpu, precision, config.channels_last)[0]["val_psnr"] for d in sets)
                      / len(sets) for sets in per_bucket]
            line += "  buckets " + " ".join(f"{s:.3f}" for s in scores) + f"  (mean {sum(scores) / 6:.3f})"
        print(line, flush=True)


if __name__ == "__main__":
    main()

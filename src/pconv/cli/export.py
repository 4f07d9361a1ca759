"""`pconv export`: the network as ONNX or TorchScript, checked against PyTorch."""
from __future__ import annotations

import argparse

HELP = "export the network to ONNX or TorchScript (verified against PyTorch)"

#: Largest |exported - PyTorch| (outputs in [0, 1]) accepted; a quarter of one 8-bit grey level.
TOLERANCE = 1e-3


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", required=True, choices=["onnx", "torchscript"], help="output format")
    p.add_argument("--weights", help="weights file (.safetensors); default: the model shipped with pconv")
    p.add_argument("--size", type=int, default=None,
                   help="export (and check) at SIZE x SIZE; a multiple of 2**depth. Default: the model's training size")
    p.add_argument("--dynamic", action="store_true", help="let batch, height and width vary (multiples of 2**depth)")
    p.add_argument("-o", "--output", help="output file (default: pconv.onnx / pconv.torchscript.pt)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def run(args: argparse.Namespace) -> int:
    from pconv.export import export_model
    from pconv.weights import load_model

    model = load_model(args.weights)
    out = args.output or ("pconv.onnx" if args.format == "onnx" else "pconv.torchscript.pt")
    report = export_model(model, out, format=args.format, size=args.size, dynamic=args.dynamic,
                          opset=args.opset, overwrite=args.overwrite)
    shapes = ", ".join("×".join(map(str, s)) for s in report.checked_shapes)
    print(f"wrote {report.path} ({report.format}, {'dynamic' if report.dynamic else 'fixed'} size, "
          f"exported at {report.size}×{report.size})")
    print(f"max abs diff vs PyTorch: {report.max_abs_diff:.3g} (outputs in [0, 1]; checked on {shapes})")
    print("inputs: image (B,3,H,W) float in [0,1], mask (B,1,H,W) float 1 = valid 0 = hole; "
          f"H, W multiples of {model.config.multiple}; output (B,3,H,W): composite it with the input")
    if report.max_abs_diff > TOLERANCE:
        print(f"pconv export: warning: the difference exceeds {TOLERANCE}; do not trust this file")
        return 1
    return 0

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
    m, s = model.config.multiple, report.size
    if report.dynamic:
        sizes = (f"any batch B and any H, W that are multiples of {m} (traced at {s}x{s}); pad other sizes "
                 "with the padding marked as hole")
        dims = "B,3,H,W", "B,1,H,W"
    else:
        sizes = f"exactly 1 photo of {s}x{s} (for other sizes export with --size or --dynamic: multiples of {m})"
        dims = f"1,3,{s},{s}", f"1,1,{s},{s}"
    print(f"wrote {report.path} ({report.format}, {'dynamic' if report.dynamic else 'fixed'} size)")
    print(f"max abs diff vs PyTorch: {report.max_abs_diff:.3g} (outputs in [0, 1]; checked on {shapes})")
    print(f"inputs: image ({dims[0]}) float in [0,1], mask ({dims[1]}) float 1 = valid 0 = hole: {sizes}; "
          "output: the same shape as image, to composite with the input (known pixels from the input)")
    if report.max_abs_diff > TOLERANCE:
        print(f"pconv export: warning: the difference exceeds {TOLERANCE}; do not trust this file")
        return 1
    return 0

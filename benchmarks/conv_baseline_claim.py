"""Reproduction: partial convolutions against the paper's "Conv" baseline and against zero padding.

Liu et al. (ECCV 2018) compare their PConv U-Net with "Conv", the same U-Net of ordinary
convolutions over holes filled with a placeholder, trained with the same loss. This script trains
the arms with the same photos, masks, loss, seed and wall-clock budget, then scores each on NVIDIA's
irregular test masks per hole-ratio bucket, separately for masks with and without holes at the
image border, and draws a contact sheet:

* ``pconv``: the paper's network (the border counts as hole: partial-convolution padding);
* ``conv``: ordinary convolutions over holes holding ImageNet's mean colour (``variant="conv"``);
* ``conv-mask``: ``conv`` plus the mask as a fourth input channel (optional arm);
* ``pconv-zeros``: partial convolutions over the holes, zero padding at the border.

Fair wall-clock on a shared machine: the arms train in interleaved rounds (``--rounds``), each
round a ``pconv train`` process per arm that is stopped by SIGTERM after its share of the budget
(the run saves a checkpoint and exports ``last.safetensors``; the next round resumes it exactly), so
a busy spell on the machine slows every arm alike. One process at a time, one thread. Every
process runs the same code: a copy of ``src/`` taken when the script starts (``OUT/src``).

Run (about 3 × 12 minutes of training, then a few minutes of evaluation):
    .venv/bin/python benchmarks/conv_baseline_claim.py --data data/train-photos --out runs/conv-baseline \\
        --minutes 12 --rounds 3 --size 128

Writes ``OUT/claim.md`` (the tables), ``OUT/claim.json``, ``OUT/eval-ARM/`` (``pconv evaluate`` reports)
and, with ``--sheet``, the contact sheet JPEG.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_EVAL = ROOT.parent / "shared" / "eval-data"
#: The evaluation photos of benchmarks/bench_evaluate.py at 256² and below (40 photos).
EVAL_PHOTOS = ["migan-examples/places2_256_freeform/images", "migan-examples/places2_512_freeform/images",
               "mat-test-sets/CelebA-HQ/images", "mat-test-sets/Places/images"]
ARMS = ("pconv", "conv", "conv-mask", "pconv-zeros")
BUCKETS = ("0.01-0.1", "0.1-0.2", "0.2-0.3", "0.3-0.4", "0.4-0.5", "0.5-0.6")


def snapshot_code(dest: Path) -> Path:
    """A copy of the package sources for every process of the comparison (kept if already there, so
    that evaluating later uses the code that trained)."""
    if not dest.is_dir():
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(ROOT / "src", tmp, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        check = subprocess.run([sys.executable, "-c", "import pconv.train, pconv.evaluate"],
                               env={**os.environ, "PYTHONPATH": str(tmp)}, capture_output=True, text=True)
        if check.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise SystemExit(f"the sources do not import; try again in a moment:\n{check.stderr[-2000:]}")
        os.replace(tmp, dest)
    return dest


def train_arms(arms: Sequence[str], args: argparse.Namespace) -> Dict[str, Dict[str, float]]:
    """Interleaved rounds of ``pconv train`` per arm, each stopped after its share of the budget."""
    share = args.minutes * 60.0 / args.rounds
    model = args.model.strip()
    stats: Dict[str, Dict[str, float]] = {a: {"seconds": 0.0} for a in arms}
    for r in range(args.rounds):
        for arm in arms:
            run = args.out / f"train-{arm}"
            # A wall-clock budget (SIGTERM after `share` seconds), or an equal number of steps (--steps).
            steps = 10_000_000 if args.steps is None else math.ceil(args.steps * (r + 1) / args.rounds)
            cmd = [sys.executable, "-m", "pconv", "train", "--data", str(args.data), "--out", str(run),
                   "--model", model, "--model-variant", arm, "--image-size", str(args.size),
                   "--steps", str(steps), "--threads", "1", "--workers", "0", "--seed", str(args.seed),
                   "--val-count", str(args.val_count), "--val-every", "10000000", "--ckpt-every", "10000000", "--keep-last", "1",
                   "--tensorboard", "false", "--no-progress"]
            if r > 0:
                cmd.append("--resume")
            env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(args.code)}
            start = time.perf_counter()
            with open(args.out / f"train-{arm}.log", "a") as log:
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
                stopped = False
                try:
                    proc.wait(timeout=None if args.steps is not None else share)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGTERM)  # the run saves a checkpoint and exports its weights
                    proc.wait()
                    stopped = True
            stats[arm]["seconds"] += time.perf_counter() - start
            # Stopped by SIGTERM, `pconv train` exits 128 + 15 after saving (0 in older versions).
            if proc.returncode not in ((0, 128 + signal.SIGTERM) if stopped else (0,)):
                raise SystemExit(f"training {arm} failed (exit {proc.returncode}); see {args.out}/train-{arm}.log")
            print(f"round {r + 1}/{args.rounds} {arm}: {_last_step(run)} steps", flush=True)
    for arm in arms:
        stats[arm]["steps"] = float(_last_step(args.out / f"train-{arm}"))
    return stats


def _last_step(run: Path) -> int:
    """The step of a run's exported weights (``pconv.step`` in their metadata)."""
    from safetensors import safe_open

    with safe_open(str(run / "last.safetensors"), "pt") as f:
        return int((f.metadata() or {})["pconv.step"])


def evaluate_arms(arms: Sequence[str], args: argparse.Namespace) -> Dict[str, List[dict]]:
    """``pconv evaluate`` of each arm's last weights on the same cases; returns the per-image rows."""
    from pconv.evaluate import evaluate

    photos = args.eval_photos or [args.eval_data / d for d in EVAL_PHOTOS]
    rows = {}
    for arm in arms:
        result = evaluate(photos, args.eval_masks, ["pconv-smooth"], str(args.size),
                          args.out / f"eval-{arm}", seed=args.seed, per_bucket=args.per_bucket,
                          weights=args.out / f"train-{arm}" / "last.safetensors", style=False, progress=False)
        rows[arm] = result.rows
    return rows


def table(rows: Dict[str, List[dict]], key: str) -> Dict[str, Dict[str, float]]:
    """arm -> column -> mean ``key``; columns: bucket/inner, bucket/border, and all."""
    out: Dict[str, Dict[str, float]] = {}
    for arm, rs in rows.items():
        out[arm] = {}
        for b in BUCKETS:
            for border, name in ((False, "inner"), (True, "border")):
                sel = [r[key] for r in rs if r["bucket"] == b and bool(r["touches_border"]) == border]
                out[arm][f"{b}/{name}"] = sum(sel) / len(sel) if sel else math.nan
        out[arm]["all"] = sum(r[key] for r in rs) / len(rs)
    return out


def counts(rows: List[dict]) -> Dict[str, int]:
    out = {}
    for b in BUCKETS:
        for border, name in ((False, "inner"), (True, "border")):
            out[f"{b}/{name}"] = sum(1 for r in rows if r["bucket"] == b and bool(r["touches_border"]) == border)
    out["all"] = len(rows)
    return out


def markdown(rows: Dict[str, List[dict]], stats: Dict[str, Dict[str, float]], args: argparse.Namespace) -> str:
    cols = [f"{b}/{n}" for b in BUCKETS for n in ("inner", "border")] + ["all"]
    lines = [f"# PConv vs Conv baseline vs zero padding ({args.size}², seed {args.seed})", ""]
    for arm in rows:
        s = stats.get(arm, {})
        lines.append(f"- {arm}: {int(s.get('steps', 0))} steps in {s.get('seconds', 0) / 60:.1f} min")
    lines.append(f"- evaluation: {len(next(iter(rows.values())))} cases per arm, masks {args.eval_masks}")
    n = counts(next(iter(rows.values())))
    for key, title, fmt in (("psnr", "PSNR (dB), whole image", "{:.2f}"), ("ssim", "SSIM", "{:.3f}"),
                            ("hole_l1", "ℓ1 in the hole (%)", "{:.2f}")):
        t = table(rows, key)
        scale = 100.0 if key == "hole_l1" else 1.0
        lines += ["", f"## {title}", "", "| arm | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
        for arm in rows:
            lines.append(f"| {arm} | " + " | ".join(fmt.format(t[arm][c] * scale) for c in cols) + " |")
        lines.append("| cases | " + " | ".join(str(n[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def contact_sheet(arms: Sequence[str], rows: Dict[str, List[dict]], args: argparse.Namespace) -> None:
    """Input with holes, each arm's composite and the ground truth, for a few cases (border and not)."""
    import numpy as np
    from PIL import Image, ImageDraw

    from pconv.evaluate import Case, prepare_case
    from pconv.inference import Inpainter

    first = rows[arms[0]]
    picks = []
    for b, border in (("0.1-0.2", False), ("0.2-0.3", True), ("0.3-0.4", False), ("0.4-0.5", True)):
        cands = [r for r in first if r["bucket"] == b and bool(r["touches_border"]) == border]
        if cands:
            picks.append(cands[len(picks) % len(cands)])
    inpainters = {a: Inpainter(str(args.out / f"train-{a}" / "last.safetensors"), method="pconv-smooth")
                  for a in arms}
    tile, head = 160, 16
    names = ["input"] + list(arms) + ["ground truth"]
    sheet = Image.new("RGB", (tile * len(names), head + tile * len(picks)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, name in enumerate(names):
        draw.text((j * tile + 4, 2), name, fill="black")
    for i, r in enumerate(picks):
        case = Case(r["case"], r["photo"], r["mask"], r["bucket"], r["mask_ratio"], r["touches_border"])
        image, hole, _ = prepare_case(case, str(args.size))
        shown = image.copy()
        shown[hole] = 255
        tiles = [shown] + [np.where(hole[..., None], np.asarray(inpainters[a](image, hole.astype(np.uint8) * 255)),
                                    image) for a in arms] + [image]
        for j, t in enumerate(tiles):
            sheet.paste(Image.fromarray(np.ascontiguousarray(t, dtype=np.uint8)).resize((tile, tile), Image.LANCZOS),
                        (j * tile, head + i * tile))
    args.sheet.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.sheet.with_suffix(".tmp.jpg")
    sheet.save(tmp, format="JPEG", quality=88)
    os.replace(tmp, args.sheet)


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT / "data" / "train-photos", help="training photos")
    p.add_argument("--eval-data", type=Path, default=DEFAULT_EVAL, help="the eval-data folder (evaluation only)")
    p.add_argument("--eval-photos", type=Path, nargs="+", default=None,
                   help="evaluation photo folders (default: the 40 photos of bench_evaluate.py in --eval-data)")
    p.add_argument("--eval-masks", type=Path, default=None,
                   help="mask test set with border flags (default: NVIDIA's masks in --eval-data)")
    p.add_argument("--model", default="cpu", help="architecture of every arm (a name or JSON, as pconv train --model)")
    p.add_argument("--val-count", type=int, default=16, help="training photos held out (pconv train --val-count)")
    p.add_argument("--steps", type=int, default=None,
                   help="train every arm for this many steps instead of a wall-clock budget")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "conv-baseline")
    p.add_argument("--arms", default="pconv,conv,pconv-zeros", help=f"comma-separated, from {', '.join(ARMS)}")
    p.add_argument("--minutes", type=float, default=12.0, help="training wall-clock per arm")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds the budget is split into")
    p.add_argument("--size", type=int, default=128, choices=[128, 256], help="training and evaluation size")
    p.add_argument("--per-bucket", type=int, default=80, help="evaluation cases per hole-ratio bucket")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-training", action="store_true", help="evaluate the runs already in --out")
    p.add_argument("--sheet", type=Path, default=None, help="write the contact sheet here (JPEG)")
    args = p.parse_args(argv)
    arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        p.error(f"unknown arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    args.eval_masks = args.eval_masks or args.eval_data / "nvidia-irregular-masks"
    if not args.eval_masks.exists():
        p.error(f"mask test set {args.eval_masks} not found (pass --eval-data or --eval-masks)")
    args.out.mkdir(parents=True, exist_ok=True)
    args.code = snapshot_code(args.out / "src")
    sys.path.insert(0, str(args.code))
    stats_path = args.out / "train-stats.json"
    if args.skip_training:
        stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
        for arm in arms:
            stats.setdefault(arm, {"seconds": math.nan})["steps"] = float(_last_step(args.out / f"train-{arm}"))
    else:
        stats = train_arms(arms, args)
        stats_path.write_text(json.dumps(stats, indent=1))
    rows = evaluate_arms(arms, args)
    text = markdown(rows, stats, args)
    (args.out / "claim.md").write_text(text)
    (args.out / "claim.json").write_text(json.dumps(
        {"settings": {k: str(v) for k, v in vars(args).items()}, "train": stats,
         **{key: table(rows, key) for key in ("psnr", "ssim", "hole_l1")}}, indent=1))
    print(text)
    if args.sheet is not None:
        contact_sheet(arms, rows, args)
        print(f"contact sheet: {args.sheet}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

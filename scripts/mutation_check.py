"""Targeted breaks of the core modules: does a test notice each one?

Every mutation replaces one exact snippet of a module's source (it must occur exactly once, so a
mutation cannot go stale silently) in a temporary copy of ``src/`` and ``tests/``, then runs the
tests that should notice it against that copy. A mutation is *caught* when those tests fail, and
*survives* when they pass. The checkout itself is never edited.

    .venv/bin/python scripts/mutation_check.py              # every mutation, one at a time
    .venv/bin/python scripts/mutation_check.py --only texture --list

Runs one pytest process at a time (``OMP_NUM_THREADS=1``); exits 1 when any mutation survives.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    """One break: in ``module`` (under src/pconv/), ``old`` becomes ``new``; ``tests`` should fail."""

    name: str
    module: str
    old: str
    new: str
    tests: Tuple[str, ...]


def _m(name: str, module: str, old: str, new: str, *tests: str) -> Mutation:
    return Mutation(name, module, old, new, tests)


TEX = "tests/test_texture.py"
PAT = "tests/test_patch_texture.py"
LAY = "tests/test_layers.py"
MET = "tests/test_metrics.py"
EVA = "tests/test_evaluate.py"
FIL = "tests/test_fill.py"
INF = "tests/test_inference.py"
MUTATIONS: List[Mutation] = [
    # ------------------------------------------------------------------ texture: the steps
    _m("texture: no coherence step", "texture.py",
       "    ty, tx = tgt\n    d_tgt = photo.descriptors(ty, tx)\n",
       "    return cy, cx\n    ty, tx = tgt\n    d_tgt = photo.descriptors(ty, tx)\n", TEX),
    _m("texture: propagation rounds ignored", "texture.py",
       "for _ in range(cfg.propagation):", "for _ in range(4):", TEX),
    _m("texture: coherence factor ignored", "texture.py",
       "<= best * cfg.coherence + 1e-8", "<= best * 1.5 + 1e-8", TEX),
    _m("texture: coherence moves the edge blocks too", "texture.py",
       "ok = (nb >= 0) & ~fixed & photo.free(sy, sx)", "ok = (nb >= 0) & photo.free(sy, sx)", TEX),
    _m("texture: coherence adopts sources that overlap the hole", "texture.py",
       "ok = (nb >= 0) & ~fixed & photo.free(sy, sx)",
       "ok = (nb >= 0) & ~fixed & (sy >= 0) & (sx >= 0) & (sy <= photo.known.shape[0] - photo.block)"
       " & (sx <= photo.known.shape[1] - photo.block)", TEX),
    _m("texture: no thin-hole gate", "texture.py",
       "    if config.min_width > 1:\n", "    if False:\n", TEX),
    _m("texture: min_width ignored", "texture.py",
       "_opened(hole, (y0, y1, x0, x1), config.min_width)", "_opened(hole, (y0, y1, x0, x1), 5)", TEX),
    _m("texture: no edge re-ranking", "texture.py",
       "        if e.numel():\n", "        if False:\n", TEX),
    _m("texture: rerank ignored", "texture.py",
       "kr = min(max(k, cfg.rerank), d_src.shape[0])", "kr = min(max(k, 16), d_src.shape[0])", TEX),
    _m("texture: re-ranking by squared error instead of correlation", "texture.py",
       "pick[e] = cand[torch.arange(e.numel()), (dot / norm).argmax(1)]",
       "pick[e] = cand[torch.arange(e.numel()), ((c_det - t_det[:, :, None] * t_known[:, None]).square()"
       ".sum((0, 3, 4))).argmin(1)]", TEX),
    _m("texture: edge_known ignored", "texture.py",
       "edge = photo.hole_share[ty, tx] <= 1.0 - config.edge_known",
       "edge = photo.hole_share[ty, tx] <= 1.0 - 0.1", TEX),
    _m("texture: no repeat limit", "texture.py",
       "    if cfg.max_repeat > 0:\n        choice = _limit_repeats(", "    if False:\n        choice = _limit_repeats(",
       TEX),
    _m("texture: max_repeat ignored", "texture.py",
       "limit = max(1, math.ceil(max_repeat * choice.numel() / n_src))",
       "limit = max(1, math.ceil(4.0 * choice.numel() / n_src))", TEX),
    _m("texture: the farthest source under the limit", "texture.py",
       "pick[i] = near[i][np.argmax(u < limit)]", "pick[i] = near[i][len(u) - 1 - np.argmax((u < limit)[::-1])]",
       TEX),
    _m("texture: a full list falls back to its first source, not the least used", "texture.py",
       "else near[i][np.argmin(u)]", "else near[i][0]", TEX),
    _m("texture: the repeat limit moves the edge blocks too", "texture.py",
       "for i in order[~edge.numpy()[order]]:", "for i in order:", TEX),
    _m("texture: the edge's uses not counted", "texture.py",
       "uses = np.bincount(pick[edge.numpy()], minlength=n_src)", "uses = np.zeros(n_src, dtype=np.int64)", TEX),
    _m("texture: spread ignored", "texture.py",
       "cfg.spread if cfg.max_repeat > 0 else 0", "64 if cfg.max_repeat > 0 else 0", TEX),
    _m("texture: no mid band", "texture.py",
       "    if config.mid_gain > 0:\n        # the same depth", "    if False:\n        # the same depth", TEX),
    _m("texture: mid_gain ignored (as 1)", "texture.py",
       "canvas = canvas + config.mid_gain * pasted[3:]", "canvas = canvas + pasted[3:]", TEX),
    _m("texture: mid_sigma ignored", "texture.py",
       "gaussian_blur(x, cfg.mid_sigma)[0]", "gaussian_blur(x, 8.0)[0]", TEX),
    _m("texture: mid_start ignored", "texture.py",
       "mid_weight(sub, config.mid_start, config.mid_ramp)", "mid_weight(sub, 4.0, config.mid_ramp)", TEX),
    _m("texture: mid_ramp ignored", "texture.py",
       "mid_weight(sub, config.mid_start, config.mid_ramp)", "mid_weight(sub, config.mid_start, 12.0)", TEX),
    _m("texture: mid band at full weight up to the edge", "texture.py",
       "return torch.from_numpy(np.clip((depth - start) / ramp, 0.0, 1.0)).float()",
       "return torch.from_numpy((depth > 0).astype(np.float32))", TEX),
    _m("texture: no detail-strength descriptor", "texture.py",
       "    if cfg.energy_weight > 0:\n        planes.append(", "    if False:\n        planes.append(", TEX),
    _m("texture: energy_weight ignored (as 6)", "texture.py",
       "planes.append(cfg.energy_weight * detail_strength(", "planes.append(6.0 * detail_strength(", TEX),
    _m("texture: energy_sigma ignored", "texture.py",
       "detail_strength(detail, hole, cfg.energy_sigma, cfg.energy_mean)",
       "detail_strength(detail, hole, 32.0, cfg.energy_mean)", TEX),
    _m("texture: energy_mean ignored (as the RMS)", "texture.py",
       "detail_strength(detail, hole, cfg.energy_sigma, cfg.energy_mean)",
       "detail_strength(detail, hole, cfg.energy_sigma, \"rms\")", TEX),
    _m("texture: the geometric strength without its scale to the RMS", "texture.py",
       ".mul_(_MAGNITUDE_FLOOR).mul_(_GEOMETRIC_TO_RMS)[0, 0]", ".mul_(_MAGNITUDE_FLOOR)[0, 0]", TEX),
    _m("texture: detail strength reads the hole's pixels too", "texture.py",
       "    known = torch.from_numpy(~hole).float()[None, None]\n",
       "    known = torch.ones(hole.shape)[None, None]\n", TEX),
    _m("texture: no source cap", "texture.py",
       "        if sy.numel() * sx.numel() <= cfg.max_sources:\n", "        if True:\n", TEX),
    _m("texture: max_sources ignored", "texture.py",
       "if sy.numel() * sx.numel() <= cfg.max_sources:", "if sy.numel() * sx.numel() <= 8000:", TEX),
    _m("texture: source_stride ignored", "texture.py",
       "b, stride = photo.block, cfg.source_stride", "b, stride = photo.block, 4", TEX),
    _m("texture: sources may overlap the hole", "texture.py",
       "    free = photo.free(ys, xs)\n    return ys[free], xs[free]",
       "    return ys.reshape(-1), xs.reshape(-1)", TEX),
    _m("texture: candidates ignored (as 4)", "texture.py",
       "k = min(cfg.candidates, d_src.shape[0])", "k = min(4, d_src.shape[0])", TEX),
    _m("texture: no draw, always the nearest", "texture.py",
       "torch.randint(0, k, (stop - start,), generator=gen)]", "torch.zeros(stop - start, dtype=torch.long)]", TEX),
    _m("texture: seed ignored", "texture.py",
       "gen = torch.Generator().manual_seed(int(seed))", "gen = torch.Generator().manual_seed(0)", TEX),
    _m("texture: gain ignored (as 0.85)", "texture.py",
       "canvas = config.gain * pasted[:3]", "canvas = 0.85 * pasted[:3]", TEX),
    _m("texture: sigma ignored", "texture.py",
       "    low = gaussian_blur(x, cfg.sigma)\n", "    low = gaussian_blur(x, 2.5)\n", TEX),
    _m("texture: block ignored", "texture.py",
       "b = min(config.block, (min(hole.shape) // 2) * 2)", "b = min(16, (min(hole.shape) // 2) * 2)", TEX),
    _m("texture: context ignored", "texture.py",
       "    ctx = cfg.context * b\n", "    ctx = 3 * b\n", TEX),
    _m("texture: plain mean instead of variance-preserving blending", "texture.py",
       "norm = coherent * s1 + (1 - coherent) * s2.sqrt()", "norm = s1", TEX),
    _m("texture: no sin² window", "texture.py",
       "    window = (win1[:, None] * win1[None, :]).expand(ty.numel(), b, b)\n",
       "    window = torch.ones(ty.numel(), b, b)\n", TEX),
    _m("texture: known pixels not restored", "texture.py",
       "np.where(sub[:, :, None], out.permute(1, 2, 0).numpy(), image[y0:y1, x0:x1])",
       "out.permute(1, 2, 0).numpy()", TEX),
    _m("texture: the fast blur's border replicated, not reflected", "texture.py",
       "borderType=cv2.BORDER_REFLECT_101", "borderType=cv2.BORDER_REPLICATE", TEX),
    # ------------------------------------------------------------------ patch texture
    _m("patch texture: the band never fades", "patch_texture.py",
       "    if config.agreement > 0:\n        band *=", "    if False:\n        band *=", PAT),
    _m("patch texture: agreement ignored (as 48)", "patch_texture.py",
       "agreement_weight(low, fill, config.sigma, config.agreement)", "agreement_weight(low, fill, config.sigma, 48.0)", PAT),
    _m("patch texture: agreement compared unblurred", "patch_texture.py",
       "fill_low = cv2.GaussianBlur(fill.astype(np.float32), (0, 0), sigma, borderType=cv2.BORDER_REFLECT)",
       "fill_low = fill.astype(np.float32)", PAT),
    # ------------------------------------------------------------------ layers
    _m("layers: no re-scaling by sum(1)/sum(M)", "layers.py",
       "scale = torch.where(valid, total / window_sum, 0.0)", "scale = torch.where(valid, 1.0, 0.0)", LAY),
    _m("layers: updated mask valid everywhere", "layers.py",
       "        valid = window_sum > 0.5\n", "        valid = window_sum > -1.0\n", LAY),
    _m("layers: updated mask valid only where the whole window is", "layers.py",
       "        valid = window_sum > 0.5\n",
       "        valid = window_sum > in_channels * kernel_size[0] * kernel_size[1] - 0.5\n", LAY),
    _m("layers: features not masked", "layers.py",
       "    return x * mask.to(x.dtype)\n", "    return x\n", LAY),
    _m("layers: a one-channel mask counts one channel, not C", "layers.py",
       "            return mask.float() * channels\n", "            return mask.float()\n", LAY),
    _m("layers: dilation ignored by the window sums", "layers.py",
       "rows = sum(t[:, :, :, j * dw: j * dw + sw * (w_out - 1) + 1: sw] for j in range(kw))",
       "rows = sum(t[:, :, :, j: j + sw * (w_out - 1) + 1: sw] for j in range(kw))", LAY),
    # ------------------------------------------------------------------ metrics and evaluate
    _m("metrics: PSNR with 20 log10", "metrics.py",
       "10.0 * math.log10(1.0 / value)", "20.0 * math.log10(1.0 / value)", MET, EVA),
    _m("metrics: hole PSNR over the whole image", "metrics.py",
       "    x, y = _hole_values(a, b, hole)\n    return _psnr_from_mse(", "    x, y = a, b\n    return _psnr_from_mse(",
       MET, EVA),
    _m("metrics: hole l1 over the whole image", "metrics.py",
       "    x, y = _hole_values(a, b, hole)\n    return float(np.mean(np.abs(x - y))) if x.size",
       "    x, y = a, b\n    return float(np.mean(np.abs(x - y))) if x.size", MET, EVA),
    _m("metrics: SSIM with an 11 px window", "metrics.py",
       "channel_axis=channel_axis, win_size=SSIM_WINDOW", "channel_axis=channel_axis, win_size=11", MET, EVA),
    _m("metrics: detail of the target over itself", "metrics.py",
       "    return hole_detail(output, hole) / ref", "    return hole_detail(target, hole) / ref", MET, EVA),
    _m("metrics: detail blur sigma 3", "metrics.py",
       "low = cv2.GaussianBlur(grey, (0, 0), DETAIL_SIGMA)", "low = cv2.GaussianBlur(grey, (0, 0), 3.0)", MET, EVA),
    _m("evaluate: detail ratio of the ground truth against itself", "evaluate.py",
       'm["detail"] = detail_ratio(out, image, hole)', 'm["detail"] = detail_ratio(image, image, hole)', EVA),
    _m("evaluate: style distance of the ground truth against itself", "evaluate.py",
       'm["style"] = _STATE["style"](out, image, hole)', 'm["style"] = _STATE["style"](image, image, hole)', EVA),
    _m("evaluate: detail summarised by the mean", "evaluate.py",
       "stats[key] = _median(values) if key in MEDIAN_METRICS else _mean(values)", "stats[key] = _mean(values)", EVA),
    _m("evaluate: summaries by the median", "evaluate.py",
       "stats[key] = _median(values) if key in MEDIAN_METRICS else _mean(values)", "stats[key] = _median(values)", EVA),
    _m("evaluate: seconds not measured", "evaluate.py",
       "seconds = time.perf_counter() - start", "seconds = 0.0", EVA),
    _m("evaluate: tables without their display scale", "evaluate.py",
       'return f"{value * scale:.{decimals}f}"', 'return f"{value:.{decimals}f}"', EVA),
    # ------------------------------------------------------------------ fill
    _m("fill: known pixels not weighted", "fill.py",
       "    sums, weights = [x * w], [w]\n", "    sums, weights = [x], [torch.ones_like(w)]\n", FIL),
    _m("fill: coarsest empty cells take 0, not the mean", "fill.py",
       "f = torch.where(wl > 0, s / wl.clamp_min(1e-12), mean)", "f = torch.where(wl > 0, s / wl.clamp_min(1e-12), 0.0)",
       FIL),
    _m("fill: no relaxation at full resolution", "fill.py",
       "fixed, steps = wl >= 1.0, iterations if level else fine_iterations",
       "fixed, steps = wl >= 1.0, iterations if level else 0", FIL),
    _m("fill: biharmonic steps dropped", "fill.py",
       "    return _relax_biharmonic(f, fixed, steps) if biharmonic else f\n", "    return f\n", FIL),
    # ------------------------------------------------------------------ inference compositing
    _m("inference: a window's whole output pasted, known pixels included", "inference.py",
       "            region[win.paste] = win.out[win.paste]", "            region[...] = win.out", INF),
    _m("inference: flip average without flipping back", "inference.py",
       "y = (y + self._net(xt.flip(3), mt.flip(3)).float().flip(3)) * 0.5",
       "y = (y + self._net(xt.flip(3), mt.flip(3)).float()) * 0.5", INF),
]


def _copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "build")
    for name in ("src", "tests", "benchmarks", "scripts"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "BENCHMARKS.md", "MODEL_CARD.md"):
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, dest / name)


def _run_tests(tree: Path, tests: Sequence[str], timeout_s: float) -> Tuple[bool, List[str], float]:
    """Whether the tests pass against the copy at ``tree``, the names of those that failed, seconds."""
    env = dict(os.environ, PYTHONPATH=str(tree / "src"), OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", *tests],
                              cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout_s, text=True)
    except subprocess.TimeoutExpired:
        return False, ["(timed out)"], time.perf_counter() - start  # a hang counts as noticed
    failed = [line.split()[1].split("::", 1)[-1] for line in proc.stdout.splitlines()
              if line.startswith(("FAILED ", "ERROR ")) and len(line.split()) > 1]
    return proc.returncode == 0, failed, time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default="", help="run the mutations whose name contains this text")
    p.add_argument("--list", action="store_true", help="list the selected mutations and exit")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per mutation's test run")
    args = p.parse_args(argv)
    selected = [m for m in MUTATIONS if args.only in m.name]
    if not selected:
        p.error(f"no mutation name contains {args.only!r}")
    if args.list:
        for m in selected:
            print(f"{m.name}  [{' '.join(m.tests)}]")
        return 0
    with tempfile.TemporaryDirectory(prefix="pconv-mutation-") as tmp:
        tree = Path(tmp) / "tree"
        _copy_tree(tree)
        ok, _, _ = _run_tests(tree, sorted({t for m in selected for t in m.tests}), args.timeout)
        if not ok:
            print("the tests fail on the unmodified tree; fix them first", file=sys.stderr)
            return 2
        survived, stale = [], []
        for i, m in enumerate(selected, 1):
            path = tree / "src" / "pconv" / m.module
            original = path.read_text()
            count = original.count(m.old)
            if count != 1:
                print(f"[{i}/{len(selected)}] STALE    {m.name}: its snippet occurs {count} times in {m.module}; "
                      "update the mutation", flush=True)
                stale.append(m.name)
                continue
            path.write_text(original.replace(m.old, m.new))
            try:
                passed, failed, seconds = _run_tests(tree, m.tests, args.timeout)
            finally:
                path.write_text(original)
            by = "" if passed else f" by {', '.join(failed[:3])}{' ...' if len(failed) > 3 else ''}"
            print(f"[{i}/{len(selected)}] {'SURVIVED' if passed else 'caught  '} {m.name} ({seconds:.0f} s){by}",
                  flush=True)
            if passed:
                survived.append(m.name)
    total = len(selected) - len(stale)
    print(f"\nscore: {total - len(survived)}/{total} caught" + (f" ({len(stale)} stale, not run)" if stale else ""))
    for name in survived:
        print(f"  survived: {name}")
    return 2 if stale else 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())

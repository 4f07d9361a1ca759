"""Scores per 10 % hole-area bin, LaMa's reporting beside NVIDIA's buckets.

LaMa's evaluation (Suvorov et al. 2022) groups the images of each mask set by the share of the
image the hole covers, in ten bins ``0-10%`` … ``90-100%``: a bin holds ``lo <= area < hi`` (the
last one also ``area = 1``). :func:`summarise_bins` takes the per-image rows of ``pconv evaluate``
and returns, per method, set and bin, the image count, the mean hole ratio and each metric (mean,
or median for the medians of the main table); :func:`render_bins_markdown` writes its tables.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

__all__ = ["AREA_BIN_EDGES", "AREA_BIN_LABELS", "area_bin", "summarise_bins", "render_bins_markdown",
           "BIN_METRICS"]

AREA_BIN_EDGES: Tuple[float, ...] = tuple(float(v) for v in np.linspace(0.0, 1.0, 11))
AREA_BIN_LABELS: Tuple[str, ...] = tuple(f"{10 * i}-{10 * (i + 1)}%" for i in range(10))
#: The metrics the bin tables show (keys of pconv.evaluate.METRICS).
BIN_METRICS: Tuple[str, ...] = ("psnr", "ssim", "l1", "hole_psnr", "hole_l1")


def area_bin(ratio: float) -> str:
    """Label of the 10 % bin holding hole-area ratio ``ratio`` (LaMa's rule: [lo, hi), 1.0 in the last)."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"a hole-area ratio lies in [0, 1], got {ratio}")
    index = int(np.searchsorted(AREA_BIN_EDGES, ratio, side="right")) - 1
    return AREA_BIN_LABELS[min(index, len(AREA_BIN_LABELS) - 1)]


def _stat(values: Sequence[float], median: bool) -> float:
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return math.nan
    if not median and any(math.isinf(v) for v in vals):
        return math.inf
    return float(np.median(vals) if median else np.mean(vals))


def summarise_bins(rows: Sequence[Mapping[str, Any]], methods: Sequence[str], sets: Sequence[str],
                   metrics: Sequence[str], medians: Sequence[str] = ()) -> Dict[str, Dict[str, Dict[str, Dict[str, float]]]]:
    """method -> set -> bin -> {"n", "hole_ratio", metric...}, for the bins that hold images.

    ``rows`` are ``pconv evaluate``'s (keys ``method``, ``bucket`` = the set, ``hole_ratio``); the
    bin is taken from each row's measured hole ratio."""
    out: Dict[str, Dict[str, Dict[str, Dict[str, float]]]] = {}
    for method in methods:
        out[method] = {}
        for s in sets:
            groups: Dict[str, List[Mapping[str, Any]]] = {}
            for r in rows:
                if r["method"] == method and r["bucket"] == s:
                    groups.setdefault(area_bin(float(r["hole_ratio"])), []).append(r)
            out[method][s] = {}
            for label in AREA_BIN_LABELS:
                if label not in groups:
                    continue
                sel = groups[label]
                stats = {"n": float(len(sel)), "hole_ratio": _stat([float(r["hole_ratio"]) for r in sel], False)}
                for key in metrics:
                    stats[key] = _stat([float(r.get(key, math.nan)) for r in sel], key in medians)
                out[method][s][label] = stats
    return out


def render_bins_markdown(bins: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]], methods: Sequence[str],
                         sets: Sequence[str], titles: Mapping[str, Tuple[str, str, float, int]]) -> str:
    """Markdown: per metric, one table of method × bin for each set, with a row of image counts.

    ``titles``: metric -> (title, unit, display scale, decimals)."""
    lines = ["## Per 10 % hole-area bin (LaMa's grouping: lo <= hole area < hi)", ""]
    for key, (title, unit, scale, decimals) in titles.items():
        lines += [f"### {title}{f' ({unit})' if unit else ''}", ""]
        for s in sets:
            labels = [b for b in AREA_BIN_LABELS if any(b in bins[m][s] for m in methods)]
            if not labels:
                continue
            lines.append(f"| {s} | " + " | ".join(labels) + " |")
            lines.append("|---|" + "---:|" * len(labels))
            for m in methods:
                cells = []
                for b in labels:
                    v = bins[m][s].get(b, {}).get(key, math.nan)
                    cells.append("–" if math.isnan(v) else "inf" if math.isinf(v) else f"{v * scale:.{decimals}f}")
                lines.append(f"| {m} | " + " | ".join(cells) + " |")
            lines.append("| images | " + " | ".join(str(int(bins[methods[0]][s].get(b, {}).get("n", 0)))
                                                 for b in labels) + " |")
            lines.append("")
    return "\n".join(lines)

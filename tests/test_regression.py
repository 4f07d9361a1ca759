"""Regression guard: the shipped model(s) on a fixed set of real photos with NVIDIA's test masks.

Each guarded method must keep its mean PSNR (composite, whole image) above a floor in every
hole-ratio bucket and, where the table says so, above every classical method on the same cases.
The floors sit about 0.3 dB under what the shipped model scores here (the figures in comments), so
a model or inference change that costs quality fails. 18 cases at 256²: 3 photos per bucket from
MI-GAN's Places365 validation photos, one NVIDIA irregular mask each.

The evaluation material is research-only and lives outside the repository, in ../shared/eval-data;
without it these tests skip with the reason, and under ``CI=true`` they fail (tests/conftest.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest

#: The shipped network's fill alone, as ``Inpainter(method=...)`` names it.
NETWORK = "pconv-smooth"
#: The default method: the network's fill plus detail copied from the photo.
PHOTOGRAPHIC = "pconv"


@dataclass(frozen=True)
class Guard:
    floors: Tuple[float, ...]  #: mean PSNR floor (dB) per bucket, in BUCKETS order
    beats_classical: bool  #: must its mean PSNR exceed every classical method's in every bucket?
    detail: Optional[Tuple[float, float]] = None  #: range of the median detail ratio in every bucket


#: What is guarded. Measured with the shipped file (bf16 on an AVX-512 BF16 CPU; fp32 agrees within
#: 0.05 dB): pconv-smooth 33.71, 28.21, 27.37, 23.23, 24.30, 18.81; pconv 32.76, 27.63, 26.60, 22.19,
#: 22.63, 17.80 (median detail ratio 0.91, 0.90, 1.06, 0.94, 1.02, 0.94; pconv-smooth's 0.07-0.34);
#: best classical 32.75, 27.34, 26.07, 20.82, 22.41, 16.77. The photographic fill trades PSNR for
#: texture by design: on the 240 evaluation cases it trails the best classical method in the three
#: smallest buckets (MODEL_CARD.md), so only its floors and detail range are guarded here.
GUARDED: Dict[str, Guard] = {
    NETWORK: Guard(floors=(33.4, 27.9, 27.0, 22.9, 24.0, 18.5), beats_classical=True),
    PHOTOGRAPHIC: Guard(floors=(32.4, 27.3, 26.3, 21.9, 22.3, 17.5), beats_classical=False, detail=(0.6, 1.4)),
}
CLASSICAL = ("telea", "ns", "biharmonic")
BUCKETS = ("0.01-0.1", "0.1-0.2", "0.2-0.3", "0.3-0.4", "0.4-0.5", "0.5-0.6")
_PHOTOS = "migan-examples/places2_256_freeform/images/Places365_val_{}.jpg"
#: (bucket, photo, NVIDIA mask file) for every case.
CASES: Tuple[Tuple[str, str, str], ...] = tuple(
    (bucket, _PHOTOS.format(photo), mask)
    for photo, masks in (("00000285", ("00900", "03390", "05560", "06180", "08470", "10140")),
                         ("00017131", ("00720", "03620", "05090", "06520", "09780", "10810")),
                         ("00000332", ("01630", "02510", "04190", "07000", "09220", "10010")))
    for bucket, mask in zip(BUCKETS, (f"{m}.png" for m in masks)))
SIZE = 256


def _case(photo: str, mask: str, data: Path) -> Tuple[np.ndarray, np.ndarray]:
    """Ground truth (centre square, 256², Lanczos) and hole (nearest), as `pconv evaluate` prepares them."""
    from PIL import Image

    from pconv.imageio import read_image
    from pconv.masks.io import read_mask_file, resize_hole

    image = read_image(data / photo).rgb
    h, w = image.shape[:2]
    s = min(h, w)
    image = image[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    if s != SIZE:
        image = np.asarray(Image.fromarray(image).resize((SIZE, SIZE), Image.LANCZOS))
    hole = resize_hole(read_mask_file(data / "nvidia-irregular-masks" / "masks" / mask), SIZE, SIZE)
    return np.ascontiguousarray(image), hole


@pytest.fixture(scope="module")
def scores(eval_data) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Mean PSNR (``"psnr"``) and median detail ratio (``"detail"``) per method and bucket over CASES."""
    data = eval_data()
    from pconv.inference import Inpainter
    from pconv.metrics import detail_ratio, psnr

    cases = [(bucket, *_case(photo, mask, data)) for bucket, photo, mask in CASES]
    result: Dict[str, Dict[str, Dict[str, float]]] = {"psnr": {}, "detail": {}}
    for method in (*GUARDED, *CLASSICAL):
        inpainter = Inpainter(method=method, device="cpu")
        per_bucket: Dict[str, List[float]] = {}
        detail: Dict[str, List[float]] = {}
        for bucket, image, hole in cases:
            out = np.asarray(inpainter(image, hole))
            np.testing.assert_array_equal(out[~hole], image[~hole])
            per_bucket.setdefault(bucket, []).append(psnr(out, image))
            detail.setdefault(bucket, []).append(detail_ratio(out, image, hole))
        result["psnr"][method] = {b: float(np.mean(per_bucket[b])) for b in BUCKETS}
        result["detail"][method] = {b: float(np.median(detail[b])) for b in BUCKETS}
    return result


def test_cases_cover_every_bucket_equally() -> None:
    assert sorted(b for b, _, _ in CASES) == sorted(BUCKETS * 3)
    assert all(len(g.floors) == len(BUCKETS) for g in GUARDED.values())


@pytest.mark.parametrize("method", list(GUARDED))
def test_psnr_stays_above_the_floor(scores, method: str) -> None:
    psnr = scores["psnr"]
    low = {b: (round(psnr[method][b], 2), floor) for b, floor in zip(BUCKETS, GUARDED[method].floors)
           if psnr[method][b] < floor}
    assert not low, f"{method}: mean PSNR below the floor (measured, floor) in {low}"


@pytest.mark.parametrize("method", [m for m, g in GUARDED.items() if g.beats_classical])
def test_psnr_above_every_classical_method(scores, method: str) -> None:
    psnr = scores["psnr"]
    behind = {(b, c): (round(psnr[method][b], 2), round(psnr[c][b], 2))
              for b in BUCKETS for c in CLASSICAL if psnr[method][b] <= psnr[c][b]}
    assert not behind, f"{method} is not ahead of (bucket, classical method): {behind}"


@pytest.mark.parametrize("method", [m for m, g in GUARDED.items() if g.detail])
def test_detail_ratio_stays_in_range(scores, method: str) -> None:
    lo, hi = GUARDED[method].detail  # type: ignore[misc]
    out = {b: round(v, 2) for b, v in scores["detail"][method].items() if not lo <= v <= hi}
    assert not out, f"{method}: median detail ratio outside [{lo}, {hi}] in {out}"


def test_the_photographic_fill_is_more_detailed_than_the_smooth_one(scores) -> None:
    detail = scores["detail"]
    assert all(detail[PHOTOGRAPHIC][b] > 2 * detail[NETWORK][b] for b in BUCKETS)


@pytest.mark.parametrize("ci, outcome", [("true", "failed"), ("", "skipped")])
def test_missing_evaluation_data_fails_under_ci_and_skips_elsewhere(tmp_path, ci: str, outcome: str) -> None:
    """The guard and the NVIDIA mask test, pointed at a folder that does not exist."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "CI": ci, "PCONV_EVAL_DATA": str(tmp_path / "nowhere"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfs", "-p", "no:cacheprovider",
                           "tests/test_regression.py::test_psnr_stays_above_the_floor",
                           "tests/test_masks.py::test_nvidia_set_readable"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    summary = proc.stdout.strip().splitlines()[-1]
    counts = {word.rstrip("s"): int(n) for n, word in
              (part.split()[:2] for part in summary.split(" in ")[0].split(", "))}
    if outcome == "failed":  # a fixture that fails is an error of each test using it
        assert counts.get("failed", 0) + counts.get("error", 0) == 3 and proc.returncode == 1, proc.stdout[-2000:]
    else:
        assert counts == {"skipped": 3} and proc.returncode == 0, proc.stdout[-2000:]
    assert str(tmp_path / "nowhere") in proc.stdout and "PCONV_EVAL_DATA" in proc.stdout
    if outcome == "failed":
        assert "CI must run this test" in proc.stdout

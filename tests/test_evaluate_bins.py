"""`pconv evaluate` per LaMa mask set and per 10 % hole-area bin, with images, resolution and seed."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pconv.area_bins import AREA_BIN_LABELS, area_bin, render_bins_markdown, summarise_bins
from pconv.cli import main
from pconv.evaluate import evaluate
from pconv.masks.lama import build_lama_sets
from pconv.masks.testset import build_testset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from skimage import data as skdata

    root = tmp_path_factory.mktemp("bins")
    photos = root / "photos"
    photos.mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        Image.fromarray(getattr(skdata, name)()).resize((80, 64), Image.LANCZOS).save(photos / f"{name}.png")
    build_lama_sets(root / "lama", count=4, size=128, seed=3)
    build_testset(root / "buckets", per_bucket=1, size=(64, 64), seed=0, border="with")
    return root


@pytest.mark.parametrize("ratio,label", [(0.0, "0-10%"), (0.0999, "0-10%"), (0.1, "10-20%"), (0.35, "30-40%"),
                                         (0.5, "50-60%"), (0.9999, "90-100%"), (1.0, "90-100%")])
def test_area_bin_follows_lama_lower_edge_inclusive(ratio, label):
    assert area_bin(ratio) == label


def test_area_bin_rejects_ratios_outside_zero_one():
    with pytest.raises(ValueError, match=r"lies in \[0, 1\]"):
        area_bin(1.5)


def test_summarise_bins_against_a_hand_computation():
    rows = [{"method": m, "bucket": s, "hole_ratio": r, "psnr": p, "detail": d}
            for m, off in (("a", 0.0), ("b", 1.0))
            for s, r, p, d in (("thin", 0.05, 30.0, 0.2), ("thin", 0.08, 32.0, 0.4), ("thin", 0.15, 25.0, 0.9),
                               ("thick", 0.45, 20.0, 0.1), ("thick", 0.41, math.nan, 0.3))
            for p in [p + off]]
    bins = summarise_bins(rows, ["a", "b"], ["thin", "thick"], ["psnr", "detail"], medians=["detail"])
    assert list(bins["a"]["thin"]) == ["0-10%", "10-20%"] and list(bins["a"]["thick"]) == ["40-50%"]
    assert bins["a"]["thin"]["0-10%"] == {"n": 2.0, "hole_ratio": pytest.approx(0.065), "psnr": 31.0,
                                          "detail": pytest.approx(0.3)}
    assert bins["b"]["thin"]["10-20%"]["psnr"] == 26.0
    assert bins["a"]["thick"]["40-50%"]["psnr"] == 20.0  # NaN rows do not count
    text = render_bins_markdown(bins, ["a", "b"], ["thin", "thick"], {"psnr": ("PSNR", "dB", 1.0, 2)})
    assert "| thin | 0-10% | 10-20% |" in text and "| a | 31.00 | 25.00 |" in text and "| images | 2 | 1 |" in text
    assert "| thick | 40-50% |" in text and "| b | 21.00 |" in text


def test_evaluate_reports_per_set_and_per_bin(data, tmp_path):
    result = evaluate(data / "photos", data / "lama", ["telea", "ns"], "128", tmp_path / "out", seed=5,
                      style=False, progress=False)
    assert result.buckets == ["thin", "medium", "thick"]  # the protocol's order
    rows = result.rows
    assert len(rows) == 3 * 3 * 2  # 3 photos per set, 3 sets, 2 methods
    for set_name in result.buckets:
        mine = [r for r in rows if r["method"] == "telea" and r["bucket"] == set_name]
        assert result.summary["telea"][set_name]["psnr"] == pytest.approx(np.mean([r["psnr"] for r in mine]))
    bins = json.loads((tmp_path / "out" / "summary_bins.json").read_text())["bins"]
    for set_name in result.buckets:
        mine = [r for r in rows if r["method"] == "ns" and r["bucket"] == set_name]
        expected = {}
        for r in mine:
            expected.setdefault(area_bin(r["hole_ratio"]), []).append(r["ssim"])
        assert {b: v["n"] for b, v in bins["ns"][set_name].items()} == {b: len(v) for b, v in expected.items()}
        for b, values in expected.items():
            assert bins["ns"][set_name][b]["ssim"] == pytest.approx(np.mean(values))
    text = (tmp_path / "out" / "results.md").read_text()
    assert "images: 9 (3 photos); resolution: 128x128; seed: 5" in text
    assert "masks: LaMa sets thin, medium, thick (128x128, 4 per set, mask seed 3)" in text
    assert "| method | thin | medium | thick | all |" in text
    assert "## Per 10 % hole-area bin" in text and "| thin | " in text
    assert any(label in text for label in AREA_BIN_LABELS)


def test_area_bins_on_request_for_other_test_sets(data, tmp_path, capsys):
    out = tmp_path / "plain"
    assert main(["evaluate", "--photos", str(data / "photos"), "--masks", str(data / "buckets"), "--methods", "telea",
                 "--size", "native", "--out", str(out), "--no-style", "--no-progress", "--seed", "2"]) == 0
    printed = capsys.readouterr().out
    assert "Per 10 % hole-area bin" not in printed and not (out / "summary_bins.json").exists()
    assert "images: 18 (3 photos); resolution: 80x64; seed: 2" in printed
    out = tmp_path / "binned"
    assert main(["evaluate", "--photos", str(data / "photos"), "--masks", str(data / "buckets"), "--methods", "telea",
                 "--size", "native", "--out", str(out), "--no-style", "--no-progress", "--area-bins"]) == 0
    bins = json.loads((out / "summary_bins.json").read_text())
    rows = json.loads((out / "rows.json").read_text())
    assert sum(v["n"] for s in bins["sets"] for v in bins["bins"]["telea"][s].values()) == len(rows)
    assert "## Per 10 % hole-area bin" in (out / "results.md").read_text()

"""LaMa's thin / medium / thick mask protocols: parameters, geometry, determinism, files, CLI."""
from __future__ import annotations

import json
from dataclasses import replace

import cv2
import numpy as np
import pytest

from pconv.cli import main
from pconv.errors import PConvError
from pconv.masks import read_mask_file, touches_border
from pconv.masks.lama import (
    LAMA_PROTOCOLS,
    LAMA_SETS,
    LamaBoxes,
    LamaProtocol,
    LamaStrokes,
    build_lama_sets,
    lama_mask,
    lama_protocol,
    read_lama_sets,
)


def masks_of(name: str, size: int, n: int, seed: int = 0):
    protocol = lama_protocol(name, size)
    return [lama_mask(protocol, np.random.default_rng([seed, i])) for i in range(n)]


def inscribed_radius(hole: np.ndarray) -> float:
    """Largest distance from a hole pixel to a known pixel or to outside the image."""
    padded = np.pad(hole, 1).astype(np.uint8)
    return float(cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE).max())


def test_published_parameters():
    """The values of LaMa's configs/data_gen/random_{thin,medium,thick}_{256,512}.yaml."""
    thin, medium, thick = (LAMA_PROTOCOLS[(n, 256)] for n in LAMA_SETS)
    assert (thin.strokes.min_times, thin.strokes.max_times, thin.strokes.max_width, thin.strokes.max_len) == (4, 50, 10, 40)
    assert thin.boxes is None and thin.box_weight == 0
    assert (medium.strokes.max_times, medium.strokes.max_width, medium.strokes.max_len) == (5, 50, 100)
    assert medium.boxes == LamaBoxes(margin=0, min_size=10, max_size=50, min_times=1, max_times=5)
    assert thick.boxes == LamaBoxes(margin=10, min_size=30, max_size=150, min_times=1, max_times=3)
    assert LAMA_PROTOCOLS[("thick", 512)].strokes == LamaStrokes(1, 5, 250, 450)
    assert LAMA_PROTOCOLS[("thin", 512)].strokes == LamaStrokes(4, 70, 20, 100)
    assert all(p.variants == 5 and p.max_area == 0.5 and p.strokes.max_angle == 4 for p in LAMA_PROTOCOLS.values())
    assert medium.box_weight == thick.box_weight == 0.3


def test_other_sizes_scale_the_nearer_published_table():
    half = lama_protocol("thick", 128)
    assert half.size == 128 and half.strokes.max_width == 50 and half.strokes.max_len == 100
    assert half.strokes.min_width == 2 and half.strokes.min_len == 5 and half.strokes.max_times == 5
    assert half.boxes == LamaBoxes(margin=5, min_size=15, max_size=75, min_times=1, max_times=3)
    assert lama_protocol("thin", 384) == LAMA_PROTOCOLS[("thin", 512)].scaled(384)  # 384 is nearer 512 (ratio)
    assert lama_protocol("thin", 300) == LAMA_PROTOCOLS[("thin", 256)].scaled(300)
    assert lama_protocol("medium", 512) is LAMA_PROTOCOLS[("medium", 512)]


@pytest.mark.parametrize("size", [128, 256, 320, 512])
def test_shapes_and_hole_ratio_range(size):
    for name in LAMA_SETS:
        for hole in masks_of(name, size, 12, seed=size):
            assert hole.shape == (size, size) and hole.dtype == bool
            assert 0 < hole.mean() <= 0.5  # candidates over max_area are dropped, empty ones too


def test_sets_differ_as_their_names_say():
    """Median inscribed radius (half the typical hole width): thin < medium < thick, well apart."""
    radius = {n: np.median([inscribed_radius(h) for h in masks_of(n, 256, 40, seed=1)]) for n in LAMA_SETS}
    assert radius["thin"] < 20 < radius["medium"] < 45 < radius["thick"], radius


@pytest.mark.parametrize("width", [5, 21])
def test_one_stroke_has_the_protocol_width_and_stays_connected(width):
    protocol = LamaProtocol("thin", 256, LamaStrokes(1, 1, max_width=1, max_len=30, min_width=width))
    inside = 0
    for i in range(30):
        hole = lama_mask(protocol, np.random.default_rng(i))
        assert cv2.connectedComponents(hole.astype(np.uint8))[0] == 2  # background + one stroke
        if not touches_border(hole, 1):  # strokes cut by the border are narrower there
            inside += 1
            # Half the width, more where segments fold back over each other.
            assert width / 2 - 1 <= inscribed_radius(hole) <= 2 * width
        ys, xs = np.nonzero(hole)
        extent = max(ys.max() - ys.min(), xs.max() - xs.min())
        assert extent <= 5 * (10 + 30) + width  # at most five segments of length < min_len + max_len
    assert inside >= 10


def test_boxes_respect_sides_and_margin():
    boxes = LamaBoxes(margin=10, min_size=30, max_size=150, min_times=1, max_times=1)
    protocol = LamaProtocol("thick", 256, LamaStrokes(1, 1, 1, 1), boxes, box_weight=1e9)
    for i in range(20):
        hole = lama_mask(protocol, np.random.default_rng(i))
        ys, xs = np.nonzero(hole)
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        assert hole.sum() == h * w  # one filled rectangle
        assert 30 <= h < 150 and 30 <= w < 150
        assert ys.min() >= 10 and xs.min() >= 10 and ys.max() <= 255 - 10 and xs.max() <= 255 - 10


def test_deterministic_for_a_seed_and_stable_when_the_set_grows(tmp_path):
    a = build_lama_sets(tmp_path / "a", count=3, size=128, seed=5)
    b = build_lama_sets(tmp_path / "b", count=5, size=128, seed=5)
    c = build_lama_sets(tmp_path / "c", count=3, size=128, seed=6)
    for name in LAMA_SETS:
        for i in range(3):
            file = f"{name}/{i:05d}.png"
            assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
        assert any((tmp_path / "a" / f"{name}/{i:05d}.png").read_bytes() != (tmp_path / "c" / f"{name}/{i:05d}.png")
                   .read_bytes() for i in range(3))
    assert len(a) == 9 and len(b) == 15 and len(c) == 9


def test_collection_round_trip(tmp_path):
    written = build_lama_sets(tmp_path / "sets", count=4, size=128, seed=1, sets=["thick", "thin"])
    manifest, entries = read_lama_sets(tmp_path / "sets")
    assert manifest["sets"] == ["thick", "thin"] and manifest["size"] == 128 and manifest["seed"] == 1
    assert manifest["protocols"]["thin"]["strokes"]["max_width"] == 5  # 10 px at 256, scaled to 128
    assert [(e.bucket, e.ratio) for e in entries] == [(e.bucket, e.ratio) for e in written]
    for e in entries:
        hole = read_mask_file(e.path)
        assert hole.shape == (128, 128) and abs(hole.mean() - e.ratio) < 1e-6
    assert read_lama_sets(tmp_path) is None  # not a collection
    (tmp_path / "sets" / "thin" / "00002.png").unlink()
    with pytest.raises(PConvError, match="00002.png is listed .* missing"):
        read_lama_sets(tmp_path / "sets")


def test_errors(tmp_path):
    with pytest.raises(PConvError, match="unknown LaMa mask set 'wide'; choose from thin, medium, thick"):
        lama_protocol("wide", 256)
    with pytest.raises(PConvError, match="at least 32 px"):
        lama_protocol("thin", 16)
    with pytest.raises(PConvError, match="count must be at least 1"):
        build_lama_sets(tmp_path / "x", count=0)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(PConvError, match="not empty; choose a new folder or pass --overwrite"):
        build_lama_sets(tmp_path / "full", count=1, size=64)
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


def test_cli_writes_and_summarises(tmp_path, capsys):
    out = tmp_path / "lama"
    assert main(["masks", "lama", str(out), "--count", "3", "--size", "64", "--seed", "2", "--sets", "thin,thick"]) == 0
    assert "wrote 6 masks (thin, thick; 64x64, seed 2)" in capsys.readouterr().out
    assert json.loads((out / "lama.json").read_text())["count"] == 3
    assert sorted(p.name for p in (out / "thin").glob("*.png")) == ["00000.png", "00001.png", "00002.png"]
    assert main(["masks", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "6 LaMa masks (64x64, seed 2)" in text and "0-10%" in text and "90-100%" in text
    rows = {line.split()[0]: [int(v) for v in line.split()[1:]] for line in text.splitlines()
            if line.split() and line.split()[0] in ("thin", "thick")}
    assert sum(rows["thin"]) == 3 and sum(rows["thick"]) == 3
    assert main(["masks", "lama", str(out), "--count", "1"]) != 0  # exists: refused without --overwrite
    assert "--overwrite" in capsys.readouterr().err

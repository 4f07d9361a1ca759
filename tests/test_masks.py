"""Tests for pconv.masks: generators, augmentation, mask files, test sets, video masks, CLI."""
from __future__ import annotations

import numpy as np
import pytest

from pconv.errors import PConvError
from pconv.masks import hole_ratio, stroke_mask


# ---------------------------------------------------------------- strokes
@pytest.mark.parametrize("lo,hi", [(0.01, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.5), (0.5, 0.6)])
def test_stroke_ratio_lands_in_range(lo, hi):
    rng = np.random.default_rng(0)
    for _ in range(10):
        hole = stroke_mask(64, 80, rng, (lo, hi))
        assert hole.dtype == bool and hole.shape == (64, 80)
        assert lo <= hole_ratio(hole) <= hi


def test_stroke_same_seed_same_mask_and_different_seed_differs():
    a = [stroke_mask(48, 48, np.random.default_rng(7)) for _ in range(2)]
    assert np.array_equal(a[0], a[1])
    b = stroke_mask(48, 48, np.random.default_rng(8))
    assert not np.array_equal(a[0], b)


def test_stroke_bad_range_is_clear_error():
    with pytest.raises(PConvError, match="ratio_range"):
        stroke_mask(32, 32, np.random.default_rng(0), (0.5, 0.2))
    with pytest.raises(PConvError, match="no whole pixel"):
        stroke_mask(4, 4, np.random.default_rng(0), (0.30, 0.31))


# ---------------------------------------------------------------- helpers
import csv
import json
from pathlib import Path

import cv2
from PIL import Image

from pconv.cli import main
from pconv.masks import (
    BUCKET_EDGES,
    BUCKETS,
    AugmentConfig,
    FlowMaskConfig,
    augment_mask,
    bucket_of,
    build_testset,
    hole_to_valid,
    read_mask_file,
    read_testset,
    touches_border,
    valid_to_hole,
    video_masks,
    write_mask_file,
)



def _rect_hole(h=32, w=40):
    hole = np.zeros((h, w), bool)
    hole[5:20, 8:30] = True
    hole[25:28, 2:6] = True
    return hole


# ---------------------------------------------------------------- io / polarity
def test_write_read_round_trip_and_white_is_hole(tmp_path):
    hole = _rect_hole()
    p = write_mask_file(tmp_path / "m.png", hole)
    pixels = np.asarray(Image.open(p))
    assert set(np.unique(pixels)) == {0, 255}
    assert np.array_equal(pixels == 255, hole)  # white = hole on disk
    assert np.array_equal(read_mask_file(p), hole)
    assert np.array_equal(read_mask_file(p, invert=True), ~hole)
    write_mask_file(tmp_path / "inv.png", hole, invert=True)  # black = hole on disk
    assert np.array_equal(np.asarray(Image.open(tmp_path / "inv.png")) == 0, hole)
    assert np.array_equal(read_mask_file(tmp_path / "inv.png", invert=True), hole)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["inv.png", "m.png"]  # no temp files left


def test_hole_to_valid_is_paper_polarity():
    hole = _rect_hole()
    m = hole_to_valid(hole)
    assert m.shape == (1, 32, 40) and m.dtype.is_floating_point
    assert np.array_equal(m[0].numpy(), (~hole).astype(np.float32))
    assert hole_to_valid(np.stack([hole, ~hole])).shape == (2, 1, 32, 40)
    assert np.array_equal(valid_to_hole(m), hole)
    assert np.array_equal(valid_to_hole(m.unsqueeze(0).expand(1, 3, 32, 40))[0], hole)  # (N, C, H, W) -> (N, H, W)


@pytest.mark.parametrize("mode", ["L", "1", "RGB", "RGBA", "P", "I;16", "LA"])
def test_read_every_mode(tmp_path, mode):
    hole = _rect_hole()
    grey = Image.fromarray(hole.astype(np.uint8) * 255, mode="L")
    if mode == "I;16":
        img = Image.fromarray(hole.astype(np.uint16) * 65535)
        assert img.mode.startswith("I")
    elif mode == "1":
        img = grey.convert("1")
    else:
        img = grey.convert(mode)
    img.save(tmp_path / "m.png")
    assert np.array_equal(read_mask_file(tmp_path / "m.png"), hole)


def test_read_thresholds_grey_antialiasing_and_jpeg(tmp_path):
    levels = np.array([[0, 100, 127, 128, 200, 255]], np.uint8)
    Image.fromarray(levels).save(tmp_path / "g.png")
    assert read_mask_file(tmp_path / "g.png").tolist() == [[False, False, False, True, True, True]]
    assert read_mask_file(tmp_path / "g.png", threshold=0.6).tolist() == [[False, False, False, False, True, True]]
    hole = np.zeros((64, 64), bool)
    hole[16:48, 8:40] = True
    Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "m.jpg", quality=75)
    assert np.array_equal(read_mask_file(tmp_path / "m.jpg"), hole)


def test_rgba_transparent_counts_as_black(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere...
    rgba[:2, :, 3] = 255  # ...but only the top half is opaque
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    hole = read_mask_file(tmp_path / "a.png")
    assert hole[:2].all() and not hole[2:].any()


def test_wrong_size_errors_unless_nearest_resize(tmp_path):
    hole = _rect_hole(32, 40)
    write_mask_file(tmp_path / "m.png", hole)
    with pytest.raises(PConvError, match=r"40[x×]32.*80[x×]64.*resize"):
        read_mask_file(tmp_path / "m.png", size=(64, 80))
    big = read_mask_file(tmp_path / "m.png", size=(64, 80), resize=True)
    assert big.dtype == bool and big.shape == (64, 80)
    assert np.array_equal(big, np.repeat(np.repeat(hole, 2, 0), 2, 1))  # nearest: pixel replication


def test_io_errors_are_clear(tmp_path):
    with pytest.raises(PConvError, match="does not exist"):
        read_mask_file(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(PConvError, match="cannot read mask file"):
        read_mask_file(tmp_path / "bad.png")
    with pytest.raises(PConvError, match="not a file"):
        read_mask_file(tmp_path)
    with pytest.raises(PConvError, match="PNG"):
        write_mask_file(tmp_path / "m.jpg", _rect_hole())
    with pytest.raises(PConvError, match="does not exist"):
        write_mask_file(tmp_path / "missing" / "m.png", _rect_hole())


# ---------------------------------------------------------------- augmentation
def test_augment_keeps_binary_and_is_seeded():
    rng = np.random.default_rng(0)
    src = stroke_mask(128, 128, rng, (0.05, 0.1))
    grey = src.astype(np.float32) * 0.9 + 0.05  # grey levels 0.05 / 0.95
    for seed in range(5):
        out = augment_mask(grey, (96, 80), np.random.default_rng(seed))
        assert out.dtype == bool and out.shape == (96, 80)
        again = augment_mask(grey, (96, 80), np.random.default_rng(seed))
        assert np.array_equal(out, again)
    assert not np.array_equal(augment_mask(src, None, np.random.default_rng(1)), augment_mask(src, None, np.random.default_rng(2)))


def test_augment_threshold_and_dilation_only():
    levels = np.zeros((64, 64), np.float32)
    levels[10:20, 10:20] = 0.65  # above the paper's 0.6: hole
    levels[40:50, 40:50] = 0.55  # below: valid
    still = AugmentConfig(dilation=(0, 0), max_rotation=0, max_translation=0, crop=(1, 1))
    out = augment_mask(levels, None, np.random.default_rng(0), config=still)
    assert out[10:20, 10:20].all() and out.sum() == 100
    dil = AugmentConfig(dilation=(9, 9), reference_size=64, max_rotation=0, max_translation=0, crop=(1, 1))
    out = augment_mask(levels, None, np.random.default_rng(0), config=dil)
    expect = cv2.dilate((levels > 0.6).astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9)))
    assert np.array_equal(out, expect.astype(bool))
    with pytest.raises(PConvError, match="crop"):
        augment_mask(levels, None, np.random.default_rng(0), config=AugmentConfig(crop=(0, 1)))


# ---------------------------------------------------------------- test sets
def test_buckets_and_bucket_of():
    assert BUCKET_EDGES == (0.01, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6) and len(BUCKETS) == 6
    assert bucket_of(0.01) is None and bucket_of(0.0100001) == 0 and bucket_of(0.1) == 0
    assert bucket_of(0.1000001) == 1 and bucket_of(0.6) == 5 and bucket_of(0.61) is None


def test_touches_border_margin():
    hole = np.zeros((32, 32), bool)
    hole[4, 16] = True
    assert touches_border(hole, 5) and not touches_border(hole, 4)


def test_build_testset_from_strokes(tmp_path):
    entries, short = build_testset(tmp_path / "ts", per_bucket=3, size=(64, 72), seed=3, margin=4)
    assert short == {} and len(entries) == 6 * 2 * 3
    for e in entries:
        hole = e.load()
        ratio = hole.mean()
        assert bucket_of(ratio) == e.bucket
        assert abs(ratio - e.ratio) < 1e-5
        assert touches_border(hole, 4) == e.touches_border
    for b in range(6):
        assert sum(e.bucket == b and e.touches_border for e in entries) == 3
        assert sum(e.bucket == b and not e.touches_border for e in entries) == 3
    # index files agree with each other and with the reader
    rows = list(csv.DictReader(open(tmp_path / "ts" / "index.csv")))
    meta = json.loads((tmp_path / "ts" / "index.json").read_text())
    assert [r["file"] for r in rows] == [m["file"] for m in meta["masks"]]
    assert meta["polarity"] == "white = hole" and meta["size"] == [64, 72]
    assert read_testset(tmp_path / "ts") == entries
    assert read_testset(tmp_path / "ts" / "index.csv") == entries
    # same seed -> identical files; another seed -> different
    build_testset(tmp_path / "again", per_bucket=3, size=(64, 72), seed=3, margin=4)
    build_testset(tmp_path / "other", per_bucket=3, size=(64, 72), seed=4, margin=4)
    names = [r["file"] for r in rows]
    assert all((tmp_path / "ts" / n).read_bytes() == (tmp_path / "again" / n).read_bytes() for n in names)
    assert any((tmp_path / "ts" / n).read_bytes() != (tmp_path / "other" / n).read_bytes() for n in names)


def test_build_testset_refuses_non_empty_and_cleans_up(tmp_path):
    (tmp_path / "ts").mkdir()
    (tmp_path / "ts" / "keep.txt").write_text("x")
    with pytest.raises(PConvError, match="overwrite"):
        build_testset(tmp_path / "ts", per_bucket=1, size=(32, 32), buckets=[0], margin=2)
    assert (tmp_path / "ts" / "keep.txt").exists()
    with pytest.raises(PConvError, match="margin"):
        build_testset(tmp_path / "t2", per_bucket=1, size=(32, 32), buckets=[5], margin=8, border="without")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ts"]  # nothing half-written
    build_testset(tmp_path / "ts", per_bucket=1, size=(32, 32), buckets=[0], margin=2, overwrite=True)
    assert not (tmp_path / "ts" / "keep.txt").exists() and len(read_testset(tmp_path / "ts")) == 2


def test_build_testset_from_folder_and_augmented(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        write_mask_file(src / f"{i:02d}.png", stroke_mask(48, 48, rng, (0.02, 0.35)))
    entries, short = build_testset(tmp_path / "plain", per_bucket=2, size=(48, 48), source=src, margin=3)
    assert len(entries) + sum(short.values()) == 24
    for e in entries:
        assert bucket_of(e.load().mean()) == e.bucket
    entries, short = build_testset(tmp_path / "aug", per_bucket=2, size=(40, 40), source=src, augment=True,
                                   margin=3, buckets=[0, 1, 2], seed=1)
    assert short == {} and len(entries) == 12
    for e in entries:
        hole = e.load()
        assert hole.shape == (40, 40) and bucket_of(hole.mean()) == e.bucket
        assert touches_border(hole, 3) == e.touches_border
    with pytest.raises(PConvError, match="overlap"):
        build_testset(src / "out", per_bucket=1, size=(48, 48), source=src)


def test_nvidia_set_readable(eval_data):
    entries = read_testset(eval_data("nvidia-irregular-masks"))
    assert len(entries) == 1200
    for b in range(6):
        assert sum(e.bucket == b and e.touches_border is False for e in entries) == 100
        assert sum(e.bucket == b and e.touches_border is True for e in entries) == 100
    assert all(bucket_of(e.ratio) == e.bucket for e in entries)
    for e in entries[::150]:  # a few files: the recorded ratio is the file's ratio (white = hole)
        hole = e.load(size=(512, 512))
        assert abs(hole.mean() - e.ratio) < 1e-4
        if e.touches_border is False:
            assert not touches_border(hole, 8)


# ---------------------------------------------------------------- video flow masks
def _texture(rng, h, w, blur=2.0):
    t = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), blur)
    return ((t - t.min()) / (t.max() - t.min()) * 255).astype(np.uint8)


def _synthetic_video(folder: Path, n=4, size=128, side=48, step=(8, 4)):
    """Textured square moving by ``step`` px per frame over a textured background.

    Returns (frames, squares): squares[t] is the square's footprint in frame t. Between frames
    t and t+1 the true occlusion (background covered in t+1) is sq[t+1] & ~sq[t] and the true
    dis-occlusion (background revealed in t+1) is sq[t] & ~sq[t+1]; their union is sq[t] ^ sq[t+1].
    """
    rng = np.random.default_rng(0)
    bg, fg = _texture(rng, size, size), _texture(rng, side, side)
    frames, squares = [], []
    for t in range(n):
        x, y = 20 + step[0] * t, 30 + step[1] * t
        f = bg.copy()
        f[y:y + side, x:x + side] = fg
        sq = np.zeros((size, size), bool)
        sq[y:y + side, x:x + side] = True
        frames.append(f)
        squares.append(sq)
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), f)
    return frames, squares


def _iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


@pytest.mark.parametrize("kind", ["folder", "mjpg"])
def test_flow_masks_find_synthetic_occlusion(tmp_path, kind):
    frames, squares = _synthetic_video(tmp_path / "frames")
    source = tmp_path / "frames"
    if kind == "mjpg":
        source = tmp_path / "v.avi"
        vw = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"MJPG"), 10, frames[0].shape[::-1])
        if not vw.isOpened():
            pytest.skip(f"this OpenCV build ({cv2.__version__}) cannot write MJPG, so no video file to test with")
        for f in frames:
            vw.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
        vw.release()
    out = list(video_masks(source, FlowMaskConfig(method="dis")))
    assert [i for i, _ in out] == [0, 1, 2]
    for i, hole in out:
        truth = squares[i] ^ squares[i + 1]
        # The true region is two 8-px and two 4-px wide strips (1,088 px). DIS places motion
        # boundaries within ~2 px, so even a correct detector loses up to ~half of the thin
        # strips' IoU: we see 0.62-0.68. Trivial answers stay far below 0.5: marking both
        # squares entirely gives 1088/2848 = 0.38, marking nothing 0. So IoU > 0.5 means the
        # occlusions were found, and not just "something moved here".
        assert _iou(hole, truth) > 0.5
        # and nothing is flagged in the static background or the square's interior
        near = cv2.dilate(truth.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        assert (hole & ~near).sum() <= 0.05 * hole.sum()
    # Farneback smooths flow across motion boundaries (polynomial-expansion window), so it
    # only needs to overlap the truth clearly (we see 0.28-0.42; a wrong region gives ~0).
    for i, hole in video_masks(source, FlowMaskConfig(method="farneback")):
        assert _iou(hole, squares[i] ^ squares[i + 1]) > 0.2


def test_flow_masks_static_video_has_no_holes(tmp_path):
    rng = np.random.default_rng(1)
    still = _texture(rng, 64, 64)
    (tmp_path / "f").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "f" / f"{i}.png"), still)
    assert all(not hole.any() for _, hole in video_masks(tmp_path / "f"))


def test_video_errors_are_clear(tmp_path):
    with pytest.raises(PConvError, match="does not exist"):
        list(video_masks(tmp_path / "nope.mp4"))
    (tmp_path / "bad.avi").write_text("not a video")
    with pytest.raises(PConvError, match="cannot open|no frames"):
        list(video_masks(tmp_path / "bad.avi"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(PConvError, match="no frames"):
        list(video_masks(tmp_path / "empty"))
    (tmp_path / "one").mkdir()
    cv2.imwrite(str(tmp_path / "one" / "0.png"), np.zeros((32, 32), np.uint8))
    with pytest.raises(PConvError, match="only one frame"):
        list(video_masks(tmp_path / "one"))
    cv2.imwrite(str(tmp_path / "one" / "1.png"), np.zeros((40, 32), np.uint8))
    with pytest.raises(PConvError, match="--size"):
        list(video_masks(tmp_path / "one"))
    assert len(list(video_masks(tmp_path / "one", size=32))) == 1
    with pytest.raises(PConvError, match="flow method"):
        list(video_masks(tmp_path / "one", FlowMaskConfig(method="raft")))


# ---------------------------------------------------------------- CLI
def test_cli_strokes_and_polarity(tmp_path):
    assert main(["masks", "strokes", str(tmp_path / "s"), "--count", "3", "--size", "48x32", "--seed", "1",
                 "--min-ratio", "0.2", "--max-ratio", "0.3"]) == 0
    files = sorted((tmp_path / "s").iterdir())
    assert [f.name for f in files] == ["00000.png", "00001.png", "00002.png"]
    rng = np.random.default_rng(1)
    for f in files:
        hole = read_mask_file(f)
        assert hole.shape == (32, 48) and 0.2 <= hole.mean() <= 0.3
        assert np.array_equal(hole, stroke_mask(32, 48, rng, (0.2, 0.3)))  # same seed, same masks
    assert main(["masks", "strokes", str(tmp_path / "i"), "--count", "1", "--size", "32", "--invert-mask",
                 "--min-ratio", "0.2", "--max-ratio", "0.3"]) == 0
    dark = (np.asarray(Image.open(tmp_path / "i" / "00000.png")) == 0).mean()
    assert 0.2 <= dark <= 0.3  # inverted: black = hole


def test_cli_errors_exit_2(tmp_path, capsys):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "x").write_text("x")
    assert main(["masks", "strokes", str(tmp_path / "s"), "--count", "1"]) == 2
    assert main(["masks", "video", str(tmp_path / "nope.mp4"), str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err
    assert "pconv masks: error:" in err and "--overwrite" in err and "does not exist" in err


def test_cli_video_of_one_frame_is_an_error(tmp_path, capsys):
    vw = cv2.VideoWriter(str(tmp_path / "one.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 32))
    if not vw.isOpened():
        pytest.skip(f"this OpenCV build ({cv2.__version__}) cannot write MJPG, so no one-frame video to test with")
    vw.write(np.zeros((32, 32, 3), np.uint8))
    vw.release()
    assert main(["masks", "video", str(tmp_path / "one.avi"), str(tmp_path / "v1")]) == 2
    assert "only one frame" in capsys.readouterr().err
    assert not (tmp_path / "v1").exists()  # no empty output folder left behind


def test_cli_video_testset_info(tmp_path, capsys):
    _synthetic_video(tmp_path / "frames", n=3)
    assert main(["masks", "video", str(tmp_path / "frames"), str(tmp_path / "vm")]) == 0
    assert len(list((tmp_path / "vm").glob("frames_*.png"))) == 2
    assert main(["masks", "testset", str(tmp_path / "ts"), "--per-bucket", "2", "--size", "48",
                 "--buckets", "0,3", "--border", "without", "--margin", "3"]) == 0
    entries = read_testset(tmp_path / "ts")
    assert len(entries) == 4 and all(e.touches_border is False for e in entries)
    assert main(["masks", "info", str(tmp_path / "ts")]) == 0
    assert "4 masks" in capsys.readouterr().out


def test_cli_help_states_polarity(capsys):
    for cmd in (["masks", "--help"], ["masks", "testset", "--help"]):
        with pytest.raises(SystemExit):
            main(cmd)
        out = capsys.readouterr().out
        assert "white = hole" in out and "--invert-mask" in out


def test_plain_folder_and_nvidia_full_release_numbering(tmp_path, monkeypatch):
    import pconv.masks.testset as ts

    monkeypatch.setattr(ts, "_NVIDIA_PER_BUCKET", 2)  # the real release: 2,000 per bucket, 12,000 files
    rng = np.random.default_rng(0)
    holes = [stroke_mask(32, 32, rng, (0.02, 0.3)) for _ in range(12)]
    for i, hole in enumerate(holes):
        write_mask_file(tmp_path / f"{i:05d}.png", hole)
    entries = read_testset(tmp_path)
    assert [e.bucket for e in entries] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]  # by file number
    assert [e.touches_border for e in entries] == [False, True] * 6
    (tmp_path / "extra.png").write_bytes((tmp_path / "00000.png").read_bytes())
    entries = read_testset(tmp_path, margin=2)  # not the release's numbering: measured per file
    assert all(e.bucket == bucket_of(e.ratio) for e in entries)
    assert [e.touches_border for e in entries[:12]] == [touches_border(h, 2) for h in holes]


def test_read_testset_errors(tmp_path):
    with pytest.raises(PConvError, match="does not exist"):
        read_testset(tmp_path / "nope")
    with pytest.raises(PConvError, match="no mask images"):
        read_testset(tmp_path)
    (tmp_path / "index.csv").write_text("file,ratio,bucket,touches_border\nmissing.png,0.05,0,1\n")
    with pytest.raises(PConvError, match="does not exist"):
        read_testset(tmp_path)
    (tmp_path / "index.csv").write_text("a,b\n1,2\n")
    with pytest.raises(PConvError, match="columns"):
        read_testset(tmp_path)


def test_frames_in_natural_order(tmp_path):
    from pconv.masks.video import iter_frames

    for i in (1, 2, 10):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), np.full((8, 8), i, np.uint8))
    assert [int(f[0, 0]) for f in iter_frames(tmp_path)] == [1, 2, 10]


# ---------------------------------------------------------------- noise level sets
@pytest.mark.parametrize("lo,hi", [(0.01, 0.1), (0.1, 0.2), (0.3, 0.4), (0.5, 0.6), (0.2, 0.2)])
def test_noise_ratio_lands_in_range(lo, hi):
    from pconv.masks import noise_mask

    rng = np.random.default_rng(0)
    for _ in range(12):
        hole = noise_mask(64, 80, rng, (lo, hi))
        assert hole.dtype == bool and hole.shape == (64, 80)
        assert lo - 1 / hole.size <= hole_ratio(hole) <= hi + 1 / hole.size


def test_noise_seeded_and_irregular():
    from pconv.masks import noise_mask

    a = noise_mask(96, 96, np.random.default_rng(3))
    assert np.array_equal(a, noise_mask(96, 96, np.random.default_rng(3)))
    assert not np.array_equal(a, noise_mask(96, 96, np.random.default_rng(4)))
    # Over many draws there are thin lines: hole pixels with valid pixels on both sides.
    rng = np.random.default_rng(5)
    thin = 0
    for _ in range(20):
        h = noise_mask(96, 96, rng, (0.02, 0.1))
        thin += int((h[1:-1, 1:-1] & ~h[:-2, 1:-1] & ~h[2:, 1:-1]).sum() + (h[1:-1, 1:-1] & ~h[1:-1, :-2] & ~h[1:-1, 2:]).sum())
    assert thin > 100
    with pytest.raises(PConvError, match="hole ratio range"):
        noise_mask(32, 32, np.random.default_rng(0), (0.5, 0.2))
    with pytest.raises(PConvError, match="at least 4×4"):
        noise_mask(3, 32, np.random.default_rng(0))


@pytest.mark.parametrize("source", ["strokes", "noise", "mixed"])
def test_mask_sampler_generated_sources(source):
    from pconv.data import MaskSampler

    sampler = MaskSampler(source, 64, (0.1, 0.3))
    holes = [sampler(np.random.default_rng(i)) for i in range(6)]
    assert all(h.shape == (64, 64) and 0.1 - 1e-3 <= h.mean() <= 0.3 + 1e-3 for h in holes)


def test_mask_sampler_bad_source_names_the_choices(tmp_path):
    from pconv.data import MaskSampler

    with pytest.raises(PConvError, match="strokes, noise, mixed"):
        MaskSampler(str(tmp_path / "nope"), 64, (0.1, 0.3))


def test_cli_noise_masks_are_the_generator_output(tmp_path):
    from pconv.cli import main
    from pconv.masks import noise_mask, read_mask_file

    assert main(["masks", "noise", str(tmp_path / "n"), "--count", "2", "--size", "40x24", "--seed", "2",
                 "--min-ratio", "0.1", "--max-ratio", "0.2"]) == 0
    rng = np.random.default_rng(2)
    for f in sorted((tmp_path / "n").iterdir()):
        assert np.array_equal(read_mask_file(f), noise_mask(24, 40, rng, (0.1, 0.2)))


def test_smallest_first_equals_a_stable_sort():
    """The noise masks pick pixels with a partition: the same set as a stable argsort's prefix,
    ties (many here, and infinities) going to the lower index."""
    from pconv.masks.noise import smallest_first

    rng = np.random.default_rng(0)
    for trial in range(200):
        key = rng.integers(0, 6, size=(int(rng.integers(1, 40)), 7)).astype(np.float32)
        key[rng.random(key.shape) < 0.2] = np.inf
        count = int(rng.integers(0, key.size + 3))
        expected = np.sort(np.argsort(key, axis=None, kind="stable")[:count])
        np.testing.assert_array_equal(smallest_first(key, count), expected, err_msg=str(trial))

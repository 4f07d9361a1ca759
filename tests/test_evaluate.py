"""`pconv evaluate`: pairing, size policies, reports that hold the printed numbers, rank merging."""
import csv
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from pconv.cli import main
from pconv.errors import PConvError
from pconv.evaluate import (
    METRICS,
    SHEET_TILE,
    Case,
    _anchor_labels,
    evaluate,
    list_photos,
    make_cases,
    prepare_case,
)
from pconv.masks.testset import BUCKET_LABELS, build_testset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two small real photos, a 6-mask test set (one per bucket) and a tiny random PConv model."""
    import torch
    from skimage import data as skdata

    from pconv.model import PConvUNet, PConvUNetConfig
    from pconv.weights import save_weights

    root = tmp_path_factory.mktemp("evaldata")
    photos = root / "photos"
    photos.mkdir()
    Image.fromarray(skdata.astronaut()).resize((48, 48), Image.LANCZOS).save(photos / "astronaut.png")
    Image.fromarray(skdata.coffee()).resize((64, 48), Image.LANCZOS).save(photos / "coffee.png")
    build_testset(root / "masks", per_bucket=1, size=(64, 64), seed=0, border="with")
    torch.manual_seed(0)
    weights = save_weights(PConvUNet(PConvUNetConfig(channels=(8, 16, 16), kernels=(7, 5, 3), image_size=32)),
                           root / "tiny.safetensors")
    return SimpleNamespace(root=root, photos=photos, masks=root / "masks", weights=weights)


def _entries(per_bucket=5):
    return [SimpleNamespace(path=f"m{b}_{i}.png", ratio=0.05 + 0.1 * b, bucket=b, touches_border=i % 2 == 0,
                            invert=False) for b in range(6) for i in range(per_bucket)]


def test_pairing_gives_every_bucket_the_same_photos():
    photos = [Path(f"p{i}.png") for i in range(3)]
    cases, buckets = make_cases(photos, _entries(), per_bucket=4, seed=7)
    assert buckets == list(BUCKET_LABELS)
    assert len(cases) == 24 and [c.index for c in cases] == list(range(24))
    assert [c.bucket for c in cases[:6]] == list(BUCKET_LABELS)  # interleaved: a limit stays balanced
    per_bucket = {b: [c for c in cases if c.bucket == b] for b in buckets}
    sequences = {tuple(c.photo for c in cs) for cs in per_bucket.values()}
    assert len(sequences) == 1  # identical photo sequence in every bucket
    for k, b in enumerate(buckets):
        masks = [c.mask for c in per_bucket[b]]
        assert all(m.startswith(f"m{k}_") for m in masks) and len(set(masks)) == 4  # its own masks, no repeat
    again, _ = make_cases(photos, _entries(), per_bucket=4, seed=7)
    assert again == cases
    other, _ = make_cases(photos, _entries(), per_bucket=4, seed=8)
    assert other != cases
    default, _ = make_cases(photos, _entries(), per_bucket=None, seed=7)
    for b in buckets:  # default: every photo once per bucket
        assert sorted(c.photo for c in default if c.bucket == b) == sorted(map(str, photos))


def test_pairing_cycles_masks_when_a_bucket_is_short():
    cases, _ = make_cases([Path("a.png")], _entries(per_bucket=2), per_bucket=5, seed=0)
    first = [c.mask for c in cases if c.bucket == BUCKET_LABELS[0]]
    assert len(first) == 5 and len(set(first)) == 2
    with pytest.raises(PConvError, match="at least 1"):
        make_cases([Path("a.png")], _entries(), per_bucket=0, seed=0)


def test_paper_anchors_land_in_the_paper_buckets():
    anchors = _anchor_labels(list(BUCKET_LABELS))
    assert anchors == {"0.1-0.2": {"psnr": 28.32, "ssim": 0.870}, "0.2-0.3": {"psnr": 25.25, "ssim": 0.779},
                       "0.3-0.4": {"psnr": 22.89, "ssim": 0.689}}


def test_size_policies(tmp_path):
    Image.fromarray(np.full((60, 100, 3), 120, np.uint8)).save(tmp_path / "p.png")
    hole = np.zeros((64, 64), np.uint8)
    hole[:, :16] = 255  # left quarter is hole
    Image.fromarray(hole).save(tmp_path / "m.png")
    case = Case(0, str(tmp_path / "p.png"), str(tmp_path / "m.png"), "0.2-0.3", 0.25, True)
    image, h, upscaled = prepare_case(case, "256")
    assert image.shape == (256, 256, 3) and h.shape == (256, 256) and h.dtype == bool and upscaled
    assert h.mean() == pytest.approx(0.25)
    image, h, upscaled = prepare_case(case, "native")
    assert image.shape == (60, 100, 3) and h.shape == (60, 100) and not upscaled
    assert h[:, :25].all() and not h[:, 25:].any()  # nearest resize: stays binary, keeps its place
    inverted = Case(0, case.photo, case.mask, case.bucket, 0.75, True, invert=True)
    assert prepare_case(inverted, "native")[1].mean() == pytest.approx(0.75)


def test_cli_run_writes_reports_holding_the_printed_numbers(data, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["evaluate", "--photos", str(data.photos), "--masks", str(data.masks), "--methods",
               "pconv,telea,biharmonic", "--size", "native", "--out", str(out), "--weights", str(data.weights),
               "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    md = (out / "results.md").read_text()
    assert md in printed
    for name in ["rows.csv", "rows.json", "summary.json", "contact_sheet.png"] + [f"plot_{k}.png" for k in METRICS]:
        assert (out / name).is_file(), name
    with open(out / "rows.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 6 * 3  # 2 photos x 6 buckets x 3 methods
    assert json.loads((out / "rows.json").read_text())[0]["case"] == 0
    summary = json.loads((out / "summary.json").read_text())["summary"]
    table = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
             for line in md.split("## PSNR, whole image")[1].split("##")[0].splitlines() if line.startswith("| ")}
    for method in ("pconv", "telea", "biharmonic"):
        mine = [r for r in rows if r["method"] == method]
        assert summary[method]["all"]["n"] == 12
        for k, bucket in enumerate(BUCKET_LABELS):
            values = [float(r["psnr"]) for r in mine if r["bucket"] == bucket]
            assert len(values) == 2
            assert table[method][k] == f"{np.mean(values):.2f}"  # the printed number is the rows' mean
        assert table[method][-1] == f"{np.mean([float(r['psnr']) for r in mine]):.2f}"
        l1_all = np.mean([float(r["l1"]) for r in mine]) * 100
        assert f"| {method} |" in md and f"{l1_all:.2f}" in md.split("## ℓ1, whole image")[1].split("##")[0]
    assert table["paper Table 1 (PConv, Places2; reference only)"][1:4] == ["28.32", "25.25", "22.89"]
    for r in rows:  # the baselines leave known pixels alone, so their whole-image error < hole error
        assert 0 <= float(r["l1"]) <= float(r["hole_l1"]) and float(r["seconds"]) >= 0
        assert 0 < float(r["hole_ratio"]) < 1
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.width == SHEET_TILE * 5  # input, 3 methods, ground truth


def test_runs_are_deterministic_and_ranks_merge_to_the_same_rows(data, tmp_path, monkeypatch):
    def strip(rows):
        # the style distance runs VGG16 convolutions, whose sums depend on the thread count (one
        # per rank here, two in one process): it agrees to float rounding, not bit for bit
        return [{k: (pytest.approx(v, rel=1e-5) if k == "style" else v) for k, v in r.items() if k != "seconds"}
                for r in rows]

    args = dict(methods=["telea", "ns"], size_policy="native", seed=3, progress=False)
    single = evaluate(data.photos, data.masks, out_dir=tmp_path / "single", **args)
    again = evaluate(data.photos, data.masks, out_dir=tmp_path / "again", **args)
    assert strip(single.rows) == strip(again.rows)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("RANK", "1")  # no process group: ranks meet through their files in parts/
    r1 = evaluate(data.photos, data.masks, out_dir=tmp_path / "dist", **args)
    assert r1.rank == 1 and not (tmp_path / "dist" / "results.md").exists()
    assert {r["case"] for r in r1.rows} == set(range(1, 12, 2))
    monkeypatch.setenv("RANK", "0")
    r0 = evaluate(data.photos, data.masks, out_dir=tmp_path / "dist", **args)
    assert strip(r0.rows) == strip(single.rows)
    assert (tmp_path / "dist" / "results.md").is_file()
    assert r0.summary["telea"]["all"]["psnr"] == pytest.approx(single.summary["telea"]["all"]["psnr"])


def test_worker_processes_give_the_same_rows(data, tmp_path):
    args = dict(methods=["telea"], size_policy="native", seed=1, progress=False, limit=6)
    one = evaluate(data.photos, data.masks, out_dir=tmp_path / "w1", workers=1, **args)
    two = evaluate(data.photos, data.masks, out_dir=tmp_path / "w2", workers=2, **args)
    assert len(one.rows) == 6 and {r["bucket"] for r in one.rows} == set(BUCKET_LABELS)  # limit stays balanced
    assert [r["psnr"] for r in one.rows] == [r["psnr"] for r in two.rows]


def test_flip_variant_runs_the_same_cases_with_flip_averaging(data, tmp_path):
    res = evaluate(data.photos, data.masks, out_dir=tmp_path / "f", methods=["pconv", "pconv-flip"],
                   weights=data.weights, size_policy="native", seed=2, progress=False, limit=6)
    rows = {m: [r for r in res.rows if r["method"] == m] for m in ("pconv", "pconv-flip")}
    assert [r["case"] for r in rows["pconv"]] == [r["case"] for r in rows["pconv-flip"]]
    assert [r["psnr"] for r in rows["pconv"]] != [r["psnr"] for r in rows["pconv-flip"]]


def test_bad_requests_are_clear_errors(data, tmp_path):
    run = dict(masks=data.masks, out_dir=tmp_path / "o", progress=False)
    with pytest.raises(PConvError, match="available: pconv, pconv-flip, pconv-smooth, pconv-smooth-flip, telea, ns, biharmonic, patchmatch"):
        evaluate(data.photos, methods=["lama"], **run)
    with pytest.raises(PConvError, match="size policy"):
        evaluate(data.photos, methods=["telea"], size_policy="300", **run)
    with pytest.raises(PConvError, match="does not exist"):
        evaluate(tmp_path / "nope", methods=["telea"], **run)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PConvError, match="no photos in"):
        list_photos(tmp_path / "empty")
    with pytest.raises(PConvError, match="weights file"):
        evaluate(data.photos, methods=["pconv"], weights=tmp_path / "missing.safetensors", **run)
    rc = main(["evaluate", "--photos", str(data.photos), "--masks", str(tmp_path / "none"), "--methods", "telea",
               "--out", str(tmp_path / "o2")])
    assert rc == 2


def test_rank_zero_ignores_rows_left_by_another_run(tmp_path, monkeypatch):
    from pconv.sharding import barrier

    monkeypatch.delenv("MASTER_ADDR", raising=False)
    (tmp_path / "rows.rank0.json").write_text(json.dumps({"key": "this", "rows": []}))
    (tmp_path / "rows.rank1.json").write_text(json.dumps({"key": "an older run", "rows": []}))
    with pytest.raises(PConvError, match="timed out"):
        barrier(2, tmp_path, 0, "this", timeout_s=0.2, poll_s=0.05)
    (tmp_path / "rows.rank1.json").write_text(json.dumps({"key": "this", "rows": []}))
    barrier(2, tmp_path, 0, "this", timeout_s=0.2, poll_s=0.05)


def test_detail_and_style_columns_and_no_style(data, tmp_path):
    """Every row carries the detail ratio and the style distance; ``style=False`` leaves the VGG16 out."""
    args = dict(methods=["telea"], size_policy="native", seed=1, progress=False, limit=6)
    with_style = evaluate(data.photos, data.masks, out_dir=tmp_path / "a", **args)
    assert all(r["style"] >= 0 and "detail" in r for r in with_style.rows)
    no_style = evaluate(data.photos, data.masks, out_dir=tmp_path / "b", style=False, **args)
    assert all("style" not in r for r in no_style.rows)
    assert [r["detail"] for r in no_style.rows] == [r["detail"] for r in with_style.rows]
    details = [r["detail"] for r in no_style.rows if r["bucket"] == no_style.buckets[0]]
    assert no_style.summary["telea"][no_style.buckets[0]]["detail"] == pytest.approx(np.nanmedian(details))
    assert math.isnan(no_style.summary["telea"]["all"]["style"])
    style_table = no_style.markdown.split("## style distance")[1].split("##")[0]
    assert "| telea | – |" in style_table


def _ssim_reference(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM written out (Wang et al.): 7×7 uniform window, sample covariances, K1 = 0.01, K2 = 0.03,
    data range 1, the mean over the valid window positions and over channels."""
    from scipy.ndimage import uniform_filter

    n = 7 * 7
    scores = []
    for c in range(a.shape[2]):
        x, y = a[..., c], b[..., c]
        mean = lambda v: uniform_filter(v, size=7)  # noqa: E731
        mx, my = mean(x), mean(y)
        vx = (mean(x * x) - mx * mx) * n / (n - 1)
        vy = (mean(y * y) - my * my) * n / (n - 1)
        cxy = (mean(x * y) - mx * my) * n / (n - 1)
        c1, c2 = 0.01 ** 2, 0.03 ** 2
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        scores.append(s[3:-3, 3:-3].mean())
    return float(np.mean(scores))


def _detail_reference(image: np.ndarray, hole: np.ndarray) -> float:
    """Mean |grey − Gaussian(grey, 1.5)| over the hole, with scipy's filter (mirrored border)."""
    from scipy.ndimage import gaussian_filter

    grey = image.astype(np.float64) / 255 @ np.array([0.299, 0.587, 0.114])
    return float(np.abs(grey - gaussian_filter(grey, 1.5, mode="mirror", truncate=4.0))[hole].mean())


def test_every_column_matches_an_independent_computation(data, tmp_path, monkeypatch):
    """Each row's metrics, recomputed here from the method's output with formulas written out in
    the test, the summaries (means; the detail ratio's median) per bucket and over all, and the
    printed tables (× their display scales)."""
    import pconv.evaluate as ev
    from pconv.baselines import fill
    from pconv.style_distance import StyleDistance

    class Clock:  # advances 0.25 s a reading: a method call, timed by two readings, lasts 0.25 s
        t = 0.0

        @classmethod
        def perf_counter(cls) -> float:
            cls.t += 0.25
            return cls.t

    monkeypatch.setattr(ev, "time", Clock)
    res = evaluate(data.photos, data.masks, out_dir=tmp_path / "o", methods=["telea", "biharmonic"],
                   size_policy="native", seed=5, progress=False)
    style = StyleDistance()
    assert len(res.rows) == 2 * 6 * 2
    for r in res.rows:
        image, hole, _ = prepare_case(Case(0, r["photo"], r["mask"], r["bucket"], r["mask_ratio"], None), "native")
        out = fill(r["method"], image, hole)
        a, b = out.astype(np.float64) / 255, image.astype(np.float64) / 255
        mse, hole_mse = np.mean((a - b) ** 2), np.mean((a[hole] - b[hole]) ** 2)
        assert r["psnr"] == pytest.approx(10 * np.log10(1 / mse), abs=1e-9)
        assert r["hole_psnr"] == pytest.approx(10 * np.log10(1 / hole_mse), abs=1e-9)
        assert r["l1"] == pytest.approx(np.abs(a - b).mean(), abs=1e-12)
        assert r["hole_l1"] == pytest.approx(np.abs(a[hole] - b[hole]).mean(), abs=1e-12)
        assert r["ssim"] == pytest.approx(_ssim_reference(a, b), abs=1e-6)
        assert r["detail"] == pytest.approx(_detail_reference(out, hole) / _detail_reference(image, hole), rel=1e-4)
        assert r["detail"] < 0.9  # these fills are smoother than the photo: not the photo against itself
        assert r["style"] == pytest.approx(style(out, image, hole), rel=1e-4) and r["style"] > 0
        assert r["hole_ratio"] == pytest.approx(hole.mean(), abs=1e-6)
        assert r["seconds"] == 0.25
    assert style(image, image, hole) == 0  # the last case's photo against itself: no distance

    md = res.markdown
    for method in ("telea", "biharmonic"):
        mine = [r for r in res.rows if r["method"] == method]
        for bucket in res.buckets + ["all"]:
            sel = mine if bucket == "all" else [r for r in mine if r["bucket"] == bucket]
            s = res.summary[method][bucket]
            assert s["n"] == len(sel) == (12 if bucket == "all" else 2)
            for key in ("psnr", "ssim", "l1", "hole_psnr", "hole_l1", "style", "seconds"):
                assert s[key] == pytest.approx(sum(r[key] for r in sel) / len(sel), rel=1e-12), (key, bucket)
            assert s["detail"] == pytest.approx(np.median([r["detail"] for r in sel]), rel=1e-12)
        for title, key, scale, decimals in (("## PSNR, whole image", "psnr", 1, 2), ("## SSIM", "ssim", 1, 3),
                                            ("## ℓ1, whole image", "l1", 100, 2), ("## PSNR, hole only", "hole_psnr", 1, 2),
                                            ("## ℓ1, hole only", "hole_l1", 100, 2), ("## detail ratio", "detail", 1, 2),
                                            ("## style distance", "style", 1000, 3), ("## seconds", "seconds", 1, 3)):
            table = md.split(title)[1].split("\n## ")[0]
            row = next(line for line in table.splitlines() if line.startswith(f"| {method} |"))
            cells = [c.strip() for c in row.split("|")[2:-1]]
            expected = [f"{res.summary[method][b][key] * scale:.{decimals}f}" for b in res.buckets + ["all"]]
            assert cells == expected, (title, method)

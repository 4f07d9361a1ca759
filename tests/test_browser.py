"""End to end in a real Chromium: open a photo, paint a stroke, run, download, check the pixels;
zoom, pan, another result, cancel and the other tools for large photos (against a fake inpainter:
these tests are about the page, not the network).

Needs Python ``playwright`` and Debian's Chromium (``apt-get install -y chromium``; ``playwright
install`` is not used). Without them the tests skip locally, but under ``CI=true`` they FAIL: a CI
run must not pass by silently skipping the browser. ``PCONV_CHROMIUM`` overrides the browser path.
Screenshots go to ``test-artifacts/`` (git-ignored).
"""
from __future__ import annotations

import io
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pconv.model import PConvUNet, PConvUNetConfig
from pconv.schema import ServerSettings
from pconv.server import background_server, create_app
from pconv.weights import save_weights

CHROMIUM = os.environ.get("PCONV_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
TINY = PConvUNetConfig(channels=(8, 16, 16), kernels=(7, 5, 3), image_size=64)
W, H = 200, 150  # the test photo


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"browser test cannot run under CI: {reason}. CI must install it "
                    "(apt-get install -y chromium; pip install playwright)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Python package playwright is not installed")
    if not Path(CHROMIUM).exists():
        _missing(f"Chromium not found at {CHROMIUM}")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    torch.manual_seed(0)
    weights = save_weights(PConvUNet(TINY), tmp_path_factory.mktemp("w") / "tiny.safetensors")
    with background_server(create_app(ServerSettings(weights=weights))) as url:
        yield url


@pytest.fixture(scope="module")
def photo_path(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:H, 0:W]
    img = np.stack([x * 255 // W, y * 255 // H, 128 + 60 * np.sin(x / 9.0) * np.cos(y / 7.0)], axis=2)
    img = (img + rng.integers(-12, 12, img.shape)).clip(0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("photo") / "street.png"
    Image.fromarray(img).save(path)
    return path


def _checked_page(browser, url: str):
    """A desktop page on ``url``; on leaving, no JS error, CSP violation or failed load may have happened."""
    context = browser.new_context(viewport={"width": 1100, "height": 800}, accept_downloads=True)
    pg = context.new_page()
    errors: list = []
    pg.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    pg.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    pg.goto(url + "/")
    _expect_status(pg, "Ready")
    pg.allowed_errors = []  # a test that provokes an error response lists its console line here
    yield pg
    context.close()
    errors = [e for e in errors if not any(a in e for a in pg.allowed_errors)]
    assert not errors, errors


@pytest.fixture
def page(browser, base_url):
    yield from _checked_page(browser, base_url)


def _expect_status(pg, text: str) -> None:
    """Wait for the status line to contain ``text`` (no string eval: the page's CSP forbids it)."""
    from playwright.sync_api import expect

    expect(pg.locator("#status")).to_contain_text(text, timeout=30_000)


def _open(pg, photo_path: Path, size: str = "200×150") -> None:
    pg.set_input_files("#file", str(photo_path))
    pg.wait_for_selector("#stage:not([hidden])")
    _expect_status(pg, size)


def _stroke(pg, frm, to) -> dict:
    """Drag the mouse across the mask canvas between two fractions of its box; returns the box."""
    box = pg.locator("#mask-canvas").bounding_box()
    pg.mouse.move(box["x"] + frm[0] * box["width"], box["y"] + frm[1] * box["height"])
    pg.mouse.down()
    pg.mouse.move(box["x"] + to[0] * box["width"], box["y"] + to[1] * box["height"], steps=12)
    pg.mouse.up()
    return box


def _download(pg, selector: str) -> bytes:
    with pg.expect_download() as info:
        pg.click(selector)
    return Path(info.value.path()).read_bytes()


def _near_segment(p0, p1, radius: float) -> np.ndarray:
    """Bool (H, W): pixel centres within ``radius`` of the segment p0-p1 (image coordinates)."""
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    (x0, y0), (x1, y1) = p0, p1
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / max(dx * dx + dy * dy, 1e-9), 0, 1)
    return np.hypot(xx - (x0 + t * dx), yy - (y0 + t * dy)) <= radius


def test_paint_run_download_changes_only_the_painted_region(page, photo_path):
    pg = page
    _open(pg, photo_path)
    assert pg.is_disabled("#run")  # nothing painted yet
    brush = int(pg.input_value("#size"))
    frm, to = (0.3, 0.45), (0.7, 0.55)
    _stroke(pg, frm, to)
    assert pg.is_enabled("#run")
    pg.click("#run")
    pg.wait_for_selector("#result-bar:not([hidden])", timeout=60_000)
    assert pg.locator("#error").is_hidden()
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / "browser-result.png"))

    result = np.asarray(Image.open(io.BytesIO(_download(pg, "#download-result"))).convert("RGB"))
    mask = np.asarray(Image.open(io.BytesIO(_download(pg, "#download-mask"))).convert("L"))
    original = np.asarray(Image.open(photo_path).convert("RGB"))
    assert result.shape == original.shape and mask.shape == (H, W)  # natural resolution
    assert set(np.unique(mask)) <= {0, 255}  # binary, white = hole

    # Where the stroke went, in image pixels: the brush is sized in photo pixels.
    assert pg.text_content("#size-out") == f"{brush} px"
    p0, p1 = (frm[0] * W, frm[1] * H), (to[0] * W, to[1] * H)
    painted = _near_segment(p0, p1, brush / 2 + 1.5)  # + anti-aliasing margin
    core = _near_segment(p0, p1, brush / 2 - 1.5)
    hole = mask == 255
    assert hole[core].all(), "the mask does not cover the stroke"
    assert not hole[~painted].any(), "the mask reaches outside the stroke"

    changed = (result != original).any(axis=2)
    assert changed.any(), "nothing was filled"
    assert not changed[~painted].any(), "pixels outside the painted region changed"
    assert not changed[~hole].any(), "known pixels must be kept exactly"


def test_brush_keys_undo_redo_clear_and_use_result(page, photo_path):
    pg = page
    _open(pg, photo_path)
    size = int(pg.input_value("#size"))
    pg.keyboard.press("]")
    assert int(pg.input_value("#size")) > size
    pg.keyboard.press("[")
    pg.keyboard.press("[")
    assert int(pg.input_value("#size")) < size

    _stroke(pg, (0.2, 0.2), (0.4, 0.3))
    assert pg.is_enabled("#run") and pg.is_enabled("#undo") and pg.is_disabled("#redo")
    pg.click("#undo")
    assert pg.is_disabled("#run") and pg.is_enabled("#redo")
    pg.keyboard.press("Control+Shift+Z")  # redo
    assert pg.is_enabled("#run")
    pg.keyboard.press("e")  # eraser
    assert pg.get_attribute("#tool-eraser", "aria-pressed") == "true"
    pg.keyboard.press("b")
    pg.click("#clear")
    assert pg.is_disabled("#run")
    pg.keyboard.press("Control+z")  # undo the clear
    assert pg.is_enabled("#run")

    pg.click("#run")
    pg.wait_for_selector("#result-bar:not([hidden])", timeout=60_000)
    pg.click("#toggle")
    assert pg.input_value("#compare") in ("0", "100")
    pg.click("#use-result")
    pg.wait_for_selector("#result-bar", state="hidden")
    assert pg.is_disabled("#run")  # a fresh mask on the result
    assert "street-inpainted.png" in pg.text_content("#status")


def test_server_errors_are_shown_readably(page, photo_path):
    pg = page
    pg.allowed_errors.append("status of 503")
    pg.route("**/api/v1/jobs", lambda route: route.fulfill(
        status=503, headers={"Retry-After": "5", "Content-Type": "application/json"},
        body=json.dumps({"error": "busy", "detail": "the server is busy (1 running, 8 waiting)"})))
    _open(pg, photo_path)
    _stroke(pg, (0.5, 0.5), (0.6, 0.6))
    pg.click("#run")
    pg.wait_for_selector("#error:not([hidden])")
    text = pg.text_content("#error-text")
    assert "busy" in text and "1 running" in text
    assert pg.is_enabled("#run")  # not stuck busy
    assert pg.locator("#busy").is_hidden()


def test_phone_viewport(browser, base_url, photo_path):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                  is_mobile=True, has_touch=True)
    pg = context.new_page()
    pg.goto(base_url + "/")
    _expect_status(pg, "Ready")
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / "phone-empty.png"))
    _open(pg, photo_path)
    stage = pg.locator("#stage").bounding_box()
    assert stage["x"] >= 0 and stage["x"] + stage["width"] <= 390 + 0.5
    assert stage["width"] > 300  # uses the width
    for sel in ["#run", "#undo", "#tool-brush", "#size", "label[for=file]"]:
        b = pg.locator(sel).first.bounding_box()
        assert b and b["x"] >= 0 and b["x"] + b["width"] <= 390 + 0.5, sel
    assert pg.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    _stroke(pg, (0.3, 0.5), (0.6, 0.5))
    pg.click("#run")
    pg.wait_for_selector("#result-bar:not([hidden])", timeout=60_000)
    pg.screenshot(path=str(ARTIFACTS / "phone-result.png"), full_page=True)
    context.close()



def test_api_docs_render_offline(browser, base_url):
    """/docs (Swagger UI) loads every asset from the server itself: with every other host blocked,
    the API's operations still render."""
    from urllib.parse import urlsplit

    local = urlsplit(base_url).netloc
    context = browser.new_context()
    pg = context.new_page()
    blocked: list = []
    errors: list = []

    def only_local(route) -> None:
        if urlsplit(route.request.url).netloc == local:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    pg.route("**/*", only_local)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(base_url + "/docs")
    pg.wait_for_selector(".opblock-summary-path:has-text('/api/v1/inpaint')", timeout=30_000)
    paths = pg.locator(".opblock-summary-path").all_text_contents()
    assert {"/api/v1/inpaint", "/api/v1/health", "/api/v1/info"} <= {p.strip() for p in paths}, paths
    assert "Fill the holes of an image" in pg.text_content("body")
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / "api-docs.png"))
    context.close()
    assert not blocked, f"/docs asked for other hosts: {blocked}"
    assert not errors, errors


def test_method_menu_offers_both_fills_and_sends_the_choice(page, photo_path):
    """The menu lists the photographic fill (the default, pre-selected) and pconv-smooth; the server runs
    the chosen method."""
    pg = page
    _open(pg, photo_path)
    options = pg.eval_on_selector_all("#method option", "els => els.map(e => [e.value, e.textContent, e.selected])")
    values = [v for v, _, _ in options]
    assert "pconv" in values and "pconv-smooth" in values
    assert [v for v, _, selected in options if selected] == ["pconv"]
    assert "Photographic" in dict((v, t) for v, t, _ in options)["pconv"]
    pg.select_option("#method", "pconv-smooth")
    _stroke(pg, (0.3, 0.45), (0.7, 0.55))
    with pg.expect_response(lambda r: r.url.endswith("/result")) as response:
        pg.click("#run")
    assert response.value.status == 200
    assert response.value.headers["x-pconv-method"] == "pconv-smooth"  # the server ran the chosen method
    pg.wait_for_selector("#result-bar:not([hidden])", timeout=60_000)
    assert pg.locator("#error").is_hidden()


# ------------------------------------------------------------- large photos, against a fake inpainter

BIG_W, BIG_H = 4000, 3000  # a 12 MP photo


def seed_colour(seed: int) -> tuple:
    """The fake's fill colour for a seed: results of different seeds differ."""
    return (seed * 67 + 11) % 256, (seed * 131 + 23) % 256, 200


class FakeFill:
    """An inpainter for the page's tests: fills the hole with the colour of its seed, calling
    ``progress`` at ``steps`` stage boundaries ``delay`` seconds apart, and logs how each call ended."""

    def __init__(self, log: list, steps: int, delay: float) -> None:
        self.log, self.steps, self.delay = log, steps, delay
        self.seed = 0  # the server gives a job's seed to a copy of this

    def __call__(self, image, hole, progress=None, **_):
        entry = {"seed": self.seed, "size": image.size, "steps": 0, "end": "running"}
        self.log.append(entry)
        try:
            for i in range(self.steps):
                if progress is not None:
                    progress(i / self.steps, "network")
                time.sleep(self.delay)
                entry["steps"] = i + 1
        except BaseException as exc:
            entry["end"] = type(exc).__name__
            raise
        entry["end"] = "finished"
        out = np.asarray(image.convert("RGB")).copy()
        out[np.asarray(hole, bool)] = seed_colour(self.seed)
        return Image.fromarray(out)


@pytest.fixture(scope="module")
def fake_log() -> list:
    return []


@pytest.fixture(scope="module")
def fake_url(fake_log):
    """A server whose ``pconv`` is a quick seeded fake and whose ``ns`` is a slow one (20 s unless cancelled)."""
    fills = {"ns": (400, 0.05)}
    app = create_app(ServerSettings(max_jobs=1, queue_size=4),
                     inpainter_factory=lambda settings, method: FakeFill(fake_log, *fills.get(method, (3, 0.01))))
    with background_server(app) as url:
        yield url


@pytest.fixture
def fake_page(browser, fake_url, fake_log):
    fake_log.clear()
    yield from _checked_page(browser, fake_url)


@pytest.fixture(scope="module")
def big_photo(tmp_path_factory) -> Path:
    y, x = np.mgrid[0:BIG_H, 0:BIG_W].astype(np.float32)
    img = np.stack([x * 255 / BIG_W, y * 255 / BIG_H, 128 + 60 * np.sin(x / 23.0) * np.cos(y / 17.0)], axis=2)
    path = tmp_path_factory.mktemp("big") / "big.jpg"
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def _box(pg, selector: str) -> dict:
    return pg.locator(selector).bounding_box()


def _photo_point(pg, sx: float, sy: float) -> tuple:
    """The photo pixel shown at screen point (sx, sy), from where the photo's layer is on the screen."""
    b = _box(pg, "#layers")
    return (sx - b["x"]) / b["width"] * BIG_W, (sy - b["y"]) / b["height"] * BIG_H


def _set_range(pg, selector: str, value: int) -> None:
    pg.eval_on_selector(selector, "(e, v) => { e.value = v; e.dispatchEvent(new Event('input')); }", value)


def _result_image(pg) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(_download(pg, "#download-result"))).convert("RGB"))


def _jpeg_results(pg) -> None:
    """Ask for results in the upload's format (JPEG here): these tests are about the page, not PNG speed."""
    pg.click(".more summary")
    pg.select_option("#output-format", "input")
    pg.click(".more summary")


def _wait_result(pg, count: int) -> None:
    """Wait until ``count`` results are kept and the page is idle again."""
    from playwright.sync_api import expect

    expect(pg.locator("#history .thumb")).to_have_count(count, timeout=60_000)
    pg.wait_for_selector("#busy", state="hidden", timeout=60_000)


def test_zoom_pan_and_a_brush_in_photo_pixels_on_a_large_photo(fake_page, big_photo, fake_log):
    from playwright.sync_api import expect

    pg = fake_page
    _open(pg, big_photo, "4000×3000")
    _jpeg_results(pg)
    stage, layers = _box(pg, "#stage"), _box(pg, "#layers")
    fit = layers["width"] / BIG_W
    assert layers["width"] <= stage["width"] + 0.5 and layers["height"] <= stage["height"] + 0.5  # all of it shows
    assert fit < 0.35 and pg.text_content("#zoom-level") == f"{round(fit * 100)}%"
    assert pg.is_disabled("#zoom-out") and pg.is_disabled("#zoom-fit")  # fitted is the widest view

    # Wheel zoom keeps the photo point under the mouse where it is.
    mx, my = round(stage["x"] + 0.3 * stage["width"]), round(stage["y"] + 0.4 * stage["height"])  # whole pixels
    pg.mouse.move(mx, my)
    before = _photo_point(pg, mx, my)
    pg.mouse.wheel(0, -900)
    expect(pg.locator("#zoom-level")).not_to_have_text(f"{round(fit * 100)}%")
    zoomed = _box(pg, "#layers")["width"] / BIG_W
    assert zoomed > 4 * fit
    after = _photo_point(pg, mx, my)
    assert abs(after[0] - before[0]) < 1 and abs(after[1] - before[1]) < 1, (before, after)

    # Space + drag and a middle-button drag pan by exactly the drag, and paint nothing.
    start = _box(pg, "#layers")
    pg.keyboard.down("Space")
    pg.mouse.down()
    pg.mouse.move(mx + 120, my + 70, steps=5)
    pg.mouse.up()
    pg.keyboard.up("Space")
    moved = _box(pg, "#layers")
    assert (round(moved["x"] - start["x"]), round(moved["y"] - start["y"])) == (120, 70)
    pg.mouse.down(button="middle")
    pg.mouse.move(mx - 80, my + 10, steps=5)
    pg.mouse.up(button="middle")
    again = _box(pg, "#layers")
    assert (round(again["x"] - moved["x"]), round(again["y"] - moved["y"])) == (-200, -60)
    assert pg.is_disabled("#undo") and pg.is_disabled("#run")  # panning painted nothing

    # The brush is in photo pixels: 8 px wide at this zoom, where the view says it is.
    _set_range(pg, "#size", 8)
    assert pg.text_content("#size-out") == "8 px"
    pg.mouse.move(mx, my)
    cursor = _box(pg, "#cursor")
    assert cursor["width"] == pytest.approx(8 * zoomed, abs=1)
    a, b = (mx - 60, my), (mx + 60, my)
    pa, pb = _photo_point(pg, *a), _photo_point(pg, *b)
    pg.mouse.move(*a)
    pg.mouse.down()
    pg.mouse.move(*b, steps=10)
    pg.mouse.up()

    # Mask opacity and hide-mask.
    _set_range(pg, "#mask-opacity", 30)
    assert pg.eval_on_selector("#mask-canvas", "e => getComputedStyle(e).opacity") == "0.3"
    pg.keyboard.press("h")
    assert pg.eval_on_selector("#mask-canvas", "e => getComputedStyle(e).visibility") == "hidden"
    assert pg.get_attribute("#hide-mask", "aria-pressed") == "true"
    pg.click("#hide-mask")
    assert pg.eval_on_selector("#mask-canvas", "e => getComputedStyle(e).visibility") == "visible"

    pg.click("#run")
    _wait_result(pg, 1)
    mask = np.asarray(Image.open(io.BytesIO(_download(pg, "#download-mask"))).convert("L")) == 255
    assert mask.shape == (BIG_H, BIG_W)
    ys, xs = np.nonzero(mask)
    assert abs(xs.min() - (pa[0] - 4)) < 2 and abs(xs.max() - (pb[0] + 4)) < 2  # ends: the points +- the radius
    assert abs(np.median(ys) - pa[1]) < 1.5
    thickness = mask[:, int((pa[0] + pb[0]) / 2)].sum()
    assert 7 <= thickness <= 10, thickness  # 8 photo pixels (+ an anti-aliased edge pixel)
    assert _box(pg, "#result-img") == _box(pg, "#layers")  # the result shows under the same view

    pg.click("#zoom-fit")  # the whole photo again, in the stage the result bar left
    fitted, stage = _box(pg, "#layers"), _box(pg, "#stage")
    assert fitted["width"] <= stage["width"] + 0.5 and fitted["height"] <= stage["height"] + 0.5
    assert min(stage["width"] - fitted["width"], stage["height"] - fitted["height"]) < 1
    pg.keyboard.press("+")
    assert _box(pg, "#layers")["width"] == pytest.approx(1.5 * fitted["width"], rel=1e-3)
    pg.keyboard.press("-")
    pg.keyboard.press("-")  # not below the whole photo
    assert _box(pg, "#layers")["width"] == pytest.approx(fitted["width"], rel=1e-3)
    pg.keyboard.press("+")
    pg.keyboard.press("0")
    assert _box(pg, "#layers")["width"] == pytest.approx(fitted["width"], rel=1e-3)
    assert [e["size"] for e in fake_log] == [(BIG_W, BIG_H)]


def test_double_click_then_another_result_to_compare_and_pick(fake_page, big_photo, fake_log):
    pg = fake_page
    posts: list = []
    pg.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    _open(pg, big_photo, "4000×3000")
    _jpeg_results(pg)
    _stroke(pg, (0.4, 0.4), (0.6, 0.5))
    pg.dblclick("#run")  # preparing a 12 MP mask takes a while: the second click must not start a second job
    pg.keyboard.press("Enter")  # nor Enter
    _wait_result(pg, 1)
    _expect_status(pg, "seed 0")
    assert len(posts) == 1 and posts[0].endswith("/api/v1/jobs") and len(fake_log) == 1, (posts, fake_log)

    pg.click("#another")
    _wait_result(pg, 2)
    seeds = [e["seed"] for e in fake_log]
    assert seeds[0] == 0 and len(set(seeds)) == 2, seeds  # "another result" sent a new seed
    captions = pg.locator("#history .thumb span").all_text_contents()
    assert captions == [f"seed {s}" for s in seeds]
    # the newest is shown (the page marks a thumbnail once its 12 MP image has loaded)
    pg.wait_for_selector('#history .thumb:nth-child(2)[aria-pressed="true"]', timeout=30000)

    def hole_colour() -> np.ndarray:
        img = _result_image(pg).astype(int)
        return img[int(0.45 * BIG_H), int(0.5 * BIG_W)]

    assert np.abs(hole_colour() - seed_colour(seeds[1])).max() <= 6  # JPEG
    pg.click("#history .thumb >> nth=0")  # pick the first one: shown and downloaded
    pg.wait_for_selector('#history .thumb:nth-child(1)[aria-pressed="true"]', timeout=30000)
    assert np.abs(hole_colour() - seed_colour(seeds[0])).max() <= 6
    assert "-seed0." in pg.get_attribute("#download-result", "download")

    # "Edit mask" says where the page is, not the last run's "Done".
    pg.click("#edit")
    _expect_status(pg, "editing the mask")
    assert "Done" not in pg.text_content("#status")


def test_results_kept_are_bounded(fake_page, photo_path, fake_log):
    pg = fake_page
    _open(pg, photo_path)
    _stroke(pg, (0.3, 0.45), (0.7, 0.55))
    pg.click("#run")
    _wait_result(pg, 1)
    for n in range(2, 8):
        pg.click("#another")
        _wait_result(pg, min(n, 5))
        assert len(fake_log) == n
    captions = pg.locator("#history .thumb span").all_text_contents()
    assert captions == [f"seed {e['seed']}" for e in fake_log[-5:]]  # the last five, oldest first


def _jobs_running(url: str) -> int:
    import httpx

    return httpx.get(url + "/api/v1/health").json()["jobs_running"]


def _wait_progress(pg, fraction: float, timeout: float = 30) -> None:
    """Wait until the page's progress bar passes ``fraction``."""
    deadline = time.monotonic() + timeout
    while pg.eval_on_selector("#progress", "e => e.value") <= fraction:
        assert time.monotonic() < deadline, "no progress shown"
        time.sleep(0.05)


def test_cancel_stops_the_server_s_work(fake_page, fake_url, big_photo, photo_path, fake_log):
    pg = fake_page
    _open(pg, big_photo, "4000×3000")
    pg.select_option("#method", "ns")  # the slow fake: 20 s unless cancelled
    _stroke(pg, (0.4, 0.4), (0.6, 0.5))
    assert pg.is_disabled("#another")  # ns gives one result only
    pg.click("#run")
    _wait_progress(pg, 0.05)
    assert re.search(r"Filling… \d+ %", pg.text_content("#busy-text"))
    pg.click("#cancel")
    assert pg.locator("#busy").is_hidden() and pg.is_enabled("#run")  # the page is free at once
    _expect_status(pg, "Cancelled")
    deadline = time.monotonic() + 5
    while (fake_log[-1]["end"] == "running" or _jobs_running(fake_url)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake_log[-1]["end"] == "JobCancelled", fake_log  # the callback raised: the work stopped
    assert fake_log[-1]["steps"] < 200 and _jobs_running(fake_url) == 0

    _open(pg, photo_path)  # again, on a small photo, cancelled with Esc this time
    _stroke(pg, (0.3, 0.45), (0.7, 0.55))
    pg.click("#run")
    _wait_progress(pg, 0.05)
    pg.keyboard.press("Escape")
    _expect_status(pg, "Cancelled")
    deadline = time.monotonic() + 5
    while fake_log[-1]["end"] == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(fake_log) == 2 and fake_log[-1]["end"] == "JobCancelled"


LIMIT = 8_000_000  # pixels: less than the large photo's 12 MP


@pytest.fixture
def limited_page(browser):
    """A page on a server that fills at most LIMIT pixels; ``pg.fake_log`` lists its fills."""
    log: list = []
    app = create_app(ServerSettings(max_pixels=LIMIT), inpainter_factory=lambda s, m: FakeFill(log, 1, 0))
    with background_server(app) as url:
        for pg in _checked_page(browser, url):
            pg.fake_log = log
            yield pg


def test_a_photo_beyond_the_server_s_limit_is_offered_downscaled(limited_page, big_photo):
    pg = limited_page
    pg.set_input_files("#file", str(big_photo))
    pg.wait_for_selector("#notice:not([hidden])")
    text = pg.text_content("#notice-text")
    assert "4000×3000 (12.0 MP)" in text and "8.0 MP" in text
    assert pg.locator("#stage").is_hidden()  # not opened for painting at a size the server refuses
    pg.click("#notice-dismiss")
    assert pg.locator("#notice").is_hidden() and pg.locator("#stage").is_hidden()

    pg.set_input_files("#file", str(big_photo))
    pg.wait_for_selector("#notice:not([hidden])")
    label = pg.text_content("#notice-accept")
    w, h = map(int, re.search(r"(\d+)×(\d+)", label).groups())
    assert w * h <= LIMIT and w * h > 0.99 * LIMIT and abs(w / h - 4 / 3) < 1e-3
    pg.click("#notice-accept")
    _expect_status(pg, f"{w}×{h}")
    assert "big-" in pg.text_content("#status")  # a copy with its own name
    assert pg.eval_on_selector("#mask-canvas", "c => [c.width, c.height]") == [w, h]
    _jpeg_results(pg)
    _stroke(pg, (0.4, 0.4), (0.6, 0.5))
    pg.click("#run")
    _wait_result(pg, 1)
    assert pg.locator("#error").is_hidden()
    assert [e["size"] for e in pg.fake_log] == [(w, h)]  # the server took the downscaled copy
    assert _result_image(pg).shape == (h, w, 3)


def test_an_error_banner_does_not_push_the_photo_over_the_footer(fake_page, big_photo):
    pg = fake_page
    pg.allowed_errors.append("status of 503")
    pg.route("**/api/v1/jobs", lambda route: route.fulfill(
        status=503, headers={"Retry-After": "5", "Content-Type": "application/json"},
        body=json.dumps({"error": "busy", "detail": "the server is busy (1 running, 8 waiting) " * 6})))
    _open(pg, big_photo, "4000×3000")
    _stroke(pg, (0.4, 0.4), (0.6, 0.5))
    before = _box(pg, "#layers")
    pg.click("#run")
    pg.wait_for_selector("#error:not([hidden])")
    pg.wait_for_timeout(100)  # one frame for the relayout
    foot, error = _box(pg, ".foot"), _box(pg, "#error")
    for sel in ("#stage", "#layers"):
        b = _box(pg, sel)
        assert b["y"] >= error["y"] + error["height"] - 0.5, sel
        assert b["y"] + b["height"] <= foot["y"] + 0.5, (sel, b, foot)
    assert _box(pg, "#layers")["height"] < before["height"]  # the photo made room for the banner
    pg.click("#error-close")
    pg.wait_for_timeout(100)
    assert _box(pg, "#layers")["height"] == pytest.approx(before["height"], abs=0.5)


def test_pinch_zooms_and_a_second_finger_paints_nothing(browser, fake_url, photo_path):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                  is_mobile=True, has_touch=True)
    pg = context.new_page()
    pg.goto(fake_url + "/")
    _expect_status(pg, "Ready")
    _open(pg, photo_path)
    before = _box(pg, "#layers")
    cx, cy = before["x"] + before["width"] / 2, before["y"] + before["height"] / 2
    cdp = context.new_cdp_session(pg)

    def touch(kind: str, spread: float) -> None:
        points = [] if kind == "touchEnd" else [{"x": cx - spread, "y": cy, "id": 1},
                                                {"x": cx + spread, "y": cy, "id": 2}]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    touch("touchStart", 20)
    for spread in range(25, 81, 5):
        touch("touchMove", spread)
    touch("touchEnd", 0)
    after = _box(pg, "#layers")
    assert after["width"] / before["width"] == pytest.approx(4, rel=0.05)  # fingers 40 -> 160 px apart
    # The photo point between the fingers stayed between them.
    assert (cx - after["x"]) / after["width"] == pytest.approx((cx - before["x"]) / before["width"], abs=0.01)
    assert pg.is_disabled("#undo") and pg.is_disabled("#run")  # the pinch left no stroke behind
    context.close()


def test_a_mask_warning_from_the_server_is_shown(fake_page, photo_path):
    pg = fake_page

    def warn(route) -> None:
        response = route.fetch()
        headers = {**response.headers, "x-pconv-warning": "the mask marks 92% of the image"}
        route.fulfill(response=response, headers=headers)

    pg.route("**/result", warn)
    _open(pg, photo_path)
    _stroke(pg, (0.3, 0.45), (0.7, 0.55))
    pg.click("#run")
    _wait_result(pg, 1)
    pg.wait_for_selector("#notice:not([hidden])")
    assert "check the mask: the mask marks 92% of the image" in pg.text_content("#notice-text")
    assert pg.locator("#notice-accept").is_hidden()  # a message, not a question
    pg.click("#notice-dismiss")
    assert pg.locator("#notice").is_hidden()

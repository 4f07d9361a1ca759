"""End to end in a real Chromium: open a photo, paint a stroke, run, download, check the pixels.

Needs Python ``playwright`` and Debian's Chromium (``apt-get install -y chromium``; ``playwright
install`` is not used). Without them the tests skip locally, but under ``CI=true`` they FAIL: a CI
run must not pass by silently skipping the browser. ``PCONV_CHROMIUM`` overrides the browser path.
Screenshots go to ``test-artifacts/`` (git-ignored).
"""
from __future__ import annotations

import io
import json
import os
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


@pytest.fixture
def page(browser, base_url):
    context = browser.new_context(viewport={"width": 1100, "height": 800}, accept_downloads=True)
    pg = context.new_page()
    errors: list = []
    pg.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    pg.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    pg.goto(base_url + "/")
    _expect_status(pg, "Ready")
    pg.allowed_errors = []  # a test that provokes an error response lists its console line here
    yield pg
    context.close()
    errors = [e for e in errors if not any(a in e for a in pg.allowed_errors)]
    assert not errors, errors  # no JS errors, no CSP violations, no failed loads


def _expect_status(pg, text: str) -> None:
    """Wait for the status line to contain ``text`` (no string eval: the page's CSP forbids it)."""
    from playwright.sync_api import expect

    expect(pg.locator("#status")).to_contain_text(text, timeout=30_000)


def _open(pg, photo_path: Path) -> None:
    pg.set_input_files("#file", str(photo_path))
    pg.wait_for_selector("#stage:not([hidden])")
    _expect_status(pg, "200×150")


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
    box = _stroke(pg, frm, to)
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

    # Where the stroke went, in image pixels: the brush is sized in screen pixels.
    scale = W / box["width"]
    p0, p1 = (frm[0] * W, frm[1] * H), (to[0] * W, to[1] * H)
    painted = _near_segment(p0, p1, brush * scale / 2 + 2)  # + anti-aliasing margin
    core = _near_segment(p0, p1, brush * scale / 2 - 2)
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
    pg.route("**/api/v1/inpaint", lambda route: route.fulfill(
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
    with pg.expect_response(lambda r: r.url.endswith("/api/v1/inpaint")) as response:
        pg.click("#run")
    assert response.value.status == 200
    assert response.value.headers["x-pconv-method"] == "pconv-smooth"  # the server ran the chosen method
    pg.wait_for_selector("#result-bar:not([hidden])", timeout=60_000)
    assert pg.locator("#error").is_hidden()

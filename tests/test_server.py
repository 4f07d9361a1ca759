"""HTTP API of `pconv serve`: round trips, every error path, limits, the static page, a small load test."""
from __future__ import annotations

import io
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from pconv.model import PConvUNet, PConvUNetConfig
from pconv.schema import ErrorResponse, Info, InpaintOptions, JobStatus, ServerSettings
from pconv.server import background_server, create_app
from pconv.weights import save_weights

TINY = PConvUNetConfig(channels=(8, 16, 16), kernels=(7, 5, 3), image_size=64)
URL = "/api/v1/inpaint"


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    return save_weights(PConvUNet(TINY), path)


@pytest.fixture(scope="module")
def client(weights):
    with TestClient(create_app(ServerSettings(weights=weights))) as c:
        yield c


def photo(h: int = 40, w: int = 56, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 4, y * 5, (x + y) * 2], axis=2) % 256
    return (base + rng.integers(0, 30, (h, w, 3))).clip(0, 255).astype(np.uint8)


def hole_mask(h: int = 40, w: int = 56) -> np.ndarray:
    hole = np.zeros((h, w), bool)
    hole[10:22, 20:35] = True
    return hole


def encode(a: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format=fmt)
    return buf.getvalue()


def mask_png(hole: np.ndarray) -> bytes:
    return encode(hole.astype(np.uint8) * 255)


def files(image: bytes, mask: bytes):
    return {"image": ("photo.png", image, "image/png"), "mask": ("mask.png", mask, "image/png")}


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def assert_error(r: httpx.Response, status: int, code: str, *words: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = ErrorResponse.model_validate(r.json()).model_dump()
    assert body["error"] == code, body
    for w in words:
        assert w in body["detail"], body
    return body


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("method", ["pconv", "pconv-smooth", "telea"])
def test_round_trip_keeps_known_pixels(client, method):
    img, hole = photo(), hole_mask()
    painted = img.copy()
    painted[hole] = 0  # what the client wants gone
    r = client.post(URL, files=files(encode(painted), mask_png(hole)), data={"method": method})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert r.headers["x-pconv-method"] == method
    out = decode(r.content)
    assert out.shape == img.shape
    np.testing.assert_array_equal(out[~hole], img[~hole])  # known pixels exactly kept
    assert (out[hole] != 0).mean() > 0.9  # the hole was filled with something new
    if method == "telea":  # a real fill (the pconv model here has random weights): towards the photo
        error = np.abs(out.astype(int) - img.astype(int))[hole].mean()
        assert error < 0.2 * np.abs(painted.astype(int) - img.astype(int))[hole].mean()


def test_default_method_and_model_info(client, weights):
    img, hole = photo(), hole_mask()
    r = client.post(URL, files=files(encode(img), mask_png(hole)))
    assert r.status_code == 200 and r.headers["x-pconv-method"] == "pconv"
    info = Info.model_validate(client.get("/api/v1/info").json())
    assert info.model.loaded and info.model.weights == weights.name  # a file name, never a path
    assert info.model.config["channels"] == [8, 16, 16]
    assert info.model.num_params == sum(p.numel() for p in PConvUNet(TINY).parameters())


def test_network_methods_answer_what_the_inpainter_gives(client, weights):
    """method=pconv is the photographic fill, method=pconv-smooth the network alone, as in Python."""
    from pconv.inference import Inpainter

    img, hole = photo(), hole_mask()
    info = Info.model_validate(client.get("/api/v1/info").json())
    assert info.default_method == "pconv" and {"pconv", "pconv-smooth"} <= set(info.methods)
    for method in ("pconv", "pconv-smooth"):
        r = client.post(URL, files=files(encode(img), mask_png(hole)), data={"method": method})
        assert r.status_code == 200 and r.headers["x-pconv-method"] == method
        expected = np.asarray(Inpainter(weights, method=method)(img, hole))
        np.testing.assert_array_equal(decode(r.content), expected)


def test_invert_mask_means_black_is_hole(client):
    img, hole = photo(), hole_mask()
    r = client.post(URL, files=files(encode(img), mask_png(~hole)), data={"invert_mask": "true", "method": "telea"})
    assert r.status_code == 200, r.text
    out = decode(r.content)
    np.testing.assert_array_equal(out[~hole], img[~hole])
    assert (out[hole] != img[hole]).any()


def test_output_format_follows_the_input(client):
    img, hole = photo(), hole_mask()
    r = client.post(URL, files=files(encode(img, "JPEG"), mask_png(hole)),
                    data={"output_format": "input", "method": "telea"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).format == "JPEG"
    r = client.post(URL, files=files(encode(img, "JPEG"), mask_png(hole)), data={"method": "telea"})
    assert r.headers["content-type"] == "image/png"  # png unless asked


def test_exif_orientation_is_applied_like_a_browser_does(client):
    """A phone JPEG stored 56x40 with EXIF orientation 6 shows (and is masked) upright: 40x56."""
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(photo(40, 56)).save(buf, format="JPEG", exif=exif.tobytes())
    upright_hole = hole_mask(56, 40)
    r = client.post(URL, files=files(buf.getvalue(), mask_png(upright_hole)), data={"method": "telea"})
    assert r.status_code == 200, r.text
    assert decode(r.content).shape == (56, 40, 3)
    r = client.post(URL, files=files(buf.getvalue(), mask_png(hole_mask(40, 56))), data={"method": "telea"})
    assert_error(r, 400, "mask_size_mismatch", "(upright)")


# ------------------------------------------------------- masks from any editor, seed, warnings



def test_empty_mask_is_a_422_naming_the_fix(client):
    img = photo()
    faint = np.zeros((40, 56, 3), np.uint8)
    faint[hole_mask()] = (90, 90, 90)  # dark-grey strokes: under the mid-grey threshold
    transparent = np.zeros((40, 56, 4), np.uint8)  # a layer with nothing painted on it
    for mask in (mask_png(np.zeros(img.shape[:2], bool)), encode(faint), encode(transparent)):
        r = client.post(URL, files=files(encode(img), mask), data={"method": "telea"})
        assert_error(r, 422, "empty_mask", "no hole", "invert_mask=true", "bright colour")
    r = client.post(URL, files=files(encode(img), mask_png(np.ones(img.shape[:2], bool))),
                    data={"method": "telea", "invert_mask": "true"})  # all white, black = hole: nothing
    assert_error(r, 422, "empty_mask", "drop invert_mask=true")


@pytest.mark.parametrize("style", ["coloured layer", "black layer", "blue on black", "light grey on black"])
def test_masks_from_editors_fill_their_strokes(client, style):
    """Strokes on a transparent layer (IOPaint, Photoshop, GIMP) or in colour fill exactly as the
    white-on-black mask of the same strokes."""
    img, hole = photo(), hole_mask()
    if style.endswith("layer"):
        mask = np.zeros((40, 56, 4), np.uint8)
        mask[hole] = (255, 48, 96, 255) if style.startswith("coloured") else (0, 0, 0, 255)
    else:
        mask = np.zeros((40, 56, 3), np.uint8)
        mask[hole] = (0, 0, 255) if style.startswith("blue") else (200, 200, 200)
    r = client.post(URL, files=files(encode(img), encode(mask)), data={"method": "telea"})
    assert r.status_code == 200, r.text
    plain = client.post(URL, files=files(encode(img), mask_png(hole)), data={"method": "telea"})
    np.testing.assert_array_equal(decode(r.content), decode(plain.content))
    assert not np.array_equal(decode(r.content)[hole], img[hole])  # the strokes were filled


def test_large_hole_is_filled_with_a_polarity_hint_header(client):
    img, hole = photo(), hole_mask()
    r = client.post(URL, files=files(encode(img), mask_png(~hole)), data={"method": "telea"})  # inverted
    assert r.status_code == 200, r.text
    word = r.headers["x-pconv-warning"]
    assert f"{(~hole).mean():.1%}" in word and "invert_mask=true" in word
    np.testing.assert_array_equal(decode(r.content)[hole], img[hole])  # it did what it was told
    r = client.post(URL, files=files(encode(img), mask_png(hole)), data={"method": "telea"})
    assert r.status_code == 200 and "x-pconv-warning" not in r.headers
    r = client.post(URL, files=files(encode(img), mask_png(~hole)), data={"method": "telea", "invert_mask": "true"})
    assert r.status_code == 200 and "x-pconv-warning" not in r.headers  # flipped: 8 % hole


def test_job_result_carries_the_warning_header(client):
    img, hole = photo(), hole_mask()
    r = client.post("/api/v1/jobs", files=files(encode(img), mask_png(~hole)), data={"method": "telea"})
    assert r.status_code == 202, r.text
    url = r.headers["location"]
    for _ in range(2000):
        if client.get(url).json()["state"] in ("done", "failed"):
            break
        threading.Event().wait(0.01)
    result = client.get(url + "/result")
    assert result.status_code == 200 and "invert_mask=true" in result.headers["x-pconv-warning"]


def test_seed_draws_another_photographic_fill_deterministically(client):
    img, hole = photo(64, 64), np.zeros((64, 64), bool)
    hole[16:44, 20:48] = True

    def fill(**data) -> np.ndarray:
        r = client.post(URL, files=files(encode(img), mask_png(hole)), data={"method": "pconv", **data})
        assert r.status_code == 200, r.text
        out = decode(r.content)
        np.testing.assert_array_equal(out[~hole], img[~hole])
        return out

    one, again, two = fill(seed="1"), fill(seed="1"), fill(seed="2")
    np.testing.assert_array_equal(one, again)
    assert not np.array_equal(one[hole], two[hole])
    np.testing.assert_array_equal(fill(), fill(seed="0"))  # no seed = the server's, 0
    np.testing.assert_array_equal(fill(seed=""), fill(seed="0"))  # an empty form field = no seed
    assert client.app.state.models.get("pconv").seed == 0  # the shared inpainter is untouched
    smooth = [client.post(URL, files=files(encode(img), mask_png(hole)),
                          data={"method": "pconv-smooth", "seed": s}).content for s in ("1", "2")]
    assert smooth[0] == smooth[1]  # the network alone draws nothing
    for bad in ("-1", "1.5", "x"):
        r = client.post(URL, files=files(encode(img), mask_png(hole)), data={"seed": bad})
        assert_error(r, 422, "invalid_options", "seed")


def test_seed_is_in_the_openapi_schema(client):
    body = client.get("/openapi.json").json()["paths"]["/api/v1/inpaint"]["post"]["requestBody"]
    seed = body["content"]["multipart/form-data"]["schema"]["properties"]["seed"]
    assert seed["type"] == "integer" and "same seed" in seed["description"]


def test_memory_is_returned_after_every_job(client, monkeypatch):
    import pconv.server as server

    calls = []
    monkeypatch.setattr(server, "_return_freed_memory", lambda: calls.append(1))
    img, hole = photo(), hole_mask()
    assert client.post(URL, files=files(encode(img), mask_png(hole)), data={"method": "telea"}).status_code == 200
    r = client.post(URL, files=files(encode(img), mask_png(np.zeros((40, 56), bool))))
    assert r.status_code == 422  # a failed job returns its memory too
    assert len(calls) == 2
    if sys.platform.startswith("linux"):
        assert server._malloc_trim() is not None  # glibc: the real thing is there


# ------------------------------------------------------------------------------ error paths


def test_400_bad_image(client):
    r = client.post(URL, files=files(b"this is not an image", mask_png(hole_mask())))
    assert_error(r, 400, "bad_image", "not an image")
    r = client.post(URL, files=files(encode(photo())[:200], mask_png(hole_mask())))  # truncated PNG
    assert_error(r, 400, "bad_image", "truncated")
    r = client.post(URL, files=files(b"", mask_png(hole_mask())))
    assert_error(r, 400, "bad_image", "empty")


def test_400_bad_mask(client):
    assert_error(client.post(URL, files=files(encode(photo()), b"GIF89a nonsense")), 400, "bad_mask")


def test_400_mask_size_mismatch(client):
    r = client.post(URL, files=files(encode(photo(40, 56)), mask_png(hole_mask(40, 50))))
    assert_error(r, 400, "mask_size_mismatch", "50x40", "56x40")


def test_400_all_hole_mask_says_why(client):
    r = client.post(URL, files=files(encode(photo()), mask_png(np.ones((40, 56), bool))))
    assert_error(r, 400, "bad_request", "whole image")


def test_413_upload_too_large(weights):
    app = create_app(ServerSettings(weights=weights, max_upload_bytes=4096))
    noisy = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)  # ~12 KB as PNG
    with TestClient(app) as c:
        assert_error(c.post(URL, files=files(encode(noisy), mask_png(hole_mask(64, 64)))), 413, "too_large", "4,096")


def test_413_too_many_pixels(weights):
    app = create_app(ServerSettings(weights=weights, max_pixels=32 * 32))
    with TestClient(app) as c:
        r = c.post(URL, files=files(encode(photo(40, 56)), mask_png(hole_mask())))
        assert_error(r, 413, "too_many_pixels", "56x40", "1,024")


@pytest.mark.parametrize("data, words", [
    ({"method": "magic"}, ["method", "magic"]),
    ({"strategy": "zoom"}, ["strategy", "zoom"]),
    ({"invert_mask": "maybe"}, ["invert_mask"]),
    ({"output_format": "gif"}, ["output_format"]),
    ({"path": "/etc/passwd"}, ["unknown form field", "path"]),
])
def test_422_bad_options(client, data, words):
    r = client.post(URL, files=files(encode(photo()), mask_png(hole_mask())), data=data)
    assert_error(r, 422, "invalid_options", *words)


def test_422_missing_mask_and_415_not_multipart(client):
    r = client.post(URL, files={"image": ("p.png", encode(photo()), "image/png")})
    assert_error(r, 422, "invalid_options", "mask")
    assert_error(client.post(URL, json={"image": "x"}), 415, "not_multipart", "multipart/form-data")


def test_options_model_is_the_api_contract():
    assert InpaintOptions().model_dump() == {"method": None, "strategy": "auto", "invert_mask": False,
                                             "seed": None, "output_format": "png"}
    with pytest.raises(ValueError):
        InpaintOptions(colour="red")
    with pytest.raises(ValueError):
        ServerSettings(max_jobs=0)


# ------------------------------------------------------------------ service routes, page


def test_health_info_docs(client):
    h = client.get("/api/v1/health").json()
    assert h["status"] == "ok" and h["jobs_running"] == 0 and h["jobs_waiting"] == 0
    info = Info.model_validate(client.get("/api/v1/info").json())
    assert "pconv" in info.methods and "telea" in info.methods
    assert info.limits.max_upload_bytes == ServerSettings().max_upload_bytes
    assert info.strategies == ["auto", "crop", "resize", "original"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "://" not in docs.text  # no CDN: every asset comes from this server
    import re

    assets = re.findall(r"""(?:src|href)=["']?(/[^"' >]+)""", docs.text)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets), assets
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/api/v1/inpaint"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert {"image", "mask", "method", "strategy", "invert_mask", "output_format"} <= set(body["properties"])
    assert {"/api/v1/health", "/api/v1/info"} <= set(spec["paths"])


def test_static_page_is_served(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'id="mask-canvas"' in r.text and "app.js" in r.text
    assert "http://" not in r.text and "https://" not in r.text  # offline: no CDN
    assert "default-src 'self'" in r.headers["content-security-policy"]
    for name, kind in [("app.js", "javascript"), ("style.css", "text/css")]:
        r = client.get(f"/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
        assert "https://" not in r.text
    assert_error(client.get("/no-such-file.js"), 404, "not_found")


def test_no_path_traversal(weights):
    """Raw request paths reach the static mount unnormalised; nothing outside pconv/web comes back."""
    import http.client

    secret = "def create_app("  # in pconv/server.py, the parent folder of pconv/web
    with background_server(create_app(ServerSettings(weights=weights))) as base:
        host, port = urllib.parse.urlsplit(base).hostname, urllib.parse.urlsplit(base).port
        for raw in ["/../server.py", "/%2e%2e/server.py", "/..%2fserver.py", "/%2e%2e%2fserver.py",
                    "/static/../../server.py", "/..\\server.py", "//etc/passwd", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd"]:
            conn = http.client.HTTPConnection(host, port, timeout=10)
            conn.request("GET", raw)
            resp = conn.getresponse()
            text = resp.read().decode("latin-1")
            conn.close()
            assert resp.status in (400, 404), (raw, resp.status)
            assert secret not in text and "root:" not in text, raw


# ------------------------------------------------------------------- concurrency, limits


class Blocking:
    """An inpainter factory whose jobs wait until released: makes queue states deterministic."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Semaphore(0)

    def __call__(self, settings, method):
        def fill(image, mask, **_):
            self.started.release()
            self.release.wait(20)
            return image
        return fill


def _post(base: str, timeout: float = 30) -> httpx.Response:
    return httpx.post(base + URL, files=files(encode(photo()), mask_png(hole_mask())), timeout=timeout)


def test_503_with_retry_after_when_the_queue_is_full():
    blocking = Blocking()
    app = create_app(ServerSettings(max_jobs=1, queue_size=1, retry_after=7), inpainter_factory=blocking)
    with background_server(app) as base, ThreadPoolExecutor(2) as pool:
        first = pool.submit(_post, base)
        assert blocking.started.acquire(timeout=20)  # job 1 running
        second = pool.submit(_post, base)
        for _ in range(2000):  # job 2 waiting
            if httpx.get(base + "/api/v1/health").json()["jobs_waiting"] == 1:
                break
            threading.Event().wait(0.01)
        r = _post(base)
        assert_error(r, 503, "busy", "busy", "try again")
        assert r.headers["retry-after"] == "7"
        blocking.release.set()
        assert first.result().status_code == 200 and second.result().status_code == 200
        assert _post(base).status_code == 200  # free again
        h = httpx.get(base + "/api/v1/health").json()
        assert h["jobs_running"] == 0 and h["jobs_waiting"] == 0


def test_504_when_a_job_times_out_and_its_slot_is_kept_until_it_ends():
    blocking = Blocking()
    app = create_app(ServerSettings(max_jobs=1, queue_size=0, job_timeout=0.2), inpainter_factory=blocking)
    with background_server(app) as base:
        assert_error(_post(base), 504, "timeout")
        # The timed-out job still runs: the slot stays taken, so new work is refused, not stacked.
        assert httpx.get(base + "/api/v1/health").json()["jobs_running"] == 1
        assert _post(base).status_code == 503
        blocking.release.set()
        for _ in range(2000):
            if httpx.get(base + "/api/v1/health").json()["jobs_running"] == 0:
                break
            threading.Event().wait(0.01)
        assert _post(base).status_code == 200


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc for RSS")
def test_load_bounded_concurrency_clean_503_and_flat_memory(weights):
    """8 clients at once, 6 rounds, against 1 running + 2 waiting slots on loopback."""
    img, hole = photo(48, 48), hole_mask(48, 48)
    payload = files(encode(img), mask_png(hole))
    app = create_app(ServerSettings(weights=weights, max_jobs=1, queue_size=2))
    rss = []
    with background_server(app) as base, httpx.Client(base_url=base, timeout=60) as http, \
            ThreadPoolExecutor(8) as pool:
        for _ in range(6):
            responses = list(pool.map(lambda _: http.post(URL, files=payload), range(8)))
            codes = [r.status_code for r in responses]
            assert set(codes) <= {200, 503}, codes
            assert codes.count(200) >= 1
            for r in responses:
                if r.status_code == 200:
                    out = decode(r.content)
                    np.testing.assert_array_equal(out[~hole], img[~hole])
                else:
                    assert r.headers["retry-after"] and r.json()["error"] == "busy"
            assert http.get("/api/v1/health").json() == {"status": "ok", "version": http.get(
                "/api/v1/info").json()["version"], "jobs_running": 0, "jobs_waiting": 0}
            rss.append(_rss_bytes())
    growth = rss[-1] - rss[1]
    assert growth < 40 * 2**20, [r // 2**20 for r in rss]


# ------------------------------------------------------------------------------ pconv serve


@pytest.fixture
def fake_uvicorn(monkeypatch):
    import uvicorn

    calls: list = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    return calls


def test_serve_binds_loopback_by_default(fake_uvicorn, capsys, weights):
    from pconv.cli import main

    assert main(["serve", "--weights", str(weights), "--port", "8123", "--max-jobs", "2"]) == 0
    app, kw = fake_uvicorn[0]
    assert kw["host"] == "127.0.0.1" and kw["port"] == 8123
    assert app.state.settings.max_jobs == 2 and app.state.settings.weights == weights
    assert app.state.models.model_info().loaded  # preloaded: a bad model fails at start, not later
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("host, warns", [("0.0.0.0", True), ("192.168.1.5", True), ("::", True),
                                         ("localhost", False), ("::1", False), ("127.0.0.2", False)])
def test_serve_warns_off_loopback(fake_uvicorn, capsys, weights, host, warns):
    from pconv.cli import main

    assert main(["serve", "--weights", str(weights), "--host", host, "--no-preload"]) == 0
    assert ("not loopback" in capsys.readouterr().err) == warns


def test_serve_bad_settings_are_clear_errors(fake_uvicorn, capsys, tmp_path):
    from pconv.cli import main

    assert main(["serve", "--max-jobs", "0", "--no-preload"]) == 2
    assert "max_jobs" in capsys.readouterr().err
    assert main(["serve", "--weights", str(tmp_path / "nope.safetensors")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not fake_uvicorn


def test_serve_leaves_the_keep_freed_memory_policy_off(fake_uvicorn, monkeypatch, weights):
    """A long-lived server must not keep its peak heap (the one-job commands' policy)."""
    import pconv.device
    from pconv.cli import main

    calls = []
    monkeypatch.setattr(pconv.device, "keep_freed_memory", lambda: calls.append("kept") or True)
    assert main(["serve", "--weights", str(weights), "--no-preload"]) == 0
    assert calls == []
    assert fake_uvicorn[0][0].state.settings.device == "auto"  # the same default as inpaint and evaluate


def test_400_truncated_jpeg_is_called_truncated(client):
    jpeg = encode(photo(), "JPEG")
    for cut in (jpeg[:200], jpeg[:len(jpeg) // 2]):
        r = client.post(URL, files=files(cut, mask_png(hole_mask())))
        body = assert_error(r, 400, "bad_image", "truncated or corrupt")
        assert "JPEG" in body["detail"] and "send a PNG" not in body["detail"]
    r = client.post(URL, files=files(encode(photo()), b"\x89PNG\r\n\x1a\n" + b"\x00" * 30))
    assert_error(r, 400, "bad_mask", "truncated or corrupt")


# ------------------------------------------------------------------------------------------- jobs

JOBS = "/api/v1/jobs"


class Stepping:
    """An inpainter factory whose fills pass ``steps`` progress boundaries, each after ``delay`` s (or,
    with ``delay=None``, once ``advance`` is released), and log how far each got and how it ended."""

    def __init__(self, steps: int = 4, delay: "float | None" = None) -> None:
        self.steps, self.delay = steps, delay
        self.advance = threading.Semaphore(0)
        self.log: list = []

    def __call__(self, settings, method):
        factory = self

        class Fill:
            seed = 0

            def __call__(self, image, hole, progress=None, **_):
                entry = {"seed": self.seed, "steps": 0, "end": "running"}
                factory.log.append(entry)
                try:
                    for i in range(factory.steps):
                        if progress is not None:
                            progress(i / factory.steps, "network")
                        if factory.delay is None:
                            assert factory.advance.acquire(timeout=20)
                        else:
                            time.sleep(factory.delay)
                        entry["steps"] = i + 1
                except BaseException as exc:
                    entry["end"] = type(exc).__name__
                    raise
                entry["end"] = "finished"
                return image

        return Fill()


def _job_form(img=None, hole=None):
    img = photo() if img is None else img
    return files(encode(img), mask_png(hole_mask() if hole is None else hole))


def _until(condition, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def _job(c, job_id: str) -> JobStatus:
    r = c.get(f"{JOBS}/{job_id}")
    assert r.status_code == 200, r.text
    return JobStatus.model_validate(r.json())


def _finished(c, job_id: str) -> JobStatus:
    return _until(lambda: (lambda s: s if s.state in ("done", "failed", "cancelled") else None)(_job(c, job_id)))


@pytest.mark.parametrize("method, seed", [("pconv", "5"), ("pconv-smooth", "")])
def test_job_result_equals_the_synchronous_answer(client, method, seed):
    data = {"method": method, "seed": seed}
    r = client.post(JOBS, files=_job_form(), data=data)
    assert r.status_code == 202, r.text
    created = JobStatus.model_validate(r.json())
    assert r.headers["location"] == f"{JOBS}/{created.id}" and created.state in ("queued", "running")
    assert created.method == method and created.seed == (int(seed) if seed else None)
    done = _finished(client, created.id)
    assert done.state == "done" and done.progress == 1.0 and done.stage == "done" and done.error is None
    assert done.result == f"{JOBS}/{created.id}/result" and done.seconds >= 0
    assert 0 < done.expires_in <= ServerSettings().job_ttl
    result = client.get(done.result)
    assert result.status_code == 200 and result.headers["content-type"] == "image/png"
    assert result.headers["x-pconv-method"] == method
    direct = client.post(URL, files=_job_form(), data=data)
    assert result.content == direct.content  # the same image as POST /inpaint, bit for bit
    assert client.get(done.result).content == result.content  # fetched again until it expires


def test_job_progress_rises_through_the_fill():
    fake = Stepping(steps=4)
    with TestClient(create_app(ServerSettings(), inpainter_factory=fake)) as c:
        job_id = c.post(JOBS, files=_job_form()).json()["id"]
        seen = []
        for i in range(4):
            expected = round(0.05 + 0.85 * i / 4, 4)  # the fill's own [0, 1] spans 0.05-0.9 of the job
            status = _until(lambda: (lambda s: s if s.progress >= expected else None)(_job(c, job_id)))
            assert status.state == "running" and status.stage == "network"
            seen.append(status.progress)
            fake.advance.release()
        assert seen == [round(0.05 + 0.85 * i / 4, 4) for i in range(4)]
        assert _finished(c, job_id).state == "done"


def test_cancelling_a_running_job_stops_its_work():
    fake = Stepping(steps=500, delay=0.02)  # 10 s unless stopped
    with TestClient(create_app(ServerSettings(), inpainter_factory=fake)) as c:
        job_id = c.post(JOBS, files=_job_form()).json()["id"]
        _until(lambda: fake.log and fake.log[0]["steps"] > 0)
        r = c.delete(f"{JOBS}/{job_id}")
        assert r.status_code == 200 and JobStatus.model_validate(r.json()).state == "cancelled"
        _until(lambda: fake.log[0]["end"] != "running", timeout=2)
        assert fake.log[0]["end"] == "JobCancelled" and fake.log[0]["steps"] < 100  # stopped at once
        _until(lambda: c.get("/api/v1/health").json()["jobs_running"] == 0, timeout=2)
        assert_error(c.get(f"{JOBS}/{job_id}"), 404, "unknown_job")  # forgotten
        fake.delay = 0
        assert _finished(c, c.post(JOBS, files=_job_form()).json()["id"]).state == "done"  # the slot is free


def test_cancelling_a_queued_job_frees_its_place_in_the_queue():
    fake = Stepping(steps=1)
    app = create_app(ServerSettings(max_jobs=1, queue_size=1), inpainter_factory=fake)
    with TestClient(app) as c:
        first = c.post(JOBS, files=_job_form()).json()["id"]
        _until(lambda: fake.log)
        second = c.post(JOBS, files=_job_form()).json()["id"]
        _until(lambda: c.get("/api/v1/health").json()["jobs_waiting"] == 1)
        assert _job(c, second).state == "queued"
        assert_error(c.post(JOBS, files=_job_form()), 503, "busy")  # 1 running + 1 waiting: full
        assert c.delete(f"{JOBS}/{second}").json()["state"] == "cancelled"
        _until(lambda: c.get("/api/v1/health").json()["jobs_waiting"] == 0, timeout=2)
        third = c.post(JOBS, files=_job_form())
        assert third.status_code == 202, third.text
        fake.advance.release(2)
        assert _finished(c, first).state == "done" and _finished(c, third.json()["id"]).state == "done"
        assert len(fake.log) == 2  # the cancelled job never ran


def test_unknown_job_is_404(client):
    for r in (client.get(f"{JOBS}/no-such-job"), client.get(f"{JOBS}/no-such-job/result"),
              client.delete(f"{JOBS}/no-such-job")):
        assert_error(r, 404, "unknown_job", "no-such-job", "submit it again")


def test_result_of_an_unfinished_job_is_409_and_of_a_failed_one_its_error(client):
    fake = Stepping(steps=1)
    with TestClient(create_app(ServerSettings(), inpainter_factory=fake)) as c:
        job_id = c.post(JOBS, files=_job_form()).json()["id"]
        _until(lambda: fake.log)
        r = c.get(f"{JOBS}/{job_id}/result")
        assert_error(r, 409, "not_ready", "running", f"GET {JOBS}/{job_id}")
        assert r.headers["retry-after"] == "1"
        fake.advance.release()
        assert _finished(c, job_id).state == "done"

    bad = client.post(JOBS, files=files(b"this is not an image", mask_png(hole_mask())))
    assert bad.status_code == 202  # decoding happens in the job
    failed = _finished(client, bad.json()["id"])
    assert failed.state == "failed" and failed.result is None
    assert (failed.error.status, failed.error.error) == (400, "bad_image")
    direct = client.post(URL, files=files(b"this is not an image", mask_png(hole_mask())))
    body = assert_error(client.get(f"{JOBS}/{failed.id}/result"), 400, "bad_image")
    assert body == direct.json()  # what POST /inpaint answers


def test_job_creation_refuses_what_inpaint_refuses(client):
    assert_error(client.post(JOBS, files=_job_form(), data={"method": "magic"}), 422, "invalid_options", "magic")
    assert_error(client.post(JOBS, files=_job_form(), data={"path": "/etc/passwd"}), 422, "invalid_options", "path")
    assert_error(client.post(JOBS, json={"image": "x"}), 415, "not_multipart")


def test_a_job_that_times_out_fails_with_504_and_stops_its_work():
    fake = Stepping(steps=500, delay=0.02)
    with TestClient(create_app(ServerSettings(job_timeout=0.3), inpainter_factory=fake)) as c:
        failed = _finished(c, c.post(JOBS, files=_job_form()).json()["id"])
        assert failed.state == "failed" and (failed.error.status, failed.error.error) == (504, "timeout")
        _until(lambda: fake.log[0]["end"] != "running", timeout=2)
        assert fake.log[0]["end"] == "JobCancelled" and fake.log[0]["steps"] < 100


def test_finished_jobs_expire_and_at_most_kept_jobs_are_kept():
    fake = Stepping(steps=0)
    app = create_app(ServerSettings(job_ttl=60, kept_jobs=2), inpainter_factory=fake)
    now = [1000.0]
    app.state.jobs.clock = lambda: now[0]
    with TestClient(app) as c:
        ids = []
        for _ in range(3):
            ids.append(c.post(JOBS, files=_job_form()).json()["id"])
            assert _finished(c, ids[-1]).state == "done"
            now[0] += 1
        assert_error(c.get(f"{JOBS}/{ids[0]}"), 404, "unknown_job")  # the oldest went first
        assert _job(c, ids[1]).expires_in == 58 and _job(c, ids[2]).expires_in == 59  # finished 2 and 1 s ago
        now[0] += 58.5
        assert_error(c.get(f"{JOBS}/{ids[1]}/result"), 404, "unknown_job", "expired")
        assert c.get(f"{JOBS}/{ids[2]}/result").status_code == 200
        now[0] += 1
        assert_error(c.get(f"{JOBS}/{ids[2]}"), 404, "unknown_job")
        assert len(app.state.jobs) == 0  # nothing is held


def test_job_store_bounds_results_by_count_bytes_and_age():
    from pconv.jobs import JobStore

    now = [0.0]
    store = JobStore(keep=3, ttl=10, max_bytes=100, clock=lambda: now[0])
    active = [store.create("pconv") for _ in range(5)]
    assert len(store) == 5  # unfinished jobs are never dropped
    for i, job in enumerate(active[:4]):
        now[0] = i
        store.finish(job, b"x" * 30, "image/png", {})
    assert [store.get(j.id) is not None for j in active] == [False, True, True, True, True]  # 3 finished kept
    assert store.kept_bytes() == 90
    now[0] = 5
    store.finish(active[4], b"y" * 70, "image/png", {})  # 160 bytes: the oldest go until it fits
    assert [store.get(j.id) is not None for j in active] == [False, False, False, True, True]
    big = store.create("pconv")
    now[0] = 6
    store.finish(big, b"z" * 500, "image/png", {})  # alone over max_bytes: the newest stays
    assert [j.id for j in (big,) if store.get(j.id)] == [big.id] and len(store) == 1
    now[0] = 16.5
    assert store.get(big.id) is None  # expired ttl seconds after it finished


def test_jobs_are_in_the_openapi_schema(client):
    spec = client.get("/openapi.json").json()
    post = spec["paths"][JOBS]["post"]
    body = post["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert {"image", "mask", "method", "seed", "strategy", "invert_mask", "output_format"} <= set(body["properties"])
    assert post["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/JobStatus")
    assert {"get", "delete"} <= set(spec["paths"][f"{JOBS}/{{job_id}}"])
    assert "image/png" in spec["paths"][f"{JOBS}/{{job_id}}/result"]["get"]["responses"]["200"]["content"]
    states = spec["components"]["schemas"]["JobStatus"]["properties"]["state"]
    assert set(states["enum"]) == {"queued", "running", "done", "failed", "cancelled"}

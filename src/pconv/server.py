"""HTTP API and web page of ``pconv serve``: FastAPI app factory, bounded job queue, static page.

Layout (as IOPaint keeps it): the model lives in :mod:`pconv.inference`, the request/response
models in :mod:`pconv.schema`, this module is the thin HTTP edge, and the page is static files in
``pconv/web`` mounted at ``/`` last. Protections, all from :class:`~pconv.schema.ServerSettings`:

* the request body is read with a byte cap (413) and parsed in memory: requests never touch the
  file system, and no request field is a path;
* an image's pixel count is checked from its header before decoding (413);
* at most ``max_jobs`` inferences run at once in a thread pool, ``queue_size`` more may wait, and
  the rest get 503 with ``Retry-After``; a job answers within ``job_timeout`` seconds or 504
  (a timed-out job keeps its slot until its thread really ends, so timeouts cannot pile up work);
* one :class:`~pconv.inference.Inpainter` per method, built on first use and shared.
* masks follow :mod:`pconv.masks.rules` (as the CLI and the library): one with no hole is a 422
  ``empty_mask``, a hole over 60 % of the image gets a polarity hint in ``X-Pconv-Warning``;
* after each job the freed heap goes back to the system (glibc ``malloc_trim``), so a long-lived
  server does not keep the peak of its largest photo;
* ``/api/v1/jobs`` runs the same request as a job to poll, fetch and cancel (:mod:`pconv.jobs`
  keeps them, bounded by ``kept_jobs``, ``kept_result_bytes`` and ``job_ttl``); cancelling or a
  timeout stops the work, since the job's progress callback raises.

Every error body is :class:`~pconv.schema.ErrorResponse` JSON: ``{"error": code, "detail": why}``.
"""
from __future__ import annotations

import asyncio
import copy
import ctypes
import ctypes.util
import functools
import io
import logging
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Dict, Iterator, List, Optional, Set, Tuple

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import ValidationError
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from pconv import __version__
from pconv.errors import PConvError
from pconv.imageio import PNG_OPTIONS
from pconv.jobs import Job, JobCancelled, JobStore
from pconv.schema import (
    METHODS,
    OUTPUT_FORMATS,
    STRATEGIES,
    ErrorResponse,
    Health,
    Info,
    InpaintOptions,
    JobStatus,
    Limits,
    ModelInfo,
    ServerSettings,
)

__all__ = ["create_app", "ServerSettings", "web_root", "background_server"]

log = logging.getLogger(__name__)

API = "/api/v1"
#: Formats a client may upload; anything else is a 400 before decoding.
UPLOAD_FORMATS = {"PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF", "MPO"}
#: Uploaded format -> (Pillow format, media type, save options) for ``output_format=input``.
_OUTPUT_BY_INPUT: Dict[str, Tuple[str, str, Dict[str, Any]]] = {
    "JPEG": ("JPEG", "image/jpeg", {"quality": 95, "subsampling": 0}),
    "MPO": ("JPEG", "image/jpeg", {"quality": 95, "subsampling": 0}),
    "WEBP": ("WEBP", "image/webp", {"lossless": True}),
}
_PNG = ("PNG", "image/png", PNG_OPTIONS)
_FORM_FIELDS = {"image", "mask", *InpaintOptions.model_fields}

#: Builds the inpainter of one method: ``factory(settings, method) -> callable(image, mask, **kw)``.
InpainterFactory = Callable[[ServerSettings, str], Callable[..., Any]]


def web_root() -> Path:
    """The folder of the static page shipped in the package (the only folder the server serves)."""
    return Path(str(resources.files("pconv") / "web"))


class ApiError(Exception):
    """An error answered as ErrorResponse JSON with ``status``."""

    def __init__(self, status: int, error: str, detail: str, headers: Optional[Dict[str, str]] = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers


def _error_response(status: int, error: str, detail: str, headers: Optional[Dict[str, str]] = None) -> JSONResponse:
    return JSONResponse(ErrorResponse(error=error, detail=detail).model_dump(), status_code=status, headers=headers)


# ----------------------------------------------------------------------------------------- models


def _default_factory(settings: ServerSettings, method: str) -> Callable[..., Any]:
    from pconv.inference import NETWORK_METHODS, Inpainter

    weights = settings.weights if method in NETWORK_METHODS else None
    return Inpainter(weights, method=method, device=settings.device)


class Models:
    """One inpainter per method, built on first use under a lock and shared by all requests."""

    def __init__(self, settings: ServerSettings, factory: InpainterFactory) -> None:
        self.settings, self._factory = settings, factory
        self._lock = threading.Lock()
        self._cache: Dict[str, Callable[..., Any]] = {}

    def get(self, method: str) -> Callable[..., Any]:
        with self._lock:
            if method not in self._cache:
                self._cache[method] = self._factory(self.settings, method)
            return self._cache[method]

    def model_info(self) -> ModelInfo:
        inpainter = self._cache.get("pconv") or self._cache.get("pconv-smooth")
        model = getattr(inpainter, "model", None)
        if model is None:
            return ModelInfo(loaded=False, weights=self.settings.weights.name if self.settings.weights else None)
        weights = getattr(inpainter, "weights_path", None) or self.settings.weights
        config = getattr(model, "config", None)
        return ModelInfo(
            loaded=True,
            weights=Path(weights).name if weights else "default",
            config=config.to_dict() if hasattr(config, "to_dict") else None,
            num_params=sum(p.numel() for p in model.parameters()) if hasattr(model, "parameters") else None,
        )


def available_methods() -> List[str]:
    """The network's methods plus the classical baselines whose optional dependencies are installed."""
    network = ["pconv", "pconv-smooth"]
    try:
        from pconv.baselines import available_methods as baselines
    except ImportError:  # pragma: no cover - baselines ship with pconv
        return network
    return network + [m for m in baselines() if m in METHODS]


# -------------------------------------------------------------------------------------- job gate


class JobGate:
    """Admission and concurrency: ``max_jobs`` running, ``queue_size`` waiting, the rest refused.

    Lives in one event loop; the counters are only touched from that loop, so they need no lock.
    """

    def __init__(self, max_jobs: int, queue_size: int) -> None:
        self.max_jobs, self.queue_size = max_jobs, queue_size
        self.running = 0
        self.waiting = 0
        self._slots = asyncio.Semaphore(max_jobs)
        self._executor = ThreadPoolExecutor(max_workers=max_jobs, thread_name_prefix="pconv-job")

    @property
    def full(self) -> bool:
        return self.running + self.waiting >= self.max_jobs + self.queue_size

    async def run(self, fn: Callable[[], Any], timeout: float, retry_after: int) -> Any:
        """Run ``fn`` in the pool: ApiError 503 when full, 504 when ``timeout`` passes first."""
        if self.full:
            raise ApiError(503, "busy", f"the server is busy ({self.running} running, {self.waiting} waiting); "
                           f"try again in {retry_after} s", {"Retry-After": str(retry_after)})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self.waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout)
        except asyncio.TimeoutError:
            raise ApiError(504, "timeout", f"the job waited more than {timeout:g} s for a free slot") from None
        finally:
            self.waiting -= 1
        self.running += 1
        future = loop.run_in_executor(self._executor, _then_return_memory(fn))

        def release(_: Any) -> None:  # when the thread really ends, not when the client stops waiting
            self.running -= 1
            self._slots.release()

        future.add_done_callback(release)
        try:
            return await asyncio.wait_for(asyncio.shield(future), max(deadline - loop.time(), 0.0))
        except asyncio.TimeoutError:
            raise ApiError(504, "timeout", f"the job took more than {timeout:g} s; try a smaller image or "
                           "another method") from None

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


# ------------------------------------------------------------------------------- request decoding


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    too_big = ApiError(413, "too_large", f"the upload is larger than the limit of {limit:,} bytes; "
                       "send a smaller image (the limit is in GET /api/v1/info)")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


async def _parse_form(request: Request, body: bytes) -> Tuple[bytes, bytes, str, InpaintOptions]:
    """Multipart body -> (image bytes, mask bytes, image file name, options), all in memory."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError(415, "not_multipart", "send multipart/form-data with the fields image and mask "
                       "(and optionally method, strategy, invert_mask, seed, output_format)")

    async def stream() -> AsyncIterator[bytes]:
        yield body

    parser = MultiPartParser(Headers(scope=request.scope), stream(), max_files=2, max_fields=8,
                             max_part_size=64 * 1024)
    parser.spool_max_size = len(body) + 1  # keep uploads in memory: never spill to a temp file
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ApiError(400, "bad_form", f"the multipart body could not be parsed: {exc.message}") from None
    try:
        unknown = sorted(set(form.keys()) - _FORM_FIELDS)
        if unknown:
            raise ApiError(422, "invalid_options", f"unknown form field(s) {unknown}; accepted: "
                           f"{sorted(_FORM_FIELDS)}")
        files: Dict[str, UploadFile] = {}
        for name in ("image", "mask"):
            value = form.get(name)
            if value is None:
                raise ApiError(422, "invalid_options", f"the form field {name!r} (an image file) is missing")
            if not isinstance(value, UploadFile):
                raise ApiError(422, "invalid_options", f"the form field {name!r} must be a file upload")
            files[name] = value
        fields = {k: v for k, v in form.items() if k in InpaintOptions.model_fields}
        if any(not isinstance(v, str) for v in fields.values()):
            raise ApiError(422, "invalid_options", "the options must be plain form fields, not files")
        fields = {k: v for k, v in fields.items() if not (k in ("method", "seed") and v == "")}  # empty = default
        try:
            options = InpaintOptions.model_validate(fields)
        except ValidationError as exc:
            raise ApiError(422, "invalid_options", _validation_message(exc)) from None
        image = await files["image"].read()
        mask = await files["mask"].read()
        return image, mask, files["image"].filename or "image", options
    finally:
        await form.close()


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err.get("loc", ())) or "options"
        got = err.get("input")
        parts.append(f"{where}: {err.get('msg')}" + (f" (got {got!r})" if isinstance(got, (str, int, float)) else ""))
    return "; ".join(parts)


def _open_upload(data: bytes, what: str, max_pixels: int) -> Tuple[Any, str]:
    """Decode uploaded bytes with Pillow -> (image, format), checking the pixel count from the header first.

    (:func:`pconv.imageio.read_image` takes paths only; requests must not touch the file system.)
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    code = f"bad_{what}"
    if not data:
        raise ApiError(400, code, f"the {what} upload is empty (0 bytes)")
    try:
        im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise ApiError(413, "too_many_pixels", f"the {what} has more pixels than the limit of {max_pixels:,}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        from pconv.imageio import unreadable_reason

        raise ApiError(400, code, f"the {what} cannot be read: {unreadable_reason(data[:16], exc)}") from None
    w, h = im.size
    if im.format not in UPLOAD_FORMATS:
        raise ApiError(400, code, f"the {what} is a {im.format} file; send a PNG, JPEG, WebP, BMP or TIFF file")
    if w == 0 or h == 0:
        raise ApiError(400, code, f"the {what} has zero size ({w}x{h})")
    if w * h > max_pixels:
        raise ApiError(413, "too_many_pixels", f"the {what} is {w}x{h} = {w * h:,} pixels, more than the limit "
                       f"of {max_pixels:,}; downscale it first")
    fmt = im.format
    try:
        im.load()
        if what == "image":
            im = ImageOps.exif_transpose(im)  # upright, as browsers show it
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ApiError(400, code, f"the {what} is truncated or corrupt ({exc})") from None
    return im, fmt


def _encode(result: Any, input_format: Optional[str], output_format: str) -> Tuple[bytes, str]:
    """The result image as bytes: PNG (keeps alpha and greyscale), or the upload's own format."""
    from PIL import Image

    fmt, media, kwargs = _PNG
    if output_format == "input" and input_format in _OUTPUT_BY_INPUT:
        fmt, media, kwargs = _OUTPUT_BY_INPUT[input_format]
    if not isinstance(result, Image.Image):
        result = Image.fromarray(result)
    if fmt == "JPEG" and result.mode not in ("RGB", "L"):
        result = result.convert("L" if result.mode in ("L", "LA") else "RGB")
    buf = io.BytesIO()
    result.save(buf, format=fmt, **kwargs)
    return buf.getvalue(), media


class _Stages:
    """A job's progress callback, or nothing: the synchronous endpoint passes the inpainter none."""

    def __init__(self, callback: Optional[Callable[[float, str], None]]) -> None:
        self.callback = callback

    def __call__(self, fraction: float, stage: str) -> None:
        if self.callback is not None:
            self.callback(fraction, stage)

    def inpainter_kwargs(self, lo: float, hi: float) -> Dict[str, Any]:
        """``progress=`` for the inpainter, its [0, 1] mapped onto [lo, hi] of the job."""
        if self.callback is None:
            return {}
        callback = self.callback
        return {"progress": lambda f, stage: callback(lo + (hi - lo) * f, stage)}


#: Response header carrying a word about a suspicious mask (a hole over 60 % of the image: probably
#: inverted); the page shows its text. Documented in README ("HTTP API") and /docs.
WARNING_HEADER = "X-Pconv-Warning"


def _checked_hole(mask: Any, invert: bool) -> Tuple[Any, Dict[str, str]]:
    """The request's hole by the one mask rule (pconv.masks.rules), and the headers it earns.

    A mask with no hole is refused (422: the request would change nothing); a hole over
    ``rules.LARGE_HOLE`` of the image is filled, with a polarity hint in WARNING_HEADER."""
    from pconv.masks import rules

    try:
        hole = rules.to_hole(mask, invert=invert)
    except PConvError as exc:
        raise ApiError(400, "bad_mask", f"the mask cannot be used: {exc}") from None
    problem = rules.mask_problem(hole, invert, flag="invert_mask=true", threshold_flag=None)
    if problem is not None and not hole.any():
        raise ApiError(422, "empty_mask", problem)
    return hole, ({WARNING_HEADER: problem} if problem else {})


def _with_seed(inpainter: Any, seed: Optional[int]) -> Any:
    """The shared inpainter drawing with ``seed`` (a shallow copy: the network stays shared, and
    concurrent jobs with other seeds are untouched); as it is when no seed is asked for."""
    if seed is None or not hasattr(inpainter, "seed") or inpainter.seed == seed:
        return inpainter
    twin = copy.copy(inpainter)
    twin.seed = int(seed)
    return twin


def _return_freed_memory() -> None:
    """Hand the heap that a finished job freed back to the system (glibc ``malloc_trim``).

    A large photo's fill frees hundreds of MB that glibc would otherwise keep mapped for ever (its
    arenas are only trimmed at their top); a server lives long and sees many sizes, so it returns
    them after each job (benchmarks/bench_server_memory.py). A no-op where libc has no malloc_trim."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Optional[Callable[[int], int]]:
    """glibc's ``malloc_trim``, or None where there is none (not Linux, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


def _then_return_memory(fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        try:
            return fn()
        finally:
            _return_freed_memory()
    return run


def _inpaint_job(models: Models, settings: ServerSettings, image_bytes: bytes, mask_bytes: bytes,
                 options: InpaintOptions, progress: Optional[Callable[[float, str], None]] = None,
                 ) -> Tuple[bytes, str, float, Dict[str, str]]:
    """Decode, inpaint and encode one request (runs in the job thread); the last item is the extra
    response headers (WARNING_HEADER for a suspicious mask).

    ``progress(fraction, stage)`` hears the stages (the inpainter's own in 0.05-0.9); what it raises
    stops the job."""
    start = time.perf_counter()
    step = _Stages(progress)
    image, input_format = _open_upload(image_bytes, "image", settings.max_pixels)
    mask, _ = _open_upload(mask_bytes, "mask", settings.max_pixels)
    if mask.size != image.size:
        raise ApiError(400, "mask_size_mismatch", f"the mask is {mask.size[0]}x{mask.size[1]} but the image is "
                       f"{image.size[0]}x{image.size[1]} (upright); send the mask at the image's size, "
                       "white = hole")
    step(0.02, "mask")
    hole, extra = _checked_hole(mask, options.invert_mask)
    del mask
    method = options.method or settings.default_method
    try:
        inpainter = _with_seed(models.get(method), options.seed)
    except PConvError as exc:  # the server's configuration, not the request, is at fault
        log.error("cannot build the %s inpainter: %s", method, exc)
        raise ApiError(500, "model_unavailable", f"the {method} method cannot run on this server: {exc}") from None
    try:
        result = inpainter(image, hole, strategy=options.strategy, invert_mask=False,
                           **step.inpainter_kwargs(0.05, 0.9))
    except PConvError as exc:
        raise ApiError(400, "bad_request", str(exc)) from None
    step(0.9, "encode")
    data, media = _encode(result, input_format, options.output_format)
    return data, media, time.perf_counter() - start, extra


# ------------------------------------------------------------------------------------------ jobs


def _job_url(job_id: str) -> str:
    return f"{API}/jobs/{job_id}"


def _result_headers(method: str, media: str, seconds: float) -> Dict[str, str]:
    ext = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}[media]
    return {"Cache-Control": "no-store", "Content-Disposition": f'inline; filename="inpainted.{ext}"',
            "X-Pconv-Method": method, "X-Pconv-Seconds": f"{seconds:.3f}"}


async def _run_job(gate: JobGate, store: JobStore, job: Job,
                   work: Callable[[], Tuple[bytes, str, float, Dict[str, str]]],
                   timeout: float, retry_after: int) -> None:
    """Run one job through the gate and record how it ended; a timeout stops the work too."""
    try:
        data, media, seconds, extra = await gate.run(work, timeout, retry_after)
    except JobCancelled:
        store.cancel(job)
    except ApiError as exc:
        if exc.status == 504:
            job.cancel_event.set()  # the thread stops at its next stage boundary instead of running on
        store.fail(job, exc.status, exc.error, exc.detail)
    except Exception:  # a bug, not the client's fault: log it, answer without internals
        log.exception("inpainting job %s failed", job.id)
        store.fail(job, 500, "internal_error", "inpainting failed on the server; see its log")
    else:
        store.finish(job, data, media, {**_result_headers(job.method, media, seconds), **extra})


def _add_job_routes(app: FastAPI, settings: ServerSettings, models: Models, methods: List[str]) -> None:
    """``/api/v1/jobs``: the inpaint request as a job to poll (progress), fetch and cancel.

    Same form, limits and queue as ``POST /inpaint``; for clients that should not hold one request
    open for a long fill, such as the web page."""
    store = JobStore(settings.kept_jobs, settings.job_ttl, settings.kept_result_bytes)
    app.state.jobs = store
    running: Set["asyncio.Task[None]"] = set()

    def known(job_id: str) -> Job:
        job = store.get(job_id)
        if job is None:
            raise ApiError(404, "unknown_job", f"no job {job_id!r}: it never existed, was cancelled, or its result "
                           f"expired ({settings.job_ttl:g} s after it finished); submit it again")
        return job

    def status(job: Job) -> JobStatus:
        return job.status(store.clock(), settings.job_ttl, f"{_job_url(job.id)}/result")

    request_body = {"requestBody": _inpaint_openapi()["requestBody"]}

    @app.post(f"{API}/jobs", tags=["jobs"], status_code=202, response_model=JobStatus, openapi_extra=request_body,
              responses={k: v for k, v in _ERRORS.items() if k != 504}, summary="Start filling the holes of an image")
    async def create_job(request: Request) -> JSONResponse:
        """The form of ``POST /inpaint``; answers at once with the job (202, ``Location`` = its URL).

        Poll ``GET /jobs/{id}`` for its progress, then fetch ``GET /jobs/{id}/result``."""
        gate: JobGate = request.app.state.gate
        if gate.full:  # refuse before reading a large body
            raise ApiError(503, "busy", "the server is busy; try again later",
                           {"Retry-After": str(settings.retry_after)})
        body = await _read_body(request, settings.max_upload_bytes)
        image, mask, _, options = await _parse_form(request, body)
        del body
        method = options.method or settings.default_method
        if method not in methods:
            raise ApiError(422, "invalid_options", f"method {method!r} is not available on this server; "
                           f"available: {', '.join(methods)}")
        job = store.create(method, getattr(options, "seed", None))

        def work() -> Tuple[bytes, str, float, Dict[str, str]]:
            store.start(job)
            job.report(0.0, "decode")  # a job cancelled while it waited ends here
            return _inpaint_job(models, settings, image, mask, options, progress=job.report)

        job.task = asyncio.ensure_future(_run_job(gate, store, job, work, settings.job_timeout, settings.retry_after))
        running.add(job.task)  # the loop keeps only weak references to tasks
        job.task.add_done_callback(running.discard)
        return JSONResponse(status(job).model_dump(), status_code=202, headers={"Location": _job_url(job.id)})

    @app.get(f"{API}/jobs/{{job_id}}", tags=["jobs"], response_model=JobStatus,
             responses={404: {"model": ErrorResponse, "description": "No such job (or it expired)"}},
             summary="A job's state and progress")
    async def get_job(job_id: str) -> JobStatus:
        return status(known(job_id))

    @app.get(f"{API}/jobs/{{job_id}}/result", tags=["jobs"], response_class=Response, summary="A job's result",
             responses={200: _inpaint_openapi()["responses"]["200"],
                        404: {"model": ErrorResponse, "description": "No such job (or it expired)"},
                        409: {"model": ErrorResponse, "description": "Not done yet (poll the job)"},
                        **{k: v for k, v in _ERRORS.items() if k in (400, 413, 504)}})
    async def get_job_result(job_id: str) -> Response:
        """The image, once the job is done; a failed job answers the error ``POST /inpaint`` would have."""
        job = known(job_id)
        if job.state == "done" and job.result is not None:
            return Response(job.result, media_type=job.media_type, headers=job.headers)
        if job.state == "failed" and job.error is not None:
            raise ApiError(job.error.status, job.error.error, job.error.detail)
        raise ApiError(409, "not_ready", f"job {job_id} is {job.state} ({job.progress:.0%}); poll "
                       f"GET {_job_url(job_id)} until its state is done", {"Retry-After": "1"})

    @app.delete(f"{API}/jobs/{{job_id}}", tags=["jobs"], response_model=JobStatus,
                responses={404: {"model": ErrorResponse, "description": "No such job (or it expired)"}},
                summary="Cancel a job, or forget a finished one")
    async def delete_job(job_id: str) -> JobStatus:
        """A queued job leaves the queue, a running one stops at its next stage boundary (its slot
        frees when its thread ends: ``GET /health``); the job and its result are then forgotten."""
        job = known(job_id)
        store.cancel(job)
        store.remove(job_id)
        return status(job)


# ------------------------------------------------------------------------------------------- app


class _SecurityHeaders:
    """Pure ASGI middleware: a strict CSP for the page and the API (not for /docs, whose page starts
    Swagger UI with an inline script)."""

    CSP = ("default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
           "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/docs"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"content-security-policy", self.CSP.encode()),
                            (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"no-referrer")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _inpaint_openapi() -> Dict[str, Any]:
    """The multipart request body for /docs (the endpoint parses it itself, in memory)."""
    props: Dict[str, Any] = {
        "image": {"type": "string", "format": "binary", "description": "The photo (PNG, JPEG, WebP, BMP, TIFF)."},
        "mask": {"type": "string", "format": "binary",
                 "description": "Same size as the image; white = hole (black = hole with invert_mask). A "
                 "layer with a transparent background counts by its alpha, coloured strokes by their brightest "
                 "channel; a mask with no hole is a 422."},
    }
    for name, schema in InpaintOptions.model_json_schema()["properties"].items():
        schema = dict(schema)
        if "anyOf" in schema:  # Optional[Literal]: show the choices
            schema = {**{k: v for k, v in schema.items() if k != "anyOf"},
                      **next(s for s in schema["anyOf"] if s.get("type") != "null")}
        props[name] = schema
    return {
        "requestBody": {"required": True, "content": {"multipart/form-data": {
            "schema": {"type": "object", "required": ["image", "mask"], "properties": props}}}},
        "responses": {
            "200": {"description": "The inpainted image", "content": {
                "image/png": {"schema": {"type": "string", "format": "binary"}},
                "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                "image/webp": {"schema": {"type": "string", "format": "binary"}}}},
        },
    }


_ERRORS = {code: {"model": ErrorResponse, "description": text} for code, text in {
    400: "Bad image or mask (with the reason)", 413: "Upload or image too large", 415: "Not multipart/form-data",
    422: "Bad options, or a mask with no hole (empty_mask)", 503: "Busy: the job queue is full (see Retry-After)",
    504: "The job timed out"}.items()}


def create_app(settings: Optional[ServerSettings] = None, *,
               inpainter_factory: Optional[InpainterFactory] = None) -> FastAPI:
    """The FastAPI application of ``pconv serve``.

    ``inpainter_factory(settings, method)`` builds the inpainter of a method (default:
    :class:`pconv.inference.Inpainter`); tests pass their own to control timing.
    """
    settings = settings or ServerSettings()
    models = Models(settings, inpainter_factory or _default_factory)
    methods = available_methods() if inpainter_factory is None else list(METHODS)
    if settings.default_method not in methods:
        raise PConvError(f"the default method {settings.default_method!r} is not available here; "
                         f"available: {', '.join(methods)}")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.gate = JobGate(settings.max_jobs, settings.queue_size)
        try:
            yield
        finally:
            app.state.jobs.cancel_all()
            app.state.gate.shutdown()

    # Swagger UI from the fastapi-offline package's own copy (served under /static-offline-docs), not
    # from a CDN: /docs works without internet. No /redoc: ReDoc's page fetches its logo from a CDN.
    app = FastAPIOffline(title="pconv", version=__version__, lifespan=lifespan, redoc_url=None,
                         description="Image inpainting with Partial Convolutions (Liu et al., ECCV 2018). "
                         "Masks: white = hole. Errors are JSON: {\"error\": code, \"detail\": reason}.")
    app.state.settings, app.state.models = settings, models
    app.add_middleware(_SecurityHeaders)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error_response(exc.status, exc.error, exc.detail, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, f"http_{exc.status_code}")
        return _error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(422, "invalid_options", "; ".join(
            f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()))

    @app.post(f"{API}/inpaint", tags=["inpaint"], response_class=Response, responses=_ERRORS,
              openapi_extra=_inpaint_openapi(), summary="Fill the holes of an image")
    async def inpaint(request: Request) -> Response:
        """Multipart ``image`` + ``mask`` (white = hole) + options -> the inpainted image.

        Pixels outside the holes are returned unchanged (with a lossless output format)."""
        # Mask words for clients (the page shows them): a mask with no hole is a 422 "empty_mask";
        # a hole over 60 % of the image is filled and answered with the header X-Pconv-Warning
        # (WARNING_HEADER), whose text is the polarity hint (invert_mask=true). The jobs' result
        # (GET /jobs/{id}/result) carries the same header.
        gate: JobGate = request.app.state.gate
        if gate.full:  # refuse before reading a large body
            raise ApiError(503, "busy", "the server is busy; try again later",
                           {"Retry-After": str(settings.retry_after)})
        body = await _read_body(request, settings.max_upload_bytes)
        image, mask, _, options = await _parse_form(request, body)
        del body
        method = options.method or settings.default_method
        if method not in methods:
            raise ApiError(422, "invalid_options", f"method {method!r} is not available on this server; "
                           f"available: {', '.join(methods)}")
        try:
            data, media, seconds, extra = await gate.run(
                lambda: _inpaint_job(models, settings, image, mask, options), settings.job_timeout, settings.retry_after)
        except ApiError:
            raise
        except Exception:  # a bug, not the client's fault: log it, answer without internals
            log.exception("inpainting failed")
            raise ApiError(500, "internal_error", "inpainting failed on the server; see its log") from None
        ext = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}[media]
        return Response(data, media_type=media, headers={
            "Cache-Control": "no-store", "Content-Disposition": f'inline; filename="inpainted.{ext}"',
            "X-Pconv-Method": method, "X-Pconv-Seconds": f"{seconds:.3f}", **extra})

    @app.get(f"{API}/health", response_model=Health, tags=["service"])
    async def health(request: Request) -> Health:
        gate: JobGate = request.app.state.gate
        return Health(version=__version__, jobs_running=gate.running, jobs_waiting=gate.waiting)

    @app.get(f"{API}/info", response_model=Info, tags=["service"])
    async def info() -> Info:
        return Info(version=__version__, default_method=settings.default_method, methods=methods,
                    strategies=STRATEGIES, output_formats=OUTPUT_FORMATS,
                    limits=Limits(max_upload_bytes=settings.max_upload_bytes, max_pixels=settings.max_pixels,
                                  max_jobs=settings.max_jobs, queue_size=settings.queue_size,
                                  job_timeout=settings.job_timeout),
                    model=models.model_info())

    _add_job_routes(app, settings, models, methods)

    # Last: everything else is the static page, from the package's web/ folder only.
    app.mount("/", StaticFiles(directory=str(web_root()), html=True), name="web")
    return app


@contextmanager
def background_server(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a daemon thread; yields its base URL and stops it on exit.

    ``port=0`` takes a free port. For tests and notebooks; ``pconv serve`` is the real entry point.
    """
    import socket

    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="pconv-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the background server did not start")
            time.sleep(0.01)
        shown = f"[{host}]" if ":" in host else host
        yield f"http://{shown}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()

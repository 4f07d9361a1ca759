"""`pconv serve`: the HTTP API and the web page on uvicorn, loopback by default."""
from __future__ import annotations

import argparse
import ipaddress
import sys

HELP = "Serve the HTTP API (/api/v1, docs at /docs) and the web page to paint holes (/) on this machine."

_METHODS = ("pconv", "pconv-smooth", "telea", "ns", "biharmonic", "patchmatch")
#: A server lives long and sees photos of every size: it returns freed memory after each job
#: (pconv.server) instead of keeping its peak heap as one-job commands do.
ONE_JOB_PER_PROCESS = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind; anything but loopback exposes the server to the network")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (0: any free port)")
    parser.add_argument("--weights", default=None,
                        help="weights file (.safetensors) for methods pconv and pconv-smooth (default: the model "
                        "shipped with pconv)")
    parser.add_argument("--method", dest="default_method", default="pconv", choices=_METHODS,
                        help="method used when a request names none")
    parser.add_argument("--device", default="auto",
                        help="auto (a GPU when there is one, else the CPU), cpu, cuda, cuda:N or mps")
    parser.add_argument("--max-upload-mb", type=float, default=20.0, help="largest request body, in MiB")
    parser.add_argument("--max-pixels", type=int, default=4096 * 4096, help="largest image, width x height")
    parser.add_argument("--max-jobs", type=int, default=1, help="inference jobs running at the same time")
    parser.add_argument("--queue-size", type=int, default=8, help="jobs that may wait; more get 503 + Retry-After")
    parser.add_argument("--job-timeout", type=float, default=120.0,
                        help="seconds a request may take, waiting included; then 504")
    parser.add_argument("--no-preload", action="store_true",
                        help="load the model on the first request instead of at start")
    parser.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
                        help="least severe server log lines shown (uvicorn's access log is info)")


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    import uvicorn
    from pydantic import ValidationError

    from pconv.errors import PConvError
    from pconv.schema import ServerSettings
    from pconv.server import create_app

    try:
        settings = ServerSettings(
            weights=args.weights, default_method=args.default_method, device=args.device,
            max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_pixels=args.max_pixels,
            max_jobs=args.max_jobs, queue_size=args.queue_size, job_timeout=args.job_timeout,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise PConvError(f"bad server settings: {problems}") from None
    if settings.weights is not None and not settings.weights.is_file():
        raise PConvError(f"weights file {settings.weights} does not exist")
    import warnings

    from pconv.masks.rules import MaskWarning

    warnings.filterwarnings("ignore", category=MaskWarning)  # the API answers them (422, X-Pconv-Warning)
    app = create_app(settings)
    if not args.no_preload:  # fail now, not on the first request, when the model cannot load
        app.state.models.get(settings.default_method)
    if not is_loopback(args.host):
        print(f"pconv serve: warning: listening on {args.host}, not loopback: other machines can reach this "
              "server, which has no authentication. Use --host 127.0.0.1 unless you mean it.", file=sys.stderr)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"pconv serve: http://{shown}:{args.port}/  (API docs: /docs; Ctrl+C stops)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, server_header=False)
    return 0

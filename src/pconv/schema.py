"""Pydantic models of the HTTP API: request options, server limits, info and errors.

One definition, three callers: the server validates requests with them, ``/docs`` shows them, and
the tests build requests from them. Literal choices here are the single list of what the API
accepts; the inference module owns what each choice means.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "METHODS",
    "STRATEGIES",
    "OUTPUT_FORMATS",
    "Method",
    "Strategy",
    "OutputFormat",
    "InpaintOptions",
    "ServerSettings",
    "Limits",
    "ModelInfo",
    "Info",
    "Health",
    "ErrorResponse",
    "JobState",
    "JobError",
    "JobStatus",
]

Method = Literal["pconv", "pconv-smooth", "telea", "ns", "biharmonic", "patchmatch"]
Strategy = Literal["auto", "crop", "resize", "original"]
#: ``png`` always lossless; ``input`` answers in the uploaded image's format (JPEG stays JPEG).
OutputFormat = Literal["png", "input"]

METHODS: List[str] = list(Method.__args__)  # type: ignore[attr-defined]
STRATEGIES: List[str] = list(Strategy.__args__)  # type: ignore[attr-defined]
OUTPUT_FORMATS: List[str] = list(OutputFormat.__args__)  # type: ignore[attr-defined]


class InpaintOptions(BaseModel):
    """Options of ``POST /api/v1/inpaint`` (multipart form fields next to ``image`` and ``mask``)."""

    model_config = ConfigDict(extra="forbid")

    method: Optional[Method] = Field(
        None, description="pconv = the photographic fill (the Partial Convolutions network plus fine detail "
        "copied from the photo); pconv-smooth = the network's fill alone (highest PSNR, foggy on large holes); "
        "the others are classical baselines. Empty: the server's default method."
    )
    strategy: Strategy = Field(
        "auto", description="How images larger than the model's training size are handled: crop around "
        "the holes, resize, or run at the original size. auto picks one."
    )
    invert_mask: bool = Field(False, description="Mask polarity: false = white is hole (default), true = black is hole. "
                              "A mask's level is its alpha where the alpha varies (a layer from an editor), else its "
                              "brightest channel; above mid-grey is hole. A mask with no hole is refused (422 "
                              "empty_mask); a hole over 60 % of the image is filled with a polarity hint in the "
                              "X-Pconv-Warning response header.")
    seed: Optional[int] = Field(
        None, ge=0, le=2**31 - 1, description="Random draw of the photographic fill (method pconv): the same seed "
        "gives the same result, another seed another fill of the same holes. Empty: the server's (0). The other "
        "methods are deterministic and ignore it."
    )
    output_format: OutputFormat = Field("png", description="png, or input = the uploaded image's own format.")


class ServerSettings(BaseModel):
    """Everything `pconv serve` can tune; the limits protect the machine from one client."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weights: Optional[Path] = Field(None, description="Weights file for methods pconv and pconv-smooth; None = the shipped default.")
    default_method: Method = "pconv"
    device: str = Field("auto", description="auto (a GPU when there is one, else the CPU), cpu, cuda, cuda:N or mps.")
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="Whole request body, image + mask + fields.")
    max_pixels: int = Field(4096 * 4096, ge=64, description="Largest image accepted, width x height.")
    max_jobs: int = Field(1, ge=1, le=64, description="Inference jobs running at the same time.")
    queue_size: int = Field(8, ge=0, le=1024, description="Jobs waiting for a slot; more are refused with 503.")
    job_timeout: float = Field(120.0, gt=0, description="Seconds from acceptance to answer, waiting included; else 504.")
    retry_after: int = Field(5, ge=1, description="Seconds suggested to a client refused with 503.")
    kept_jobs: int = Field(16, ge=1, le=1024, description="Finished jobs of /api/v1/jobs kept for their "
                           "clients; beyond it the oldest are forgotten.")
    job_ttl: float = Field(300.0, gt=0, description="Seconds a finished job (and its result) is kept.")
    kept_result_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="Bytes of finished jobs' results "
                                   "kept at most; beyond it the oldest are forgotten (the newest stays).")


class Limits(BaseModel):
    max_upload_bytes: int
    max_pixels: int
    max_jobs: int
    queue_size: int
    job_timeout: float


class ModelInfo(BaseModel):
    """The network behind methods pconv and pconv-smooth (filled once it is loaded)."""

    loaded: bool
    weights: Optional[str] = Field(None, description="File name of the weights (never a full path).")
    config: Optional[Dict[str, object]] = None
    num_params: Optional[int] = None


class Info(BaseModel):
    name: str = "pconv"
    version: str
    default_method: Method
    methods: List[Method]
    strategies: List[Strategy]
    output_formats: List[OutputFormat]
    mask_convention: str = "white = hole, black = keep (invert_mask=true flips it)"
    limits: Limits
    model: ModelInfo


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    jobs_running: int
    jobs_waiting: int


class ErrorResponse(BaseModel):
    """Every error of the API has this body; ``error`` is a stable code, ``detail`` says what to fix."""

    error: str
    detail: str


JobState = Literal["queued", "running", "done", "failed", "cancelled"]


class JobError(ErrorResponse):
    """Why a job failed: the error the synchronous ``POST /inpaint`` would have answered."""

    status: int = Field(description="The HTTP status of that error (400 bad image, 504 timeout, ...).")


class JobStatus(BaseModel):
    """A job of ``POST /api/v1/jobs``: where it stands and, once done, where its result is."""

    id: str
    state: JobState = Field(description="queued -> running -> done | failed | cancelled.")
    progress: float = Field(ge=0, le=1, description="Fraction done, updated at the fill's stage boundaries.")
    stage: str = Field(description="What runs now: queued, decode, mask, network, texture, encode, done, ...")
    method: Method
    seed: Optional[int] = Field(None, description="The seed the job was sent (None: the server's default).")
    seconds: Optional[float] = Field(None, description="Time since it started running (total once finished).")
    result: Optional[str] = Field(None, description="URL of the result image, once state is done.")
    error: Optional[JobError] = Field(None, description="Why it failed, when state is failed.")
    expires_in: Optional[float] = Field(None, description="Seconds until a finished job is forgotten.")

"""Inpainting jobs of the HTTP API: a record per job and a bounded store of them.

A client that must not hold one request open for a long fill (the web page on a 12 MP photo)
submits a job, polls its progress, fetches the result and may cancel it. This module keeps the
jobs; :mod:`pconv.server` runs them. Memory stays bounded: finished jobs expire ``ttl`` seconds
after they end, and beyond ``keep`` finished jobs or ``max_bytes`` of kept results the oldest
finished ones are forgotten first. Jobs still queued or running are never dropped (the server's
job gate bounds how many there are), nor the newest finished one before it expires.

Cancelling is cooperative: the job's :meth:`Job.report` is the inpainter's ``progress`` callback,
and it raises :class:`JobCancelled` once the job is cancelled, which stops the inpainter at its
next stage boundary.
"""
from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from pconv.schema import JobError, JobStatus

__all__ = ["Job", "JobCancelled", "JobStore", "ACTIVE", "FINISHED"]

#: States of a job that has not ended, and of one that has.
ACTIVE = ("queued", "running")
FINISHED = ("done", "failed", "cancelled")


class JobCancelled(Exception):
    """Raised from a cancelled job's progress callback: unwinds the inpainter."""


@dataclass
class Job:
    """One job. ``state``, ``progress`` and ``stage`` are written by the job's thread (plain
    attribute writes) and read by the event loop; everything else belongs to the loop."""

    id: str
    method: str
    created: float
    seed: Optional[int] = None
    state: str = "queued"
    progress: float = 0.0
    stage: str = "queued"
    started: Optional[float] = None
    finished: Optional[float] = None
    result: Optional[bytes] = None
    media_type: Optional[str] = None
    headers: Dict[str, str] = field(default_factory=dict)
    error: Optional[JobError] = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    task: Any = None  # the asyncio task that runs it, so a queued job can leave the queue

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def report(self, fraction: float, stage: str) -> None:
        """Progress callback (job thread): records where the job is; raises once it is cancelled."""
        if self.cancel_event.is_set():
            raise JobCancelled(self.id)
        if self.state == "queued":
            self.state = "running"
        self.progress = max(self.progress, min(1.0, max(0.0, float(fraction))))
        self.stage = stage

    def status(self, now: float, ttl: float, result_url: str) -> JobStatus:
        """The job as the API shows it; ``result_url`` is where a finished result is fetched."""
        end = self.finished if self.finished is not None else now
        return JobStatus(
            id=self.id, state=self.state, progress=round(self.progress, 4), stage=self.stage,
            method=self.method, seed=self.seed,
            seconds=round(end - self.started, 3) if self.started is not None else None,
            result=result_url if self.state == "done" else None,
            error=self.error,
            expires_in=round(max(0.0, self.finished + ttl - now), 1) if self.finished is not None else None,
        )


class JobStore:
    """The jobs of one server, oldest first. Touched from one event loop only, so it needs no lock."""

    def __init__(self, keep: int, ttl: float, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.keep, self.ttl, self.max_bytes, self.clock = keep, ttl, max_bytes, clock
        self._jobs: "OrderedDict[str, Job]" = OrderedDict()

    def __len__(self) -> int:
        return len(self._jobs)

    def create(self, method: str, seed: Optional[int] = None) -> Job:
        """A new queued job with an unguessable id (results are not listed anywhere)."""
        self.purge()
        job = Job(id=secrets.token_urlsafe(12), method=method, created=self.clock(), seed=seed)
        self._jobs[job.id] = job
        return job

    def get(self, job_id: str) -> Optional[Job]:
        self.purge()
        return self._jobs.get(job_id)

    def remove(self, job_id: str) -> Optional[Job]:
        return self._jobs.pop(job_id, None)

    def start(self, job: Job) -> None:
        job.started = self.clock()
        if job.state == "queued":
            job.state = "running"

    def finish(self, job: Job, result: bytes, media_type: str, headers: Dict[str, str]) -> None:
        if job.state in FINISHED:  # cancelled after its last stage boundary: the result is not wanted
            return
        job.result, job.media_type, job.headers = result, media_type, headers
        self._end(job, "done", 1.0, "done")

    def fail(self, job: Job, status: int, error: str, detail: str) -> None:
        if job.state in FINISHED:
            return
        job.error = JobError(status=status, error=error, detail=detail)
        self._end(job, "failed", job.progress, "failed")

    def cancel(self, job: Job) -> None:
        """Stop a job: a queued one leaves the queue, a running one stops at its next stage boundary."""
        if job.state in FINISHED:
            return
        job.cancel_event.set()
        if job.started is None and job.task is not None:  # still waiting for a slot: leave the queue now
            job.task.cancel()
        self._end(job, "cancelled", job.progress, "cancelled")

    def _end(self, job: Job, state: str, progress: float, stage: str) -> None:
        if job.state in FINISHED:  # a cancelled job's thread may still end later: keep "cancelled"
            return
        job.state, job.progress, job.stage = state, progress, stage
        job.finished = self.clock()
        if job.started is None:
            job.started = job.finished
        self.purge()

    def purge(self) -> None:
        """Forget expired finished jobs, then the oldest finished ones beyond ``keep`` / ``max_bytes``."""
        now = self.clock()
        finished: List[Job] = [j for j in self._jobs.values() if j.state in FINISHED]
        for job in finished:
            if job.finished is not None and now - job.finished > self.ttl:
                del self._jobs[job.id]
        finished = sorted((j for j in finished if j.id in self._jobs), key=lambda j: j.finished or 0.0)
        total = sum(len(j.result or b"") for j in finished)
        # The newest finished job stays until it expires, even alone over max_bytes: its client is about
        # to fetch it.
        while len(finished) > self.keep or (len(finished) > 1 and total > self.max_bytes):
            job = finished.pop(0)
            total -= len(job.result or b"")
            del self._jobs[job.id]

    def cancel_all(self) -> None:
        """Stop every unfinished job (the server shuts down)."""
        for job in list(self._jobs.values()):
            self.cancel(job)

    def kept_bytes(self) -> int:
        """Bytes of results held now."""
        return sum(len(j.result or b"") for j in self._jobs.values())

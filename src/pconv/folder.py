"""Inpainting a list of photos: read ahead of the network and write behind it, in bounded queues.

:func:`inpaint_folder` runs one folder job list (photo, mask, output) through an inpainter. Reading
and decoding the next photos, and encoding and writing the finished ones, happen in background
threads (``io_threads`` each) while the network fills the current photo, so the network does not
wait for the disk; at most ``prefetch`` batches are read ahead and ``prefetch`` batches wait to be
written, so memory stays bounded. ``prefetch=0`` does one photo after the other without threads.
``batch_size`` > 1 passes that many photos to the inpainter at once, so that their windows of equal
padded size run as one network batch (what a GPU needs). The outputs are the same bytes whatever
``prefetch`` and ``io_threads`` (the network still sees one photo after the other), and on a CPU
whatever ``batch_size`` too (tested); on a GPU a batch may round differently from one photo alone,
so ``batch_size=1`` is the setting whose outputs do not depend on how photos are grouped.

Each job ends as an :class:`Outcome`: ``done`` (with notes), ``skipped`` (the output exists and
``overwrite`` is off) or ``failed`` (with the reason); one bad photo never stops the others.
"""
from __future__ import annotations

import dataclasses
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Deque, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from pconv.errors import PConvError

__all__ = ["FolderJob", "FolderOptions", "Outcome", "inpaint_folder", "summary_lines", "same_file"]

#: Errors that fail one photo and let the run go on (anything else is a bug and stops the run).
_PHOTO_ERRORS = (PConvError, OSError, RuntimeError, MemoryError)


@dataclass(frozen=True)
class FolderJob:
    """One photo to fill: its mask (None when there is none, ``reason`` says why) and its output path."""

    image: Path
    mask: Optional[Path]
    output: Path
    reason: str = ""


@dataclass(frozen=True)
class FolderOptions:
    """How photos and masks are read and outputs written (the ``pconv inpaint`` options)."""

    strategy: str = "auto"
    invert_mask: bool = False
    resize_mask: bool = False
    threshold: float = 0.5
    quality: int = 95
    overwrite: bool = False
    max_pixels: Optional[int] = None


@dataclass(frozen=True)
class Outcome:
    """What became of job ``index``: ``done`` (``detail``: notes), ``skipped`` or ``failed`` (``detail``: why)."""

    index: int
    status: str
    name: str
    detail: str = ""


@dataclass
class _Loaded:
    index: int
    job: FolderJob
    loaded: Any  # pconv.imageio.LoadedImage
    hole: np.ndarray


def same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name the same file (so writing ``a`` would overwrite ``b``)."""
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _failed(index: int, job: FolderJob, exc: BaseException) -> Outcome:
    why = str(exc) if isinstance(exc, PConvError) else f"{type(exc).__name__}: {exc}"
    return Outcome(index, "failed", job.image.name, why)


def _read(index: int, job: FolderJob, options: FolderOptions) -> Union[_Loaded, Outcome]:
    """Decode one photo and its mask, or say why it is skipped or failed."""
    from pconv.imageio import read_image
    from pconv.masks.io import read_mask_file

    if job.mask is None:
        return Outcome(index, "failed", job.image.name, job.reason)
    try:
        for src in (job.image, job.mask):
            if same_file(job.output, src):
                raise PConvError(f"the output {job.output} is an input file ({src}); pconv never overwrites an input")
        if job.output.exists() and not options.overwrite:
            return Outcome(index, "skipped", job.image.name, f"{job.output} exists (--overwrite replaces it)")
        loaded = read_image(job.image, max_pixels=options.max_pixels)
        hole = read_mask_file(job.mask, invert=options.invert_mask, threshold=options.threshold,
                              size=(loaded.height, loaded.width), resize=options.resize_mask)
    except _PHOTO_ERRORS as exc:
        return _failed(index, job, exc)
    return _Loaded(index, job, loaded, hole)


def _fill(inpainter: Any, group: List[_Loaded], strategy: str) -> List[Union[Any, BaseException]]:
    """Fill a group of photos: one call for the group when it has several, else (or on error) one each."""
    if len(group) > 1:
        try:
            return list(inpainter.inpaint_many([g.loaded.rgb for g in group], [g.hole for g in group],
                                               strategy=strategy))
        except _PHOTO_ERRORS:
            pass  # find out which photo failed: fill them one by one
    out: List[Union[Any, BaseException]] = []
    for g in group:
        try:
            out.append(inpainter.inpaint(g.loaded.rgb, g.hole, strategy=strategy))
        except _PHOTO_ERRORS as exc:
            out.append(exc)
    return out


def _write(item: _Loaded, result: Any, options: FolderOptions) -> Outcome:
    """Encode and write one filled photo atomically; its outcome with the notes worth telling."""
    from pconv.imageio import write_image

    try:
        write_image(item.job.output, dataclasses.replace(item.loaded, rgb=result.image), quality=options.quality,
                    overwrite=options.overwrite)
    except _PHOTO_ERRORS as exc:
        return _failed(item.index, item.job, exc)
    notes = list(item.loaded.notes) + list(result.notes)
    if not result.empty_mask:
        notes.append(f"{result.hole_fraction:.1%} hole, strategy {result.strategy}, {result.windows} window(s)")
    return Outcome(item.index, "done", item.job.image.name, "; ".join(notes))


def inpaint_folder(
    inpainter: Any,
    jobs: Iterable[Tuple[int, FolderJob]],
    options: FolderOptions = FolderOptions(),
    *,
    batch_size: int = 1,
    prefetch: int = 2,
    io_threads: int = 1,
    on_outcome: Optional[Callable[[Outcome], None]] = None,
) -> List[Outcome]:
    """Fill ``(index, job)`` pairs with ``inpainter``; returns their outcomes in index order.

    ``inpainter``: an :class:`~pconv.inference.Inpainter` (anything with ``inpaint`` and, for
    ``batch_size`` > 1, ``inpaint_many``). ``prefetch``: batches read ahead and waiting to be
    written (0: no background threads). ``on_outcome`` is called as each job ends (progress bars).
    """
    if batch_size < 1:
        raise PConvError(f"--batch-size must be at least 1, got {batch_size}")
    if prefetch < 0:
        raise PConvError(f"--prefetch must be 0 or more, got {prefetch}")
    if io_threads < 1:
        raise PConvError(f"--io-threads must be at least 1, got {io_threads}")
    outcomes: List[Outcome] = []

    def record(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    if prefetch == 0:
        _run_in_line(inpainter, list(jobs), options, batch_size, record)
    else:
        _run_pipelined(inpainter, jobs, options, batch_size, prefetch, io_threads, record)
    return sorted(outcomes, key=lambda o: o.index)


def _run_in_line(inpainter: Any, jobs: Sequence[Tuple[int, FolderJob]], options: FolderOptions, batch_size: int,
                 record: Callable[[Outcome], None]) -> None:
    """Read, fill and write one batch after the other in this thread."""
    group: List[_Loaded] = []
    for n, (index, job) in enumerate(jobs):
        item = _read(index, job, options)
        if isinstance(item, Outcome):
            record(item)
        else:
            group.append(item)
        if group and (len(group) == batch_size or n == len(jobs) - 1):
            for g, result in zip(group, _fill(inpainter, group, options.strategy)):
                record(_failed(g.index, g.job, result) if isinstance(result, BaseException)
                       else _write(g, result, options))
            group = []


def _run_pipelined(inpainter: Any, jobs: Iterable[Tuple[int, FolderJob]], options: FolderOptions, batch_size: int,
                   prefetch: int, io_threads: int, record: Callable[[Outcome], None]) -> None:
    """Readers decode ahead and writers encode behind while this thread runs the network."""
    ahead = prefetch * batch_size
    pending = iter(jobs)
    reads: Deque[Future] = deque()
    writes: Deque[Future] = deque()
    readers = ThreadPoolExecutor(io_threads, thread_name_prefix="pconv-read")
    writers = ThreadPoolExecutor(io_threads, thread_name_prefix="pconv-write")

    def read_ahead() -> None:
        while len(reads) < ahead:
            nxt = next(pending, None)
            if nxt is None:
                return
            reads.append(readers.submit(_read, nxt[0], nxt[1], options))

    try:
        read_ahead()
        while reads:
            group: List[_Loaded] = []
            while reads and len(group) < batch_size:
                item = reads.popleft().result()
                read_ahead()
                if isinstance(item, Outcome):
                    record(item)
                else:
                    group.append(item)
            if not group:
                continue
            for g, result in zip(group, _fill(inpainter, group, options.strategy)):
                if isinstance(result, BaseException):
                    record(_failed(g.index, g.job, result))
                else:
                    writes.append(writers.submit(_write, g, result, options))
            while len(writes) > ahead:
                record(writes.popleft().result())
        while writes:
            record(writes.popleft().result())
    finally:
        readers.shutdown(wait=True, cancel_futures=True)
        writers.shutdown(wait=True)  # what was filled gets written, also on Ctrl-C


def summary_lines(outcomes: Sequence[Outcome], out_dir: Path) -> List[str]:
    """The printed summary: counts, then every photo done, skipped and failed (with reasons)."""
    by = {s: [o for o in outcomes if o.status == s] for s in ("done", "skipped", "failed")}
    lines = [f"done: {len(by['done'])}, skipped: {len(by['skipped'])}, failed: {len(by['failed'])}  "
             f"(outputs in {out_dir})"]
    lines += [f"  done     {o.name}" + (f" ({o.detail})" if o.detail else "") for o in by["done"]]
    lines += [f"  skipped  {o.name}: {o.detail}" for o in by["skipped"]]
    lines += [f"  failed   {o.name}: {o.detail}" for o in by["failed"]]
    return lines

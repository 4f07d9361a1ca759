"""Splitting a job list across torchrun ranks and meeting again: one implementation for every command.

Under ``torchrun`` (or any launcher that sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_WORLD_SIZE``,
e.g. one process per machine started by a batch scheduler) every process lists the same jobs,
takes its own share (:func:`shard`: deterministic, disjoint, covering), does it, and writes what it
did to a *part file* in a folder that every rank can see. Rank 0 waits for the others
(:func:`barrier`) and reads every part (:func:`read_parts`) to merge them.

The ranks meet at a gloo barrier when a process group can be formed (torchrun sets
``MASTER_ADDR``; a failing group is an error naming the rank and the cause), else through the part
files themselves: rank 0 polls until every rank's file carries this run's key. Machines that share only a file system therefore work too. A part left by
an earlier, different run in the same folder never counts: its key differs (the key hashes what
the run does, its world size, and the launcher's run id when there is one).
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, TypeVar

from pconv.errors import PConvError

__all__ = ["DistEnv", "dist_env", "assign", "shard", "run_key", "rank_device", "part_path", "write_part", "read_parts",
           "barrier", "remove_parts"]

T = TypeVar("T")

#: Environment variables that name one launch of a job, so that a restarted run gets a new key.
_RUN_ID_VARS = ("PCONV_RUN_ID", "TORCHELASTIC_RUN_ID", "SLURM_JOB_ID")


@dataclass(frozen=True)
class DistEnv:
    """This process's place among the ranks (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def distributed(self) -> bool:
        return self.world > 1


def dist_env() -> DistEnv:
    """The rank, world size and local rank/world size that torchrun (or a scheduler) put in the environment."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        rank = int(os.environ.get("RANK", "0") or 0)
        local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)) or world)
    except ValueError as exc:
        raise PConvError(f"bad torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE): {exc}") from None
    if world < 1 or not 0 <= rank < world or not 0 <= local_rank < max(1, local_world):
        raise PConvError(f"bad torchrun environment: RANK={rank} WORLD_SIZE={world} LOCAL_RANK={local_rank} "
                         f"LOCAL_WORLD_SIZE={local_world}")
    return DistEnv(rank, world, local_rank, max(1, local_world))


def assign(count: int, world: int, weights: Optional[Sequence[float]] = None) -> List[int]:
    """The rank of each of ``count`` jobs: round robin, or balanced by ``weights`` (e.g. pixel counts).

    With weights, jobs go heaviest first (ties: lower index first) to the rank with the least
    weight so far (ties: lower rank), so the ranks' totals differ by at most the heaviest job.
    Depends only on its arguments: every rank computes the same assignment on its own.
    """
    if world < 1:
        raise PConvError(f"world size must be at least 1, got {world}")
    if weights is None:
        return [i % world for i in range(count)]
    if len(weights) != count:
        raise PConvError(f"got {len(weights)} weights for {count} jobs")
    owner = [0] * count
    load = [0.0] * world
    for i in sorted(range(count), key=lambda i: (-float(weights[i]), i)):
        r = min(range(world), key=lambda r: (load[r], r))
        owner[i] = r
        load[r] += float(weights[i])
    return owner


def shard(items: Sequence[T], rank: int, world: int, weights: Optional[Sequence[float]] = None) -> List[int]:
    """Indices (ascending) of the ``items`` that ``rank`` of ``world`` takes; see :func:`assign`."""
    owner = assign(len(items), world, weights)
    return [i for i, r in enumerate(owner) if r == rank]


def run_key(*what: Any) -> str:
    """A key naming one run: a hash of what it does (JSON-able) and the launcher's run id, if any."""
    launch = [os.environ.get(v, "") for v in _RUN_ID_VARS]
    return hashlib.sha256(json.dumps([list(what), launch], default=str, sort_keys=True).encode()).hexdigest()


def rank_device(name: str, env: DistEnv) -> str:
    """``auto``/``cuda`` under torchrun -> this rank's own GPU (``cuda:LOCAL_RANK``) when there are GPUs."""
    if not env.distributed or name not in ("auto", "cuda"):
        return name
    import torch

    if not torch.cuda.is_available():
        return name
    return f"cuda:{env.local_rank % torch.cuda.device_count()}"


def part_path(folder: Path, name: str, rank: int) -> Path:
    """Where ``rank`` writes its part: ``folder/name.rankR.json`` (``{"key": ..., name: payload}``)."""
    return Path(folder) / f"{name}.rank{rank}.json"


def write_part(folder: Path, name: str, rank: int, key: str, payload: Any) -> Path:
    """Write this rank's part ``{"key": key, name: payload}`` atomically as ``folder/name.rankR.json``."""
    from pconv.weights import atomic_write_bytes

    path = part_path(folder, name, rank)
    atomic_write_bytes(path, (json.dumps({"key": key, name: payload}, indent=1) + "\n").encode())
    return path


def _part_key(path: Path) -> Optional[str]:
    try:
        return json.loads(path.read_text()).get("key")
    except (OSError, ValueError, AttributeError):
        return None


def read_parts(folder: Path, name: str, world: int, key: str) -> List[Any]:
    """Every rank's payload, in rank order; an error names a missing part or one of another run."""
    out = []
    for r in range(world):
        path = part_path(folder, name, r)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise PConvError(f"cannot read rank {r}'s part {path}: {exc}") from None
        if data.get("key") != key:
            raise PConvError(f"{path} belongs to another run (its key differs); remove it and run again")
        out.append(data[name])
    return out


def remove_parts(folder: Path, name: str, world: int) -> None:
    """Delete the part files (and the folder when it is left empty)."""
    for r in range(world):
        part_path(folder, name, r).unlink(missing_ok=True)
    try:
        Path(folder).rmdir()
    except OSError:
        pass  # not empty, or already gone


def barrier(world: int, folder: Path, rank: int, key: str, name: str = "rows",
            timeout_s: float = 24 * 3600.0, poll_s: float = 1.0) -> None:
    """Wait until every rank has written its part: a gloo barrier, else the part files themselves.

    With a process group (one already made, or ``MASTER_ADDR`` set so that one can be) every rank
    meets at its barrier; a group made here is destroyed afterwards, and a failure of the group
    (a rank that died, an unreachable master) is a :class:`PConvError` naming this rank and the
    cause, not a fall-back to polling. Without a process group only rank 0 waits: it polls
    ``folder`` until every rank's part carries this run's ``key``; the other ranks return at once.
    """
    if world == 1:
        return
    try:
        import torch.distributed as dist
    except ImportError:
        dist = None
    if dist is not None and dist.is_available() and (dist.is_initialized() or os.environ.get("MASTER_ADDR")):
        _group_barrier(dist, rank, timeout_s)
        return
    if rank != 0:
        return
    deadline = time.monotonic() + timeout_s
    while not all(_part_key(part_path(folder, name, r)) == key for r in range(world)):
        if time.monotonic() > deadline:
            raise PConvError(f"timed out waiting for the other ranks' parts in {folder}")
        time.sleep(poll_s)


def _group_barrier(dist: Any, rank: int, timeout_s: float) -> None:
    """``dist.barrier()``, making (and afterwards destroying) a gloo group when there is none."""
    created = not dist.is_initialized()
    try:
        if created:
            dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout_s))
        dist.barrier()
    except (RuntimeError, ValueError) as exc:  # torch's DistBackendError and store errors are RuntimeErrors
        where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        raise PConvError(f"rank {rank}: the ranks' process group failed at the barrier ({type(exc).__name__}: "
                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'no message'}); check that every "
                         f"rank started and reaches the master at {where}, or unset MASTER_ADDR to meet through "
                         "the part files instead") from exc
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()

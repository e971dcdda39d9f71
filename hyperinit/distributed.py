"""Small helpers for data-parallel training under ``torchrun`` (NCCL on GPU, Gloo on CPU).

Every helper also works in a single process without ``torch.distributed`` initialised, where it
is the identity (gather returns its input, broadcast does nothing, rank 0 of 1).

    info = init_distributed()          # reads RANK / WORLD_SIZE / LOCAL_RANK from torchrun
    keys = all_gather_tensors(keys)    # (world * B, D), no gradient
    if is_main_process(): save(...)
    cleanup_distributed()
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "DistInfo",
    "all_gather_tensors",
    "all_reduce_mean",
    "barrier",
    "broadcast",
    "broadcast_object",
    "cleanup_distributed",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_main_process",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its node,
    the ``backend`` and the ``device`` it should use."""

    rank: int
    world_size: int
    local_rank: int
    backend: str | None
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on rank 0."""
        return self.rank == 0


def is_distributed() -> bool:
    """True when a process group is initialised with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """True on rank 0, the one that logs and writes files."""
    return get_rank() == 0


def init_distributed(
    backend: str | None = None,
    *,
    device: str | torch.device | None = None,
    timeout_s: float = 1800.0,
) -> DistInfo:
    """Initialise the default process group from torchrun's environment variables.

    Without ``WORLD_SIZE`` (> 1) in the environment this initialises nothing and describes a
    single process. ``backend``: ``"nccl"`` when CUDA is available and ``device`` is not CPU,
    else ``"gloo"``. On CUDA, each process takes ``cuda:LOCAL_RANK``. Calling it again once
    initialised returns the current state.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    want_cuda = torch.cuda.is_available() and (
        device is None or torch.device(device).type == "cuda"
    )
    dev = torch.device(f"cuda:{local}") if want_cuda else torch.device(device or "cpu")
    if world <= 1 and not (dist.is_available() and dist.is_initialized()):
        return DistInfo(0, 1, 0, None, dev)
    if not dist.is_initialized():
        backend = backend or ("nccl" if want_cuda else "gloo")
        if want_cuda:
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
        logger.info("process group %s: rank %d of %d", backend, rank, world)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, dist.get_backend(), dev)


def cleanup_distributed() -> None:
    """Destroy the process group if there is one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


@torch.no_grad()
def all_gather_tensors(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` from every rank along dim 0, in rank order, without gradient.

    The first dimension may differ between ranks (the others must match); e.g. feature keys
    (B, D) -> (sum of B, D).
    """
    if not is_distributed():
        return tensor.detach()
    tensor = tensor.detach().contiguous()
    world = dist.get_world_size()
    n = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.long)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    counts = [int(s) for s in sizes]
    biggest = max(counts)
    if tensor.shape[0] < biggest:
        pad = tensor.new_zeros((biggest - tensor.shape[0], *tensor.shape[1:]))
        tensor = torch.cat([tensor, pad])
    parts = [torch.empty_like(tensor) for _ in range(world)]
    dist.all_gather(parts, tensor)
    return torch.cat([p[:c] for p, c in zip(parts, counts)])


@torch.no_grad()
def all_reduce_mean(tensor: Tensor) -> Tensor:
    """Mean of ``tensor`` over ranks (a new tensor; the input if single-process)."""
    if not is_distributed():
        return tensor.detach()
    out = tensor.detach().clone().float()
    dist.all_reduce(out)
    return out / dist.get_world_size()


@torch.no_grad()
def broadcast(tensor: Tensor, src: int = 0) -> Tensor:
    """Overwrite ``tensor`` in place with rank ``src``'s copy; returns it."""
    if is_distributed():
        dist.broadcast(tensor, src)
    return tensor


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s picklable ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src)
    return box[0]

"""The EMA teacher of C2L: momentum update, buffer sync across ranks, shuffled batch norm."""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from hyperinit import distributed as hdist

__all__ = ["copy_student", "momentum_update", "sync_buffers", "teacher_features"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def momentum_update(teacher: nn.Module, student: nn.Module, m: float) -> None:
    """teacher = m * teacher + (1 - m) * student for parameters; buffers copied."""
    t_params = list(teacher.parameters())
    s_params = [p.detach() for p in student.parameters()]
    torch._foreach_mul_(t_params, m)
    torch._foreach_add_(t_params, s_params, alpha=1.0 - m)
    _copy_buffers(teacher, student)


@torch.no_grad()
def copy_student(teacher: nn.Module, student: nn.Module) -> None:
    """teacher = student, parameters and buffers (the start of training)."""
    for pt, ps in zip(teacher.parameters(), student.parameters()):
        pt.copy_(ps)
    _copy_buffers(teacher, student)


def _copy_buffers(teacher: nn.Module, student: nn.Module) -> None:
    for bt, bs in zip(teacher.buffers(), student.buffers()):
        bt.copy_(bs)


@torch.no_grad()
def sync_buffers(student: nn.Module) -> None:
    """Average the student's float buffers (BN statistics) over ranks, so that every rank
    (and the teacher, which copies them) holds the same state."""
    if not hdist.is_distributed():
        return
    for b in student.buffers():
        if b.is_floating_point():
            b.copy_(hdist.all_reduce_mean(b))


@torch.no_grad()
def teacher_features(teacher: nn.Module, x: Tensor, bn_mode: str) -> Tensor:
    """The teacher's features of ``x``; with ``bn_mode="shuffle"`` across ranks, each rank's
    batch norm sees a random slice of the global batch (as MoCo)."""
    if bn_mode != "shuffle" or not hdist.is_distributed():
        return teacher(x)
    world, rank, b = hdist.get_world_size(), hdist.get_rank(), x.shape[0]
    x_all = hdist.all_gather_tensors(x)
    if x_all.shape[0] != world * b:  # ranks disagree on the batch size: no shuffling
        logger.debug("unequal batches across ranks; teacher BN not shuffled this step")
        return teacher(x)
    perm = torch.randperm(x_all.shape[0], device=x.device)
    hdist.broadcast(perm, 0)
    feats = teacher(x_all[perm.view(world, b)[rank]])
    feats_all = hdist.all_gather_tensors(feats)
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(perm.numel(), device=perm.device)
    return feats_all[inverse.view(world, b)[rank]]

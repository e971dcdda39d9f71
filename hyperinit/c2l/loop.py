"""The C2L training loop: the optimiser and schedule a run uses, and one epoch of steps."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from hyperinit import distributed as hdist
from hyperinit.c2l.backbone import TwoViewStudent
from hyperinit.c2l.data import two_view_loader, views_from_batch
from hyperinit.errors import C2LConfigError

if TYPE_CHECKING:
    from hyperinit.c2l.pretrainer import C2LPretrainer

__all__ = ["run_epoch", "setup"]

logger = logging.getLogger(__name__)


def setup(
    trainer: C2LPretrainer,
    *,
    lr: float,
    weight_decay: float,
    sgd_momentum: float,
    lr_milestones: Sequence[float],
    lr_gamma: float,
    total_steps: int,
    seed: int,
    device: str | torch.device | None = None,
    amp: bool | None = None,
) -> None:
    """Move to the device and build optimizer, schedule, scaler and the mixup generator."""
    if device is not None:
        trainer._device = torch.device(device)
    if amp is not None:
        trainer._amp = bool(amp and trainer._device.type == "cuda")
    if trainer.bn_mode == "sync":
        if trainer._device.type != "cuda":
            raise C2LConfigError("bn_mode='sync' needs CUDA; use 'shuffle' on CPU.")
        trainer.student = nn.SyncBatchNorm.convert_sync_batchnorm(trainer.student)
        trainer.teacher = nn.SyncBatchNorm.convert_sync_batchnorm(trainer.teacher)
    trainer.student.to(trainer._device).train()
    # as the official code: teacher in eval mode (no dropout / drop-path) but its batch
    # norms in train mode (batch statistics)
    trainer.teacher.to(trainer._device).eval()
    for m in trainer.teacher.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()
    trainer.queue.to(trainer._device)
    params = [p for p in trainer.student.parameters() if p.requires_grad]
    trainer._optimizer = torch.optim.SGD(
        params, lr=lr, momentum=sgd_momentum, weight_decay=weight_decay
    )
    marks = sorted(round(f * total_steps) for f in lr_milestones)
    trainer._scheduler = torch.optim.lr_scheduler.LambdaLR(
        trainer._optimizer, lambda s: lr_gamma ** sum(s >= m for m in marks)
    )
    trainer._scaler = torch.amp.GradScaler(trainer._device.type, enabled=trainer._amp)
    trainer._gen = torch.Generator().manual_seed(seed + 7919 * hdist.get_rank())
    trainer._student_call = TwoViewStudent(trainer.student)


def run_epoch(
    trainer: C2LPretrainer,
    epoch: int,
    epochs: int,
    dataset: Dataset | None,
    user_loader: DataLoader | None,
    batch_size: int,
    num_workers: int,
    seed: int,
    steps_per_epoch: int,
    log_every: int,
    show: bool,
    log_dir: Path | None,
) -> None:
    """One epoch of ``trainer._train_step``; its summary goes to the history (and ``log_dir``)."""
    # Everything random in an epoch derives from (seed, epoch, rank): exact resume.
    rank = hdist.get_rank()
    torch.manual_seed(seed * 1_000_003 + epoch * 7_919 + rank)
    trainer._gen.manual_seed(seed * 1_000_003 + epoch * 7_919 + 104_729 * (rank + 1))
    augment = trainer._make_augment()
    batches: Iterable[Any]
    if user_loader is not None:
        batches = user_loader
    else:
        assert dataset is not None
        batches = two_view_loader(dataset, augment, batch_size, num_workers, seed, epoch)
    start = time.perf_counter()
    rows: list[dict[str, float]] = []
    bar = tqdm(total=steps_per_epoch, desc=f"C2L epoch {epoch + 1}/{epochs}", disable=not show)
    dev = trainer._device
    for i, batch in enumerate(batches):
        if i >= steps_per_epoch:
            break
        x1, x2 = views_from_batch(batch, augment) if user_loader is not None else batch
        row = trainer._train_step(x1.to(dev, non_blocking=True), x2.to(dev, non_blocking=True))
        rows.append(row)
        trainer.history.steps.append(row)
        bar.update(1)
        bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['accuracy']:.2f}")
        if log_every and trainer.step % log_every == 0 and rank == 0:
            logger.info(
                "step %d  loss %.4f  pos-acc %.3f  lr %.4g",
                trainer.step, row["loss"], row["accuracy"], row["lr"],
            )  # fmt: skip
    bar.close()
    if not rows:
        raise C2LConfigError("the data gave no batch in this epoch.")
    summary = {
        "epoch": epoch + 1,
        "steps": len(rows),
        "loss": sum(r["loss"] for r in rows) / len(rows),
        "accuracy": sum(r["accuracy"] for r in rows) / len(rows),
        "time_s": time.perf_counter() - start,
    }
    trainer.history.epochs.append(summary)
    if rank == 0:
        logger.info(
            "epoch %d: loss %.4f  pos-acc %.3f  (%.0f s)",
            summary["epoch"], summary["loss"], summary["accuracy"], summary["time_s"],
        )  # fmt: skip
    if log_dir is not None:
        trainer.history.write(log_dir, rows)

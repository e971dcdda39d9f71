"""What C2L trains on: a folder or Dataset of images as pairs of augmented views."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from hyperinit import distributed as hdist
from hyperinit.c2l.augment import TwoViews
from hyperinit.errors import C2LConfigError, HyperInitError

__all__ = ["as_dataset", "seeded_loader", "two_view_loader", "views_from_batch"]


def as_dataset(data: Any, in_chans: int) -> Dataset:
    """A Dataset of images from a folder (any depth) or a Dataset (returned as it is)."""
    if isinstance(data, str | Path):
        from hyperinit.data import ImageFolder

        root = Path(data)
        if not root.is_dir():
            raise C2LConfigError(f"{root} is not a folder of images.")
        try:
            channels = in_chans if in_chans in (1, 3) else None
            return ImageFolder(root, channels=channels)
        except HyperInitError as e:
            raise C2LConfigError(f"no images to pretrain on in {root}: {e}") from e
    if isinstance(data, Dataset):
        return data
    raise C2LConfigError(
        f"data must be a folder, a Dataset or a DataLoader; got {type(data).__name__}"
    )


def seeded_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    num_workers: int,
    seed: int,
    epoch: int,
    drop_last: bool = True,
) -> DataLoader:
    """A shuffled DataLoader whose order is drawn from ``(seed, epoch)`` alone, so a resumed run
    repeats an uninterrupted one; under torchrun each rank gets its share (DistributedSampler).
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    sampler = None
    if hdist.is_distributed():
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(dataset, shuffle=True, seed=seed, drop_last=True)
        sampler.set_epoch(epoch)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=num_workers,
        generator=g,
        persistent_workers=False,
    )


def two_view_loader(
    dataset: Dataset,
    augment: Callable[[Any], Tensor],
    batch_size: int,
    num_workers: int,
    seed: int,
    epoch: int,
) -> DataLoader:
    """Batches of two augmented views of each image (see :func:`seeded_loader`)."""
    pairs = TwoViews(dataset, augment)
    return seeded_loader(pairs, batch_size, num_workers=num_workers, seed=seed, epoch=epoch)


def views_from_batch(batch: Any, augment: Callable[[Any], Tensor]) -> tuple[Tensor, Tensor]:
    """Two augmented views from a user DataLoader's batch of images (or (images, ...))."""
    if isinstance(batch, tuple | list):
        batch = batch[0]
    if not isinstance(batch, Tensor) or batch.dim() != 4:
        raise C2LConfigError(
            "a DataLoader given to fit must yield (B, C, H, W) image tensors (or tuples "
            f"starting with one); got {type(batch).__name__}"
        )
    return torch.stack([augment(x) for x in batch]), torch.stack([augment(x) for x in batch])

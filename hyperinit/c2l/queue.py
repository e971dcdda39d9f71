"""The memory queue Q of past teacher features (first in, first out)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperinit.errors import C2LConfigError

__all__ = ["SEED_QUEUE_SHARE", "FeatureQueue", "suggested_queue_size"]

#: The share of an epoch's keys the seed's queue holds: 2**15 keys against ChestX-ray14's
#: 112,120 images, each giving three keys (two views' and their mixup's) per epoch.
SEED_QUEUE_SHARE = 2**15 / (3 * 112_120)


def suggested_queue_size(keys_per_epoch: int, keys_per_step: int) -> int:
    """A queue length holding the seed's share of an epoch's keys: the nearest power of two,
    at least one step's keys (a C2L step enqueues three keys per image)."""
    if keys_per_epoch < 1 or keys_per_step < 1:
        raise C2LConfigError(
            f"keys_per_epoch and keys_per_step must be >= 1; got {keys_per_epoch}, {keys_per_step}"
        )
    return max(keys_per_step, 2 ** round(math.log2(SEED_QUEUE_SHARE * keys_per_epoch)))


class FeatureQueue(nn.Module):
    """A fixed-length FIFO ring buffer of L2-normalised feature vectors.

    ``features`` (length, dim) starts as random unit vectors (the seed's ``Q = Rand(N, D)``);
    :meth:`enqueue` overwrites the oldest rows. Both ``features`` and the write pointer ``ptr``
    are buffers, so the queue travels in ``state_dict()`` (and in training checkpoints).
    """

    features: Tensor
    ptr: Tensor

    def __init__(self, length: int, dim: int, *, generator: torch.Generator | None = None):
        super().__init__()
        if length < 1 or dim < 1:
            raise C2LConfigError(f"queue length and dim must be >= 1; got {length}, {dim}")
        init = torch.randn(length, dim, generator=generator)
        self.register_buffer("features", F.normalize(init, dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def length(self) -> int:
        """Number of rows N."""
        return self.features.shape[0]

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write ``keys`` (B, dim) in order after the newest row, dropping the oldest B rows.

        If B exceeds the length, only the last ``length`` keys are kept.
        """
        if keys.dim() != 2 or keys.shape[1] != self.features.shape[1]:
            raise C2LConfigError(
                f"keys must be (batch, {self.features.shape[1]}); got {tuple(keys.shape)}"
            )
        keys = keys.detach().to(self.features)
        n = self.length
        if keys.shape[0] >= n:
            keys = keys[-n:]
            shift = (int(self.ptr) + keys.shape[0]) % n
            # the result is the last n keys, oldest first starting at the pointer
            self.features.copy_(torch.roll(keys, shifts=shift, dims=0))
            self.ptr.fill_(shift)
            return
        idx = (torch.arange(keys.shape[0], device=keys.device) + self.ptr) % n
        self.features.index_copy_(0, idx, keys)
        self.ptr.fill_((int(self.ptr) + keys.shape[0]) % n)

    def ordered(self) -> Tensor:
        """The rows oldest first (for inspection and tests)."""
        return torch.roll(self.features, shifts=-int(self.ptr), dims=0)

    def extra_repr(self) -> str:
        return f"length={self.length}, dim={self.features.shape[1]}"

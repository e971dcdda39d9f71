"""The memory queue Q of past teacher features (first in, first out)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperinit.errors import C2LConfigError

__all__ = ["FeatureQueue"]


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

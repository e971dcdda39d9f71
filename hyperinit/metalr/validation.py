"""An endless source of validation losses built from a DataLoader and a loss function."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

from hyperinit.errors import MetaLRConfigError

__all__ = ["ValidationLoss"]


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


class ValidationLoss:
    """Callable returning the loss of ``model`` on the next validation batch.

    The loader is cycled: when it is exhausted a new pass starts, which reshuffles a
    ``DataLoader(..., shuffle=True)``. Batches are ``(inputs, targets, *rest)``; inputs and
    targets are moved to the model's device.

    Args:
        loader: any re-iterable of batches, usually a ``torch.utils.data.DataLoader``.
        loss_fn: ``loss_fn(model(inputs), targets)`` gives a scalar loss tensor.
        model: the network being trained.
        device: where to put the batches; defaults to the device of the model's first parameter.
    """

    def __init__(
        self,
        loader: Iterable,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        model: nn.Module,
        device: torch.device | str | None = None,
    ) -> None:
        if not callable(loss_fn):
            raise MetaLRConfigError("loss_fn must be callable: loss_fn(outputs, targets) -> loss.")
        if not isinstance(model, nn.Module):
            raise MetaLRConfigError("a validation DataLoader needs the model: pass `model=`.")
        self.loader = loader
        self.loss_fn = loss_fn
        self.model = model
        if device is None:
            first = next(model.parameters(), None)
            device = first.device if first is not None else torch.device("cpu")
        self.device = torch.device(device)
        self._it: Iterator | None = None
        self.passes = 0

    def next_batch(self) -> Any:
        """The next batch, starting a new (reshuffled) pass when the loader is exhausted."""
        for _ in range(2):
            if self._it is None:
                self._it = iter(self.loader)
                self.passes += 1
            try:
                return next(self._it)
            except StopIteration:
                self._it = None
        raise MetaLRConfigError("the validation loader yields no batches; give it some data.")

    def __call__(self) -> torch.Tensor:
        batch = self.next_batch()
        if not isinstance(batch, (list, tuple)) or len(batch) < 2:
            raise MetaLRConfigError(
                "validation batches must be (inputs, targets, ...); for another layout pass a "
                "val_closure that computes the loss."
            )
        inputs, targets = _to(batch[0], self.device), _to(batch[1], self.device)
        return self.loss_fn(self.model(inputs), targets)

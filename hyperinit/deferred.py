"""Build a model without paying for its default initialisation: :func:`deferred_init`.

Inside the context, every parameter is allocated as usual (shapes, dtypes, devices, tying and
buffers are exactly the constructor's), but the in-place writes that initialise parameters
(``nn.init.*``, ``weight.data.normal_()``, timm's ``trunc_normal_``, ``fill_``, ``copy_``...)
are recorded instead of run. Afterwards :meth:`DeferredInit.replay` runs the recorded writes
for the parameters that need their default init (the head, anything not predicted), in their
original order, and the hypernetwork writes the others: the cost of default init is paid only
for the tensors that keep it. Writes to anything that is not a parameter (buffers, temporaries)
run at once, so buffers such as batch-norm statistics or relative-position indices are built
exactly as the constructor builds them.

Parameters whose writes were deferred hold uninitialised memory until :meth:`replay` (or a
prediction) fills them; :attr:`DeferredInit.pending` lists them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import register_module_parameter_registration_hook
from torch.overrides import TorchFunctionMode

__all__ = ["DeferredInit", "deferred_init"]

log = logging.getLogger(__name__)


def _storage_key(t: torch.Tensor) -> int | None:
    with torch._C.DisableTorchFunction():  # no round trip through the mode
        if t.numel() == 0 or t.device.type == "meta":
            return None
        return t.untyped_storage().data_ptr()


@lru_cache(maxsize=1024)
def _is_write(func: Any) -> bool:
    name = getattr(func, "__name__", "")
    if name == "__setitem__":
        return True
    return name.endswith("_") and not name.startswith("__")


@dataclass
class DeferredInit:
    """The parameters created in a :func:`deferred_init` block and their recorded writes."""

    params: dict[int, nn.Parameter] = field(default_factory=dict)  # storage -> parameter
    writes: list[tuple[int, Any, tuple, dict]] = field(default_factory=list)

    @property
    def pending(self) -> set[int]:
        """Storage keys of the parameters that have recorded writes not yet run."""
        return {key for key, *_ in self.writes}

    def replay(self, params: Iterable[nn.Parameter] | None = None) -> int:
        """Run the recorded writes, in their original order, for ``params`` (default: every
        parameter created in the block). Writes to other parameters are dropped: the predicted
        ones are overwritten anyway, and parameters the model no longer holds (a replaced
        first convolution) need none. Returns the number of writes run."""
        wanted = None if params is None else {_storage_key(p) for p in params}
        done = 0
        with torch.no_grad():
            for key, func, args, kwargs in self.writes:
                if wanted is None or key in wanted:
                    func(*args, **kwargs)
                    done += 1
        self.writes.clear()
        return done


class _DeferWrites(TorchFunctionMode):
    def __init__(self, state: DeferredInit) -> None:
        super().__init__()
        self.state = state

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        # nn.init functions dispatch with the tensor as a keyword: init.normal_(tensor=...)
        target = args[0] if args else kwargs.get("tensor")
        if isinstance(target, torch.Tensor) and _is_write(func):
            key = _storage_key(target)
            if key is not None and key in self.state.params:
                self.state.writes.append((key, func, args, kwargs))
                return target
        return func(*args, **kwargs)


@contextmanager
def deferred_init() -> Iterator[DeferredInit]:
    """Construct models inside this block to defer the initialisation of their parameters.

    >>> with deferred_init() as deferred:
    ...     model = timm.create_model("densenet121")
    >>> deferred.replay()  # default init after all (or let initialize() predict most of it)

    Not thread-safe: parameters registered by other threads meanwhile are deferred too.
    """
    state = DeferredInit()

    def registered(_module: nn.Module, _name: str, param: nn.Parameter | None) -> None:
        if param is not None:
            key = _storage_key(param)
            if key is not None:
                state.params[key] = param  # kept alive: its memory is not reused meanwhile

    handle = register_module_parameter_registration_hook(registered)
    try:
        with _DeferWrites(state):
            yield state
    finally:
        handle.remove()
    log.debug("deferred %d writes to %d parameters", len(state.writes), len(state.pending))
